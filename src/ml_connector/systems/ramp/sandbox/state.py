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

from ml_connector.core.providers import RateLimitFacts

DEMO_CLIENT_ID = "ramp_demo_client"
DEMO_CLIENT_SECRET = "ramp_demo_secret"
#: The demo app's scopes: the ERP integration's (cloud-apis.md §1.1: accounting, vendors, bills,
#: entities, users, transactions, reimbursements) plus the read scopes third-party tools ask for.
DEMO_SCOPES = (
    "accounting:read accounting:write vendors:read vendors:write bills:read bills:write business:read"
    " entities:read users:read transactions:read reimbursements:read departments:read locations:read"
    " cards:read receipts:read purchase_orders:read spend_programs:read"
)
#: Seeded resources (seed.py), each a `{id: record}` attribute of RampSandbox.
SEEDED = ("departments", "locations", "users", "spend_programs", "cards", "transactions", "receipts",
          "reimbursements", "purchase_orders", "vendor_contacts")
#: `expire_token`: the request's own token expires there and then, and the request is answered as one
#: with an expired token (a token lost mid-run, at a chosen call)
FAULT_KINDS = ("429", "500", "502", "503", "drop", "timeout_after_commit", "reject", "expire_token")
WEBHOOK_SWITCHES = ("webhook_max_attempts", "webhook_first_delay", "webhook_retry_scale", "webhook_timeout")
BOOL_SWITCHES = ("webhook_require_verification", "edit_resets_sync", "cards_hide_terminated",
                 "updated_after_inclusive")
FIELD_INPUT_TYPES = ("SINGLE_CHOICE", "BOOLEAN", "FREE_FORM_TEXT")
FIELD_REQUIRED_FOR = ("BILL", "BILL_PAYMENT", "PURCHASE_ORDER", "REIMBURSEMENT", "TRANSACTION")
SYNC_TYPES = ("TRANSACTION_SYNC", "REIMBURSEMENT_SYNC", "BILL_SYNC", "BILL_PAYMENT_SYNC", "TRANSFER_SYNC",
              "ACCRUAL_SYNC", "BANKING_TRANSACTION_SYNC", "BROKERAGE_ORDER_SYNC", "PAYEE_SYNC",
              "STATEMENT_CREDIT_SYNC", "TRACKING_CATEGORY_OPTION_SYNC", "WALLET_TRANSFER_SYNC")
#: The sandbox business's entities. Ids are stable so that configurations (the example's
#: `entities` mapping) can name them. The first is the primary entity.
DEFAULT_ENTITY_ID = "0e1b5a1e-0000-4000-8000-000000000001"
SECOND_ENTITY_ID = "0e1b5a1e-0000-4000-8000-000000000002"
ENTITIES: tuple[dict[str, Any], ...] = (
    {"id": DEFAULT_ENTITY_ID, "entity_name": "ML Connector Inc.", "is_primary": True, "currency": "USD"},
    {"id": SECOND_ENTITY_ID, "entity_name": "ML Connector GmbH", "is_primary": False, "currency": "EUR"},
)
PAYMENT_METHODS = ("ACH", "CARD", "CHECK", "DOMESTIC_WIRE", "INTERNATIONAL", "ONE_TIME_CARD",
                   "ONE_TIME_CARD_DELIVERY", "PAID_MANUALLY", "SWIFT", "UNSPECIFIED", "VENDOR_CREDIT")
GL_CLASSIFICATIONS = ("ANY", "ASSET", "CREDCARD", "EQUITY", "EXPENSE", "LIABILITY", "REVENUE", "UNKNOWN")


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())


class BillStateError(ValueError):
    """The bill's state does not allow the change (answered 409 by the admin endpoints)."""


def _ramp_rate_limit() -> RateLimitFacts:
    from ml_connector.systems.ramp.facts import ramp_facts

    return ramp_facts().need_rate_limit()


@dataclass
class RateLimitConfig:
    enabled: bool = True
    # Ramp's published budget (provider facts rate_limit: 200 per 10 s); tests and faults change it.
    limit: int = field(default_factory=lambda: _ramp_rate_limit().limit)
    period: float = field(default_factory=lambda: float(_ramp_rate_limit().period))
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

    def add(self, rec: dict[str, Any], remote_key: str | None = None) -> None:
        """`remote_key` defaults to the record's ERP id (field options use field + id)."""
        self.by_id[rec["ramp_id"]] = rec
        self.by_remote[remote_key or rec["id"]] = rec["ramp_id"]
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
    # [unverified] "grant_subset" (grant the allowed part; 403 later) or "invalid_scope" (the FAQ)
    scope_mismatch: str = "grant_subset"
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
    #: The rate limiter's clock (windows and lockouts); a test moves it instead of sleeping.
    monotonic: Callable[[], float] = time.monotonic
    seed_demo: bool = True  # users, departments, locations, cards, transactions, … (seed.py)
    # Bill Pay vendors (with contacts) in the seed: off by default so that vendor matching starts
    # from the vendors the integration creates; seeded purchase orders then name no vendor.
    seed_vendors: bool = False
    # Webhooks (webhooks.py): attempts per event (R2: "retry up to 10 times" - 10 attempts here,
    # [unverified] whether the first try counts), the first backoff window (0-60 s, doubling),
    # a scale on every delay (tests: 0.001), the per-attempt timeout, and whether events go only
    # to verified (active) subscriptions.
    webhook_max_attempts: int = 10
    webhook_first_delay: float = 60.0
    webhook_retry_scale: float = 1.0
    webhook_timeout: float = 10.0
    webhook_require_verification: bool = True
    edit_resets_sync: bool = False  # [unverified] does editing a synced bill make it ready again?
    # [unverified] the /cards list leaves terminated cards out unless is_terminated is sent (public
    # connector code relies on it: Airbyte's source-ramp lists is_terminated=false, then true)
    cards_hide_terminated: bool = True
    # [unverified] is `updated_after` inclusive? Public connectors read it as "on or after".
    updated_after_inclusive: bool = True

    def __post_init__(self) -> None:
        from ml_connector.systems.ramp.sandbox.webhooks import WebhookDispatcher

        self.lock = threading.RLock()
        self.dispatcher = WebhookDispatcher(self)
        self.business_id = str(uuid.uuid4())
        self._seq = 0
        self.reset(tokens=True)

    # ---- lifecycle -------------------------------------------------------------------
    def reset(self, *, tokens: bool = True) -> None:
        with self.lock:
            self.vendors = OrderedStore()
            self.gl_accounts = OrderedStore()
            self.fields = OrderedStore()  # accounting custom fields, remote id = the field's ERP id
            self.field_options = OrderedStore()  # remote key = field ramp_id + "\x00" + option ERP id
            # Bills keyed and ordered by their Ramp id; accounting syncs by idempotency key
            self.bills: dict[str, dict[str, Any]] = {}
            self.bill_order: list[str] = []
            self.syncs: dict[str, dict[str, Any]] = {}
            # Accounting connections (POST /accounting/connection), by id; at most one active
            self.accounting_connections: dict[str, dict[str, Any]] = {}
            # Bill Pay vendors (/developer/v1/vendors): keyed and ordered by their Ramp id
            self.billpay_vendors: dict[str, dict[str, Any]] = {}
            self.billpay_order: list[str] = []
            self.seed()
            # Webhook subscriptions (with their secrets), the events sent and every delivery
            self.webhooks: dict[str, dict[str, Any]] = {}
            self.webhook_events: dict[str, dict[str, Any]] = {}
            self.webhook_deliveries: dict[str, dict[str, Any]] = {}
            self.dispatcher.clear()
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

    def seed(self) -> None:
        """(Re)build the seeded resources; an empty business when `seed_demo` is off."""
        from ml_connector.systems.ramp.sandbox import seed

        data = seed.build(self.business_id, vendors=self.seed_vendors) if self.seed_demo else {}
        def part(name: str) -> dict[str, dict[str, Any]]:
            return dict(data.get(name, {}))

        with self.lock:
            self.departments = part("departments")
            self.locations = part("locations")
            self.users = part("users")
            self.spend_programs = part("spend_programs")
            self.cards = part("cards")
            self.transactions = part("transactions")
            self.receipts = part("receipts")
            self.reimbursements = part("reimbursements")
            self.purchase_orders = part("purchase_orders")
            self.vendor_contacts = part("vendor_contacts")  # Bill Pay vendor contacts, by contact id
            for vid, rec in data.get("billpay_vendors", {}).items():
                self.billpay_vendors[vid] = rec
                bisect.insort(self.billpay_order, vid)

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

    def expire_token(self, tok: str) -> None:
        with self.lock:
            t = self.tokens.get(tok)
            if t is not None:
                t.expires_at = 0.0

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
        now = self.monotonic()
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
                "fields": len(self.fields.by_id),
                "field_options": len(self.field_options.by_id),
                "bills": len(self.bills),
                "syncs": len(self.syncs),
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
            **{k: getattr(self, k) for k in BOOL_SWITCHES + WEBHOOK_SWITCHES},
        }

    def apply(self, body: dict[str, Any]) -> None:
        """Apply a `POST /_sandbox/faults` JSON body (see app.py for the shape)."""
        known = {"latency", "token_lifetime", "hang_seconds", "scope_mismatch", "commit_then",
                 "invalid_token_status", "validation_status", "batch_error_status", "clear_faults",
                 "fail_next", "kind", "path", "method", "expire_tokens_now", "rate_limit",
                 *WEBHOOK_SWITCHES, *BOOL_SWITCHES}
        unknown = sorted(set(body) - known)
        if unknown:
            # A misspelt switch silently ignored would leave a fault test testing nothing.
            raise ValueError(f"unknown fault switch(es) {', '.join(map(repr, unknown))}; one of {sorted(known)}")
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
            for name in WEBHOOK_SWITCHES:
                if name in body:
                    setattr(self, name, int(body[name]) if name == "webhook_max_attempts" else float(body[name]))
            for name in BOOL_SWITCHES:
                if name in body:
                    setattr(self, name, bool(body[name]))
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

    # ---- bills and accounting syncs --------------------------------------------------
    @staticmethod
    def bill_sync_ready(bill: dict[str, Any]) -> bool:
        """[verified R2] not deleted, approved, not yet synced."""
        return (bill.get("approval_status") == "APPROVED" and bill.get("sync_status") == "NOT_SYNCED"
                and not bill.get("archived_at"))

    def _selection(self, store: OrderedStore, key: str, category: dict[str, Any]) -> dict[str, Any] | None:
        rid = store.by_remote.get(key)
        if rid is None:
            return None
        rec = store.by_id[rid]
        return {"id": rec["ramp_id"], "external_id": rec["id"], "external_code": rec.get("code"),
                "name": rec.get("name") or rec.get("value"), "category_info": category}

    def _bill_lines(self, spec: dict[str, Any], ccy: str, loose: bool,
                    problems: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
        """Line items and bill-level selections from a `create_bill`/`edit_bill` spec: (lines,
        bill selections, total in minor units). Unknown ERP ids go to `problems` unless `loose`."""
        from decimal import Decimal

        places = 0 if ccy in ("JPY", "KRW", "HUF", "CLP", "ISK") else 3 if ccy in ("BHD", "KWD", "OMR") else 2
        field_key = str(spec.get("cost_center_field") or "SAP_COST_CENTER")
        gl_cat = {"id": None, "external_id": None, "name": "GL Account", "type": "GL_ACCOUNT"}

        def field_selection(fkey: str, option: str, where: str) -> dict[str, Any]:
            frid = self.fields.by_remote.get(fkey)
            frec = self.fields.by_id.get(frid) if frid else None
            cat = {"id": frec["ramp_id"] if frec else None, "external_id": fkey,
                   "name": frec["name"] if frec else ("Cost Center" if fkey == field_key else fkey),
                   "type": self.field_category_type(frec) if frec or fkey == field_key else "OTHER"}
            sel = self._selection(self.field_options, f"{frid}\x00{option}", cat) if frid else None
            if sel is None:
                if not loose:
                    problems.append(f"{where}: no option {option!r} of field {fkey!r}")
                sel = {"id": None, "external_id": option, "external_code": None, "name": None, "category_info": cat}
            return sel

        lines = []
        total = 0
        for i, ln in enumerate(spec.get("line_items") or [], start=1):
            amt = ln["amount"]
            if isinstance(amt, dict):  # Ramp's money shape, minor units (the bill-pay guide's form)
                if str(amt.get("currency_code") or ccy).upper() != ccy:
                    raise ValueError(f"line {i}: currency {amt.get('currency_code')} differs from the bill's {ccy}")
                minor = int(amt["amount"])
            else:  # a decimal in major units (R1's form)
                minor = int((Decimal(str(amt)) * (10 ** places)).to_integral_value())
            total += minor
            sels = []
            if ln.get("gl_account"):
                sel = self._selection(self.gl_accounts, str(ln["gl_account"]), gl_cat)
                if sel is None:
                    if not loose:
                        problems.append(f"line {i}: no GL account {ln['gl_account']!r}")
                    sel = {"id": None, "external_id": str(ln["gl_account"]), "external_code": None,
                           "name": None, "category_info": gl_cat}
                sels.append(sel)
            if ln.get("cost_center"):
                sels.append(field_selection(field_key, str(ln["cost_center"]), f"line {i}"))
            for fkey, option in (ln.get("fields") or {}).items():  # other custom fields: {field id: option id}
                sels.append(field_selection(str(fkey), str(option), f"line {i}"))
            line = {"id": self.new_ramp_id(), "amount": {"amount": minor, "currency_code": ccy},
                    "memo": ln.get("memo"), "accounting_field_selections": sels}
            if ln.get("purchase_order_line_item_id"):
                # [U] the bill line's link to a PO line (a field some Ramp integrations write)
                line["purchase_order_line_item_id"] = str(ln["purchase_order_line_item_id"])
            lines.append(line)
        if not lines:
            problems.append("a bill needs at least one line item")
        bill_sels = [field_selection(str(k), str(v), "bill") for k, v in (spec.get("fields") or {}).items()]
        return lines, bill_sels, total

    def api_line(self, ln: dict[str, Any]) -> dict[str, Any]:
        """A line of `POST/PATCH /bills` (`{amount, memo, accounting_field_selections:
        [{field_external_id, field_option_external_id}]}`) as a `create_bill` line spec: a selection
        naming an uploaded field picks that field's option; `GL_ACCOUNT` (or an uploaded GL
        account's id) picks the GL account ([unverified] how Ramp addresses GL accounts here)."""
        out: dict[str, Any] = {"amount": ln.get("amount"), "memo": ln.get("memo"), "fields": {}}
        for sel in ln.get("accounting_field_selections") or []:
            fkey, opt = str(sel.get("field_external_id") or ""), str(sel.get("field_option_external_id") or "")
            if fkey in self.fields.by_remote:
                out["fields"][fkey] = opt
            elif fkey.upper() in ("GL_ACCOUNT", "GL_ACCOUNTS") or (not fkey and opt in self.gl_accounts.by_remote):
                out["gl_account"] = opt
            else:
                raise ValueError(f"no accounting field {fkey!r}")
        return out

    def create_bill(self, spec: dict[str, Any]) -> dict[str, Any]:
        """A bill for tests and demos (`POST /_sandbox/bills`), referencing what was uploaded by ERP id.

        spec: {vendor (accounting vendor ERP id, e.g. the SAP LIFNR), invoice_number, currency (USD),
        entity_id (default entity), issued_at, due_at, posting_date?, memo?, payment_method (ACH),
        approval_status (APPROVED; PENDING or INITIALIZED to approve it later), purchase_order_id?,
        line_items: [{amount (major units, decimal string), memo?, gl_account (ERP id)?,
                      cost_center (option ERP id)?, fields: {other field ERP id: option ERP id}?,
                      purchase_order_line_item_id? (a line of the bill's PO)}],
        fields: {field ERP id: option ERP id} (bill-level selections), cost_center_field
        ("SAP_COST_CENTER"), allow_unknown (false: an unknown ERP id is an error; true: the selection
        is made anyway, as when the ERP record was deleted after Ramp synced it)}."""
        ccy = str(spec.get("currency") or "USD").upper()
        loose = bool(spec.get("allow_unknown"))
        problems: list[str] = []
        approval = str(spec.get("approval_status") or "APPROVED")
        if approval not in ("APPROVED", "PENDING", "INITIALIZED"):
            raise ValueError("approval_status must be APPROVED, PENDING or INITIALIZED (reject it afterwards)")
        method = str(spec.get("payment_method") or "ACH")
        if method not in PAYMENT_METHODS:
            raise ValueError(f"payment_method must be one of {', '.join(PAYMENT_METHODS)}")
        with self.lock:
            billpay = self.billpay_vendors.get(str(spec.get("billpay_vendor_id") or ""))
            if spec.get("billpay_vendor_id") and billpay is None:
                problems.append(f"no vendor {spec['billpay_vendor_id']!r}")
            vendor_key = str((billpay or {}).get("accounting_vendor_remote_id") or spec.get("vendor") or "")
            # a Bill Pay vendor need not be linked to an accounting vendor
            loose_vendor = True if billpay is not None else loose
            vrid = self.vendors.by_remote.get(vendor_key)
            if vrid is None and not loose_vendor:
                problems.append(f"no accounting vendor with id {vendor_key!r}")
            vrec = self.vendors.by_id.get(vrid) if vrid else None
            entity = str(spec.get("entity_id") or DEFAULT_ENTITY_ID)
            po_id = spec.get("purchase_order_id")
            if po_id is not None and po_id not in self.purchase_orders:
                problems.append(f"no purchase order {po_id!r}")
            po_rec = self.purchase_orders.get(str(po_id)) if po_id is not None else None
            po_lines = {str(pl["id"]) for pl in (po_rec or {}).get("line_items") or []}
            for i, ln in enumerate(spec.get("line_items") or [], start=1):
                link = ln.get("purchase_order_line_item_id")
                if link and str(link) not in po_lines:
                    problems.append(f"line {i}: no line {link!r} on the bill's purchase order")
            lines, bill_sels, total = self._bill_lines(spec, ccy, loose, problems)
            if problems:
                raise ValueError("; ".join(problems))
            bid = self.new_ramp_id()
            now = now_iso()
            owner = next((u for u in self.users.values() if u["role"] == "BUSINESS_ADMIN"), None)
            bill = {
                "id": bid, "remote_id": spec.get("remote_id"), "invoice_number": str(spec.get("invoice_number") or
                                                                                     f"INV-{self._seq}")[:20],
                "entity_id": entity, "memo": spec.get("memo"), "vendor_memo": None,
                "vendor": {"id": vrec["ramp_id"] if vrec else (billpay or {}).get("id"),
                           "name": vrec["name"] if vrec else (billpay or {}).get("name"),
                           "remote_id": vrec["id"] if vrec else vendor_key or None,
                           "remote_code": vrec.get("code") if vrec else None,
                           "remote_name": vrec["name"] if vrec else None, "type": "BUSINESS"},
                "vendor_contact_id": spec.get("vendor_contact_id"),
                "bill_owner": {"id": owner["id"], "first_name": owner["first_name"],
                               "last_name": owner["last_name"]} if owner else None,
                "amount": {"amount": total, "currency_code": ccy},
                "line_items": lines, "accounting_field_selections": bill_sels, "inventory_line_items": [],
                "approval_status": approval, "status": "OPEN",
                "payment_status": "OPEN", "payment_method": method, "sync_status": "NOT_SYNCED",
                "payment": None, "issued_at": spec.get("issued_at") or now[:10], "due_at": spec.get("due_at"),
                "accounting_date": spec.get("accounting_date"), "posting_date": spec.get("posting_date"),
                "paid_at": None, "archived_at": None, "created_at": now, "updated_at": now,
                # emulator extras (Ramp's Bill has no such timestamps): when and why its state changed
                "approved_at": now if approval == "APPROVED" else None, "rejected_at": None,
                "rejection_reason": None, "purchase_order_id": po_id,
                "deep_link_url": f"https://app.ramp.com/bill-pay/bills/{bid}", "fx_conversion_rate": None,
                "invoice_urls": [], "sync_reference_id": None, "sync_errors": [],
            }
            self.bills[bid] = bill
            self.bill_order.append(bid)
            if po_id is not None:
                self.purchase_orders[po_id]["bill_ids"].append(bid)
            self.emit("bills.created", bid)
            if approval == "APPROVED":
                self.emit("bills.approved", bid)
            return dict(bill)

    def create_purchase_order(self, spec: dict[str, Any]) -> dict[str, Any]:
        """A purchase order for tests and demos (`POST /_sandbox/purchase_orders`).

        spec: {purchase_order_number (the ERP's, e.g. SAP EBELN), remote_id?, name?, entity_id?,
        vendor_id? (Bill Pay vendor), user_id?, currency (USD), memo?, three_way_match_enabled?,
        line_items: [{description?, unit_quantity, unit_price (major units), remote_id? (e.g. the PO
        item EBELP), gl_account?, cost_center?, fields?}]}. Emits `purchase_orders.created`."""
        from decimal import Decimal

        ccy = str(spec.get("currency") or "USD").upper()
        problems: list[str] = []
        with self.lock:
            vendor_id = spec.get("vendor_id")
            if vendor_id is not None and vendor_id not in self.billpay_vendors:
                problems.append(f"no vendor {vendor_id!r}")
            user_id = spec.get("user_id")
            if user_id is not None and user_id not in self.users:
                problems.append(f"no user {user_id!r}")
            items = spec.get("line_items") or []
            lines_spec = [{**ln, "amount": Decimal(str(ln["unit_price"])) * int(ln["unit_quantity"])} for ln in items]
            lines, sels, total = self._bill_lines({**spec, "line_items": lines_spec}, ccy,
                                                  bool(spec.get("allow_unknown")), problems)
            if problems:
                raise ValueError("; ".join(problems))
            pid = self.new_ramp_id()
            now = now_iso()
            po_lines = []
            for ln, item in zip(lines, items, strict=True):
                qty = int(item["unit_quantity"])
                po_lines.append({"id": ln["id"], "remote_id": item.get("remote_id"),
                                 "description": item.get("description"), "unit_quantity": qty,
                                 "unit_price": {"amount": ln["amount"]["amount"] // qty if qty else 0,
                                                "currency_code": ccy},
                                 "amount": ln["amount"],
                                 "accounting_field_selections": ln["accounting_field_selections"]})
            number = str(spec.get("purchase_order_number") or f"PO-{self._seq}")
            po = {"id": pid, "purchase_order_number": number, "name": spec.get("name") or number,
                  "remote_id": spec.get("remote_id", number), "entity_id": spec.get("entity_id") or DEFAULT_ENTITY_ID,
                  "user_id": user_id, "vendor_id": vendor_id, "memo": spec.get("memo"),
                  "amount": {"amount": total, "currency_code": ccy},
                  "spend_total_amount": {"amount": 0, "currency_code": ccy},
                  "line_items": po_lines, "accounting_field_selections": sels, "creation_source": "DEVELOPER_API",
                  "receipt_status": "NOT_RECEIVED", "billing_status": "OPEN",
                  "three_way_match_enabled": bool(spec.get("three_way_match_enabled")), "net_payment_terms": 30,
                  "promise_date": spec.get("promise_date"), "spend_start_date": None, "spend_end_date": None,
                  "spend_request_id": None, "bill_ids": [], "transaction_ids": [],
                  "custom_form_collection_response": None, "archived_at": None, "created_at": now}
            self.purchase_orders[pid] = po
            self.emit("purchase_orders.created", pid)
            return dict(po)

    def mark_spend(self, kind: str, rid: str, action: str) -> dict[str, Any]:
        """Drive a seeded transaction or reimbursement: `ready_to_sync` (SYNC_READY), `ready_for_review`,
        and for transactions `authorized` (PENDING) / `cleared` (CLEARED); emits `<kind>.<action>`."""
        table = self.transactions if kind == "transactions" else self.reimbursements
        actions = ("ready_to_sync", "ready_for_review") + (("authorized", "cleared") if kind == "transactions" else ())
        if action not in actions:
            raise ValueError(f"action must be one of {', '.join(actions)}")
        with self.lock:
            rec = table.get(rid)
            if rec is None:
                raise KeyError(f"no {kind[:-1]} {rid!r}")
            if action == "ready_to_sync":
                if rec["sync_status"] == "SYNCED":
                    raise BillStateError(f"{kind[:-1]} {rid} is already synced")
                rec["sync_status"] = "SYNC_READY"
            elif action == "authorized":
                rec["state"] = "PENDING"
            elif action == "cleared":
                rec["state"] = "CLEARED"
                rec["settlement_date"] = now_iso()
            rec["updated_at"] = now_iso()
            self.emit(f"{kind}.{action}", rid)
            return dict(rec)

    # ---- a bill's life (admin endpoints /_sandbox/bills/{id}/…) -------------------------------
    def _bill(self, bid: str) -> dict[str, Any]:
        bill = self.bills.get(bid)
        if bill is None:
            raise KeyError(f"no bill {bid!r}")
        if bill.get("archived_at"):
            raise BillStateError(f"bill {bid} is archived")
        return bill

    def approve_bill(self, bid: str) -> dict[str, Any]:
        with self.lock:
            bill = self._bill(bid)
            if bill["approval_status"] not in ("PENDING", "INITIALIZED"):
                raise BillStateError(f"bill {bid} is {bill['approval_status']}, not awaiting approval")
            now = now_iso()
            bill.update(approval_status="APPROVED", approved_at=now, updated_at=now)
            self.emit("bills.approved", bid)
            return dict(bill)

    def reject_bill(self, bid: str, reason: str | None = None) -> dict[str, Any]:
        """Pending or approved (also after it was synced to the ERP), not once paid."""
        with self.lock:
            bill = self._bill(bid)
            if bill["status"] == "PAID":
                raise BillStateError(f"bill {bid} is paid")
            if bill["approval_status"] not in ("PENDING", "INITIALIZED", "APPROVED"):
                raise BillStateError(f"bill {bid} is {bill['approval_status']}")
            now = now_iso()
            bill.update(approval_status="REJECTED", rejected_at=now, rejection_reason=reason, updated_at=now)
            self.emit("bills.rejected", bid)
            return dict(bill)

    def pay_bill(self, bid: str, spec: dict[str, Any]) -> dict[str, Any]:
        """Pay an approved open bill in full. spec (all optional): payment_method (the bill's),
        payment_date / effective_date (ISO datetime or date; now), reference (the trace id: check
        number, ACH trace …; generated), payment_id (generated), manual_payment_method."""
        with self.lock:
            bill = self._bill(bid)
            if bill["approval_status"] != "APPROVED":
                raise BillStateError(f"bill {bid} is {bill['approval_status']}, not approved")
            if bill["status"] == "PAID":
                raise BillStateError(f"bill {bid} is already paid")
            method = str(spec.get("payment_method") or bill.get("payment_method") or "ACH")
            if method not in PAYMENT_METHODS:
                raise ValueError(f"payment_method must be one of {', '.join(PAYMENT_METHODS)}")
            now = now_iso()

            def stamp(v: Any) -> str:
                text = str(v)
                return text + "T00:00:00+00:00" if len(text) == 10 else text

            pay_date = stamp(spec.get("payment_date") or now)
            card = method in ("CARD", "ONE_TIME_CARD", "ONE_TIME_CARD_DELIVERY")
            details: dict[str, Any]
            if card:
                details = {"transaction_ids": [], "spend_limit_id": None}
            elif method == "PAID_MANUALLY":
                details = {"manual_payment_method": str(spec.get("manual_payment_method") or "PAID_IN_ERP")}
            else:
                details = {"approval_status": "APPROVED", "source_bank_account_id": None, "vendor_account_id": None}
            descriptor = {"CHECK": "Check Number", "ACH": "ACH Trace ID", "DOMESTIC_WIRE": "Wire Reference",
                          "SWIFT": "SWIFT Reference", "INTERNATIONAL": "Wire Reference"}.get(method, "Reference")
            reference = str(spec.get("reference") or f"{self._seq:015d}")
            bill["payment"] = {
                "id": str(spec.get("payment_id") or self.new_ramp_id()),  # emulator extra: the payment's id
                "amount": dict(bill["amount"]), "payment_method": method, "payment_date": pay_date,
                "effective_date": None if card else stamp(spec.get("effective_date") or pay_date),
                "details": details,
                "trace_id": None if card else {"descriptor": descriptor, "trace_id": reference},
            }
            bill.update(status="PAID", payment_status="PAID", paid_at=pay_date, updated_at=now)
            self.emit("bills.paid", bid)
            return dict(bill)

    def edit_bill(self, bid: str, spec: dict[str, Any]) -> dict[str, Any]:
        """Change a bill (also after approval or sync): memo, invoice_number, dates, line_items /
        fields (replaced, as in `create_bill`). A paid bill cannot change. With `edit_resets_sync`,
        a synced bill becomes ready to sync again [unverified: what Ramp does]."""
        allowed = {"memo", "invoice_number", "due_at", "issued_at", "posting_date", "accounting_date",
                   "line_items", "fields", "cost_center_field", "allow_unknown", "remote_id", "payment_method",
                   "purchase_order_id", "vendor_contact_id"}
        unknown = set(spec) - allowed
        if unknown:
            raise ValueError(f"cannot edit {', '.join(sorted(unknown))}")
        with self.lock:
            bill = self._bill(bid)
            if bill["status"] == "PAID":
                raise BillStateError(f"bill {bid} is paid")
            problems: list[str] = []
            if "line_items" in spec or "fields" in spec:
                merged = {"line_items": spec.get("line_items"), "fields": spec.get("fields"),
                          "cost_center_field": spec.get("cost_center_field")}
                if "line_items" not in spec:
                    raise ValueError("fields are edited together with line_items")
                lines, bill_sels, total = self._bill_lines(merged, bill["amount"]["currency_code"],
                                                           bool(spec.get("allow_unknown")), problems)
                if problems:
                    raise ValueError("; ".join(problems))
                bill.update(line_items=lines, accounting_field_selections=bill_sels,
                            amount={"amount": total, "currency_code": bill["amount"]["currency_code"]})
            if spec.get("payment_method") is not None and spec["payment_method"] not in PAYMENT_METHODS:
                raise ValueError(f"payment_method must be one of {', '.join(PAYMENT_METHODS)}")
            po_id = spec.get("purchase_order_id")
            if po_id is not None and po_id not in self.purchase_orders:
                raise ValueError(f"no purchase order {po_id!r}")
            if po_id is not None and bid not in self.purchase_orders[po_id]["bill_ids"]:
                self.purchase_orders[po_id]["bill_ids"].append(bid)
            for k in ("memo", "due_at", "issued_at", "posting_date", "accounting_date", "remote_id",
                      "payment_method", "purchase_order_id", "vendor_contact_id"):
                if k in spec:
                    bill[k] = spec[k]
            if "invoice_number" in spec:
                bill["invoice_number"] = str(spec["invoice_number"])[:20]
            bill["updated_at"] = now_iso()
            bill["edits"] = int(bill.get("edits", 0)) + 1
            if self.edit_resets_sync and bill["sync_status"] != "NOT_SYNCED":
                bill["sync_status"] = "NOT_SYNCED"
                bill["sync_reference_id"] = None
                # [unverified] the guide's `bills.ready_to_sync` event, for a bill ready to sync again
                self.emit("bills.ready_to_sync", bid)
            return dict(bill)

    def archive_bill(self, bid: str) -> None:
        with self.lock:
            bill = self.bills.get(bid)
            if bill is None:
                raise KeyError(f"no bill {bid!r}")
            bill["archived_at"] = bill.get("archived_at") or now_iso()

    @staticmethod
    def field_category_type(field: dict[str, Any] | None) -> str:
        """[unverified] the category type Ramp reports for a custom field's selections: COST_CENTER
        when the field is named like one, else OTHER."""
        if field is None:
            return "COST_CENTER"
        text = f"{field.get('id', '')} {field.get('name', '')}".lower().replace("_", " ")
        return "COST_CENTER" if "cost center" in text or "cost centre" in text else "OTHER"

    def apply_sync(self, body: dict[str, Any]) -> tuple[str, bool]:
        """Record a validated `POST /accounting/syncs`: (sync_id, replayed). A replay of an
        idempotency key returns the first sync_id and changes nothing [unverified: Ramp's answer]."""
        with self.lock:
            key = str(body["idempotency_key"])
            prior = self.syncs.get(key)
            if prior is not None:
                return prior["sync_id"], True
            if body["sync_type"] == "BILL_SYNC":
                problems = []
                for item in [*body.get("successful_syncs", []), *body.get("failed_syncs", [])]:
                    bill = self.bills.get(str(item.get("id")))
                    if bill is None:
                        problems.append(f"bill {item.get('id')} not found")
                    elif not self.bill_sync_ready(bill):
                        problems.append(f"bill {item.get('id')} is not ready to sync")
                if problems:
                    raise ValueError("; ".join(problems))
                now = now_iso()
                for item in body.get("successful_syncs", []):
                    bill = self.bills[str(item["id"])]
                    bill["sync_status"] = "BILL_SYNCED"
                    bill["sync_reference_id"] = item["reference_id"]
                    bill["synced_at"] = now
                    bill["sync_errors"] = []
                for item in body.get("failed_syncs", []):
                    bill = self.bills[str(item["id"])]
                    bill["sync_errors"] = [*bill.get("sync_errors", []), {"message": item["error"]["message"],
                                                                          "at": now}]
            elif body["sync_type"] == "BILL_PAYMENT_SYNC":
                # [verified R2] a payment is ready when the bill is not deleted and fully paid
                self._sync_items(body, lambda i: self.bills.get(i), "bill",
                                 lambda b: b["status"] == "PAID" and not b.get("archived_at")
                                 and b["sync_status"] != "BILL_AND_PAYMENT_SYNCED",
                                 "BILL_AND_PAYMENT_SYNCED", "payment_sync_reference_id")
            elif body["sync_type"] in ("TRANSACTION_SYNC", "REIMBURSEMENT_SYNC"):
                table = self.transactions if body["sync_type"] == "TRANSACTION_SYNC" else self.reimbursements
                self._sync_items(body, table.get, body["sync_type"].split("_")[0].lower(),
                                 lambda r: r["sync_status"] == "SYNC_READY", "SYNCED", "sync_reference_id")
            sync_id = str(uuid.uuid4())
            self.syncs[key] = {"sync_id": sync_id, "body": body, "created_at": now_iso()}
            return sync_id, False

    def _sync_items(self, body: dict[str, Any], find: Callable[[str], dict[str, Any] | None], what: str,
                    ready: Callable[[dict[str, Any]], bool], synced_status: str, ref_key: str) -> None:
        """Mark the successes of a sync call synced and keep failures' messages; an unknown or
        not-ready object rejects the whole call (as for bills; Ramp's answer is [unverified])."""
        problems = []
        for item in [*body.get("successful_syncs", []), *body.get("failed_syncs", [])]:
            rec = find(str(item.get("id")))
            if rec is None:
                problems.append(f"{what} {item.get('id')} not found")
            elif not ready(rec):
                problems.append(f"{what} {item.get('id')} is not ready to sync")
        if problems:
            raise ValueError("; ".join(problems))
        now = now_iso()
        for item in body.get("successful_syncs", []):
            rec = find(str(item["id"]))
            assert rec is not None
            rec.update({"sync_status": synced_status, ref_key: item["reference_id"], "synced_at": now})
            if "updated_at" in rec:
                rec["updated_at"] = now
        for item in body.get("failed_syncs", []):
            rec = find(str(item["id"]))
            assert rec is not None
            rec["sync_errors"] = [*rec.get("sync_errors", []), {"message": item["error"]["message"], "at": now}]

    # ---- webhooks ------------------------------------------------------------------------
    def emit(self, event_type: str, object_id: str) -> str | None:
        """Send `event_type` about `object_id` to every subscription that wants it: the event id
        (the same on every retry), or None when nobody subscribed."""
        with self.lock:
            subs = [w for w in self.webhooks.values() if event_type in w["event_types"]
                    and (w["status"] == "active" or not self.webhook_require_verification)]
            if not subs:
                return None
            event: dict[str, Any] = {"id": str(uuid.uuid4()), "type": event_type, "created_at": now_iso(),
                     "business_id": self.business_id, "object": {"id": object_id}}
            self.webhook_events[event["id"]] = event
            for w in subs:
                self._deliver(w, event)
            return str(event["id"])

    def _deliver(self, sub: dict[str, Any], event: dict[str, Any]) -> None:
        from ml_connector.systems.ramp.sandbox.webhooks import event_body

        did = str(uuid.uuid4())
        self.webhook_deliveries[did] = {
            "id": did, "event_id": event["id"], "event_type": event["type"], "webhook_id": sub["id"],
            "endpoint_url": sub["endpoint_url"], "object_id": event["object"]["id"], "body": event_body(event),
            "status": "pending", "attempts": [], "created_at": now_iso(), "next_attempt_at": time.time()}
        self.dispatcher.schedule(did, time.time())

    def subscribe(self, endpoint_url: str, event_types: list[str],
                  additional_headers: dict[str, str]) -> dict[str, Any]:
        """A new subscription, pending verification; the challenge goes out at once."""
        from ml_connector.systems.ramp.sandbox.webhooks import new_secret

        with self.lock:
            now = now_iso()
            sub: dict[str, Any] = {
                   "id": self.new_ramp_id(), "endpoint_url": endpoint_url, "event_types": list(event_types),
                   "status": "pending_verification", "secret": new_secret(), "business_id": self.business_id,
                   "additional_headers": dict(additional_headers), "created_at": now, "updated_at": now,
                   "challenge": secrets.token_urlsafe(24)}
            self.webhooks[sub["id"]] = sub
            # [unverified] the challenge POST's shape: a signed event carrying `challenge`
            event: dict[str, Any] = {"id": str(uuid.uuid4()), "type": "webhooks.verification", "created_at": now,
                     "business_id": self.business_id, "object": {"id": sub["id"]}, "challenge": sub["challenge"]}
            self.webhook_events[event["id"]] = event
            self._deliver(sub, event)
            return dict(sub)

    def resume_webhooks(self) -> int:
        """Schedule every pending delivery again (after restoring `webhook_deliveries` from a
        snapshot): the number scheduled. Each keeps its event id, body and attempts so far."""
        with self.lock:
            pending = [d for d in self.webhook_deliveries.values() if d["status"] == "pending"]
            for d in pending:
                self.dispatcher.schedule(d["id"], float(d.get("next_attempt_at") or time.time()))
            return len(pending)

    def stop_webhooks(self) -> None:
        self.dispatcher.stop()
