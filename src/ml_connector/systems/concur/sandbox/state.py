"""State of the emulated SAP Concur company: OAuth (company grant, rotating refresh tokens,
datacenters), v3 expense reports / entries / allocations / attendees, v3 payment requests, FIS
documents, rate limits and fault switches (cloud-apis.md §3).

Choices where the reference is [unverified] (switches on `Config`):
- a replaced refresh token dies (`old_refresh_tokens_valid: false`): the strict case;
- a data call with a token of another datacenter is refused with 401 and an `Error` body naming
  the token's datacenter (`geolocation`); a refresh asked at the wrong datacenter with 400 code 16;
- a 429 carries `Retry-After` in whole seconds until the window frees (the documented example
  shows `retry-after: 0`; `retry_after_zero: true` sends that).
"""

from __future__ import annotations

import copy
import math
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from ml_connector.systems.concur.sandbox import seed as seed_data


class ConcurApiError(Exception):
    """An answer other than 200: status, JSON body, headers."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(str(body))
        self.status = status
        self.body = body
        self.headers = headers or {}


def v3_error(status: int, message: str) -> ConcurApiError:
    return ConcurApiError(status, {"Error": {"Message": message, "Server-Time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                             "Id": secrets.token_hex(8).upper()}})


def oauth_error(status: int, code: int, error: str, description: str, geolocation: str = "") -> ConcurApiError:
    body: dict[str, Any] = {"code": code, "error": error, "error_description": description}
    if geolocation:
        body["geolocation"] = geolocation
    return ConcurApiError(status, body)


CENT = Decimal("0.01")


def _split(amount: float, weights: list[float]) -> list[float]:
    """`amount` by weights, to the cent, the rounding rest on the last share (they add up exactly)."""
    total = sum(Decimal(str(w)) for w in weights)
    if not weights or total == 0:
        return [0.0 for _ in weights]
    whole = Decimal(str(amount)).quantize(CENT, ROUND_HALF_UP)
    shares = [(whole * Decimal(str(w)) / total).quantize(CENT, ROUND_HALF_UP) for w in weights[:-1]]
    return [float(c) for c in [*shares, whole - sum(shares, Decimal(0))]]


def _fis_time(value: str | None) -> str | None:
    """A v3 zone-less date/time as FIS writes it (`2018-03-02T18:34:30.260Z`)."""
    if not value:
        return None
    v = value.replace(" ", "T")
    return (v if "T" in v else v + "T00:00:00")[:19] + ".000Z"


def _us_date(value: str | None) -> str | None:
    """YYYY-MM-DD as the FIS invoice example writes dates (MM/DD/YYYY)."""
    if not value:
        return None
    y, m, d = value[:10].split("-")
    return f"{m}/{d}/{y}"


@dataclass
class AccessToken:
    region: str
    expires_at: float


@dataclass
class Config:
    token_lifetime: float = 3600.0
    refresh_lifetime: float = 182 * 86400.0
    old_refresh_tokens_valid: bool = False
    request_token_valid: bool = True
    rate_limit_requests: int = 0  # 0: no limit
    rate_limit_period: float = 60.0
    retry_after_zero: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Faults:
    latency: float = 0.0
    fail_next: int = 0
    fail_kind: str = "500"  # 429, 500, 503
    fail_path: str | None = None  # only requests whose path contains this

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


FAIL_KINDS = ("429", "500", "503")


@dataclass
class ConcurSandbox:
    clock: Callable[[], float] = time.time
    company_uuid: str = seed_data.COMPANY_UUID
    client_id: str = seed_data.CLIENT_ID
    client_secret: str = seed_data.CLIENT_SECRET
    request_token: str = seed_data.REQUEST_TOKEN
    home: str = seed_data.HOME_REGION
    lock: threading.RLock = field(default_factory=threading.RLock)
    config: Config = field(default_factory=Config)
    faults: Faults = field(default_factory=Faults)
    tokens: dict[str, AccessToken] = field(default_factory=dict)
    refresh_tokens: dict[str, tuple[str, float]] = field(default_factory=dict)  # token -> (region, expires)
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    allocations: dict[str, dict[str, Any]] = field(default_factory=dict)
    attendees: dict[str, dict[str, Any]] = field(default_factory=dict)
    attendee_links: list[dict[str, Any]] = field(default_factory=list)
    payment_requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    fis_status: dict[str, str] = field(default_factory=dict)  # docId -> docStatus once acknowledged
    fis_system: dict[str, str] = field(default_factory=dict)  # docId -> the systemId that acknowledged it
    confirmations: list[dict[str, Any]] = field(default_factory=list)  # posting confirmations received
    token_requests: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    throttled: int = 0
    unauthorized: int = 0
    wrong_region: int = 0
    _window: deque[float] = field(default_factory=deque)

    def __post_init__(self) -> None:
        seed_data.seed(self)

    # ---- admin --------------------------------------------------------------------------------

    def set_faults(self, **kw: Any) -> dict[str, Any]:
        with self.lock:
            if kw.pop("clear_faults", False) or kw.pop("reset", False):
                self.faults = Faults()
            if kw.pop("expire_tokens", False):  # every access token is past its expiry now
                for t in self.tokens.values():
                    t.expires_at = 0.0
            if kw.pop("revoke_refresh_tokens", False):
                self.refresh_tokens.clear()
            for key, value in kw.items():
                if key == "latency":
                    self.faults.latency = max(float(value or 0), 0.0)
                elif key == "fail_next":
                    self.faults.fail_next = max(int(value or 0), 0)
                elif key == "fail_kind":
                    if str(value) not in FAIL_KINDS:
                        raise ValueError(f"fail_kind must be one of {FAIL_KINDS}")
                    self.faults.fail_kind = str(value)
                elif key == "fail_path":
                    self.faults.fail_path = str(value) if value else None
                else:
                    raise ValueError(f"unknown fault switch {key!r}")
            return self.faults.to_dict()

    def set_config(self, **kw: Any) -> dict[str, Any]:
        with self.lock:
            for key, value in kw.items():
                if key in ("token_lifetime", "refresh_lifetime", "rate_limit_period"):
                    setattr(self.config, key, float(value))
                elif key == "rate_limit_requests":
                    self.config.rate_limit_requests = max(int(value), 0)
                elif key in ("old_refresh_tokens_valid", "request_token_valid", "retry_after_zero"):
                    setattr(self.config, key, bool(value))
                else:
                    raise ValueError(f"unknown config key {key!r}")
            return self.config.to_dict()

    def take_fault(self, path: str) -> str | None:
        with self.lock:
            f = self.faults
            if f.fail_next > 0 and (f.fail_path is None or f.fail_path in path):
                f.fail_next -= 1
                return f.fail_kind
            return None

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {"requests": self.requests, "token_requests": dict(self.token_requests),
                    "throttled": self.throttled, "unauthorized": self.unauthorized,
                    "wrong_region": self.wrong_region, "live_refresh_tokens": len(self.refresh_tokens),
                    "faults": self.faults.to_dict(), "config": self.config.to_dict()}

    def copy_report(self, from_id: str, new_id: str) -> dict[str, Any]:
        """A new report: a copy of `from_id` with its entries and allocations (new ids)."""
        with self.lock:
            r = copy.deepcopy(self.reports[from_id])
            r["ID"] = new_id
            self.reports[new_id] = r
            for eid, e in list(self.entries.items()):
                if e["ReportID"] != from_id:
                    continue
                ne = dict(copy.deepcopy(e), ID=eid.replace(from_id, new_id), ReportID=new_id)
                self.entries[ne["ID"]] = ne
                for aid, a in list(self.allocations.items()):
                    if a["EntryID"] == eid:
                        nid = aid.replace(from_id, new_id)
                        self.allocations[nid] = dict(copy.deepcopy(a), EntryID=ne["ID"], ID=nid)
            return r

    def add_reports(self, count: int) -> list[str]:
        """`count` more approved reports in Processing Payment, copies of the seed's postable ones
        (whose vendors Business One knows): volume for benchmarks."""
        with self.lock:
            templates = [rid for rid, r in sorted(self.reports.items())
                         if r["ApprovalStatusCode"] == "A_APPR" and r["PaymentStatusCode"] == "P_PROC"
                         and not any(e["ReportID"] == rid and e["VendorDescription"] == seed_data.REVIEW_VENDOR
                                     for e in self.entries.values())]
            start = len(self.reports)
            return [self.copy_report(templates[i % len(templates)], f"RB{start + i:07d}")["ID"]
                    for i in range(count)]

    # ---- rate limit -------------------------------------------------------------------------

    def admit(self) -> None:
        """Counts one data request against the company's window; raises the documented 429."""
        with self.lock:
            self.requests += 1
            limit = self.config.rate_limit_requests
            if limit <= 0:
                return
            now = self.clock()
            w = self._window
            while w and w[0] <= now - self.config.rate_limit_period:
                w.popleft()
            if len(w) < limit:
                w.append(now)
                return
            self.throttled += 1
            wait = 0 if self.config.retry_after_zero else max(1, math.ceil(w[0] + self.config.rate_limit_period - now))
            raise ConcurApiError(429, {"timestamp": int(now * 1000), "httpStatus": "429 - Too Many Requests",
                                       "error": {"id": "security.rate.limit.reached", "message": "Too many requests"},
                                       "path": ""}, {"Retry-After": str(wait)})

    # ---- OAuth ------------------------------------------------------------------------------

    def _issue(self, region: str, base: str, scope: str) -> dict[str, Any]:
        now = self.clock()
        access = secrets.token_urlsafe(32)
        refresh = secrets.token_urlsafe(24)
        self.tokens[access] = AccessToken(region, now + self.config.token_lifetime)
        self.refresh_tokens[refresh] = (region, now + self.config.refresh_lifetime)
        return {"expires_in": str(int(self.config.token_lifetime)), "scope": scope, "token_type": "Bearer",
                "access_token": access, "refresh_token": refresh,
                "refresh_expires_in": int(now + self.config.refresh_lifetime),
                "geolocation": f"{base}/{region}"}

    def token(self, form: dict[str, str], region: str, base: str) -> dict[str, Any]:
        """The token endpoint at datacenter `region` (or the GLZ); `base`: the server's root URL."""
        with self.lock:
            grant = form.get("grant_type", "")
            self.token_requests[grant or "-"] += 1
            geo = f"{base}/{self.home}"
            if not grant:
                raise oauth_error(400, 65, "invalid_request", "grant_type is missing")
            if not form.get("client_id"):
                raise oauth_error(400, 62, "invalid_request", "client_id is missing")
            if not form.get("client_secret"):
                raise oauth_error(400, 63, "invalid_request", "client_secret is missing")
            if form["client_id"] != self.client_id:
                raise oauth_error(401, 61, "invalid_client", "client not found")
            if form["client_secret"] != self.client_secret:
                raise oauth_error(401, 64, "invalid_client", "incorrect credentials")
            scope = "EXPRPT INVPMT FISVC company.read"
            if grant == "password":
                credtype = form.get("credtype", "password")
                if credtype not in ("password", "authtoken"):
                    raise oauth_error(400, 120, "invalid_request", "credtype invalid")
                if not form.get("username"):
                    raise oauth_error(400, 51, "invalid_request", "username is missing")
                if not form.get("password"):
                    raise oauth_error(400, 52, "invalid_request", "password is missing")
                if credtype != "authtoken" or form["username"] != self.company_uuid \
                        or form["password"] != self.request_token or not self.config.request_token_valid:
                    raise oauth_error(400, 5, "invalid_grant", "incorrect credentials")
                # Company grants are answered at any datacenter (GLZ-like), naming the home one.
                return self._issue(self.home, base, scope)
            if grant == "refresh_token":
                rt = form.get("refresh_token")
                if not rt:
                    raise oauth_error(400, 106, "invalid_request", "refresh_token is missing")
                known = self.refresh_tokens.get(rt)
                if known is None or known[1] <= self.clock():
                    raise oauth_error(400, 108, "invalid_grant", "bad or expired refresh token")
                if region != known[0]:
                    raise oauth_error(400, 16, "invalid_request", "the company lives in another datacenter",
                                      geolocation=geo)
                if not self.config.old_refresh_tokens_valid:
                    del self.refresh_tokens[rt]  # rotated: the replaced refresh token dies
                return self._issue(known[0], base, scope)
            if grant == "client_credentials":
                raise oauth_error(400, 54, "invalid_scope", "app tokens cannot read company data here")
            raise oauth_error(400, 65, "invalid_request", f"unsupported grant_type {grant}")

    def authorize(self, header: str | None, region: str, base: str) -> None:
        """A data call at `region`: the bearer token must be live and of that datacenter."""
        with self.lock:
            raw = (header or "")
            token = raw[7:].strip() if raw.lower().startswith("bearer ") else ""
            t = self.tokens.get(token)
            if t is None or t.expires_at <= self.clock():
                self.unauthorized += 1
                raise v3_error(401, "Invalid or expired access token")
            if t.region != region:
                self.wrong_region += 1
                err = v3_error(401, f"This token was issued for datacenter {t.region}; send requests to the "
                                    "base URL of the token response's geolocation")
                err.body["geolocation"] = f"{base}/{t.region}"
                raise err

    # ---- data ---------------------------------------------------------------------------------

    def report_rows(self) -> list[dict[str, Any]]:
        with self.lock:
            return copy.deepcopy(list(self.reports.values()))

    def fis_expense_documents(self) -> list[dict[str, Any]]:
        """Expense documents (v4.financial-documents-schema): one per approved report in Processing
        Payment (FIS matrix: "Queued and Ready"), with its status (READY until acknowledged)."""
        out: list[dict[str, Any]] = []
        with self.lock:
            for r in self.reports.values():
                if r["ApprovalStatusCode"] != "A_APPR" or r["PaymentStatusCode"] != "P_PROC":
                    continue
                doc_id = f"fis-exp-{r['ID']}"
                entries = [e for e in self.entries.values() if e["ReportID"] == r["ID"]]
                first, _, last = str(r.get("OwnerName") or "").partition(" ")
                out.append({"id": doc_id, "docType": "expense", "companyId": self.company_uuid,
                            "companyUuid": self.company_uuid, "entityId": "p0000001",
                            "erpSystemId": self.fis_system.get(doc_id), "links": [],
                            "docStatus": self.fis_status.get(doc_id, "READY"),
                            "document": {
                                "employee": {"employeeId": r["OwnerLoginID"], "loginId": r["OwnerLoginID"],
                                             "employeeFirstName": first, "employeeLastName": last},
                                "report": {"reportId": r["ID"], "reportKey": r["ID"], "reportName": r["Name"],
                                           "totalApprovedAmount": r["TotalApprovedAmount"],
                                           "employeeCurrencyAlphaCode": r["CurrencyCode"], "ledgerCode": "DEFAULT",
                                           "reportSubmitDate": _fis_time(r["SubmitDate"]),
                                           "reportPaymentProcessingDate": _fis_time(r["ProcessingPaymentDate"]),
                                           "isTest": "N", "versionId": "1", "revisionNumber": "0"},
                                "expenseEntry": [self._fis_entry(e) for e in entries],
                                "cashAdvanceApplication": []}})
        return out

    def _fis_entry(self, e: dict[str, Any]) -> dict[str, Any]:
        allocs = [a for a in self.allocations.values() if a["EntryID"] == e["ID"]]
        # Concur's journal amounts add up to the entry's: the rounding rest is on the last allocation.
        shares = _split(float(e["PostedAmount"]), [float(a["Percentage"]) for a in allocs])
        return {"entryId": e["ID"], "expenseTypeCode": e["ExpenseTypeCode"], "expenseTypeName": e["ExpenseTypeName"],
                "entryDate": _fis_time(e["TransactionDate"]), "entryCurrAlphaCode": e["TransactionCurrencyCode"],
                "entryExchangeRate": e["ExchangeRate"], "reportEntryTransactionAmount": e["TransactionAmount"],
                "entryApprovedAmount": e["ApprovedAmount"], "entryVendorCode": e["VendorListItemID"],
                "entryVendorDescription": e["VendorDescription"], "entryIsPersonal": "Y" if e["IsPersonal"] else "N",
                "reportEntryPaymentTypeCode": e["PaymentTypeID"], "entryDescription": e.get("Description") or "",
                "allocation": [{"allocationId": a["ID"], "allocationPercentage": float(a["Percentage"]),
                                **{f"allocationCustom{i}Code": (a.get(f"Custom{i}") or {}).get("Code")
                                   for i in range(1, 21)},
                                "journal": [{"journalAccountCode": a["AccountCode1"], "journalPayee": "COMP",
                                             "journalPayer": "EMPL", "amountGross": share, "amountNetOfTax": share,
                                             "amountNetOfReclaim": share, "taxGuid": [],
                                             "accountingTransactionType": None}],
                                "tax": []}
                               for a, share in zip(allocs, shares, strict=True)]}

    def fis_invoice_documents(self) -> list[dict[str, Any]]:
        """Invoice documents: one per approved payment request. Dates as the schema's example gives
        them (MM/DD/YYYY); the header's shipping and tax amounts are spread over the allocations'
        journals (`amountShipping`, `tax`) in proportion to their net amounts."""
        out: list[dict[str, Any]] = []
        with self.lock:
            for p in self.payment_requests.values():
                if p["ApprovalStatusCode"] != "A_APPR":
                    continue
                doc_id = f"fis-inv-{p['ID']}"
                rows = [(li, a, float(li["TotalPrice"]) * float(a["Percentage"]) / 100)
                        for li in p["LineItems"]["LineItem"] for a in li["Allocations"]["Allocation"]]
                nets = _split(sum(float(li["TotalPrice"]) for li in p["LineItems"]["LineItem"]), [r[2] for r in rows])
                ship = _split(float(p.get("ShippingAmount") or 0), nets)
                tax = _split(float(p.get("TaxAmount") or 0), nets)
                journals = {id(a): {"accountCode": a["AllocationAccountCode"], "amountNet": n,
                                    "amountGross": round(n + s + t, 2), "amountShipping": s, "tax": t}
                            for (_, a, _), n, s, t in zip(rows, nets, ship, tax, strict=True)}
                out.append({"id": doc_id, "docType": "invoice", "companyId": self.company_uuid,
                            "companyUuid": self.company_uuid, "entityId": "p0000001",
                            "erpSystemId": self.fis_system.get(doc_id), "links": [],
                            "docStatus": self.fis_status.get(doc_id, "READY"),
                            "document": {
                                "requestHeader": {"requestId": p["ID"], "reqKey": p["ID"],
                                                  "vendorInvoiceNumber": p["InvoiceNumber"],
                                                  "invoiceDate": _us_date(p["InvoiceDate"]),
                                                  "paymentDueDate": _us_date(p["PaymentDueDate"]),
                                                  "currencyAlphaCode": p["CurrencyCode"],
                                                  "requestTotal": float(p["InvoiceAmount"]),
                                                  "amountNetInvoice": float(p["LineItemTotalAmount"]),
                                                  "amountShippingTotal": float(p["ShippingAmount"] or 0),
                                                  "ledgerCode": "DEFAULT", "isTest": "N",
                                                  "submitDate": _fis_time(p["CreateDate"])},
                                "vendor": {"vendorName": p["VendorRemitAddress"]["Name"],
                                           "vendorCode": p["VendorRemitToIdentifier"]["VendorCode"],
                                           "vendorRemitToAddressCode": p["VendorRemitToIdentifier"]["AddressCode"]},
                                "lineItem": [{"expenseTypeCode": li["ExpenseTypeCode"],
                                              "lineItemDescription": li["Description"],
                                              "lineItemSequenceOrder": li["RequestLineItemNumber"],
                                              "externalLineItemId": li["LineItemId"],
                                              "lineItemQuantity": float(li["Quantity"]),
                                              "lineItemUnitPrice": float(li["UnitPrice"]),
                                              "allocation": [{"allocationAccountCode": a["AllocationAccountCode"],
                                                              "allocationPercentage": float(a["Percentage"]),
                                                              **{f"allocationCustom{i}Code":
                                                                 (a.get(f"Custom{i}") or {}).get("Code")
                                                                 for i in range(1, 21)},
                                                              "journal": journals[id(a)]}
                                                             for a in li["Allocations"]["Allocation"]]}
                                             for li in p["LineItems"]["LineItem"]]}})
        return out

    def acknowledge(self, doc_type: str, ids: list[str], system_id: str | None = None) -> list[dict[str, Any]]:
        """Service codes per id (HTTP 200): 0, 101 acknowledged before, 104 does not exist."""
        docs = {d["id"]: d for d in (self.fis_expense_documents() if doc_type == "expense"
                                     else self.fis_invoice_documents())}
        out: list[dict[str, Any]] = []
        with self.lock:
            for i in ids:
                if i not in docs:
                    out.append({"code": 104, "docId": i, "systemId": system_id, "acknowledgeResult": "FAILURE",
                                "errorMessage": "This document does not exist in the FI database."})
                elif self.fis_status.get(i, "READY") != "READY":
                    out.append({"code": 101, "docId": i, "systemId": system_id, "acknowledgeResult": "FAILURE",
                                "errorMessage": "This document was previously acknowledged by SystemId: "
                                                f"{self.fis_system.get(i)}."})
                else:
                    self.fis_status[i] = "ACKNOWLEDGED"
                    if system_id is not None:
                        self.fis_system[i] = system_id
                    out.append({"code": 0, "docId": i, "systemId": system_id, "acknowledgeResult": "SUCCESS",
                                "errorMessage": ""})
        return out

    def confirm_postings(self, doc_type: str, body: Any) -> list[dict[str, Any]]:
        """Service codes per item: 0, 99 another systemId acknowledged it, 111 not acknowledged, 113
        confirmed before, 116 does not exist."""
        items = body.get("postingConfirmations") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise v3_error(400, "postingConfirmations: a list is expected")
        docs = {d["id"] for d in (self.fis_expense_documents() if doc_type == "expense"
                                  else self.fis_invoice_documents())}
        system_id = body.get("systemId")
        out = []
        with self.lock:
            for it in items:
                doc_id = str((it or {}).get("docId"))
                status = self.fis_status.get(doc_id)
                if doc_id not in docs:
                    code, msg = 116, "This document does not exist in the FI database."
                elif status is None or status == "READY":
                    code, msg = 111, "This document has not been acknowledged."
                elif doc_id in self.fis_system and (system_id or "") != self.fis_system[doc_id]:
                    code, msg = 99, "System ID in request does not match system ID in FI database."
                elif status.startswith("POSTING_CONFIRMED"):
                    code, msg = 113, "Confirmation has been posted for this document."
                else:
                    ok = (it.get("overallPostingStatusCode") or "").lower() == "success"
                    self.fis_status[doc_id] = "POSTING_CONFIRMED_SUCCESS" if ok else "POSTING_CONFIRMED_FAILURE"
                    self.confirmations.append(copy.deepcopy(it))
                    code, msg = 0, ""
                out.append({"code": code, "docId": doc_id, "systemId": system_id,
                            "postingConfirmationResult": "SUCCESS" if code == 0 else "FAILURE",
                            "errorMessage": msg, "detailMessage": ""})
        return out


SNAPSHOT_DATA = ("reports", "entries", "allocations", "attendees", "attendee_links", "payment_requests",
                 "fis_status", "fis_system", "confirmations", "refresh_tokens")


def snapshot(state: ConcurSandbox) -> dict[str, Any]:
    """Data kept between runs (with the refresh tokens, so a stored one still works next time)."""
    with state.lock:
        data = {k: copy.deepcopy(getattr(state, k)) for k in SNAPSHOT_DATA}
        data["tokens"] = {k: (t.region, t.expires_at) for k, t in state.tokens.items()}
        return data


def restore(state: ConcurSandbox, snap: dict[str, Any]) -> None:
    with state.lock:
        for k in SNAPSHOT_DATA:
            if k in snap:
                setattr(state, k, snap[k])
        state.tokens = {k: AccessToken(r, e) for k, (r, e) in (snap.get("tokens") or {}).items()}


def info(state: ConcurSandbox, url: str) -> dict[str, Any]:
    """The `concur` entry of `ml-connector sandbox --json`."""
    glz = f"{url}/{seed_data.GLZ}"
    return {"base_url": glz, "token_url": f"{glz}/oauth2/v0/token", "client_id": state.client_id,
            "client_secret": state.client_secret, "company_uuid": state.company_uuid,
            "company_request_token": state.request_token, "home_region": state.home,
            "regions": {r: f"{url}/{r}" for r in seed_data.REGIONS}, "admin": f"{url}/_sandbox"}
