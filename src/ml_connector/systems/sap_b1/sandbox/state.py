"""State of the emulated SAP Business One company and the Service Layer semantics
(reference /work/shared/reference/sap-protocols.md §6, especially §6.6).

Choices where the reference is [U] (made switchable on `B1Sandbox.config`):
- bad Login credentials: HTTP 401 with code 100000027 "Login failed" (exact code not documented);
- an unknown resource with a valid session: 404 code -1 "Unrecognized resource path.";
- a refused JournalEntries POST answers 400 with the codes and texts of systems/sap_b1/known_errors.py
  (where each comes from is said there): unbalanced; unknown, title, inactive or manual-locked account;
  unknown or inactive business partner; unknown, other-dimension or inactive distribution rule;
  unknown project; unknown currency or no exchange rate for the day; no posting period for the
  posting date (10000156), or a locked one. The first refusal is answered, as B1 does;
- posting periods: one period category per year 2018-2030 with monthly finance periods, all
  unlocked (`set_period_status` locks one); read with the Service Layer's own actions
  CompanyService_GetPeriods / CompanyService_GetFinancePeriods (API reference; they are POSTs that
  write nothing). Exchange rates per currency and day (`set_rate`), read with
  SBOBobService_GetCurrencyRate; a day without a rate answers 400 "Update the exchange rate " [U];
- nextLink: an absolute path `/b1s/v1/<Set>?<options>&$skip=n` (the manual's first example);
  `next_link_style: relative` gives `<Set>?...` (its other examples). Both are opaque to clients.
"""

from __future__ import annotations

import calendar
import copy
import datetime as dt
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from ml_connector.core.providers import fact
from ml_connector.systems.sap_b1 import known_errors as msg
from ml_connector.systems.sap_b1.sandbox.odata import ODataError, apply_query, int_option, select

DEMO_PASSWORD = "B1-Sandbox-1234"  # public sandbox demo credential, not a secret
FAIL_KINDS = ("http_500", "http_502", "http_503", "drop")
AFTER_COMMIT_KINDS = ("drop", "http_502", "http_504")

Row = dict[str, Any]


class SlError(Exception):
    """An error answered in the B1 error format (v1 or v2 style, by the request's root)."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def invalid_session() -> SlError:
    return SlError(401, int(fact("sap_b1", "session", "invalid_session_code")),
                   str(fact("sap_b1", "session", "invalid_session_message")))


def error_body(version: str, err: SlError) -> dict[str, Any]:
    if version == "v2":  # OData v4 style: string code, string message [V]
        return {"error": {"code": str(err.code), "message": err.message}}
    return {"error": {"code": err.code, "message": {"lang": "en-us", "value": err.message}}}


@dataclass
class EntitySet:
    name: str
    key: str
    key_type: type
    fields: set[str]
    rows: dict[Any, Row] = field(default_factory=dict)
    deletable: bool = True


@dataclass
class Session:
    id: str
    user: str
    last_seen: float


@dataclass
class Faults:
    latency: float = 0.0
    fail_next: int = 0
    fail_kind: str = "http_500"
    fail_resource: str | None = None  # only this entity set ("JournalEntries", "POST JournalEntries"); None: all
    after_commit_next: int = 0  # writes commit, then the answer is lost
    after_commit_kind: str = "drop"
    # Every session times out at the N-th Service Layer request from now (that request gets the 401):
    # an inactivity timeout in the middle of a run, without waiting for it.
    expire_sessions_after: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Config:
    session_timeout_minutes: float = float(fact("sap_b1", "session", "timeout_minutes"))
    # Seconds per SessionTimeout minute: tests shrink it (the answer still says the minutes).
    seconds_per_minute: float = 60.0
    page_size: int = int(fact("sap_b1", "paging", "default_page_size"))
    next_link_style: str = "absolute"  # or "relative"
    route_id: str | None = str(fact("sap_b1", "sandbox", "route_id"))
    # A single-node Service Layer (the common on-premises install) accepts B1SESSION alone; behind
    # the load balancer ROUTEID must name the node too.
    load_balanced: bool = False
    # What a login costs (the product page: about five seconds); tests set 0.
    login_seconds: float = float(fact("sap_b1", "sandbox", "login_seconds"))

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


JE_HEADER = {"JdtNum", "Number", "ReferenceDate", "TaxDate", "DueDate", "VatDate", "Memo", "Reference",
             "Reference2", "Reference3", "TransactionCode", "ProjectCode", "Series", "Indicator",
             "UseAutoStorno", "StornoDate", "OriginalJournal", "JournalEntryLines"}
JE_LINE = {"Line_ID", "AccountCode", "ShortName", "ContraAccount", "Debit", "Credit", "FCDebit", "FCCredit",
           "FCCurrency", "DueDate", "LineMemo", "ReferenceDate1", "ReferenceDate2", "Reference1", "Reference2",
           "AdditionalReference", "ProjectCode", "CostingCode", "CostingCode2", "CostingCode3", "CostingCode4",
           "CostingCode5", "TaxGroup", "TaxCode", "BPLID"}
BP_FIELDS = {"CardCode", "CardName", "CardType", "GroupCode", "FederalTaxID", "Currency", "PayTermsGrpCode",
             "CreditLimit", "Valid", "Frozen", "EmailAddress"}
CARD_TYPES = {"C": "cCustomer", "S": "cSupplier", "L": "cLid"}
COSTING_FIELDS = ("CostingCode", "CostingCode2", "CostingCode3", "CostingCode4", "CostingCode5")


#: Vendors of the consulting firm (CardCode, CardName, FederalTaxID).
CONSULTING_VENDORS = (("V20001", "Delta Air Lines, Inc.", "58-0218548"),
                      ("V20002", "Marriott International, Inc.", "52-2055918"),
                      ("V20003", "Uber Technologies Inc", "45-2647441"),
                      ("V20004", "The Capital Grille", "59-3400001"),
                      ("V20005", "The Hertz Corporation", "13-1938568"),
                      ("V20006", "Regus Management Group LLC", "98-7654321"),
                      ("V20007", "WeWork LLC", "47-1234567"))


def _seed(sets: dict[str, EntitySet]) -> None:
    accounts = [("1000", "Cash"), ("1100", "Bank"), ("2000", "Accounts Payable"), ("2100", "Accrued Expenses"),
                ("2200", "Employee Reimbursements"), ("6000", "Travel"), ("6010", "Airfare"), ("6020", "Lodging"),
                ("6030", "Meals"), ("6040", "Ground Transport"), ("6100", "Office Supplies"),
                ("6110", "Software"), ("6120", "Telephone"), ("6200", "Training"), ("6300", "Entertainment"),
                ("6400", "Professional Fees"), ("6500", "Rent"), ("6600", "Utilities"), ("6700", "Insurance"),
                ("6800", "Marketing"), ("6900", "Bank Charges"), ("7000", "Depreciation"),
                ("7100", "Repairs"), ("7200", "Postage"), ("_SYS00000000019", "Segmented: Cash"),
                ("_SYS00000000164", "Segmented: Expense")]
    coa = sets["ChartOfAccounts"]
    for code, name in accounts:
        coa.rows[code] = {"Code": code, "Name": name, "AcctCurrency": "USD", "ActiveAccount": "tYES",
                          "FrozenFor": "tNO", "LockManualTransaction": "tNO"}
    bps = sets["BusinessPartners"]
    for i in range(1, 31):
        code = f"V{i:05d}"
        bps.rows[code] = {"CardCode": code, "CardName": f"Vendor {i:02d}", "CardType": "cSupplier",
                          "GroupCode": 101, "FederalTaxID": f"12-34{i:05d}", "Currency": "USD",
                          "PayTermsGrpCode": -1, "CreditLimit": 0.0, "Valid": "tYES", "Frozen": "tNO",
                          "EmailAddress": None}
    for i in range(1, 16):
        code = f"C{i:05d}"
        bps.rows[code] = {"CardCode": code, "CardName": f"Customer {i:02d}", "CardType": "cCustomer",
                          "GroupCode": 100, "FederalTaxID": None, "Currency": "USD", "PayTermsGrpCode": -1,
                          "CreditLimit": 10000.0, "Valid": "tYES", "Frozen": "tNO", "EmailAddress": None}
    for i in range(1, 11):
        code = f"E{i:05d}"  # employees reimbursed through the journal (Concur)
        bps.rows[code] = {"CardCode": code, "CardName": f"Employee {i:02d}", "CardType": "cSupplier",
                          "GroupCode": 102, "FederalTaxID": None, "Currency": "USD", "PayTermsGrpCode": -1,
                          "CreditLimit": 0.0, "Valid": "tYES", "Frozen": "tNO", "EmailAddress": None}
    # The consulting firm of the Concur sandbox (systems/concur/sandbox/seed.py): its travel and
    # office vendors, named as B1 knows them (Concur's spellings differ: matched by normalised name
    # or tax id). Concur's coffee shop of report 3 is deliberately absent (the review case).
    for code, name, tax in CONSULTING_VENDORS:
        bps.rows[code] = {"CardCode": code, "CardName": name, "CardType": "cSupplier", "GroupCode": 101,
                          "FederalTaxID": tax, "Currency": "USD", "PayTermsGrpCode": -1, "CreditLimit": 0.0,
                          "Valid": "tYES", "Frozen": "tNO", "EmailAddress": None}
    for n in (1, 2):
        sets["Dimensions"].rows[n] = {"DimensionCode": n, "DimensionName": f"Dimension {n}",
                                      "IsActive": "tYES", "DimensionDescription": ["Cost centre", "Department"][n - 1]}
    for code, name, dim in (("CC01", "Sales", 1), ("CC02", "Engineering", 1), ("CC03", "Administration", 1),
                            ("CC04", "Consulting", 1), ("DEPT1", "North", 2), ("DEPT2", "South", 2)):
        sets["ProfitCenters"].rows[code] = {"CenterCode": code, "CenterName": name, "GroupCode": None,
                                            "InWhichDimension": dim, "Active": "tYES"}
    # B1 creates a direct distribution rule for every profit centre [U]; one split rule besides.
    for pc in list(sets["ProfitCenters"].rows.values()):
        sets["DistributionRules"].rows[pc["CenterCode"]] = {
            "FactorCode": pc["CenterCode"], "FactorDescription": pc["CenterName"], "TotalFactor": 100.0,
            "Direct": "tYES", "InWhichDimension": pc["InWhichDimension"], "Active": "tYES",
            "DistributionRuleLines": [{"CenterCode": pc["CenterCode"], "TotalInCenter": 100.0}]}
    sets["DistributionRules"].rows["SPLIT12"] = {
        "FactorCode": "SPLIT12", "FactorDescription": "Sales / Engineering 50:50", "TotalFactor": 100.0,
        "Direct": "tNO", "InWhichDimension": 1, "Active": "tYES",
        "DistributionRuleLines": [{"CenterCode": "CC01", "TotalInCenter": 50.0},
                                  {"CenterCode": "CC02", "TotalInCenter": 50.0}]}
    for code, name in (("USD", "US Dollar"), ("EUR", "Euro"), ("GBP", "British Pound"), ("CAD", "Canadian Dollar")):
        sets["Currencies"].rows[code] = {"Code": code, "Name": name}
    for code, name in (("P001", "Client Alpha"), ("P002", "Client Beta"), ("P003", "Internal")):
        sets["Projects"].rows[code] = {"Code": code, "Name": name, "ValidFrom": None, "ValidTo": None,
                                       "Active": "tYES"}


PERIOD_STATUSES = ("ltUnlocked", "ltUnlockedExceptSales", "ltPeriodClosing", "ltLocked")  # PeriodStatusEnum [V]
#: The Service Layer actions the emulator serves (POST, no key): they read, they write nothing.
ACTIONS = ("CompanyService_GetPeriods", "CompanyService_GetFinancePeriods", "SBOBobService_GetCurrencyRate")


def _seed_periods() -> list[Row]:
    """A period category per year 2018-2030 (AbsoluteEntry 1..), each with twelve monthly
    FinancePeriods (the FinancePeriod complex type of $metadata [V]), all unlocked."""
    out: list[Row] = []
    entry = 0
    for n, year in enumerate(range(2018, 2031), start=1):
        months = []
        for month in range(1, 13):
            entry += 1
            first = dt.date(year, month, 1).isoformat()
            last = dt.date(year, month, calendar.monthrange(year, month)[1]).isoformat()
            months.append({"AbsoluteEntry": entry, "PeriodCode": f"{year}-{month:02d}",
                           "PeriodName": f"{year}-{month:02d}", "PostingDateFrom": first, "PostingDateTo": last,
                           "ValueDateFrom": first, "ValueDateTo": f"{year + 1}-12-31", "TaxDateFrom": first,
                           "TaxDateTo": last, "ActiveforFeed": "tNO", "Locked": "tNO",
                           "AdditionalSubPeriods": "tNO", "PeriodIndicator": "Default", "SubNum": month,
                           "PeriodStatus": "ltUnlocked"})
        out.append({"AbsoluteEntry": n, "PeriodCategory": str(year), "FinancePeriods": months})
    return out


def _day(value: Any, what: str) -> str:
    """A date as B1 takes it ('2026-11-05', '2026-11-05T00:00:00' or '20261105'), as YYYY-MM-DD."""
    text = str(value or "").strip()
    raw = text.replace("-", "")[:8] if len(text) >= 8 else ""
    try:
        return dt.date(int(raw[:4]), int(raw[4:6]), int(raw[6:8])).isoformat()
    except ValueError:
        raise SlError(400, -1000, f"Invalid date {text!r} in {what}") from None


class B1Sandbox:
    """One company database behind an emulated Service Layer; switches, faults, statistics."""

    def __init__(self, *, company_db: str | None = None, user: str | None = None,
                 password: str = DEMO_PASSWORD, clock: Callable[[], float] = time.monotonic) -> None:
        self.lock = threading.RLock()
        self.company_db = company_db or str(fact("sap_b1", "sandbox", "company_db"))
        self.user = user or str(fact("sap_b1", "sandbox", "user"))
        self.password = password
        self.version = str(fact("sap_b1", "sandbox", "version"))
        self.clock = clock
        self.config = Config()
        self.faults = Faults()
        self.sessions: dict[str, Session] = {}
        self.sets: dict[str, EntitySet] = {
            "ChartOfAccounts": EntitySet("ChartOfAccounts", "Code", str,
                                         {"Code", "Name", "AcctCurrency", "ActiveAccount", "FrozenFor",
                                          "LockManualTransaction"}),
            "Currencies": EntitySet("Currencies", "Code", str, {"Code", "Name"}),
            "BusinessPartners": EntitySet("BusinessPartners", "CardCode", str, set(BP_FIELDS)),
            "JournalEntries": EntitySet("JournalEntries", "JdtNum", int, set(JE_HEADER), deletable=False),
            "ProfitCenters": EntitySet("ProfitCenters", "CenterCode", str,
                                       {"CenterCode", "CenterName", "GroupCode", "InWhichDimension", "Active"}),
            "Dimensions": EntitySet("Dimensions", "DimensionCode", int,
                                    {"DimensionCode", "DimensionName", "IsActive", "DimensionDescription"}),
            "Projects": EntitySet("Projects", "Code", str, {"Code", "Name", "ValidFrom", "ValidTo", "Active"}),
            "DistributionRules": EntitySet("DistributionRules", "FactorCode", str,
                                           {"FactorCode", "FactorDescription", "TotalFactor", "Direct",
                                            "InWhichDimension", "Active", "DistributionRuleLines"}),
        }
        _seed(self.sets)
        self.local_currency = "USD"
        #: period categories (one per year), each with its monthly FinancePeriods
        self.periods: list[Row] = _seed_periods()
        #: currency -> {YYYY-MM-DD: rate} (ORTT)
        self.rates: dict[str, dict[str, float]] = {}
        self._next_jdt = 1
        self._next_number = 1
        self.stats_requests = 0
        self.by_resource: Counter[str] = Counter()
        self.logins = 0
        self.logouts = 0
        self.login_failures = 0
        self.unauthorized = 0
        self.in_flight = 0
        self.peak_in_flight = 0  # the most requests served at once (pacing tests)
        self.faults_injected: Counter[str] = Counter()
        self.last_headers: dict[str, str] = {}

    # ---- admin -------------------------------------------------------------------------------

    def set_faults(self, **kw: Any) -> dict[str, Any]:
        with self.lock:
            if kw.pop("reset", False) or kw.pop("clear_faults", False):
                self.faults = Faults()
            if kw.pop("expire_sessions", False):
                self.sessions.clear()
            for key, value in kw.items():
                if key == "latency":
                    self.faults.latency = max(float(value or 0), 0.0)
                elif key in ("fail_next", "after_commit_next", "expire_sessions_after"):
                    setattr(self.faults, key, max(int(value or 0), 0))
                elif key == "fail_kind":
                    if value not in FAIL_KINDS:
                        raise ValueError(f"fail_kind must be one of {FAIL_KINDS}")
                    self.faults.fail_kind = str(value)
                elif key == "after_commit_kind":
                    if value not in AFTER_COMMIT_KINDS:
                        raise ValueError(f"after_commit_kind must be one of {AFTER_COMMIT_KINDS}")
                    self.faults.after_commit_kind = str(value)
                elif key == "fail_resource":
                    self.faults.fail_resource = str(value) if value else None
                else:
                    raise ValueError(f"unknown fault switch {key!r}")
            return self.faults.to_dict()

    def set_config(self, **kw: Any) -> dict[str, Any]:
        with self.lock:
            for key, value in kw.items():
                if key in ("session_timeout_minutes", "seconds_per_minute"):
                    setattr(self.config, key, float(value))
                elif key == "page_size":
                    self.config.page_size = int(value)
                elif key == "next_link_style":
                    if value not in ("absolute", "relative"):
                        raise ValueError("next_link_style must be 'absolute' or 'relative'")
                    self.config.next_link_style = str(value)
                elif key == "route_id":
                    self.config.route_id = str(value) if value else None
                elif key == "load_balanced":
                    self.config.load_balanced = bool(value)
                elif key == "login_seconds":
                    self.config.login_seconds = max(float(value), 0.0)
                else:
                    raise ValueError(f"unknown config key {key!r}")
            return self.config.to_dict()

    def take_fault(self, method: str, resource: str) -> str | None:
        with self.lock:
            f = self.faults
            if f.fail_next > 0 and resource != "Login" and f.fail_resource in (None, resource, f"{method} {resource}"):
                f.fail_next -= 1
                self.faults_injected[f.fail_kind] += 1
                return f.fail_kind
            return None

    def count_toward_expiry(self) -> None:
        with self.lock:
            if self.faults.expire_sessions_after > 0:
                self.faults.expire_sessions_after -= 1
                if self.faults.expire_sessions_after == 0:
                    self.sessions.clear()
                    self.faults_injected["expire_sessions"] += 1

    def take_after_commit(self) -> str | None:
        with self.lock:
            if self.faults.after_commit_next > 0:
                self.faults.after_commit_next -= 1
                self.faults_injected[f"after_commit_{self.faults.after_commit_kind}"] += 1
                return self.faults.after_commit_kind
            return None

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {"requests": self.stats_requests, "by_resource": dict(self.by_resource), "logins": self.logins,
                    "logouts": self.logouts, "login_failures": self.login_failures,
                    "unauthorized": self.unauthorized, "sessions": len(self.sessions), "in_flight": self.in_flight,
                    "peak_in_flight": self.peak_in_flight,
                    "faults_injected": dict(self.faults_injected),
                    "counts": {n: len(s.rows) for n, s in self.sets.items()}}

    def rows(self, name: str) -> list[Row]:
        with self.lock:
            return copy.deepcopy(list(self.sets[name].rows.values()))

    # ---- sessions ----------------------------------------------------------------------------

    def _timeout_seconds(self) -> float:
        return self.config.session_timeout_minutes * self.config.seconds_per_minute

    def login(self, body: Any) -> tuple[Session, int]:
        if not isinstance(body, dict):
            raise SlError(400, -1000, "Invalid login request: a JSON object with CompanyDB, UserName, Password "
                                      "is expected")
        with self.lock:
            if (body.get("CompanyDB") != self.company_db or body.get("UserName") != self.user
                    or body.get("Password") != self.password):
                self.login_failures += 1
                raise SlError(401, 100000027, "Login failed")
            sid = "-".join(secrets.token_hex(n) for n in (4, 2, 2, 2, 6))
            sess = Session(sid, self.user, self.clock())
            self.sessions[sid] = sess
            self.logins += 1
            return sess, int(self.config.session_timeout_minutes)

    def session(self, sid: str | None) -> Session:
        """The live session of cookie B1SESSION=sid (sliding: each use restarts the timeout)."""
        with self.lock:
            sess = self.sessions.get(sid or "")
            now = self.clock()
            if sess is None or now - sess.last_seen >= self._timeout_seconds():
                if sess is not None:
                    del self.sessions[sess.id]
                self.unauthorized += 1
                raise invalid_session()
            sess.last_seen = now
            return sess

    def logout(self, sid: str) -> None:
        with self.lock:
            self.sessions.pop(sid, None)
            self.logouts += 1

    # ---- entity access -----------------------------------------------------------------------

    def entity_set(self, name: str) -> EntitySet:
        es = self.sets.get(name)
        if es is None:
            raise SlError(404, -1, "Unrecognized resource path.")
        return es

    @staticmethod
    def parse_key(es: EntitySet, raw: str) -> Any:
        raw = raw.strip()
        if es.key_type is int:
            try:
                return int(raw)
            except ValueError:
                raise SlError(400, -1000, f"Invalid key {raw!r} for {es.name}: an integer is expected") from None
        if len(raw) >= 2 and raw[0] == raw[-1] == "'":
            return raw[1:-1].replace("''", "'")
        raise SlError(400, -1000, f"Invalid key {raw!r} for {es.name}: a quoted string is expected")

    def get(self, es: EntitySet, key: Any) -> Row:
        row = es.rows.get(key)
        if row is None:
            raise SlError(404, -2028, "No matching records found (ODBC -2028)")
        return row

    def query(self, es: EntitySet, query: dict[str, str],
              page_size: int) -> tuple[list[Row], int, dict[str, str] | None]:
        """(page rows, total matching, the options of the next page or None on the last page)."""
        with self.lock:
            try:
                rows, total = apply_query(list(es.rows.values()), query, es.fields)
                skip = int_option(query, "$skip") or 0
                top = int_option(query, "$top")
                window = rows[skip:] if top is None else rows[skip:skip + top]
                page = window if page_size == 0 else window[:page_size]
                out = [select(copy.deepcopy(r), query, es.fields) for r in page]
            except ODataError as exc:
                raise SlError(400, -1000, str(exc)) from None
            if len(window) <= len(page):
                return out, total, None
            nxt = {k: v for k, v in query.items() if k not in ("$skip", "$top")}
            if top is not None:  # what is left of $top after this page
                nxt["$top"] = str(top - len(page))
            nxt["$skip"] = str(skip + len(page))
            return out, total, nxt

    def create(self, es: EntitySet, body: Any) -> Row:
        if not isinstance(body, dict):
            raise SlError(400, -1000, "A JSON object is expected in the request body")
        with self.lock:
            unknown = sorted(set(body) - es.fields)
            if unknown:
                raise SlError(400, -1000, f"Property '{unknown[0]}' of '{es.name}' is invalid")
            if es.name == "JournalEntries":
                return self._create_je(es, body)
            row = self._bp(body) if es.name == "BusinessPartners" else {f: body.get(f) for f in es.fields}
            key = row.get(es.key)
            if key in (None, ""):
                raise SlError(400, -1000, f"Field '{es.key}' is mandatory")
            if key in es.rows:
                if es.name == "BusinessPartners":  # the manual's example [V]
                    raise SlError(400, -10, f"1320000140 - Business partner code '{key}' already assigned to a "
                                            "business partner; enter a unique business partner code")
                raise SlError(400, -2035, f"This entry already exists in the following tables ({es.name}) "
                                          "(ODBC -2035)")
            es.rows[key] = row
            return copy.deepcopy(row)

    def _bp(self, body: Row) -> Row:
        row: Row = {f: None for f in BP_FIELDS}
        row.update({"Valid": "tYES", "Frozen": "tNO", "Currency": "USD", "CreditLimit": 0.0})
        row.update(body)
        ct = row.get("CardType") or "cCustomer"
        if ct in CARD_TYPES:  # value or name accepted; the name is answered [V]
            ct = CARD_TYPES[ct]
        if ct not in CARD_TYPES.values():
            raise SlError(400, -1000, f"Enumeration value '{ct}' of property 'CardType' is invalid")
        row["CardType"] = ct
        return row

    def _line_refusal(self, n: int, line: Row, day: str) -> SlError | None:
        """What B1 refuses in journal line `n` (1-based) posted on `day`, else None."""
        code = msg.JE_CODE
        acct, short = line.get("AccountCode"), line.get("ShortName")
        if not acct and not short:
            return SlError(400, code, f"Line {n}: enter an account code or a business partner (ShortName)")
        if short:
            bp = self.sets["BusinessPartners"].rows.get(short)
            if bp is None:
                return SlError(400, code, msg.invalid_partner(n, short))
            if bp.get("Frozen") == "tYES" or bp.get("Valid") == "tNO":
                return SlError(400, msg.BP_INACTIVE_CODE, msg.inactive_partner(short, str(bp.get("CardType"))))
        if acct:
            account = self.sets["ChartOfAccounts"].rows.get(acct)
            if account is None:
                return SlError(400, code, msg.invalid_account(n, acct))
            if account.get("ActiveAccount") == "tNO":
                return SlError(400, code, msg.title_account(n, acct))
            if account.get("FrozenFor") == "tYES":
                return SlError(400, code, msg.frozen_account(n, acct))
            if account.get("LockManualTransaction") == "tYES":
                return SlError(400, code, msg.manual_locked_account(n, acct))
        for dim, fname in enumerate(COSTING_FIELDS, start=1):
            rcode = line.get(fname)
            if not rcode:
                continue
            # CostingCode(n) takes a distribution rule of dimension n (a profit centre's direct rule).
            rule = self.sets["DistributionRules"].rows.get(rcode) or self.sets["ProfitCenters"].rows.get(rcode)
            if rule is None or rule["InWhichDimension"] != dim:
                return SlError(400, code, msg.invalid_rule(n, fname, rcode))
            if rule.get("Active") == "tNO":
                return SlError(400, code, msg.inactive_rule(n, fname, rcode))
        proj = line.get("ProjectCode")
        if proj and proj not in self.sets["Projects"].rows:
            return SlError(400, code, msg.invalid_project(n, proj))
        cur = line.get("FCCurrency")
        if cur and cur != self.local_currency:
            if cur not in self.sets["Currencies"].rows:
                return SlError(400, code, msg.invalid_currency(n, cur))
            if day not in self.rates.get(cur, {}):
                return SlError(400, code, msg.NO_RATE)
        return None

    def period_of(self, day: str) -> Row | None:
        """The FinancePeriod whose posting dates hold `day` (YYYY-MM-DD), the stored row."""
        for cat in self.periods:
            for p in cat["FinancePeriods"]:
                if p["PostingDateFrom"] <= day <= p["PostingDateTo"]:
                    return p
        return None

    def set_period_status(self, day: str, status: str) -> None:
        """Administration > Posting Periods: the status of the period holding `day` (PeriodStatusEnum)."""
        if status not in PERIOD_STATUSES:
            raise ValueError(f"status must be one of {PERIOD_STATUSES}")
        with self.lock:
            p = self.period_of(_day(day, "day"))
            if p is None:
                raise ValueError(f"no posting period holds {day}")
            p["PeriodStatus"] = status
            p["Locked"] = "tYES" if status == "ltLocked" else "tNO"

    def set_rate(self, currency: str, day: str, rate: float) -> None:
        """Exchange Rates and Indexes: `currency`'s rate on `day`."""
        with self.lock:
            self.rates.setdefault(currency, {})[_day(day, "day")] = float(rate)

    def action(self, name: str, body: Any) -> Any:
        """A Service Layer action (POST <name>) of ACTIONS: its result."""
        params = body if isinstance(body, dict) else {}
        with self.lock:
            if name == "CompanyService_GetPeriods":
                return [{"AbsoluteEntry": c["AbsoluteEntry"]} for c in self.periods]
            if name == "CompanyService_GetFinancePeriods":
                key = (params.get("PeriodCategoryParams") or {}).get("AbsoluteEntry")
                for c in self.periods:
                    if str(c["AbsoluteEntry"]) == str(key):
                        return copy.deepcopy(c["FinancePeriods"])
                raise SlError(404, -2028, "No matching records found (ODBC -2028)")
            if name == "SBOBobService_GetCurrencyRate":
                cur = str(params.get("Currency") or "").upper()
                if cur not in self.sets["Currencies"].rows:
                    raise SlError(400, msg.JE_CODE, f"Invalid currency '{params.get('Currency')}'")
                if cur == self.local_currency:
                    return 1.0
                rate = self.rates.get(cur, {}).get(_day(params.get("Date"), "Date"))
                if rate is None:
                    raise SlError(400, msg.JE_CODE, msg.NO_RATE)
                return rate
        raise SlError(404, -1, "Unrecognized resource path.")

    def _create_je(self, es: EntitySet, body: Row) -> Row:
        lines = body.get("JournalEntryLines")
        if not isinstance(lines, list) or not lines:
            raise SlError(400, -5002, "Journal entry has no lines (JournalEntryLines)")
        # Without a ReferenceDate B1 posts on today's date.
        day = _day(body.get("ReferenceDate"), "ReferenceDate") if body.get("ReferenceDate") \
            else dt.date.today().isoformat()
        debit = credit = 0.0
        out_lines = []
        for i, line in enumerate(lines):
            if not isinstance(line, dict):
                raise SlError(400, -1000, f"JournalEntryLines[{i}]: a JSON object is expected")
            unknown = sorted(set(line) - JE_LINE)
            if unknown:
                raise SlError(400, -1000, f"Property '{unknown[0]}' of 'JournalEntryLine' is invalid")
            refused = self._line_refusal(i + 1, line, day)
            if refused is not None:
                raise refused
            acct, short = line.get("AccountCode"), line.get("ShortName")
            try:
                d, c = float(line.get("Debit") or 0), float(line.get("Credit") or 0)
            except (TypeError, ValueError):
                raise SlError(400, -1000, f"Line {i + 1}: Debit/Credit must be numbers") from None
            if d < 0 or c < 0 or (d and c):
                raise SlError(400, -5002, f"Line {i + 1}: enter either a debit or a credit amount, not negative")
            debit += d
            credit += c
            out_lines.append({"Line_ID": i, **{f: line.get(f) for f in sorted(JE_LINE) if f != "Line_ID"},
                              "AccountCode": acct or self._control_account(short), "Debit": d, "Credit": c})
        if round(debit - credit, 6) != 0:
            raise SlError(400, msg.JE_CODE, msg.unbalanced(debit, credit))
        proj = body.get("ProjectCode")
        if proj and proj not in self.sets["Projects"].rows:
            raise SlError(400, msg.JE_CODE, msg.invalid_project(None, proj))
        period = self.period_of(day)
        if period is None:
            raise SlError(400, msg.JE_CODE, msg.NO_PERIOD)
        if period["PeriodStatus"] in ("ltLocked", "ltPeriodClosing"):
            raise SlError(400, msg.JE_CODE, msg.PERIOD_LOCKED)
        jdt, number = self._next_jdt, self._next_number
        self._next_jdt += 1
        self._next_number += 1
        row = {f: body.get(f) for f in sorted(JE_HEADER)}
        row.update({"JdtNum": jdt, "Number": number, "JournalEntryLines": out_lines,
                    "OriginalJournal": "ttJournalEntry", "Memo": body.get("Memo") or ""})
        es.rows[jdt] = row
        return copy.deepcopy(row)

    def _control_account(self, short: str | None) -> str:
        # A BP line posts to the BP's control account [P]: payables for suppliers, receivables else.
        bp = self.sets["BusinessPartners"].rows.get(short or "", {})
        return "2000" if bp.get("CardType") == "cSupplier" else "1100"

    def update(self, es: EntitySet, key: Any, body: Any) -> None:
        if not isinstance(body, dict):
            raise SlError(400, -1000, "A JSON object is expected in the request body")
        with self.lock:
            row = self.get(es, key)
            unknown = sorted(set(body) - es.fields)
            if unknown:
                raise SlError(400, -1000, f"Property '{unknown[0]}' of '{es.name}' is invalid")
            if es.key in body and body[es.key] != key:
                raise SlError(400, -1000, f"Field '{es.key}' cannot be changed")
            if es.name == "JournalEntries" and "JournalEntryLines" in body:
                raise SlError(400, -5006, "The requested action is not supported for this object.")
            row.update(body)

    def delete(self, es: EntitySet, key: Any) -> None:
        with self.lock:
            if not es.deletable:
                raise SlError(400, -5006, "The requested action is not supported for this object.")
            self.get(es, key)
            del es.rows[key]

    def next_link(self, version: str, set_name: str, options: dict[str, str]) -> str:
        qs = "&".join(f"{k}={quote(v, safe=chr(39) + '(),$:')}" for k, v in options.items())
        rel = f"{set_name}?{qs}"
        return rel if self.config.next_link_style == "relative" else f"/b1s/{version}/{rel}"
