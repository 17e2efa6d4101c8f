"""SAP ECC → Salesforce Marketing Cloud: customers' financial status, the B2B hierarchy and order
signals, so that marketing never promotes to a customer who cannot buy.

Streams:
- `customers`: KNA1/KNB1/KNKK/KNVV (+ sales-order spend, + the accounts above in the hierarchy) →
  the customer status Data Extension, keyed by the SAP customer number. Incremental runs take the
  customers named by the DEBMAS IDocs SAP pushed (stored by the control plane's IDoc receiver) and
  the customers below them; `sync --full` (scheduled outside business hours) compares every
  customer with what Marketing Cloud holds and corrects any difference.
- `hierarchy`: the partner functions (KNVP: sold-to, ship-to, bill-to, payer) → one row per
  account, role and partner, with the parent account and an "eligible for marketing" flag that
  honours a block anywhere up the hierarchy (SAP's customer hierarchy KNVH and the partner functions).
- `contacts`: the contact persons (KNVK) → one row per contact: its account, the account's parent
  and path up, department and function, and the account's eligibility.
- `orders`: ORDERS/ORDRSP and DESADV (DELVRY) IDocs → rows of the transactions Data Extension and,
  for a new sales order, a journey entry event (post-purchase journeys start, win-back stops).

SAP is the source of truth for every field written here: the rows are overwritten from SAP, and
nothing is read back into SAP. The Data Extensions are declared below and created (or validated,
with an error naming the field that differs) on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ConfigDict, Field, field_validator

from ml_connector.config import Schedule
from ml_connector.core.flow import Flow, FlowSchedule, RunContext, Stream
from ml_connector.core.ledger import Desired
from ml_connector.core.settings import SettingsModel
from ml_connector.systems.sap_ecc.sources import (
    CustomerStatusSource,
    SalesDocumentIdocSource,
    hierarchy_path,
    parent_of,
)
from ml_connector.systems.sfmc.schema import DeField, DeSpec
from ml_connector.systems.sfmc.targets import DataExtensionRowsTarget, TransactionsJourneyTarget

STREAMS = ("customers", "hierarchy", "orders", "contacts")

ROLE = {"AG": "SoldTo", "WE": "ShipTo", "RE": "BillTo", "RG": "Payer"}
#: Roles that receive promotions; an invoice (bill-to) or payer contact gets service mail only.
PROMOTION_ROLES = frozenset({"SoldTo", "ShipTo"})


def customer_de(key: str = "ML_SAP_Customer_Status") -> DeSpec:
    return DeSpec(key, key, (
        DeField("CustomerNumber", "Text", 10, primary=True),
        DeField("Name", "Text", 80),
        DeField("Country", "Text", 3),
        DeField("AccountGroup", "Text", 4),
        DeField("CreditLimit", "Decimal", precision=18, scale=2),
        DeField("CreditExposure", "Decimal", precision=18, scale=2),
        DeField("CreditCurrency", "Text", 5),
        DeField("CreditBlocked", "Boolean"),
        DeField("OverCreditLimit", "Boolean"),
        DeField("OrderBlock", "Text", 2),
        DeField("DeliveryBlock", "Text", 2),
        DeField("BillingBlock", "Text", 2),
        DeField("PostingBlocked", "Boolean"),
        DeField("DeletionFlag", "Boolean"),
        DeField("AccountStatus", "Text", 20),
        DeField("HistoricalSpend", "Decimal", precision=18, scale=2),
        DeField("SpendCurrency", "Text", 5),
        DeField("ParentAccount", "Text", 10),
        DeField("EligibleForMarketing", "Boolean"),
        DeField("IneligibleReason", "Text", 250),
    ), description="Owned by SAP ECC through ml-connector: do not edit in Marketing Cloud")


def hierarchy_de(key: str = "ML_SAP_Customer_Hierarchy") -> DeSpec:
    return DeSpec(key, key, (
        DeField("AccountNumber", "Text", 10, primary=True),
        DeField("Role", "Text", 10, primary=True),
        DeField("PartnerNumber", "Text", 10, primary=True),
        DeField("SalesArea", "Text", 10, primary=True),
        DeField("ContactKey", "Text", 10),
        DeField("ParentAccount", "Text", 10),
        DeField("HierarchyPath", "Text", 80),
        DeField("EligibleForMarketing", "Boolean"),
        DeField("PromotionsAllowed", "Boolean"),
    ), description="Owned by SAP ECC through ml-connector (KNVP partner functions)")


def contacts_de(key: str = "ML_SAP_Contacts") -> DeSpec:
    return DeSpec(key, key, (
        DeField("ContactKey", "Text", 10, primary=True),
        DeField("AccountNumber", "Text", 10),
        DeField("ParentAccount", "Text", 10),
        DeField("HierarchyPath", "Text", 80),
        DeField("Role", "Text", 20),
        DeField("FirstName", "Text", 35),
        DeField("LastName", "Text", 35),
        DeField("Salutation", "Text", 30),
        DeField("Language", "Text", 2),
        DeField("Department", "Text", 4),
        DeField("DepartmentName", "Text", 12),
        DeField("Function", "Text", 2),
        DeField("EligibleForMarketing", "Boolean"),
        DeField("PromotionsAllowed", "Boolean"),
        DeField("IneligibleReason", "Text", 250),
    ), description="Owned by SAP ECC through ml-connector (KNVK contact persons)")


def transactions_de(key: str = "ML_SAP_Transactions") -> DeSpec:
    return DeSpec(key, key, (
        DeField("DocumentNumber", "Text", 10, primary=True),
        DeField("DocumentType", "Text", 10, primary=True),
        DeField("CustomerNumber", "Text", 10),
        DeField("DocumentDate", "Text", 10),
        DeField("Amount", "Decimal", precision=18, scale=2),
        DeField("Currency", "Text", 5),
        DeField("Items", "Number"),
        DeField("JourneyEvent", "Text", 60),
    ), description="Sales orders and deliveries from SAP ECC IDocs")


# ------------------------------------------------------------------------------------ mapping


class FullCompare(Schedule):
    """`options.full`: when the full comparison runs (every customer read from SAP and compared with
    Marketing Cloud, differences corrected). Outside business hours by default: 02:00 (UTC, or
    `timezone`) every night; `full: null` turns it off (then run `sync --full` yourself)."""

    cron: str | None = "0 2 * * *"
    streams: tuple[str, ...] = ("customers", "hierarchy", "contacts")

    @field_validator("streams")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [s for s in value if s not in STREAMS]
        if unknown:
            raise ValueError(f"unknown stream(s) {', '.join(unknown)}: the streams are {', '.join(STREAMS)}")
        return value


DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: Streams whose full run reads every customer from SAP: the large extracts business hours protect.
FULL_READ_STREAMS = frozenset({"customers", "hierarchy", "contacts"})


class BusinessHours(SettingsModel):
    """`options.business_hours`: when SAP's users work. A large full comparison (a stream whose last
    full run read more than `options.large_extract` customers) is not started then: a manual one is
    refused with a message unless forced (`sync --full --force`), a scheduled or caught-up one
    waits for the first hourly re-check after `end`. IDoc-driven incremental runs always flow."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: str = Field(default="08:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    end: str = Field(default="18:00", pattern=r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$")  # 24:00: to midnight
    days: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri")
    timezone: str = "UTC"

    @field_validator("days")
    @classmethod
    def _days(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [d for d in value if d not in DAYS]
        if bad:
            raise ValueError(f"unknown day(s) {', '.join(bad)}: use {', '.join(DAYS)}")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo

        try:
            ZoneInfo(value)
        except Exception:
            raise ValueError(f"expected an IANA time zone like 'Europe/Berlin', got {value!r}") from None
        return value

    def contains(self, at: datetime) -> bool:
        """Whether `at` (aware) falls in business hours (`start` inclusive, `end` exclusive)."""
        from zoneinfo import ZoneInfo

        local = at.astimezone(ZoneInfo(self.timezone))
        hm = local.strftime("%H:%M")
        return DAYS[local.weekday()] in self.days and self.start <= hm < self.end

    def text(self) -> str:
        return f"{'/'.join(self.days)} {self.start}-{self.end} {self.timezone}"


class Options(SettingsModel):
    """The flow's `options` in ml-connector.yaml, validated when the configuration is loaded (a wrong
    type or an unknown key is refused there, with file, line and field)."""

    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=True)

    credit_areas: tuple[str, ...] = ()         # KKBER to consider (empty: all)
    sales_orgs: tuple[str, ...] = ()           # VKORG whose sales-area blocks count (empty: all)
    company_codes: tuple[str, ...] = ()        # BUKRS whose posting blocks count (empty: all)
    over_limit_ineligible: bool = True         # exposure above the credit limit makes ineligible
    event_key: str = Field(default="ml-post-purchase", min_length=1)  # the journey's API entry event key
    customer_de: str = Field(default="ML_SAP_Customer_Status", min_length=1)
    hierarchy_de: str = Field(default="ML_SAP_Customer_Hierarchy", min_length=1)
    transactions_de: str = Field(default="ML_SAP_Transactions", min_length=1)
    contacts_de: str = Field(default="ML_SAP_Contacts", min_length=1)
    page_size: int = Field(default=500, ge=1, le=100_000)
    full: FullCompare | None = FullCompare()    # the scheduled full comparison (null: none)
    business_hours: BusinessHours | None = BusinessHours()   # null: no protection
    large_extract: int = Field(default=5000, ge=0)  # customers above which a full comparison is "large"

    @classmethod
    def of(cls, opts: dict[str, Any]) -> Options:
        return cls.model_validate(opts)


def _dec(value: Any) -> Decimal:
    try:
        return Decimal(str(value or "0").strip() or "0")
    except InvalidOperation:
        return Decimal(0)


def _money(d: Decimal) -> str:
    return f"{d.quantize(Decimal('0.01'))}"


def _flag(value: bool) -> str:
    return "True" if value else "False"


def _set(value: Any) -> bool:
    return bool(str(value or "").strip())


@dataclass
class Status:
    """One customer's own financial status (without its ancestors)."""

    limit: Decimal = Decimal(0)
    exposure: Decimal = Decimal(0)
    currency: str = ""
    credit_blocked: bool = False
    over_limit: bool = False
    order_block: str = ""
    delivery_block: str = ""
    billing_block: str = ""
    posting_blocked: bool = False
    deleted: bool = False
    reasons: list[str] = field(default_factory=list)


def status_of(rec: dict[str, Any], opts: Options = Options()) -> Status:
    """Credit (KNKK), central (KNA1), company-code (KNB1) and sales-area (KNVV) blocks of one customer.
    Exposure = receivables + open sales value + special liabilities (SKFOR + SAUFT + SSOBL)."""
    st = Status()
    knkk = [r for r in rec.get("_knkk", []) if not opts.credit_areas or r.get("KKBER") in opts.credit_areas]
    for r in knkk:
        st.limit += _dec(r.get("KLIMK"))
        st.exposure += _dec(r.get("SKFOR")) + _dec(r.get("SAUFT")) + _dec(r.get("SSOBL"))
        st.currency = st.currency or str(r.get("CASHC") or "")
        st.credit_blocked = st.credit_blocked or _set(r.get("CRBLB"))
    st.over_limit = bool(knkk) and st.exposure > st.limit
    knvv = [r for r in rec.get("_knvv", []) if not opts.sales_orgs or r.get("VKORG") in opts.sales_orgs]
    knb1 = [r for r in rec.get("_knb1", []) if not opts.company_codes or r.get("BUKRS") in opts.company_codes]

    def first(field_: str) -> str:
        own = str(rec.get(field_) or "").strip()
        return own or next((str(r.get(field_)).strip() for r in knvv if _set(r.get(field_))), "")

    st.order_block = first("AUFSD") or first("CASSD")
    st.delivery_block = first("LIFSD")
    st.billing_block = first("FAKSD")
    st.posting_blocked = _set(rec.get("SPERR")) or any(_set(r.get("SPERR")) for r in knb1)
    st.deleted = _set(rec.get("LOEVM")) or (bool(knb1) and all(_set(r.get("LOEVM")) for r in knb1)) \
        or (bool(knvv) and all(_set(r.get("LOEVM")) for r in knvv))
    if st.deleted:
        st.reasons.append("flagged for deletion")
    if st.credit_blocked:
        st.reasons.append("credit block")
    if st.over_limit and opts.over_limit_ineligible:
        st.reasons.append("over credit limit")
    if st.order_block:
        st.reasons.append(f"order block {st.order_block}")
    if st.delivery_block:
        st.reasons.append(f"delivery block {st.delivery_block}")
    if st.posting_blocked:
        st.reasons.append("posting block")
    return st


def eligibility(rec: dict[str, Any], opts: Options = Options()) -> tuple[bool, list[str]]:
    """Whether the customer may receive marketing, and why not: its own blocks and those of every
    account above it (`_ancestors`, nearest first). A billing block alone does not stop marketing."""
    reasons = list(status_of(rec, opts).reasons)
    for anc in rec.get("_ancestors", []):
        for r in status_of(anc, opts).reasons:
            reasons.append(f"parent {anc['KUNNR']}: {r}")
    return not reasons, reasons


def account_status(st: Status, eligible: bool) -> str:
    if st.deleted:
        return "Deleted"
    if st.credit_blocked or st.order_block or st.delivery_block or st.posting_blocked:
        return "Blocked"
    if st.over_limit:
        return "OverLimit"
    return "Active" if eligible else "ParentBlocked"


def customer_status_row(key: str, rec: dict[str, Any], *, opts: Options = Options()) -> Desired:
    """One row of the customer status DE. Every value is a string as Marketing Cloud returns it
    (Booleans True/False, decimals with 2 places), so that a full run compares like with like."""
    st = status_of(rec, opts)
    eligible, reasons = eligibility(rec, opts)
    spend = rec.get("_spend") or {}
    spend_cur = max(spend, key=lambda c: spend[c]) if spend else ""
    name = " ".join(p for p in (str(rec.get("NAME1") or "").strip(), str(rec.get("NAME2") or "").strip()) if p)
    row = {
        "CustomerNumber": key, "Name": name[:80], "Country": str(rec.get("LAND1") or ""),
        "AccountGroup": str(rec.get("KTOKD") or ""), "CreditLimit": _money(st.limit),
        "CreditExposure": _money(st.exposure), "CreditCurrency": st.currency,
        "CreditBlocked": _flag(st.credit_blocked), "OverCreditLimit": _flag(st.over_limit),
        "OrderBlock": st.order_block, "DeliveryBlock": st.delivery_block, "BillingBlock": st.billing_block,
        "PostingBlocked": _flag(st.posting_blocked), "DeletionFlag": _flag(st.deleted),
        "AccountStatus": account_status(st, eligible),
        "HistoricalSpend": _money(_dec(spend.get(spend_cur, 0))) if spend_cur else "0.00",
        "SpendCurrency": spend_cur, "ParentAccount": parent_of(rec) or "",
        "EligibleForMarketing": _flag(eligible), "IneligibleReason": "; ".join(reasons)[:250],
    }
    return Desired(key, {"rows": [row]})


def hierarchy_rows(key: str, rec: dict[str, Any], *, opts: Options = Options()) -> Desired:
    """The account's partner functions (KNVP) as rows: who is its sold-to, ship-to, bill-to and
    payer, its parent account and the path up, and whether each contact may get promotions."""
    eligible, _ = eligibility(rec, opts)
    parent = parent_of(rec) or ""
    path = " > ".join(hierarchy_path(rec))[:80]
    rows: dict[tuple[str, str, str], dict[str, str]] = {}
    for p in sorted(rec.get("_knvp", []), key=lambda r: (r.get("PARVW", ""), r.get("PARZA", ""))):
        role = ROLE.get(str(p.get("PARVW", "")))
        partner = str(p.get("KUNN2") or "").strip()
        if role is None or not partner:
            continue  # contact persons (AP) and vendors carry no customer number
        area = f"{p.get('VKORG', '')}/{p.get('VTWEG', '')}/{p.get('SPART', '')}"
        rows[(role, partner, area)] = {
            "AccountNumber": key, "Role": role, "PartnerNumber": partner, "SalesArea": area, "ContactKey": partner,
            "ParentAccount": parent, "HierarchyPath": path, "EligibleForMarketing": _flag(eligible),
            "PromotionsAllowed": _flag(eligible and role in PROMOTION_ROLES)}
    return Desired(key, _rows_of(key, [rows[k] for k in sorted(rows)]))


#: KNVK-PARLA (one-character SAP language key) → ISO 639-1 for Marketing Cloud.
LANGUAGE = {"E": "en", "D": "de", "F": "fr", "S": "es", "I": "it", "N": "nl"}


def contact_rows(key: str, rec: dict[str, Any], *, opts: Options = Options()) -> Desired:
    """The account's contact persons (KNVK) as rows keyed by the contact person number: the account,
    its parent and path up, the contact's department and function (SAP's codes, ABTNR/PAFKT, with
    the department text ABTPA), and whether the contact may be marketed to. A contact inherits its
    account's eligibility (a block on the account or anywhere above it); promotions go only to
    contacts of a buying account (one that is its own sold-to), not of a pure payer or ship-to."""
    eligible, reasons = eligibility(rec, opts)
    buyer = any(p.get("PARVW") == "AG" and p.get("KUNN2") == key for p in rec.get("_knvp", []))
    parent = parent_of(rec) or ""
    path = " > ".join(hierarchy_path(rec))[:80]
    rows = []
    for c in sorted(rec.get("_knvk", []), key=lambda r: str(r.get("PARNR", ""))):
        parnr = str(c.get("PARNR") or "").strip()
        if not parnr:
            continue
        rows.append({"ContactKey": parnr, "AccountNumber": key, "ParentAccount": parent, "HierarchyPath": path,
                     "Role": "ContactPerson", "FirstName": str(c.get("NAMEV") or ""),
                     "LastName": str(c.get("NAME1") or ""), "Salutation": str(c.get("ANRED") or ""),
                     "Language": LANGUAGE.get(str(c.get("PARLA") or ""), ""),
                     "Department": str(c.get("ABTNR") or ""), "DepartmentName": str(c.get("ABTPA") or ""),
                     "Function": str(c.get("PAFKT") or ""), "EligibleForMarketing": _flag(eligible),
                     "PromotionsAllowed": _flag(eligible and buyer), "IneligibleReason": "; ".join(reasons)[:250]})
    return Desired(key, _rows_of(key, rows))


def _rows_of(key: str, rows: list[dict[str, str]]) -> dict[str, Any]:
    """A payload of rows replaced per account; with none, the account named (DataExtensionRowsTarget
    then finds its rows in Marketing Cloud by it). Only then: the other payloads' hashes stay as they were."""
    return {"rows": rows} if rows else {"rows": [], "owner": key}


def sales_document_row(key: str, rec: dict[str, Any], *, opts: Options = Options()) -> Desired:
    """A sales order or delivery from its IDoc: its transactions row and, for an order, the journey
    entry event (the contact is the sold-to party)."""
    amount = _money(_dec(rec.get("amount"))) if str(rec.get("amount") or "").strip() else ""
    row = {"DocumentNumber": str(rec["number"]), "DocumentType": str(rec["kind"]),
           "CustomerNumber": str(rec.get("customer") or ""), "DocumentDate": str(rec.get("date") or ""),
           "Amount": amount, "Currency": str(rec.get("currency") or ""), "Items": str(rec.get("items") or 0)}
    event = None
    if rec["kind"] == "ORDER" and row["CustomerNumber"]:
        event = {"contact": row["CustomerNumber"], "key": opts.event_key,
                 "data": {"OrderNumber": row["DocumentNumber"], "CustomerNumber": row["CustomerNumber"],
                          "Amount": amount, "Currency": row["Currency"], "OrderDate": row["DocumentDate"]}}
    return Desired(key, {"row": row, "event": event})


# ------------------------------------------------------------------------------------ the flow


class SapEccSfmcFlow(Flow):
    pair = "sap_ecc_sfmc"

    def options(self) -> Options:
        return Options.of(dict(self.cfg.options or {}))

    def schedules(self) -> list[FlowSchedule]:
        full = self.options().full
        if full is None or full.cron is None:
            return []
        return [FlowSchedule("full", full.cron, full.streams, "full", full.timezone, catch_up=True)]

    def defer_reason(self, stream: str, mode: str, now: datetime) -> str | None:
        """A large full comparison during business hours is deferred (issue 14: protect SAP). Large:
        the stream's last finished full run read more than `large_extract` customers; a first load
        (no such run yet) is an operator's deliberate act and is not deferred."""
        opts = self.options()
        hours = opts.business_hours
        if mode != "full" or stream not in FULL_READ_STREAMS or hours is None or not hours.contains(now):
            return None
        size = self.last_full_size(stream)
        if size is None or size <= opts.large_extract:
            return None
        return (f"{self.name}/{stream}: a full comparison reads every customer from SAP ({size} last time, more than "
                f"large_extract {opts.large_extract}); during business hours ({hours.text()}) it waits, to keep SAP "
                f"responsive: the scheduled comparison or its hourly catch-up runs it after {hours.end}; start it "
                "now anyway with `sync --full --force` (API: \"force\": true). IDoc changes keep flowing meanwhile")

    def last_full_size(self, stream: str) -> int | None:
        """How many records the stream's last finished full run read (None: none finished)."""
        from sqlalchemy import select

        from ml_connector.core.models import RunRow

        with self.runtime.db.read() as s:
            counts = s.scalar(select(RunRow.counts).where(
                RunRow.flow == self.name, RunRow.stream == stream, RunRow.mode == "full",
                RunRow.status == "succeeded").order_by(RunRow.started_at.desc()).limit(1))
        return None if counts is None else int((counts or {}).get("read", 0))

    def specs(self) -> tuple[DeSpec, DeSpec, DeSpec]:
        opts = self.options()
        return customer_de(opts.customer_de), hierarchy_de(opts.hierarchy_de), transactions_de(opts.transactions_de)

    def contacts_spec(self) -> DeSpec:
        return contacts_de(self.options().contacts_de)

    def streams(self) -> dict[str, Stream]:
        opts = self.options()
        page = opts.page_size
        sap, mc = self.cfg.source, self.cfg.target
        cust, hier, trans = self.specs()

        def bind(fn: Callable[..., Desired]) -> Callable[[RunContext, str, dict[str, Any]], Desired]:
            return lambda ctx, key, rec: fn(key, rec, opts=opts)

        customers = Stream("customers", CustomerStatusSource(sap, page_size=page), bind(customer_status_row),
                           DataExtensionRowsTarget(mc, cust))
        hierarchy = Stream("hierarchy", CustomerStatusSource(sap, page_size=page, spend=False), bind(hierarchy_rows),
                           DataExtensionRowsTarget(mc, hier, replace_by="AccountNumber"))
        orders = Stream("orders", SalesDocumentIdocSource(page_size=page), bind(sales_document_row),
                        TransactionsJourneyTarget(mc, trans))
        contacts = Stream("contacts", CustomerStatusSource(sap, page_size=page, spend=False, contacts=True),
                          bind(contact_rows), DataExtensionRowsTarget(mc, self.contacts_spec(),
                                                                      replace_by="AccountNumber"))
        streams = {s.name: s for s in (customers, hierarchy, orders, contacts)}
        assert tuple(streams) == STREAMS, "STREAMS must list the streams built here"
        return streams


FLOW = SapEccSfmcFlow


def routers(rt: Any, flow: str) -> list[Any]:
    """This pair's JSON API under /api/flows/<flow>/ (audience check, gap history): server/flow_api.py."""
    from ml_connector.flows._sap_ecc_sfmc_api import routers as api_routers

    return list(api_routers(rt, flow))
