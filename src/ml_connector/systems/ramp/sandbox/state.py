"""In-memory state and switches of the Ramp sandbox (emulator).

Everything a test may want to change lives on `RampSandbox` as plain attributes, so
it can be set from Python (same process) or over HTTP via `POST /_sandbox/faults`.
Behaviour Ramp does not document ([unverified] in cloud-apis.md §1) is a switch here.
"""

from __future__ import annotations

import bisect
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

DEMO_CLIENT_ID = "ramp_demo_client"
DEMO_CLIENT_SECRET = "ramp_demo_secret"
DEMO_SCOPES = (
    "accounting:read accounting:write vendors:read vendors:write bills:read bills:write business:read"
)
FAULT_KINDS = ("429", "500", "502", "503", "drop", "timeout_after_commit")
GL_CLASSIFICATIONS = ("ANY", "ASSET", "CREDCARD", "EQUITY", "EXPENSE", "LIABILITY", "REVENUE", "UNKNOWN")


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())


@dataclass
class RateLimitConfig:
    enabled: bool = True
    limit: int = 200
    period: float = 10.0
    mode: str = "rolling"  # "rolling" (R2) | "lockout" (R4)
    lockout_seconds: float = 60.0  # lockout mode: blocked this long; calls meanwhile restart the clock
    per: str = "ip"  # "ip" | "token"
    retry_after: float | None = None  # send Retry-After: <seconds> on 429 when set
    count_token_endpoint: bool = True  # does POST /token draw from the same window?
    count_rejected: bool = False  # rolling mode: do rejected (429) calls also take a slot?


@dataclass
class Fault:
    kind: str
    remaining: int
    path: str | None = None  # only requests whose path starts with this
    method: str | None = None  # only this HTTP method


@dataclass
class Token:
    client_id: str
    scopes: frozenset[str]
    expires_at: float
    revoked: bool = False


class _Window:
    __slots__ = ("locked_until", "stamps")

    def __init__(self) -> None:
        self.stamps: deque[float] = deque()
        self.locked_until = 0.0


class OrderedStore:
    """Records keyed by ramp_id with a remote-id index and an append-only keyset order.

    ramp_ids are generated so that their string order is creation order, which makes
    the keyset order (by ramp_id) stable and unique, and `start=<ramp_id>` a bisect.
    """

    def __init__(self) -> None:
        self.by_id: dict[str, dict[str, Any]] = {}
        self.by_remote: dict[str, str] = {}
        self.order: list[str] = []

    def add(self, rec: dict[str, Any]) -> None:
        self.by_id[rec["ramp_id"]] = rec
        self.by_remote[rec["id"]] = rec["ramp_id"]
        self.order.append(rec["ramp_id"])

    def iter_after(self, start: str | None) -> Iterator[dict[str, Any]]:
        pos = bisect.bisect_right(self.order, start) if start else 0
        for i in range(pos, len(self.order)):
            yield self.by_id[self.order[i]]

    def clear(self) -> None:
        self.by_id.clear()
        self.by_remote.clear()
        self.order.clear()


@dataclass
class RampSandbox:
    client_id: str = DEMO_CLIENT_ID
    client_secret: str = DEMO_CLIENT_SECRET
    allowed_scopes: str = DEMO_SCOPES
    token_lifetime: float = 864000.0
    # [unverified] "invalid_scope" (FAQ) or "grant_subset" (grant the allowed part; 403 later)
    scope_mismatch: str = "invalid_scope"
    # [unverified] how a bad/expired token is answered: 401 documented; 404 DEVELOPER_7002 reported
    invalid_token_status: int = 401
    invalid_token_error_code: str = "DEVELOPER_7002"
    missing_scope_error_code: str = "DEVELOPER_7100"  # [unverified]
    # [verified, inconsistent] OAS says 400 InvalidInput; error guide shows 422
    validation_status: int = 400
    batch_error_status: int = 400
    vendors_synced_on_upload: bool = True  # [unverified] is_synced of API-uploaded vendors
    accept_code_on_vendor_upload: bool = True  # OAS item is {id, name}; the brief allows code
    rate_limit: RateLimitConfig = field(default_factory=RateLimitConfig)
    latency: float = 0.0
    commit_then: str = "drop"  # timeout_after_commit: "drop" the connection or "hang" then drop
    hang_seconds: float = 5.0
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self.lock = threading.RLock()
        self.business_id = str(uuid.uuid4())
        self._seq = 0
        self.reset(tokens=True)

    # ---- lifecycle -------------------------------------------------------------------
    def reset(self, *, tokens: bool = True) -> None:
        with self.lock:
            self.vendors = OrderedStore()
            self.gl_accounts = OrderedStore()
            # Bill Pay vendors (/developer/v1/vendors): keyed and ordered by their Ramp id
            self.billpay_vendors: dict[str, dict[str, Any]] = {}
            self.billpay_order: list[str] = []
            self.faults: list[Fault] = []
            self.windows: dict[str, _Window] = {}
            if tokens:
                self.tokens: dict[str, Token] = {}
            self.requests_by_path: dict[str, dict[str, int]] = {}
            self.requests_total = 0
            self.rate_limited = 0
            self.faults_injected = 0
            self.peak_in_window = 0
            self.tokens_issued = 0
            self.sent_429 = 0

    # ---- ids -------------------------------------------------------------------------
    def new_ramp_id(self) -> str:
        """A uuid-formatted id whose string order is creation order."""
        with self.lock:
            self._seq += 1
            seq = self._seq
        return str(uuid.UUID(int=(seq << 80) | secrets.randbits(80)))

    # ---- faults ----------------------------------------------------------------------
    def fail_next(self, n: int, kind: str, *, path: str | None = None, method: str | None = None) -> None:
        kind = str(kind)
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {FAULT_KINDS}")
        with self.lock:
            self.faults.append(Fault(kind=kind, remaining=int(n), path=path,
                                     method=method.upper() if method else None))

    def take_fault(self, method: str, path: str) -> str | None:
        with self.lock:
            for f in self.faults:
                if f.remaining <= 0:
                    continue
                if f.path and not path.startswith(f.path):
                    continue
                if f.method and f.method != method:
                    continue
                f.remaining -= 1
                self.faults = [x for x in self.faults if x.remaining > 0]
                self.faults_injected += 1
                return f.kind
        return None

    def expire_tokens_now(self) -> None:
        with self.lock:
            for t in self.tokens.values():
                t.expires_at = 0.0

    # ---- tokens ----------------------------------------------------------------------
    def issue_token(self, client_id: str, scopes: frozenset[str]) -> tuple[str, float]:
        tok = "ramp_tok_" + secrets.token_urlsafe(32)
        with self.lock:
            self.tokens[tok] = Token(client_id=client_id, scopes=scopes,
                                     expires_at=self.clock() + self.token_lifetime)
            self.tokens_issued += 1
        return tok, self.token_lifetime

    def token_valid(self, tok: str) -> Token | None:
        t = self.tokens.get(tok)
        if t is None or t.revoked or t.expires_at <= self.clock():
            return None
        return t

    # ---- rate limit ------------------------------------------------------------------
    def admit(self, key: str) -> tuple[bool, float]:
        """Count one request against `key`'s window: (allowed, seconds until a slot frees)."""
        rl = self.rate_limit
        if not rl.enabled or rl.limit <= 0:
            return True, 0.0
        now = time.monotonic()
        with self.lock:
            w = self.windows.get(key)
            if w is None:
                w = self.windows[key] = _Window()
            if rl.mode == "lockout" and now < w.locked_until:
                w.locked_until = now + rl.lockout_seconds  # calls during the lockout restart the clock
                return False, rl.lockout_seconds
            edge = now - rl.period
            while w.stamps and w.stamps[0] <= edge:
                w.stamps.popleft()
            if len(w.stamps) >= rl.limit:
                if rl.mode == "lockout":
                    w.locked_until = now + rl.lockout_seconds
                    w.stamps.clear()
                    return False, rl.lockout_seconds
                if rl.count_rejected:
                    w.stamps.append(now)
                    w.stamps.popleft()
                    return False, rl.period
                return False, max(w.stamps[0] + rl.period - now, 0.0)
            w.stamps.append(now)
            self.peak_in_window = max(self.peak_in_window, len(w.stamps))
            return True, 0.0

    # ---- stats -----------------------------------------------------------------------
    def record(self, path: str, status: int | str) -> None:
        """Count one answered request; `status` is "drop" when the connection was dropped."""
        with self.lock:
            self.requests_total += 1
            by = self.requests_by_path.setdefault(path, {})
            by[str(status)] = by.get(str(status), 0) + 1
            if status == 429:
                self.sent_429 += 1

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests_total": self.requests_total,
                "requests_by_path": {p: dict(v) for p, v in self.requests_by_path.items()},
                "rate_limited": self.rate_limited,
                "sent_429": self.sent_429,
                "faults_injected": self.faults_injected,
                "peak_in_window": self.peak_in_window,
                "tokens_issued": self.tokens_issued,
                "vendors": len(self.vendors.by_id),
                "gl_accounts": len(self.gl_accounts.by_id),
            }

    # ---- switches as JSON ------------------------------------------------------------
    def switches(self) -> dict[str, Any]:
        rl = self.rate_limit
        return {
            "latency": self.latency,
            "token_lifetime": self.token_lifetime,
            "scope_mismatch": self.scope_mismatch,
            "invalid_token_status": self.invalid_token_status,
            "validation_status": self.validation_status,
            "batch_error_status": self.batch_error_status,
            "commit_then": self.commit_then,
            "hang_seconds": self.hang_seconds,
            "pending_faults": [f.__dict__.copy() for f in self.faults],
            "rate_limit": dict(rl.__dict__),
        }

    def apply(self, body: dict[str, Any]) -> None:
        """Apply a `POST /_sandbox/faults` JSON body (see app.py for the shape)."""
        with self.lock:
            for name in ("latency", "token_lifetime", "hang_seconds"):
                if name in body:
                    setattr(self, name, float(body[name]))
            for name in ("scope_mismatch", "commit_then"):
                if name in body:
                    setattr(self, name, str(body[name]))
            for name in ("invalid_token_status", "validation_status", "batch_error_status"):
                if name in body:
                    setattr(self, name, int(body[name]))
            if body.get("clear_faults"):
                self.faults = []
            if "fail_next" in body:
                self.fail_next(int(body["fail_next"]), str(body.get("kind", "500")),
                               path=body.get("path"), method=body.get("method"))
            if body.get("expire_tokens_now"):
                self.expire_tokens_now()
            rl = body.get("rate_limit")
            if isinstance(rl, dict):
                cur = self.rate_limit
                for k, v in rl.items():
                    if not hasattr(cur, k):
                        raise ValueError(f"unknown rate_limit switch {k!r}")
                    setattr(cur, k, v)
                self.windows.clear()
