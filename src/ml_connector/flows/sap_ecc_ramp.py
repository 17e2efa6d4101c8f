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
- `company_codes`, `plants`: T001 / T001W (+ T001K) of the configured company codes → options of the
  Ramp accounting fields "Company Code" (SAP_COMPANY_CODE) and "Plant" (SAP_PLANT). A bill line coded
  on such a field (or any field in `options.cost_center_dimensions`) instead of a cost center takes
  the cost center of the mapping table `cost_center_dimensions` (`<field>:<option>` → KOSTL).
- `bills` (Ramp → SAP): approved bills (`sync_ready=true`) → FI vendor invoices (BLART KR)
  posted exactly once, then reported with `POST /accounting/syncs`.
- A bill edited in Ramp after it was posted is reversed and reposted, or parked for review
  (`options.edited_after_posting`; flows/_sap_ecc_ramp_edits.py).
- `bill_status` (Ramp → SAP): a posted bill paid in Ramp clears the SAP invoice (or lifts its
  payment block) and is reported as BILL_PAYMENT_SYNC; one rejected after posting is blocked for
  payment or reversed (options `paid_action`, `rejected_action`).
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field
from sqlalchemy import select

from ml_connector.core import ledger, mapping
from ml_connector.core.flow import Flow, Outcome, RunContext, Stream
from ml_connector.core.http import OAuthError
from ml_connector.core.ledger import Desired, Parked
from ml_connector.core.models import RecordRow
from ml_connector.core.outbox import Entry
from ml_connector.core.settings import SettingsModel, Text
from ml_connector.flows._sap_ecc_ramp_edits import EDITS_TABLE, BillsTarget, BillsWithEdits, EditedBills, is_reversal
from ml_connector.systems.ramp.client import RampApiError, RampError
from ml_connector.systems.ramp.sources import ApprovedBillsSource, BillStatusSource
from ml_connector.systems.ramp.targets import (
    AccountingSyncs,
    AccountingVendorsTarget,
    FieldOptionsTarget,
    GLAccountsTarget,
)
from ml_connector.systems.sap_ecc.master_data import MasterDataCheck
from ml_connector.systems.sap_ecc.posting import (
    CURRENCY_DECIMALS,
    GLLine,
    MMInvoice,
    VendorInvoice,
    format_amount,
    xblnr_for,
)
from ml_connector.systems.sap_ecc.purchase_orders import PurchaseOrderCheck
from ml_connector.systems.sap_ecc.sources import (
    CompanyCodeSource,
    CostCenterSource,
    DepartmentSource,
    GLAccountSource,
    PlantSource,
    VendorSource,
)
from ml_connector.systems.sap_ecc.table_reader import alpha
from ml_connector.systems.sap_ecc.targets import InvoiceStatusTarget, NotPostable, VendorInvoiceTarget

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
    # Runs for every vendor read: plain statements, no generators (a full sync maps 50,000).
    name1, name2 = record.get("NAME1", "").strip(), record.get("NAME2", "").strip()
    name = (f"{name1} {name2}" if name2 else name1) if name1 else name2
    ccs = record.get("_company_codes", {})
    deleted = record.get("LOEVM", "").strip() == "X"
    if not deleted and ccs:
        for c in ccs.values():
            if c.get("LOEVM", "").strip() != "X":
                break
        else:
            deleted = True  # flagged in every company code
    blocked = record.get("SPERR", "").strip() == "X"
    active = not deleted and not (blocked and deactivate_blocked)
    return Desired(key, {"id": key, "name": name or key, "code": key.lstrip("0") or key}, active)


_LEGAL_FORMS = {"inc", "incorporated", "llc", "ltd", "limited", "corp", "corporation", "co", "company", "gmbh",
                "ag", "kg", "sa", "sas", "srl", "bv", "nv", "plc", "lp", "llp", "pty"}
#: Each ASCII byte: itself in [0-9a-z], lower case in [A-Z], else a space. One `bytes.translate` folds the
#: case and turns punctuation into separators (a regex and `casefold` per name cost twice as much).
_FOLD = bytes(c + 32 if 65 <= c <= 90 else c if 48 <= c <= 57 or 97 <= c <= 122 else 32 for c in range(256))
_DROPPED = frozenset(w.encode() for w in (*_LEGAL_FORMS, "and"))
_TAX_FIELDS = ("STCD1", "STCD2", "STCEG", "tax_id", "tax_identification_number", "ein")


def normalised_name(name: str) -> str:
    """A vendor name for matching: case and accents folded, punctuation dropped, legal forms
    (Inc., GmbH, Ltd …) and `&`/`and` removed, whitespace collapsed."""
    text = name.encode() if name.isascii() else unicodedata.normalize("NFKD", name).encode("ascii", "ignore")
    # ASCII only from here: alphanumeric is [0-9a-z] once case-folded.
    return b" ".join([w for w in text.translate(_FOLD).split() if w not in _DROPPED]).decode()


def _tax_ids(record: dict[str, Any]) -> set[str]:
    out = set()
    for k in _TAX_FIELDS:
        if v := record.get(k):
            out.add(str(v).replace("-", "").replace(" ", "").upper())
    return out


def _record_name(record: dict[str, Any]) -> str:
    """An SAP vendor's normalised name (NAME1 + NAME2)."""
    name1, name2 = record.get("NAME1", ""), record.get("NAME2", "")
    return normalised_name(" ".join((name1, name2)) if name1 and name2 else name1 or name2 or "")


def _place(record: dict[str, Any]) -> tuple[str, str]:
    """An SAP vendor's country and city, as `_in_place` compares them."""
    return str(record.get("LAND1", "")).strip().upper(), str(record.get("ORT01", "")).strip().casefold()


def _in_place(c: dict[str, Any], country: str, city: str) -> bool:
    """Whether Ramp's vendor `c` is in a place compatible with (country, city): the same country and the
    same city wherever both sides have one."""
    addr = c.get("address") or {}
    c_country = str(c.get("country") or addr.get("country") or "").strip().upper()
    c_city = str(addr.get("city") or "").strip().casefold()
    return (not country or not c_country or c_country == country) and (not city or not c_city or c_city == city)


def same_name_in_place(record: dict[str, Any], named: Callable[[str], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The one name rule of vendor matching (Bill Pay and accounting vendors alike): the Ramp vendors
    with the SAP vendor's normalised name (NAME1 + NAME2) in a compatible address, i.e. the same
    country and the same city wherever both sides have one. `named(name)`: the candidates whose
    normalised name is `name`, in their listed order. No name: no match."""
    name = _record_name(record)
    if not name:
        return []
    country, city = _place(record)
    return [c for c in named(name) if _in_place(c, country, city)]


def match_billpay_vendor(key: str, record: dict[str, Any], candidates: list[dict[str, Any]]
                         ) -> tuple[str | None, list[str]]:
    """The Ramp Bill Pay vendor an SAP vendor is (id or None), and the ids of an ambiguous match.

    A Bill Pay vendor already linked to this SAP vendor (`accounting_vendor_remote_id`) is it. Otherwise,
    among the unlinked ones: the same tax id (SAP STCD1/STCD2/STCEG; Ramp's record when it has one),
    then the same normalised name in a compatible address (`same_name_in_place`: same country, and the
    same city where both have one). One match links; more than one is ambiguous (parked for an
    operator): never a guess."""
    return BillPayIndex(candidates).match(key, record)


class VendorIndex:
    """Ramp vendors indexed once per run for matching SAP vendors: a vendor sync matches every SAP
    vendor, so each match is a few dictionary look-ups, not a pass over every candidate (with its name
    normalised again). Same answers as a pass would give, candidates in their listed order.

    The rule (one for Bill Pay and accounting vendors): a candidate already linked to this SAP vendor
    (`linked_field`) is it; otherwise the same tax id where the candidate has one, then the same
    normalised name in a compatible address (same country, and the same city where both have one).
    `id_field` is what a match answers with; with `active_only`, inactive candidates match by tax id
    or name never."""

    def __init__(self, candidates: list[dict[str, Any]], *, id_field: str = "id",
                 linked_field: str | None = None, active_only: bool = False) -> None:
        self.id_field = id_field
        self.linked: dict[str, tuple[int, dict[str, Any]]] = {}
        self.by_tax: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        self.by_name: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        for pos, c in enumerate(candidates):
            remote = str(c.get(linked_field) or "") if linked_field else ""
            if remote:
                self.linked.setdefault(remote, (pos, c))
                continue
            if active_only and not c.get("is_active", True):
                continue
            for t in _tax_ids(c):
                self.by_tax.setdefault(t, []).append((pos, c))
            self.by_name.setdefault(normalised_name(str(c.get("name") or "")), []).append((pos, c))
        self.empty = not (self.linked or self.by_tax or self.by_name)

    def match(self, key: str, record: dict[str, Any], probe: dict[str, Any] | None = None
              ) -> tuple[str | None, list[str]]:
        """The matching candidate's id (or None), and the ids of an ambiguous match. `probe`: scratch
        space for this record shared by the indexes it is matched against (its tax ids and normalised
        name are then computed once)."""
        if self.empty:
            return None, []  # nothing to match (e.g. a Ramp without such vendors): no work per record
        ident = self.id_field
        if self.linked:  # the earlier listed of the candidates linked to the key or to it without zeros
            hit = self.linked.get(key)
            short = key.lstrip("0")
            if short != key and (alt := self.linked.get(short)) is not None and (hit is None or alt[0] < hit[0]):
                hit = alt
            if hit is not None:
                return str(hit[1][ident]), []
        if probe is None:
            probe = {}
        if self.by_tax:
            mine = probe.get("tax_ids")
            if mine is None:
                mine = probe["tax_ids"] = _tax_ids(record)
            if mine:
                hits = {pos: c for t in mine for pos, c in self.by_tax.get(t, ())}
                if hits:
                    by_tax = [hits[p] for p in sorted(hits)]
                    return ((str(by_tax[0][ident]), []) if len(by_tax) == 1
                            else (None, [str(c[ident]) for c in by_tax]))
        if not self.by_name:
            return None, []
        # `same_name_in_place`, its place compared only when a candidate has the name
        name = probe.get("name")
        if name is None:
            name = probe["name"] = _record_name(record)
        named = self.by_name.get(name) if name else None
        if not named:
            return None, []
        country, city = _place(record)
        same = [c for _, c in named if _in_place(c, country, city)]
        if len(same) == 1:
            return str(same[0][ident]), []
        return None, [str(c[ident]) for c in same]


class BillPayIndex(VendorIndex):
    """Ramp's Bill Pay vendors for `match_billpay_vendor` (answers their `id`)."""

    def __init__(self, candidates: list[dict[str, Any]]) -> None:
        super().__init__(candidates, id_field="id", linked_field="accounting_vendor_remote_id", active_only=True)


class AccountingVendorIndex(VendorIndex):
    """Ramp's accounting vendors for `match_accounting_vendor` (answers their `ramp_id`)."""

    def __init__(self, candidates: list[dict[str, Any]]) -> None:
        super().__init__(candidates, id_field="ramp_id")


def match_accounting_vendor(key: str, record: dict[str, Any], candidates: list[dict[str, Any]]
                            ) -> tuple[str | None, list[str]]:
    """The Ramp accounting vendor (its ramp_id) an SAP vendor already is under another remote id (a
    previous ERP connection, a CSV upload), or None, and the ramp_ids of an ambiguous match.

    `candidates`: Ramp's active accounting vendors that are not this flow's (their remote id is no SAP
    vendor the flow uploaded). The same tax id where Ramp's record has one, then the same normalised
    name in a compatible address (`same_name_in_place`, as `match_billpay_vendor`). One match is
    adopted; more than one is parked for an operator: never a guess, never a duplicate."""
    return AccountingVendorIndex(candidates).match(key, record)


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


def company_code_to_option(key: str, record: dict[str, Any]) -> Desired:
    """A company code (T001) → an option of the Ramp field "Company Code": {id: BUKRS, value, code}."""
    name = str(record.get("BUTXT") or "").strip()
    return Desired(key, {"id": key, "value": f"{key} {name}".strip(), "code": key})


def department_to_option(key: str, record: dict[str, Any]) -> Desired:
    """A department (a CSKS-ABTEI value) → an option of the Ramp field "Department": {id = code = ABTEI,
    value: ABTEI}. A bill line coded on it takes a cost center through `cost_center_dimensions`."""
    return Desired(key, {"id": key, "value": key[:100], "code": key})


def plant_to_option(key: str, record: dict[str, Any]) -> Desired:
    """A plant (T001W) → an option of the Ramp field "Plant": {id: WERKS, value: WERKS NAME1 (city), code}."""
    name = str(record.get("NAME1") or "").strip()
    city = str(record.get("ORT01") or "").strip()
    value = f"{key} {name}".strip() + (f" ({city})" if city and city.lower() not in name.lower() else "")
    return Desired(key, {"id": key, "value": value[:100], "code": key})


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


def _dimension(sels: list[dict[str, Any]], fields: tuple[str, ...]) -> str:
    """`<field>:<option external id>` of the first selection on one of the dimension `fields` ('' if none)."""
    for sel in sels or []:
        cat = sel.get("category_info") or {}
        field = str(cat.get("external_id") or cat.get("type") or "")
        if field in fields and sel.get("external_id"):
            return f"{field}:{sel['external_id']}"
    return ""


def bill_header(key: str, bill: dict[str, Any], mapped: Any) -> tuple[str, str, str] | Parked:
    """A Ramp bill's company code (the `entities` mapping), SAP vendor (its remote id, else the `vendors`
    mapping) and currency, or Parked on the mapping it waits for: the same for FI and MM invoices."""
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
    return str(bukrs), lifnr, ccy


def bill_totals(bill: dict[str, Any], lines: list[dict[str, Any]], total: Any, ccy: str,
                problems: list[str]) -> tuple[bool, str, str]:
    """What FI and MM invoices check and derive alike once their lines are mapped: the lines exist and add
    up to the bill's total (else `problems`), a negative total is a credit memo (its line amounts are
    then made positive, in place), and the document and posting dates. Returns (credit, issued, posting)."""
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
    return credit, issued, posting


def bill_to_invoice(key: str, bill: dict[str, Any], *, mapped: Mapped,
                    cost_center_field_id: str = COST_CENTER_FIELD_ID, xblnr_prefix: str = "RMP",
                    today: str | None = None, dimension_fields: tuple[str, ...] = ()) -> Desired | Parked:
    """An approved Ramp bill → the SAP vendor invoice (or credit memo) to post.

    Parked on the `entities` mapping (Ramp entity → company code), for a Bill Pay vendor
    without a remote id on the `vendors` mapping, and for a line coded on one of the
    `dimension_fields` (e.g. a Ramp department or plant field) instead of a cost center on the
    `cost_center_dimensions` mapping (`<field>:<option>` → KOSTL). Lines take their GL account and cost center
    from their own coding, else the bill's; what SAP would refuse for certain (no GL account,
    no lines, lines not adding up to the total) goes into `problems`: the bill then fails and
    is reported to Ramp with that message, without a call to SAP. Negative totals become
    credit memos. XBLNR derives from the bill id (the exactly-once reference)."""
    head = bill_header(key, bill, mapped)
    if isinstance(head, Parked):
        return head
    bukrs, lifnr, ccy = head
    total = bill.get("amount") or {}
    problems: list[str] = []
    sels = bill.get("accounting_field_selections") or []
    default_gl = _selection(sels, "GL_ACCOUNT", cost_center_field_id)
    default_cc = _selection(sels, "COST_CENTER", cost_center_field_id)
    lines = []
    for n, li in enumerate(bill.get("line_items") or [], start=1):
        li_sels = li.get("accounting_field_selections") or []
        gl = _selection(li_sels, "GL_ACCOUNT", cost_center_field_id) or default_gl
        cc = _selection(li_sels, "COST_CENTER", cost_center_field_id) or default_cc
        dim = "" if cc or not dimension_fields else (_dimension(li_sels, dimension_fields)
                                                     or _dimension(sels, dimension_fields))
        if dim:
            # A Ramp-side dimension (a department, a plant …) chosen instead of a cost center: mapped.
            cc = mapped("cost_center_dimensions", dim) or ""
            if not cc:
                return Parked(key, mapping.waits_for("cost_center_dimensions", dim), payload=bill)
        if not gl:
            problems.append(f"line {n}: no GL account selected; code the line in Ramp")
        lines.append({"gl_account": _sap_key(gl, f"line {n}: GL account", problems),
                      "cost_center": _sap_key(cc, f"line {n}: cost center", problems),
                      "amount": format_amount(_money(li.get("amount"), ccy), ccy),
                      "text": str(li.get("memo") or "")[:50]})
    credit, issued, posting = bill_totals(bill, lines, total, ccy, problems)
    today = today or datetime.now(UTC).strftime("%Y-%m-%d")
    payload = {"bill_id": key, "invoice_number": str(bill.get("invoice_number") or ""),
               "entity_id": str(bill.get("entity_id") or ""), "company_code": bukrs,
               "vendor": _sap_key(lifnr, "vendor", problems),
               "currency": ccy, "doc_date": issued or today, "posting_date": posting or today,
               "xblnr": xblnr_for(key, xblnr_prefix), "credit_memo": credit, "lines": lines,
               "problems": problems}
    return Desired(key, payload)


CLOSED_PERIOD_POLICIES = ("park", "next_open")


def validated_bill(m: Desired | Parked, bill: dict[str, Any], check: MasterDataCheck, *,
                   closed_period: str = "park") -> Desired | Parked:
    """A mapped bill checked against SAP's master data before it is posted: parked on the first
    thing SAP lacks (`company_code:1000`, `vendor:1000/<LIFNR>`, `gl_account:1000/<SAKNR>`,
    `cost_center:1000/<KOSTL>`, valid on the posting date), so that it posts by itself once SAP has
    it; a bill with problems no master record can fix fails as before. A posting date in a period
    SAP has closed parks on `period:<BUKRS>/<YYYY-MM>` (`closed_period: park`) or moves to the first
    day of the next open period (`next_open`), the original date kept in the vendor line's text."""
    if isinstance(m, Parked) or m.payload.get("problems"):
        return m
    p = m.payload
    missing = check.missing(p["company_code"], vendor=p["vendor"],
                            gl_accounts=[ln["gl_account"] for ln in p["lines"]],
                            cost_centers=[ln["cost_center"] for ln in p["lines"] if ln["cost_center"]],
                            on=p["posting_date"].replace("-", ""))
    if missing:
        return Parked(m.source_key, missing[0], payload=bill)
    return validated_period(m, bill, check, closed_period=closed_period)


def validated_period(m: Desired, bill: dict[str, Any], check: MasterDataCheck, *,
                     closed_period: str = "park") -> Desired | Parked:
    """The posting period policy of `validated_bill` (FI and MM invoices alike)."""
    p = m.payload
    on = p["posting_date"].replace("-", "")
    if check.period_open(p["company_code"], on):
        return m
    # The posting period is closed in SAP: park until it opens, or post into the next open period
    # with the original posting date kept in the document (vendor line text).
    nxt = check.next_open(p["company_code"], on) if closed_period == "next_open" else None
    if nxt is None:
        return Parked(m.source_key, f"period:{p['company_code']}/{on[:4]}-{on[4:6]}", payload=bill)
    moved = f"{nxt[:4]}-{nxt[4:6]}-{nxt[6:]}"
    return Desired(m.source_key, {**p, "posting_date": moved, "original_posting_date": p["posting_date"]},
                   active=m.active)


def invoice_of(p: dict[str, Any], *, doc_type: str = "KR") -> VendorInvoice | MMInvoice:
    """The mapped bill as the document to post (`NotPostable` when the mapping found problems): an
    FI vendor invoice, or an MM invoice for a PO-based bill (`kind: mm`, flows/_sap_ecc_ramp_po.py)."""
    if p.get("problems"):
        raise NotPostable("; ".join(p["problems"]))
    if p.get("kind") == "mm":
        from ml_connector.flows._sap_ecc_ramp_po import mm_invoice_of

        return mm_invoice_of(p)
    return VendorInvoice(
        source_id=p["bill_id"], company_code=p["company_code"], vendor=p["vendor"], currency=p["currency"],
        doc_date=date.fromisoformat(p["doc_date"]), posting_date=date.fromisoformat(p["posting_date"]),
        lines=tuple(GLLine(gl_account=ln["gl_account"], amount=Decimal(ln["amount"]),
                           cost_center=ln["cost_center"], text=ln["text"]) for ln in p["lines"]),
        credit_memo=bool(p["credit_memo"]), doc_type=("KG" if p["credit_memo"] else doc_type),
        header_text=f"Ramp {p['invoice_number']}"[:25],
        vendor_text=(f"{p['invoice_number']} posting date {p['original_posting_date']}" if
                     p.get("original_posting_date") else p["invoice_number"])[:50],
        reference=p["xblnr"])


def describe_bill(op: str, p: dict[str, Any]) -> str:
    if p.get("action") == "reverse":
        how = " in MM (MR8M)" if p.get("kind") == "mm" else ""
        return (f"reverse SAP document {p['document']}{how} of Ramp bill {p['invoice_number']} ({p['bill_id']}), "
                f"edited in Ramp after it was posted")
    if p.get("kind") == "mm":
        from ml_connector.flows._sap_ecc_ramp_po import describe_po_bill

        return describe_po_bill(p)
    gross = sum((Decimal(ln["amount"]) for ln in p["lines"]), Decimal(0))
    lines = ", ".join(f"GL {_strip_zeros(ln['gl_account']) or '?'}/CC {_strip_zeros(ln['cost_center']) or '-'} "
                      f"{ln['amount']}" for ln in p["lines"])
    kind = "credit memo" if p["credit_memo"] else "invoice"
    return (f"post SAP vendor {kind} for Ramp bill {p['invoice_number']} ({p['bill_id']}): company code "
            f"{p['company_code']}, vendor {_strip_zeros(p['vendor'])}, {gross} {p['currency']}, "
            f"XBLNR {p['xblnr']}, lines [{lines}]" + (f", replacing {p['replaces']}" if p.get("replaces") else ""))


PAID_ACTIONS = ("clear", "unblock", "none")
REJECTED_ACTIONS = ("block", "reverse", "none")


def bill_status_to_sap(key: str, bill: dict[str, Any], *, mapped: Mapped, document: str | None = None,
                       paid_action: str = "clear", rejected_action: str = "block", block_key: str = "A",
                       xblnr_prefix: str = "RMP", bank_account: str = "") -> Desired | Parked:
    """A posted Ramp bill's status change → what SAP should do with its invoice.

    Paid (`payment_status` PAID): `clear` the invoice's open vendor items with the payment (payment
    date = the payment's effective date, else its payment date, else `paid_at`; the payment's trace
    id, else its id, as the payment document's reference) or `unblock` it. Rejected: `block` it for
    payment (ZLSPR `block_key`) or `reverse` it (posting date = the rejection date). The invoice is
    `document` (BELNR/BUKRS/GJAHR, from the bills stream's ledger) or found in SAP by its XBLNR.
    Parked on `entities:<entity>` like the bill itself."""
    entity = str(bill.get("entity_id") or "")
    bukrs = mapped("entities", entity)
    if not bukrs:
        return Parked(key, mapping.waits_for("entities", entity or "-"), payload=bill)
    issued = _date(bill.get("issued_at"))
    posting = _date(bill.get("posting_date") or bill.get("accounting_date")) or issued
    year = (document.split("/")[2] if document else "") or (posting or datetime.now(UTC).strftime("%Y"))[:4]
    payload: dict[str, Any] = {"bill_id": key, "invoice_number": str(bill.get("invoice_number") or ""),
                               "company_code": bukrs, "xblnr": xblnr_for(key, xblnr_prefix), "fiscal_year": year,
                               "document": document or ""}
    paid = bill.get("payment_status") == "PAID" or bill.get("status") == "PAID"
    if paid and paid_action != "none":
        pay = bill.get("payment") or {}
        trace = (pay.get("trace_id") or {}).get("trace_id") if isinstance(pay.get("trace_id"), dict) else None
        payload.update(action=paid_action if paid_action in ("clear", "unblock") else "clear",
                       payment_id=str(pay.get("id") or ""),
                       payment_date=_date(pay.get("effective_date") or pay.get("payment_date") or bill.get("paid_at")),
                       reference=str(trace or pay.get("id") or key)[:16],
                       text=f"Ramp payment {pay.get('id') or key}"[:50], bank_account=bank_account)
    elif bill.get("approval_status") == "REJECTED" and rejected_action != "none":
        payload.update(action=rejected_action if rejected_action in ("block", "reverse") else "block",
                       block_key=block_key[:1] or "A",
                       posting_date=_date(bill.get("rejected_at") or bill.get("updated_at")) or "",
                       reason=str(bill.get("rejection_reason") or "")[:100])
        if payload["action"] == "reverse" and not payload["posting_date"]:
            payload["posting_date"] = datetime.now(UTC).strftime("%Y-%m-%d")
    else:
        payload.update(action="none")
    return Desired(key, payload)


# --------------------------------------------------------------------------- wiring


# Read by the configuration loader (without importing this module) to check a flow's `streams`.
STREAMS = ("vendors", "gl_accounts", "cost_centers", "bills", "bill_status", "company_codes", "plants",
           "departments")


def token_missing(exc: Exception) -> bool:
    """A report to Ramp could not be sent for want of a token: the token endpoint failed or refused,
    or Ramp refused the token again after a refresh (401). Unlike a bill source (systems/ramp/sources.py
    `no_token`), a refused credential waits here too: SAP is written already, and the next run's read
    fails at once on the refused credential, which tells the operator."""
    return isinstance(exc, OAuthError) or (isinstance(exc, RampApiError) and exc.status == 401)


def no_token_yet(done: Outcome, what: str, exc: Exception) -> Outcome:
    """The SAP side is done and recorded (`done.target_id`); the report to Ramp waits for a token: the
    entry waits, the run ends `waiting`, and the next run reports it (SAP is looked up, not written)."""
    return replace(done, state="waiting",
                   error=f"{what}; the report to Ramp waits for a Ramp token: {exc}")


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
    match_billpay_vendors: bool = True
    match_accounting_vendors: bool = True
    validate_master_data: bool = True
    cost_center_dimensions: list[Text] = Field(default_factory=list)
    closed_period: Literal["park", "next_open"] = "park"
    edited_after_posting: Literal["review", "repost"] = "review"
    po_tolerance_percent: float = Field(default=0.0, ge=0, le=100,
                                        description="how far a PO bill may exceed the PO item's net value")
    paid_action: Literal["clear", "unblock", "none"] = "clear"
    rejected_action: Literal["block", "reverse", "none"] = "block"
    rejected_block_key: Text = Field(default="A", min_length=1, max_length=1)
    payment_bank_account: Text = ""
    company_code_field_id: Text = "SAP_COMPANY_CODE"
    company_code_field_name: Text = "Company Code"
    plant_field_id: Text = "SAP_PLANT"
    plant_field_name: Text = "Plant"
    department_field_id: Text = "SAP_DEPARTMENT"
    department_field_name: Text = "Department"


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
        company_codes = [str(c) for c in opts.company_codes]
        page_size = int(opts.page_size)
        language = str(opts.language)
        deactivate_blocked = bool(opts.deactivate_blocked)
        overrides = dict(opts.gl_classification or {})
        revenue_prefixes = tuple(str(p) for p in opts.revenue_prefixes)
        cc_field_id = str(opts.cost_center_field_id)
        xblnr_prefix = str(opts.xblnr_prefix)
        doc_type = str(opts.document_type)

        def mapped(ctx: RunContext) -> Mapped:
            # Each value read once per step (a page's records share the context), not once per record.
            memo: dict[tuple[str, str], str | None] = ctx.cache.setdefault("mapped", {})

            def get(table: str, value: str) -> str | None:
                if (table, value) not in memo:
                    with ctx.runtime.db.read() as s:  # committed state; takes no write lock
                        memo[(table, value)] = mapping.get(s, ctx.flow, table, value)
                return memo[(table, value)]
            return get

        def vendor_choices(ctx: RunContext) -> dict[str, str]:
            # The operators' vendor matches (a few, set for ambiguous vendors): read whole once per page.
            choices: dict[str, str] | None = ctx.cache.get("vendor_matches")
            if choices is None:
                with ctx.runtime.db.read() as s:
                    choices = ctx.cache["vendor_matches"] = mapping.table(s, ctx.flow, "vendor_matches")
            return choices

        def accounting_choices(ctx: RunContext) -> dict[str, str]:
            # The operators' accounting vendor matches (a few): read whole once per page, not per record.
            choices: dict[str, str] | None = ctx.cache.get("accounting_vendor_matches")
            if choices is None:
                with ctx.runtime.db.read() as s:
                    choices = ctx.cache["accounting_vendor_matches"] = mapping.table(
                        s, ctx.flow, "accounting_vendor_matches")
            return choices

        match_vendors = bool(opts.match_billpay_vendors)
        billpay: dict[str, BillPayIndex] = {}

        def billpay_vendors(ctx: RunContext) -> BillPayIndex:
            # Ramp's Bill Pay vendors, listed once per run (a run reads them before any create).
            index = billpay.get(ctx.run_id)
            if index is None:
                billpay.clear()
                try:
                    index = BillPayIndex(list(ctx.runtime.connection(ramp).iter_billpay_vendors()))
                except RampError as exc:  # e.g. 403 without vendors:read: upload without matching
                    log.warning("vendor matching off for this run: listing Ramp's vendors failed: %s", exc)
                    index = BillPayIndex([])
                billpay[ctx.run_id] = index
            return index

        match_accounting = bool(opts.match_accounting_vendors)
        accounting: dict[str, tuple[set[str], list[dict[str, Any]], AccountingVendorIndex]] = {}

        def accounting_vendors(ctx: RunContext) -> tuple[set[str], list[dict[str, Any]], AccountingVendorIndex]:
            # Ramp's accounting vendors that are not this flow's, listed once per run (before any create),
            # and the remote ids this flow holds (its ledger): those are never "another" vendor.
            held = accounting.get(ctx.run_id)
            if held is None:
                accounting.clear()
                with ctx.runtime.db.read() as s:
                    ours = set(s.scalars(select(RecordRow.source_key).where(
                        RecordRow.flow == ctx.flow, RecordRow.stream == ctx.stream)))
                try:
                    every = list(ctx.runtime.connection(ramp).iter_accounting_vendors(is_active=True))
                except RampError as exc:
                    log.warning("accounting vendor matching off for this run: listing them failed: %s", exc)
                    every = []
                # An SAP number in internal format (10 digits) is what this flow uploads: another SAP
                # vendor's record (e.g. after the ledger was lost), never "the same vendor elsewhere".
                listed = [v for v in every if str(v.get("id")) not in ours
                          and not (len(str(v.get("id"))) == 10 and str(v.get("id")).isdigit())]
                held = accounting[ctx.run_id] = ({str(v.get("id")) for v in every}, listed,
                                                 AccountingVendorIndex(listed))
            return held

        def adopt_accounting(ctx: RunContext, key: str, rec: dict[str, Any], d: Desired,
                             probe: dict[str, Any] | None = None) -> Desired | Parked:
            remote, listed, index = accounting_vendors(ctx)
            if key in remote or key.lstrip("0") in remote:
                return d  # Ramp holds it under its own SAP number: the normal upsert
            chosen = accounting_choices(ctx).get(key)
            if chosen:
                found = None if chosen == "none" else chosen
            else:
                found, ambiguous = index.match(key, rec, probe)
                if ambiguous:
                    return Parked(key, mapping.waits_for("accounting_vendor_matches", key), payload=rec,
                                  reason=f"Ramp already has {len(ambiguous)} accounting vendors like this one "
                                         f"(ramp_id {', '.join(ambiguous[:5])}): set the one it is, or `none` "
                                         "to create a new one")
            if not found:
                return d
            other = next((str(v.get("id")) for v in listed if str(v.get("ramp_id")) == found), "")
            return Desired(key, {**d.payload, "ramp_id": found, "matched_remote_id": other}, active=d.active)

        def map_vendor(ctx: RunContext, key: str, rec: dict[str, Any]) -> Desired | Parked:
            d = vendor_to_ramp(key, rec, deactivate_blocked=deactivate_blocked)
            if not d.active:
                return d
            probe: dict[str, Any] = {}  # the record's tax ids and name, worked out once for both indexes
            if match_accounting:
                m: Desired | Parked = d
                listed = accounting.get(ctx.run_id)
                if listed is not None:
                    # Ramp's accounting vendors are listed for this run, so matching is pure: it goes first,
                    # and the ledger is asked only when the match would change the record (a vendor this
                    # flow posted keeps `d`). Same answer; most pages need no ledger query at all. With
                    # nothing to match and no operator's choice for it, adopt_accounting would answer `d`.
                    if not listed[2].empty or accounting_choices(ctx).get(key):
                        m = adopt_accounting(ctx, key, rec, d, probe)
                        if m is not d and posted_vendor(ctx, key):
                            m = d
                elif not posted_vendor(ctx, key):  # the run's first vendor not posted yet lists them
                    m = adopt_accounting(ctx, key, rec, d, probe)
                if isinstance(m, Parked) or not match_vendors:
                    return m
                d = m
            if not match_vendors:
                return d
            chosen = vendor_choices(ctx).get(key)
            if chosen:
                link = None if chosen == "none" else chosen
            else:
                link, ambiguous = billpay_vendors(ctx).match(key, rec, probe)
                if ambiguous:
                    return Parked(key, mapping.waits_for("vendor_matches", key), payload=rec)
            return Desired(key, {**d.payload, "billpay_vendor_id": link}, active=d.active) if link else d

        def posted_vendor(ctx: RunContext, key: str) -> bool:
            # Already in Ramp through this flow (the ledger knows it): no matching needed again. A page's
            # keys are looked up in one query (a session per record was a third of a full sync's CPU).
            page_keys = ctx.page_keys
            if key in page_keys:
                held = ctx.cache.get("posted_vendors")
                if held is None or held[0] is not page_keys:
                    with ctx.runtime.db.read() as s:
                        held = (page_keys, ledger.target_ids(s, ctx.flow, ctx.stream, page_keys))
                    ctx.cache["posted_vendors"] = held
                return key in held[1]
            with ctx.runtime.db.read() as s:
                row = s.get(RecordRow, (ctx.flow, ctx.stream, key))
                return row is not None and bool(row.target_id)

        vendors = Stream(
            "vendors",
            VendorSource(self.cfg.source, company_codes=company_codes, page_size=page_size,
                         overlap_seconds=float(opts.overlap_seconds)),
            map_vendor,
            AccountingVendorsTarget(self.cfg.target,
                                    send_code_on_upload=bool(opts.vendor_code_on_upload)),
            mapping_tables=("vendor_matches", "accounting_vendor_matches"))
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
                               field_name=str(opts.cost_center_field_name)))
        validate = bool(opts.validate_master_data)
        dimension_fields = tuple(str(f) for f in opts.cost_center_dimensions or [])
        closed_period = str(opts.closed_period)
        if closed_period not in CLOSED_PERIOD_POLICIES:
            raise ValueError(f"flow {self.name}: options.closed_period must be one of "
                             f"{', '.join(CLOSED_PERIOD_POLICIES)}")
        checks: dict[str, MasterDataCheck] = {}

        def check(ctx: RunContext) -> MasterDataCheck:
            # One per run: a record created in SAP since is seen by the next run (parked bills are
            # mapped again at the start of every run, so they post by themselves).
            if ctx.run_id not in checks:
                checks.clear()
                checks[ctx.run_id] = MasterDataCheck(ctx.runtime.connection(sap))
            return checks[ctx.run_id]

        po_checks: dict[str, PurchaseOrderCheck] = {}
        po_tolerance = Decimal(str(opts.po_tolerance_percent)) / 100
        ramp_pos: dict[tuple[str, str], dict[str, Any]] = {}  # one read per PO and run (posted bills compared)

        def map_po_bill(ctx: RunContext, key: str, rec: dict[str, Any], ids: list[str], *,
                        check_sap: bool = True) -> Desired | Parked:
            # A bill that references a purchase order: an MM invoice against the PO's items.
            from ml_connector.flows._sap_ecc_ramp_po import po_bill_to_invoice, validated_po_bill

            pos: dict[str, dict[str, Any]] = {}
            for po_id in ids:
                if len(ramp_pos) > 10_000 or any(run != ctx.run_id for run, _ in list(ramp_pos)[:1]):
                    ramp_pos.clear()
                try:
                    if (ctx.run_id, po_id) not in ramp_pos:
                        ramp_pos[(ctx.run_id, po_id)] = ctx.runtime.connection(ramp).get_purchase_order(po_id)
                    pos[po_id] = ramp_pos[(ctx.run_id, po_id)]
                except RampError as exc:
                    return Parked(key, mapping.waits_for("purchase_orders", po_id), payload=rec,
                                  reason=f"reading the bill's purchase order {po_id} from Ramp failed "
                                         f"(needs purchase_orders:read): {exc}")
            m = po_bill_to_invoice(key, rec, pos, mapped=mapped(ctx), xblnr_prefix=xblnr_prefix)
            if not validate or not check_sap:
                return m
            if ctx.run_id not in po_checks:
                po_checks.clear()
                po_checks[ctx.run_id] = PurchaseOrderCheck(ctx.runtime.connection(sap))
            return validated_po_bill(m, rec, check(ctx), po_checks[ctx.run_id], closed_period=closed_period,
                                     tolerance=po_tolerance)

        def plain_bill(ctx: RunContext, key: str, rec: dict[str, Any]) -> Desired | Parked:
            from ml_connector.flows._sap_ecc_ramp_po import po_ids

            if po_ids(rec):  # an MM invoice, compared with what was posted before SAP is asked
                return map_po_bill(ctx, key, rec, po_ids(rec), check_sap=False)
            return bill_to_invoice(key, rec, mapped=mapped(ctx), cost_center_field_id=cc_field_id,
                                   xblnr_prefix=xblnr_prefix, dimension_fields=dimension_fields)

        def map_bill(ctx: RunContext, key: str, rec: dict[str, Any]) -> Desired | Parked:
            from ml_connector.flows._sap_ecc_ramp_po import po_ids

            ids = po_ids(rec)
            if ids:
                return map_po_bill(ctx, key, rec, ids)
            m = plain_bill(ctx, key, rec)
            return validated_bill(m, rec, check(ctx), closed_period=closed_period) if validate else m

        # A bill edited after it was posted: reversed and reposted, or parked for review.
        edits = EditedBills(str(opts.edited_after_posting), stream="bills", plain=plain_bill, validated=map_bill,
                            mapped=lambda ctx, table, value: mapped(ctx)(table, value))

        def map_bills(ctx: RunContext, key: str, rec: dict[str, Any]) -> Desired | Parked:
            if is_reversal(key):
                return Desired(key, rec)
            # FI and MM invoices alike (an MM invoice is reversed in MM: InvoiceStatusTarget, MR8M).
            return edits.decide(ctx, key, rec)

        bills = Stream(
            "bills",
            BillsWithEdits(ApprovedBillsSource(ramp, page_size=int(opts.bill_page_size),
                                               entity_id=opts.entity_id, posted=True), edits),
            map_bills,
            BillsTarget(VendorInvoiceTarget(sap, lambda p: invoice_of(p, doc_type=doc_type),
                                            after_post=self._report_posted(ramp),
                                            after_refusal=self._report_refused(ramp),
                                            refusal_note=" (reported to Ramp)",
                                            posted_note=": only the Ramp report would be sent"),
                        InvoiceStatusTarget(sap)),
            mapping_tables=("entities", "vendors", "cost_center_dimensions", "po_items", EDITS_TABLE),
            describe=describe_bill)
        paid_action = str(opts.paid_action)
        rejected_action = str(opts.rejected_action)
        if paid_action not in PAID_ACTIONS or rejected_action not in REJECTED_ACTIONS:
            raise ValueError(f"flow {self.name}: options.paid_action must be one of {', '.join(PAID_ACTIONS)} and "
                             f"options.rejected_action one of {', '.join(REJECTED_ACTIONS)}")
        block_key = str(opts.rejected_block_key)
        bank_account = str(opts.payment_bank_account)

        def posted_document(ctx: RunContext, key: str) -> str | None:
            with ctx.runtime.db.read() as s:
                row = ledger.lookup(s, ctx.flow, "bills", [key]).get(key)
                return row.target_id if row is not None and row.target_id else None

        passes = tuple(p for p, action in zip(BillStatusSource.PASSES, (paid_action, rejected_action), strict=True)
                       if action != "none")
        bill_status = Stream(
            "bill_status",
            BillStatusSource(ramp, page_size=int(opts.bill_page_size), entity_id=opts.entity_id,
                             passes=passes),
            lambda ctx, key, rec: bill_status_to_sap(key, rec, mapped=mapped(ctx), document=posted_document(ctx, key),
                                                     paid_action=paid_action, rejected_action=rejected_action,
                                                     block_key=block_key, xblnr_prefix=xblnr_prefix,
                                                     bank_account=bank_account),
            InvoiceStatusTarget(sap, after_status=self._report_paid(ramp)),
            mapping_tables=("entities",))
        company_codes_stream = Stream(
            "company_codes", CompanyCodeSource(sap, company_codes=company_codes, page_size=page_size),
            lambda ctx, key, rec: company_code_to_option(key, rec),
            FieldOptionsTarget(ramp, field_id=str(opts.company_code_field_id),
                               kind="company code", field_name=str(opts.company_code_field_name)))
        plants = Stream(
            "plants", PlantSource(sap, company_codes=company_codes, page_size=page_size),
            lambda ctx, key, rec: plant_to_option(key, rec),
            FieldOptionsTarget(ramp, field_id=str(opts.plant_field_id), kind="plant",
                               field_name=str(opts.plant_field_name)))
        departments = Stream(
            "departments", DepartmentSource(sap, company_codes=company_codes, page_size=page_size,
                                            controlling_areas=list(opts.controlling_areas or company_codes)),
            lambda ctx, key, rec: department_to_option(key, rec),
            FieldOptionsTarget(ramp, field_id=str(opts.department_field_id), kind="department",
                               field_name=str(opts.department_field_name)))
        streams = {s.name: s for s in (vendors, gl_accounts, cost_centers, bills, bill_status,
                                       company_codes_stream, plants, departments)}
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
        failed while that report fails (replay re-sends the report only: the document is found),
        and waits while no Ramp token can be had (the next run reports it: `no_token_yet`)."""
        def after(ctx: RunContext, e: Entry, posted: Outcome) -> Outcome:
            p = e.payload
            doc = str(posted.target_id)
            try:
                sync = AccountingSyncs(ctx.runtime.connection(ramp)).synced(p["bill_id"], doc)
            except (OAuthError, RampError) as exc:
                if token_missing(exc):
                    return no_token_yet(posted, f"posted in SAP as {doc} (XBLNR {p['xblnr']})", exc)
                if isinstance(exc, RampApiError) and p.get("replaces") and 400 <= exc.status < 500 \
                        and exc.status != 429:
                    # A repost of a bill Ramp keeps synced (an edit did not make it ready again): Ramp refuses a
                    # second report and keeps the first document's reference; the SAP side is complete.
                    return replace(posted, response={**(posted.response or {}), "ramp_report": f"refused: {exc}"})
                return Outcome(e.id, "failed", request=p,
                               error=f"posted in SAP as {doc} (XBLNR {p['xblnr']}), but the report to Ramp "
                                     f"failed: {exc}; replay re-sends the report only")
            return replace(posted, response={**(posted.response or {}), "sync_id": sync.get("sync_id")})
        return after

    @staticmethod
    def _report_paid(ramp: str) -> Callable[[RunContext, Entry, Outcome], Outcome]:
        """A payment cleared in SAP is reported to Ramp as BILL_PAYMENT_SYNC (reference: the clearing
        document); the entry fails while the report fails (replay finds the clearing and re-sends it),
        and waits while no Ramp token can be had (the next run finds the clearing and reports it)."""
        def after(ctx: RunContext, e: Entry, done: Outcome) -> Outcome:
            p = e.payload
            if p.get("action") not in ("clear", "unblock"):
                return done
            try:
                sync = AccountingSyncs(ctx.runtime.connection(ramp), "BILL_PAYMENT_SYNC").synced(
                    p["bill_id"], str(done.target_id))
            except (OAuthError, RampError) as exc:
                if token_missing(exc):
                    return no_token_yet(done, f"payment applied in SAP ({done.target_id})", exc)
                return Outcome(e.id, "failed", request=p,
                               error=f"payment applied in SAP ({done.target_id}), but the report to Ramp failed: "
                                     f"{exc}; replay finds it in SAP and re-sends the report only")
            return replace(done, response={**(done.response or {}), "sync_id": sync.get("sync_id")})
        return after

    @staticmethod
    def _report_refused(ramp: str) -> Callable[[RunContext, Entry, str], str]:
        """A bill SAP will not take is reported to Ramp as failed (users see the message there)."""
        def after(ctx: RunContext, e: Entry, message: str) -> str:
            try:
                AccountingSyncs(ctx.runtime.connection(ramp)).failed(e.payload["bill_id"], message)
                return ""
            except (OAuthError, RampError) as exc:  # no token either: the failure stands, replay reports it
                log.warning("reporting the failure of bill %s to Ramp failed: %s", e.payload["bill_id"], exc)
                return f" (reporting it to Ramp failed too: {exc})"
        return after


FLOW = SapEccRampFlow
