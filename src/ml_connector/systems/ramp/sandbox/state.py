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
FAULT_KINDS = ("429", "500", "502", "503", "drop", "timeout_after_commit", "reject")
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
    seed_demo: bool = True  # users, departments, locations, cards, transactions, … (seed.py)
    # Bill Pay vendors (with contacts) in the seed: off by default so that vendor matching starts
    # from the vendors the integration creates; seeded purchase orders then name no vendor.
    seed_vendors: bool = False
    cards_hide_terminated: bool = False  # [unverified] the legacy /cards list leaves them out

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
            self.fields = OrderedStore()  # accounting custom fields, remote id = the field's ERP id
            self.field_options = OrderedStore()  # remote key = field ramp_id + "\x00" + option ERP id
            # Bills keyed and ordered by their Ramp id; accounting syncs by idempotency key
            self.bills: dict[str, dict[str, Any]] = {}
            self.bill_order: list[str] = []
            self.syncs: dict[str, dict[str, Any]] = {}
            # Bill Pay vendors (/developer/v1/vendors): keyed and ordered by their Ramp id
            self.billpay_vendors: dict[str, dict[str, Any]] = {}
            self.billpay_order: list[str] = []
            self.seed()
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

    def create_bill(self, spec: dict[str, Any]) -> dict[str, Any]:
        """A bill for tests and demos (`POST /_sandbox/bills`), referencing what was uploaded by ERP id.

        spec: {vendor (accounting vendor ERP id, e.g. the SAP LIFNR), invoice_number, currency (USD),
        entity_id (default entity), issued_at, due_at, posting_date?, memo?, approval_status (APPROVED),
        line_items: [{amount (major units, decimal string), memo?, gl_account (ERP id)?,
                      cost_center (option ERP id)?}], cost_center_field ("SAP_COST_CENTER"),
        allow_unknown (false: an unknown ERP id is an error; true: the selection is made anyway, as
        when the ERP record was deleted after Ramp synced it)}."""
        from decimal import Decimal

        ccy = str(spec.get("currency") or "USD").upper()
        places = 0 if ccy in ("JPY", "KRW", "HUF", "CLP", "ISK") else 3 if ccy in ("BHD", "KWD", "OMR") else 2
        loose = bool(spec.get("allow_unknown"))
        problems: list[str] = []
        with self.lock:
            vendor_key = str(spec.get("vendor") or "")
            vrid = self.vendors.by_remote.get(vendor_key)
            if vrid is None and not loose:
                problems.append(f"no accounting vendor with id {vendor_key!r}")
            vrec = self.vendors.by_id.get(vrid) if vrid else None
            entity = str(spec.get("entity_id") or DEFAULT_ENTITY_ID)
            field_key = str(spec.get("cost_center_field") or "SAP_COST_CENTER")
            frid = self.fields.by_remote.get(field_key)
            frec = self.fields.by_id.get(frid) if frid else None
            gl_cat = {"id": None, "external_id": None, "name": "GL Account", "type": "GL_ACCOUNT"}
            cc_cat = {"id": frec["ramp_id"] if frec else None, "external_id": field_key,
                      "name": frec["name"] if frec else "Cost Center", "type": self.field_category_type(frec)}
            lines = []
            total = 0
            for i, ln in enumerate(spec.get("line_items") or [], start=1):
                minor = int((Decimal(str(ln["amount"])) * (10 ** places)).to_integral_value())
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
                    key = f"{frid}\x00{ln['cost_center']}" if frid else ""
                    sel = self._selection(self.field_options, key, cc_cat) if key else None
                    if sel is None:
                        if not loose:
                            problems.append(f"line {i}: no option {ln['cost_center']!r} of field {field_key!r}")
                        sel = {"id": None, "external_id": str(ln["cost_center"]), "external_code": None,
                               "name": None, "category_info": cc_cat}
                    sels.append(sel)
                lines.append({"id": self.new_ramp_id(), "amount": {"amount": minor, "currency_code": ccy},
                              "memo": ln.get("memo"), "accounting_field_selections": sels})
            if not lines:
                problems.append("a bill needs at least one line item")
            if problems:
                raise ValueError("; ".join(problems))
            bid = self.new_ramp_id()
            now = now_iso()
            bill = {
                "id": bid, "remote_id": spec.get("remote_id"), "invoice_number": str(spec.get("invoice_number") or
                                                                                     f"INV-{self._seq}")[:20],
                "entity_id": entity, "memo": spec.get("memo"),
                "vendor": {"id": vrec["ramp_id"] if vrec else None, "name": vrec["name"] if vrec else None,
                           "remote_id": vrec["id"] if vrec else vendor_key or None,
                           "remote_code": vrec.get("code") if vrec else None,
                           "remote_name": vrec["name"] if vrec else None, "type": "BUSINESS"},
                "amount": {"amount": total, "currency_code": ccy},
                "line_items": lines, "accounting_field_selections": [],
                "approval_status": str(spec.get("approval_status") or "APPROVED"), "status": "OPEN",
                "payment_status": "OPEN", "sync_status": "NOT_SYNCED",
                "payment": None, "issued_at": spec.get("issued_at") or now[:10], "due_at": spec.get("due_at"),
                "accounting_date": spec.get("accounting_date"), "posting_date": spec.get("posting_date"),
                "paid_at": None, "archived_at": None, "created_at": now,
                "deep_link_url": f"https://app.ramp.com/bill-pay/bills/{bid}", "fx_conversion_rate": None,
                "invoice_urls": [], "sync_reference_id": None, "sync_errors": [],
            }
            self.bills[bid] = bill
            self.bill_order.append(bid)
            return dict(bill)

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
            sync_id = str(uuid.uuid4())
            self.syncs[key] = {"sync_id": sync_id, "body": body, "created_at": now_iso()}
            return sync_id, False
