"""State of the Procore emulator: one company, its projects, cost codes, vendors, purchase order
contracts and direct costs, tokens, rate-limit windows and fault switches.

Seed: 160 projects (152 active), the company's standard cost codes copied into every project (as
Procore does when a project is created from the company template). The demo mappings of
flows/sap_ecc_procore.py point SAP cost centers / plants at project numbers 26-001.. and SAP G/L
accounts at the cost codes below.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

COMPANY_ID = 4260001
COMPANY_NAME = "Harbor & Stone Builders"
PROJECTS = 160
INACTIVE_EVERY = 20  # every 20th project is inactive (closed jobs): 8 of 160

#: The company's standard cost codes (full_code, name); every project gets a copy.
STANDARD_COST_CODES: tuple[tuple[str, str], ...] = (
    ("01-100", "General Requirements"), ("01-310", "Project Management"), ("01-500", "Temporary Facilities"),
    ("01-540", "Equipment Rental"), ("01-560", "Site Security & Safety"), ("01-740", "Cleaning"),
    ("02-200", "Site Preparation"), ("03-300", "Cast-in-Place Concrete"), ("05-100", "Structural Steel"),
    ("05-500", "Metal Fabrications"), ("06-100", "Rough Carpentry"), ("07-200", "Insulation"),
    ("08-100", "Doors & Frames"), ("09-200", "Drywall"), ("09-900", "Painting"),
    ("15-100", "Plumbing"), ("15-500", "HVAC"), ("16-100", "Electrical"), ("16-700", "Communications"),
    ("90-100", "Field Labor"), ("90-200", "Supervision Labor"), ("90-300", "Overhead Allocation"),
)
CITIES = ("Newark", "Jersey City", "Chicago", "Evanston", "Brooklyn", "Queens", "Hoboken", "Naperville",
          "Stamford", "Yonkers")
KINDS = ("Medical Office Building", "Warehouse Expansion", "K-12 School Renovation", "Parking Structure",
         "Mixed-Use Tower", "Distribution Center", "Lab Fit-Out", "Retail Center", "Fire Station", "Hotel")


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Faults:
    """`POST /_sandbox/faults`: fail_next N calls of the API (not the token endpoint) with `kind`
    429 | 503 | 500 | drop (connection closed, nothing applied) | drop_after_commit (applied, then
    the connection closed) | expire_tokens (every token expires just before the call: 401);
    `retry_after` seconds on 429/503; `latency` seconds per call; `path` limits the faults to paths
    containing it."""

    KINDS = ("429", "503", "500", "drop", "drop_after_commit", "expire_tokens")

    def __init__(self) -> None:
        self.fail_next = 0
        self.kind = "429"
        self.retry_after = 1.0
        self.latency = 0.0
        self.path = ""

    def update(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.pop("reset", False):
            self.__init__()  # type: ignore[misc]
        for key, value in body.items():
            if key == "fail_next":
                self.fail_next = max(0, int(value))
            elif key == "kind":
                if str(value) not in self.KINDS:
                    raise ValueError(f"kind must be one of {self.KINDS}")
                self.kind = str(value)
            elif key == "retry_after":
                self.retry_after = max(0.0, float(value))
            elif key == "latency":
                self.latency = max(0.0, float(value))
            elif key == "path":
                self.path = str(value or "")
            else:
                raise ValueError(f"unknown fault switch {key!r}")
        return self.as_dict()

    def as_dict(self) -> dict[str, Any]:
        return {"fail_next": self.fail_next, "kind": self.kind, "retry_after": self.retry_after,
                "latency": self.latency, "path": self.path}


class RateLimits:
    """Procore's two windows per company: hourly and spike (10 s). Headers report the window the
    caller will hit first; `enabled=False` counts but never refuses."""

    def __init__(self, hourly: int = 3600, spike: int = 200, spike_period: float = 10.0) -> None:
        self.hourly = hourly
        self.spike = spike
        self.spike_period = spike_period
        self.hour_period = 3600.0
        self.enabled = True
        self._hour: deque[float] = deque()
        self._spike: deque[float] = deque()

    def update(self, body: dict[str, Any]) -> dict[str, Any]:
        for key in ("hourly", "spike"):
            if key in body:
                setattr(self, key, max(1, int(body[key])))
        if "spike_period" in body:
            self.spike_period = max(0.1, float(body["spike_period"]))
        if "hour_period" in body:  # benchmarks scale the hour down
            self.hour_period = max(1.0, float(body["hour_period"]))
        if "enabled" in body:
            self.enabled = bool(body["enabled"])
        if body.get("reset"):
            self._hour.clear()
            self._spike.clear()
        return {"hourly": self.hourly, "spike": self.spike, "spike_period": self.spike_period,
                "hour_period": self.hour_period, "enabled": self.enabled}

    def _prune(self, now: float) -> None:
        while self._hour and self._hour[0] <= now - self.hour_period:
            self._hour.popleft()
        while self._spike and self._spike[0] <= now - self.spike_period:
            self._spike.popleft()

    def take(self, now: float) -> tuple[bool, dict[str, str], float]:
        """(allowed, headers, retry_after seconds when refused)."""
        self._prune(now)
        hour_left = self.hourly - len(self._hour)
        spike_left = self.spike - len(self._spike)
        allowed = not self.enabled or (hour_left > 0 and spike_left > 0)
        if allowed:
            self._hour.append(now)
            self._spike.append(now)
            hour_left -= 1
            spike_left -= 1
        # The window most likely to be hit first: spike until the hourly budget is nearly spent.
        if hour_left <= spike_left:
            limit, left = self.hourly, hour_left
            reset = (self._hour[0] + self.hour_period) if self._hour else now + self.hour_period
        else:
            limit, left = self.spike, spike_left
            reset = (self._spike[0] + self.spike_period) if self._spike else now + self.spike_period
        headers = {"X-Rate-Limit-Limit": str(limit), "X-Rate-Limit-Remaining": str(max(0, left)),
                   "X-Rate-Limit-Reset": str(math.ceil(reset))}
        return allowed, headers, max(0.0, reset - now)


class ProcoreSandbox:
    """One company's data (thread-safe through `lock`)."""

    DATA = ("projects", "cost_codes", "vendors", "contracts", "direct_costs", "requisitions", "seq")

    def __init__(self, projects: int = PROJECTS) -> None:
        self.lock = threading.RLock()
        self.client_id = "procore_demo_client"
        self.client_secret = "procore_demo_secret"  # public sandbox demo credential, not a secret
        self.company_id = COMPANY_ID
        self.company_name = COMPANY_NAME
        self.token_lifetime = 5400
        self.tokens: dict[str, float] = {}  # access token -> expiry (time.time)
        self.tokens_issued = 0
        self.faults = Faults()
        self.limits = RateLimits()
        self.stats: dict[str, float] = {"requests": 0, "throttled": 0, "unauthorized": 0, "faults": 0,
                                        "writes": 0, "first_request_at": 0.0, "last_request_at": 0.0}
        self.seq = 1000
        self.projects: dict[int, dict[str, Any]] = {}
        self.cost_codes: dict[int, dict[int, dict[str, Any]]] = {}  # project id -> id -> cost code
        self.vendors: dict[int, dict[str, Any]] = {}
        self.contracts: dict[int, dict[str, Any]] = {}
        self.direct_costs: dict[int, dict[str, Any]] = {}
        self.requisitions: dict[int, dict[str, Any]] = {}  # subcontractor invoices against commitments
        from ml_connector.systems.procore.sandbox.webhooks import Webhooks

        self.webhooks = Webhooks(self.company_id)  # hooks are not kept by snapshot()
        self._seed(projects)

    # -- seed / persistence --------------------------------------------------------------------
    def _seed(self, n: int) -> None:
        for i in range(1, n + 1):
            pid = 5820000 + i
            number = f"26-{i:03d}"
            name = f"{CITIES[i % len(CITIES)]} {KINDS[i % len(KINDS)]} {i:03d}"
            self.projects[pid] = {"id": pid, "name": name, "display_name": f"{number} - {name}",
                                  "project_number": number, "active": i % INACTIVE_EVERY != 0,
                                  "origin_id": None, "origin_data": None, "origin_code": None,
                                  "company": {"id": self.company_id, "name": self.company_name}}
            codes: dict[int, dict[str, Any]] = {}
            for j, (full, title) in enumerate(STANDARD_COST_CODES):
                cid = pid * 100 + j
                division, code = full.split("-")
                codes[cid] = {"id": cid, "name": title, "code": code, "full_code": full,
                              "sortable_code": full, "parent": {"id": None}, "biller_type": "Project",
                              "biller_id": pid, "budgeted": False, "origin_id": None, "position": j,
                              "division": division}
            self.cost_codes[pid] = codes

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy({k: getattr(self, k) for k in self.DATA})

    def restore(self, snap: dict[str, Any]) -> None:
        with self.lock:
            for k in self.DATA:
                if k in snap:
                    setattr(self, k, snap[k])

    def next_id(self) -> int:
        with self.lock:
            self.seq += 1
            return self.seq

    # -- tokens --------------------------------------------------------------------------------
    def issue_token(self) -> tuple[str, int]:
        import secrets

        tok = "pcr_" + secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[tok] = time.time() + self.token_lifetime
            self.tokens_issued += 1
        return tok, self.token_lifetime

    def token_valid(self, tok: str) -> bool:
        with self.lock:
            exp = self.tokens.get(tok)
            return exp is not None and exp > time.time()

    def expire_tokens(self) -> int:
        """Every issued token expires now (the next call with one gets 401)."""
        with self.lock:
            n = len(self.tokens)
            for k in self.tokens:
                self.tokens[k] = 0.0
            return n

    # -- helpers the app uses ------------------------------------------------------------------
    def project(self, pid: int) -> dict[str, Any] | None:
        return self.projects.get(pid)

    def cost_code(self, pid: int, cid: Any) -> dict[str, Any] | None:
        try:
            return self.cost_codes.get(pid, {}).get(int(cid))
        except (TypeError, ValueError):
            return None

    def now(self) -> str:
        return _now_iso()
