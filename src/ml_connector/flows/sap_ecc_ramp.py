"""SAP ECC ↔ Ramp: which SAP source feeds which Ramp target (and back), and the mappings.

Reading SAP is `systems/sap_ecc/sources.py`, writing Ramp `systems/ramp/targets.py` (and the
reverse for bills); this module holds the pure mapping functions and the wiring. See
docs/sap-ecc-ramp.md for the rules.

- `vendors`: LFA1/LFB1 (full by key range, incremental by change documents) → Ramp accounting
  vendors, upserted by external id (the SAP vendor number, internal format). A deletion flag
  (LFA1-LOEVM, or LFB1-LOEVM in every configured company code) deactivates the vendor in Ramp,
  clearing it reactivates it; so does a posting block with `options.deactivate_blocked`.
- `gl_accounts`: SKA1 + SKAT + SKB1 of the configured company codes' chart → Ramp GL accounts.
- `cost_centers`: CSKS valid today + CSKT → options of the Ramp accounting field "Cost Center"
  (id SAP_COST_CENTER).
- `bills` (Ramp → SAP): approved bills (`sync_ready=true`) → FI vendor invoices (BLART KR)
  posted exactly once, then reported with `POST /accounting/syncs`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from pydantic import Field

from ml_connector.core import mapping
from ml_connector.core.flow import Flow, Outcome, RunContext, Stream
from ml_connector.core.ledger import Desired, Parked
from ml_connector.core.outbox import Entry
from ml_connector.core.settings import SettingsModel, Text
from ml_connector.systems.ramp.client import RampError
from ml_connector.systems.ramp.sources import ApprovedBillsSource
from ml_connector.systems.ramp.targets import (
    AccountingSyncs,
    AccountingVendorsTarget,
    FieldOptionsTarget,
    GLAccountsTarget,
)
from ml_connector.systems.sap_ecc.posting import CURRENCY_DECIMALS, GLLine, VendorInvoice, format_amount, xblnr_for
from ml_connector.systems.sap_ecc.sources import CostCenterSource, GLAccountSource, VendorSource
from ml_connector.systems.sap_ecc.table_reader import alpha
from ml_connector.systems.sap_ecc.targets import NotPostable, VendorInvoiceTarget

log = logging.getLogger(__name__)

#: Default balance-sheet classification by the first digit of the account number.
_BS_BY_DIGIT = {"0": "ASSET", "1": "ASSET", "2": "LIABILITY", "3": "EQUITY"}
COST_CENTER_FIELD_ID = "SAP_COST_CENTER"

#: A mapping-table lookup: (table, source value) -> target value or None.
Mapped = Callable[[str, str], str | None]


def _strip_zeros(value: str) -> str:
    v = value.strip()
    return (v.lstrip("0") or v) if v.isdigit() else v


# --------------------------------------------------------------------------- SAP → Ramp mappings


def vendor_to_ramp(key: str, record: dict[str, Any], *, deactivate_blocked: bool = False) -> Desired:
    """An SAP vendor (LFA1 + `_company_codes` LFB1 rows) → a Ramp accounting vendor {id, name, code}.

    Deleted (LFA1-LOEVM, or LFB1-LOEVM in every company code read) → inactive; posting-blocked
    (LFA1-SPERR) → inactive only with `deactivate_blocked`. Name: NAME1 NAME2, else the number."""
    name = " ".join(p for p in (record.get("NAME1", "").strip(), record.get("NAME2", "").strip()) if p)
    ccs = record.get("_company_codes", {})
    deleted = record.get("LOEVM", "").strip() == "X" or (
        bool(ccs) and all(c.get("LOEVM", "").strip() == "X" for c in ccs.values()))
    blocked = record.get("SPERR", "").strip() == "X"
    active = not deleted and not (blocked and deactivate_blocked)
    payload = {"id": key, "name": name or key, "code": key.lstrip("0") or key}
    return Desired(key, payload, active=active)


def gl_classification(saknr: str, ska1: dict[str, str], skb1: list[dict[str, str]],
                      overrides: dict[str, str] | None = None, revenue_prefixes: tuple[str, ...] = ("8",)) -> str:
    """Ramp's classification of an SAP G/L account (documented in docs/sap-ecc-ramp.md).

    1. `options.gl_classification` {number prefix: classification}: the longest matching prefix wins.
    2. Balance-sheet accounts (SKA1-XBILK = X): reconciliation accounts for vendors (SKB1-MITKZ K)
       are LIABILITY, for customers (D) ASSET; otherwise by the first digit of the number
       (0/1 ASSET, 2 LIABILITY, 3 EQUITY, else ASSET).
    3. P&L accounts (XBILK blank; GVTYP set): REVENUE when the number starts with a revenue prefix
       (default 8), else EXPENSE.
    """
    number = _strip_zeros(saknr)
    for prefix in sorted(overrides or {}, key=len, reverse=True):
        if number.startswith(str(prefix)):
            return str((overrides or {})[prefix]).upper()
    if ska1.get("XBILK") == "X":
        kinds = {r.get("MITKZ", "") for r in skb1}
        if "K" in kinds:
            return "LIABILITY"
        if "D" in kinds:
            return "ASSET"
        return _BS_BY_DIGIT.get(number[:1], "ASSET")
    return "REVENUE" if number.startswith(revenue_prefixes) else "EXPENSE"


def gl_account_to_ramp(key: str, record: dict[str, Any], *, overrides: dict[str, str] | None = None,
                       revenue_prefixes: tuple[str, ...] = ("8",)) -> Desired:
    """An SAP G/L account (SKA1 + `_text` SKAT + `_company_codes` SKB1 rows) → a Ramp GL account
    {id, name, code, classification}; inactive when deleted or blocked in the chart, or blocked or
    deleted in every company code."""
    text = record.get("_text") or {}
    skb1 = record.get("_company_codes") or []
    name = text.get("TXT50") or text.get("TXT20") or _strip_zeros(key)
    classification = gl_classification(key, record, skb1, overrides, revenue_prefixes)
    blocked = record.get("XLOEV") == "X" or record.get("XSPEB") == "X" or all(
        r.get("XSPEB") == "X" or r.get("XLOEB") == "X" for r in skb1)
    payload = {"id": key, "name": name, "code": _strip_zeros(key), "classification": classification}
    return Desired(key, payload, active=not blocked)


def cost_center_to_option(key: str, record: dict[str, Any]) -> Desired:
    """An SAP cost center (CSKS period + `_valid_today` + `_text` CSKT) → a Ramp field option
    {id, value, code}; inactive when not valid today or locked for postings (BKZKP)."""
    text = record.get("_text") or {}
    value = text.get("KTEXT") or text.get("LTEXT") or _strip_zeros(key)
    active = bool(record.get("_valid_today")) and record.get("BKZKP") != "X"
    return Desired(key, {"id": key, "value": value, "code": _strip_zeros(key)}, active=active)


# --------------------------------------------------------------------------- Ramp → SAP mappings


def _money(value: Any, currency: str) -> Decimal:
    """A Ramp amount in major units: {amount: <int minor units>, currency_code} (canonical), or a bare
    decimal in major units (the bill-create form of R1)."""
    if isinstance(value, dict):
        ccy = str(value.get("currency_code") or currency).upper()
        return Decimal(int(value.get("amount") or 0)).scaleb(-CURRENCY_DECIMALS.get(ccy, 2))
    return Decimal(str(value or 0))


def _date(value: Any) -> str:
    """YYYY-MM-DD of an ISO date or datetime ('' when missing)."""
    return str(value or "")[:10]


def _selection(sels: list[dict[str, Any]], kind: str, cost_center_field_id: str) -> str:
    """The external id selected for a GL account or a cost center ('' when none)."""
    for sel in sels or []:
        cat = sel.get("category_info") or {}
        if kind == "GL_ACCOUNT" and cat.get("type") == "GL_ACCOUNT":
            return str(sel.get("external_id") or "")
        if kind == "COST_CENTER" and (cat.get("type") == "COST_CENTER"
                                      or cat.get("external_id") == cost_center_field_id):
            return str(sel.get("external_id") or "")
    return ""


def _sap_key(value: Any, what: str, problems: list[str]) -> str:
    """SAP internal format of a 10-character key (ALPHA); a longer number is a problem to report."""
    try:
        return alpha(str(value or ""), 10)
    except ValueError:
        problems.append(f"{what} {value} is longer than SAP's 10 characters")
        return str(value).strip()


def bill_to_invoice(key: str, bill: dict[str, Any], *, mapped: Mapped,
                    cost_center_field_id: str = COST_CENTER_FIELD_ID, xblnr_prefix: str = "RMP",
                    today: str | None = None) -> Desired | Parked:
    """An approved Ramp bill → the SAP vendor invoice (or credit memo) to post.

    Parked on the `entities` mapping (Ramp entity → company code) and, for a Bill Pay vendor
    without a remote id, on the `vendors` mapping. Lines take their GL account and cost center
    from their own coding, else the bill's; what SAP would refuse for certain (no GL account,
    no lines, lines not adding up to the total) goes into `problems`: the bill then fails and
    is reported to Ramp with that message, without a call to SAP. Negative totals become
    credit memos. XBLNR derives from the bill id (the exactly-once reference)."""
    entity = str(bill.get("entity_id") or "")
    bukrs = mapped("entities", entity)
    if not bukrs:
        return Parked(key, mapping.waits_for("entities", entity or "-"), payload=bill)
    vendor = bill.get("vendor") or {}
    lifnr = str(vendor.get("remote_id") or "") or mapped("vendors", str(vendor.get("id") or ""))
    if not lifnr:
        # A Bill Pay vendor not linked to an accounting (SAP) vendor: an operator maps it.
        return Parked(key, mapping.waits_for("vendors", str(vendor.get("id") or vendor.get("name") or "-")),
                      payload=bill)
    total = bill.get("amount") or {}
    ccy = str(total.get("currency_code") or "USD").upper() if isinstance(total, dict) else "USD"
    problems: list[str] = []
    sels = bill.get("accounting_field_selections") or []
    default_gl = _selection(sels, "GL_ACCOUNT", cost_center_field_id)
    default_cc = _selection(sels, "COST_CENTER", cost_center_field_id)
    lines = []
    for n, li in enumerate(bill.get("line_items") or [], start=1):
        li_sels = li.get("accounting_field_selections") or []
        gl = _selection(li_sels, "GL_ACCOUNT", cost_center_field_id) or default_gl
        cc = _selection(li_sels, "COST_CENTER", cost_center_field_id) or default_cc
        if not gl:
            problems.append(f"line {n}: no GL account selected; code the line in Ramp")
        lines.append({"gl_account": _sap_key(gl, f"line {n}: GL account", problems),
                      "cost_center": _sap_key(cc, f"line {n}: cost center", problems),
                      "amount": format_amount(_money(li.get("amount"), ccy), ccy),
                      "text": str(li.get("memo") or "")[:50]})
    if not lines:
        problems.append("the bill has no line items")
    gross = sum((Decimal(ln["amount"]) for ln in lines), Decimal(0))
    if isinstance(total, dict) and lines and gross != _money(total, ccy):
        problems.append(f"the lines add up to {gross} {ccy}, the bill says {_money(total, ccy)} {ccy}")
    credit = gross < 0
    if credit:
        for ln in lines:
            ln["amount"] = format_amount(-Decimal(ln["amount"]), ccy)
    issued = _date(bill.get("issued_at"))
    posting = _date(bill.get("posting_date") or bill.get("accounting_date")) or issued
    today = today or datetime.now(UTC).strftime("%Y-%m-%d")
    payload = {"bill_id": key, "invoice_number": str(bill.get("invoice_number") or ""),
               "entity_id": entity, "company_code": bukrs, "vendor": _sap_key(lifnr, "vendor", problems),
               "currency": ccy, "doc_date": issued or today, "posting_date": posting or today,
               "xblnr": xblnr_for(key, xblnr_prefix), "credit_memo": credit, "lines": lines,
               "problems": problems}
    return Desired(key, payload)


def invoice_of(p: dict[str, Any], *, doc_type: str = "KR") -> VendorInvoice:
    """The mapped bill as the document to post (`NotPostable` when the mapping found problems)."""
    if p.get("problems"):
        raise NotPostable("; ".join(p["problems"]))
    return VendorInvoice(
        source_id=p["bill_id"], company_code=p["company_code"], vendor=p["vendor"], currency=p["currency"],
        doc_date=date.fromisoformat(p["doc_date"]), posting_date=date.fromisoformat(p["posting_date"]),
        lines=tuple(GLLine(gl_account=ln["gl_account"], amount=Decimal(ln["amount"]),
                           cost_center=ln["cost_center"], text=ln["text"]) for ln in p["lines"]),
        credit_memo=bool(p["credit_memo"]), doc_type=("KG" if p["credit_memo"] else doc_type),
        header_text=f"Ramp {p['invoice_number']}"[:25], vendor_text=p["invoice_number"][:50],
        reference=p["xblnr"])


def describe_bill(op: str, p: dict[str, Any]) -> str:
    gross = sum((Decimal(ln["amount"]) for ln in p["lines"]), Decimal(0))
    lines = ", ".join(f"GL {_strip_zeros(ln['gl_account']) or '?'}/CC {_strip_zeros(ln['cost_center']) or '-'} "
                      f"{ln['amount']}" for ln in p["lines"])
    kind = "credit memo" if p["credit_memo"] else "invoice"
    return (f"post SAP vendor {kind} for Ramp bill {p['invoice_number']} ({p['bill_id']}): company code "
            f"{p['company_code']}, vendor {_strip_zeros(p['vendor'])}, {gross} {p['currency']}, "
            f"XBLNR {p['xblnr']}, lines [{lines}]")


# --------------------------------------------------------------------------- wiring


# Read by the configuration loader (without importing this module) to check a flow's `streams`.
STREAMS = ("vendors", "gl_accounts", "cost_centers", "bills")


class Options(SettingsModel):
    """The flow's `options` in ml-connector.yaml, validated when the configuration is loaded (a wrong
    type or an unknown key is refused there, with file, line and field)."""

    company_codes: list[Text] = Field(default_factory=lambda: ["1000"], min_length=1,
                                      description="SAP company codes (BUKRS) read, e.g. [\"1000\"]")
    page_size: int = Field(default=5000, ge=1, le=100_000)
    language: Text = Field(default="E", min_length=1, max_length=2, description="SAP language key of texts")
    deactivate_blocked: bool = False
    gl_classification: dict[Text, Text] = Field(default_factory=dict)
    revenue_prefixes: list[Text] = Field(default_factory=lambda: ["8"])
    cost_center_field_id: Text = COST_CENTER_FIELD_ID
    cost_center_field_name: Text = "Cost Center"
    controlling_areas: list[Text] | None = Field(default=None, description="Default: the company codes")
    xblnr_prefix: Text = "RMP"
    document_type: Text = Field(default="KR", min_length=2, max_length=2)
    overlap_seconds: float = Field(default=3600, ge=0)
    vendor_code_on_upload: bool = True
    bill_page_size: int = Field(default=100, ge=1, le=1000)
    entity_id: Text | None = None


class SapEccRampFlow(Flow):
    pair = "sap_ecc_ramp"

    def connection_of(self, ctype: str) -> str:
        """The flow's connection (source or target) of type `ctype`."""
        conns = self.runtime.config.connections
        for name in (self.cfg.source, self.cfg.target):
            c = conns.get(name)
            if c is not None and c.type == ctype:
                return str(name)
        return str(self.cfg.source if ctype == "sap_ecc" else self.cfg.target)

    def streams(self) -> dict[str, Stream]:
        if not hasattr(self, "_streams"):
            self._streams: dict[str, Stream] = self._build()
        return self._streams

    def _build(self) -> dict[str, Stream]:
        opts = Options.model_validate(dict(getattr(self.cfg, "options", {}) or {}))
        sap, ramp = self.connection_of("sap_ecc"), self.connection_of("ramp")
        company_codes = list(opts.company_codes)
        page_size = opts.page_size
        language = opts.language
        deactivate_blocked = opts.deactivate_blocked
        overrides = dict(opts.gl_classification)
        revenue_prefixes = tuple(opts.revenue_prefixes)
        cc_field_id = opts.cost_center_field_id
        xblnr_prefix = opts.xblnr_prefix
        doc_type = opts.document_type

        def mapped(ctx: RunContext) -> Mapped:
            def get(table: str, value: str) -> str | None:
                with ctx.runtime.db.read() as s:  # committed state; takes no write lock
                    return mapping.get(s, ctx.flow, table, value)
            return get

        vendors = Stream(
            "vendors",
            VendorSource(self.cfg.source, company_codes=company_codes, page_size=page_size,
                         overlap_seconds=opts.overlap_seconds),
            lambda ctx, key, rec: vendor_to_ramp(key, rec, deactivate_blocked=deactivate_blocked),
            AccountingVendorsTarget(self.cfg.target,
                                    send_code_on_upload=opts.vendor_code_on_upload))
        gl_accounts = Stream(
            "gl_accounts",
            GLAccountSource(sap, company_codes=company_codes, language=language, page_size=page_size),
            lambda ctx, key, rec: gl_account_to_ramp(key, rec, overrides=overrides,
                                                     revenue_prefixes=revenue_prefixes),
            GLAccountsTarget(ramp))
        cost_centers = Stream(
            "cost_centers",
            CostCenterSource(sap, company_codes=company_codes, language=language, page_size=page_size,
                             controlling_areas=list(opts.controlling_areas or company_codes)),
            lambda ctx, key, rec: cost_center_to_option(key, rec),
            FieldOptionsTarget(ramp, field_id=cc_field_id, kind="cost center",
                               field_name=opts.cost_center_field_name))
        bills = Stream(
            "bills",
            ApprovedBillsSource(ramp, page_size=opts.bill_page_size,
                                entity_id=opts.entity_id),
            lambda ctx, key, rec: bill_to_invoice(key, rec, mapped=mapped(ctx), cost_center_field_id=cc_field_id,
                                                  xblnr_prefix=xblnr_prefix),
            VendorInvoiceTarget(sap, lambda p: invoice_of(p, doc_type=doc_type),
                                after_post=self._report_posted(ramp), after_refusal=self._report_refused(ramp),
                                refusal_note=" (reported to Ramp)",
                                posted_note=": only the Ramp report would be sent"),
            mapping_tables=("entities", "vendors"), describe=describe_bill)
        streams = {s.name: s for s in (vendors, gl_accounts, cost_centers, bills)}
        assert tuple(streams) == STREAMS, "STREAMS must list the streams built here"
        return streams

    @property
    def reconciles(self) -> bool:
        """Whether `reconcile` applies: the flow syncs bills (master data has no month-end totals)."""
        return "bills" in self.cfg.streams

    def reconcile(self, period: str) -> Any:
        """Month-end totals of Ramp bills against SAP documents (flows/_sap_ecc_ramp_reconcile.py)."""
        if "bills" not in self.cfg.streams:
            raise ValueError(f"flow {self.name}: reconciliation compares the bills stream, which this flow "
                             "does not sync")
        from ml_connector.flows._sap_ecc_ramp_reconcile import reconcile_bills

        return reconcile_bills(self, period)

    @staticmethod
    def _report_posted(ramp: str) -> Callable[[RunContext, Entry, Outcome], Outcome]:
        """A bill posted in SAP (or found posted) is reported to Ramp as synced; the bill stays
        failed while that report fails (replay re-sends the report only: the document is found)."""
        def after(ctx: RunContext, e: Entry, posted: Outcome) -> Outcome:
            p = e.payload
            doc = str(posted.target_id)
            try:
                sync = AccountingSyncs(ctx.runtime.connection(ramp)).synced(p["bill_id"], doc)
            except RampError as exc:
                return Outcome(e.id, "failed", request=p,
                               error=f"posted in SAP as {doc} (XBLNR {p['xblnr']}), but the report to Ramp "
                                     f"failed: {exc}; replay re-sends the report only")
            return replace(posted, response={**(posted.response or {}), "sync_id": sync.get("sync_id")})
        return after

    @staticmethod
    def _report_refused(ramp: str) -> Callable[[RunContext, Entry, str], str]:
        """A bill SAP will not take is reported to Ramp as failed (users see the message there)."""
        def after(ctx: RunContext, e: Entry, message: str) -> str:
            try:
                AccountingSyncs(ctx.runtime.connection(ramp)).failed(e.payload["bill_id"], message)
                return ""
            except RampError as exc:
                log.warning("reporting the failure of bill %s to Ramp failed: %s", e.payload["bill_id"], exc)
                return f" (reporting it to Ramp failed too: {exc})"
        return after


FLOW = SapEccRampFlow
