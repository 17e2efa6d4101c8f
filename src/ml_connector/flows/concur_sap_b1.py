"""SAP Concur → SAP Business One: approved expense reports and payment requests become balanced
journal entries (docs/concur.md).

Reading Concur is `systems/concur/sources.py`, writing Business One `systems/sap_b1/targets.py`;
this module holds the pure mapping functions and the wiring.

- `expense_reports`: an approved report in Processing Payment → one journal entry: a debit line per
  entry allocation (its account, its cost-centre fields as CostingCode..CostingCode5) and a credit
  line per vendor (ShortName = the BusinessPartner's CardCode).
- `payment_requests`: an approved payment request → one journal entry: a debit line per line-item
  allocation, a line each for its shipping and tax amounts (on the `shipping_account` and
  `tax_account` options' accounts, through the `accounts` table), one credit line for the vendor.

Vendors are matched by tax id, then the `vendors` mapping table, then the normalised name; a
second candidate is never guessed between. Accounts (after the `accounts` table) must be in the
chart of accounts, cost centres (after `cost_centers`) must be distribution rules of their
dimension. A document with a vendor, account or cost centre that does not match is parked for
review with the key it waits for (`ml-connector parked`); setting that mapping posts it, and so
does the next run once Business One has the master record.

The journal entry's reference (`Reference3`) is `concur:<source key>`: looked up before every post
and after any uncertain answer, so a document is posted once.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator

from ml_connector.core import mapping
from ml_connector.core.flow import Flow, Outcome, RunContext, Source, Stream, Summary
from ml_connector.core.ledger import Desired, Parked
from ml_connector.core.outbox import Entry
from ml_connector.core.settings import SettingsModel
from ml_connector.systems.concur.client import ConcurClient, ConcurError
from ml_connector.systems.concur.sources import (
    ApprovedPaymentRequestsSource,
    FisExpenseSource,
    FisInvoiceSource,
    ReadyExpenseReportsSource,
)
from ml_connector.systems.sap_b1.client import ServiceLayerApi
from ml_connector.systems.sap_b1.targets import JournalEntriesTarget

log = logging.getLogger(__name__)

#: A mapping-table lookup: (table, source value) -> target value or None.
Mapped = Callable[[str, str], str | None]

COSTING_FIELDS = ("CostingCode", "CostingCode2", "CostingCode3", "CostingCode4", "CostingCode5")
CENT = Decimal("0.01")
#: Legal-form words left out when names are compared ("Delta Air Lines, Inc." = "DELTA AIR LINES").
_LEGAL_FORMS = frozenset({"inc", "incorporated", "llc", "ltd", "limited", "corp", "corporation", "co", "company",
                          "gmbh", "ag", "sa", "sarl", "bv", "plc", "lp", "llp", "the"})


def normalise_name(name: str) -> str:
    """Lower case, accents and punctuation dropped, legal forms and 'the' dropped, spaces collapsed."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii").lower()
    text = text.replace("&", " and ")
    words = [w for w in re.split(r"[^a-z0-9]+", text) if w and w not in _LEGAL_FORMS]
    return " ".join(words)


def normalise_tax_id(tax_id: str) -> str:
    return re.sub(r"[^0-9A-Za-z]", "", tax_id).upper()


@dataclass(frozen=True)
class MasterData:
    """What Business One holds that the mapping checks against (read once per run)."""

    accounts: frozenset[str]
    #: dimension (1..5) -> distribution rule codes usable as CostingCode(n) (profit centres' direct rules too)
    dimensions: dict[int, frozenset[str]]
    #: suppliers: CardCode -> (CardName, FederalTaxID)
    vendors: dict[str, tuple[str, str]]
    by_tax: dict[str, tuple[str, ...]] = field(default_factory=dict)
    by_name: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def build(cls, accounts: Iterable[str], rules: Iterable[tuple[int, str]],
              vendors: Iterable[tuple[str, str, str]]) -> MasterData:
        dims: dict[int, set[str]] = {}
        for dim, code in rules:
            dims.setdefault(int(dim), set()).add(code)
        vmap = {code: (name or "", tax or "") for code, name, tax in vendors}
        by_tax: dict[str, list[str]] = {}
        by_name: dict[str, list[str]] = {}
        for code, (name, tax) in sorted(vmap.items()):
            if tax and normalise_tax_id(tax):
                by_tax.setdefault(normalise_tax_id(tax), []).append(code)
            if normalise_name(name):
                by_name.setdefault(normalise_name(name), []).append(code)
        return cls(frozenset(accounts), {d: frozenset(c) for d, c in dims.items()}, vmap,
                   {k: tuple(v) for k, v in by_tax.items()}, {k: tuple(v) for k, v in by_name.items()})


class Options(SettingsModel):
    """The flow's `options` in ml-connector.yaml, validated when the configuration is loaded (a wrong
    type or an unknown key is refused there, with file, line and field)."""

    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=True)

    #: dimension -> the allocation field holding its code ({1: "Custom1"}: cost centre in Custom1)
    dimension_fields: dict[int, str] = Field(default_factory=lambda: {1: "Custom1"})
    local_currency: str = Field(default="USD", min_length=3, max_length=3)
    #: the payment-request field holding the vendor's tax id (company configuration), if any
    payment_request_tax_id_field: str | None = None
    page_size: int | None = Field(default=None, ge=1)
    #: fis: the Financial Integration Service's READY documents (the main path); v3: the v3 report and
    #: payment request APIs, for a company without FIS access
    read_from: Literal["fis", "v3"] = "fis"
    #: the accounts a payment request's tax and shipping amounts post to, each on its own line; looked
    #: up in the `accounts` mapping table first (so `mappings set FLOW accounts TAX 2150` works too),
    #: then checked against the chart of accounts
    tax_account: str = Field(default="TAX", min_length=1)
    shipping_account: str = Field(default="SHIPPING", min_length=1)
    #: acknowledge FIS documents and confirm postings back to Concur (off: nothing is written to Concur)
    confirm_to_concur: bool = False
    system_id: str = Field(default="SAPB1", min_length=1, max_length=50)
    company_id: str = Field(default="B1", min_length=1)

    @field_validator("dimension_fields")
    @classmethod
    def _dimensions(cls, v: dict[int, str]) -> dict[int, str]:
        bad = [d for d in v if not 1 <= d <= 5]
        if bad:
            raise ValueError(f"dimension {bad[0]} is not 1-5 (Business One has CostingCode .. CostingCode5)")
        return v

    @field_validator("local_currency")
    @classmethod
    def _upper(cls, v: str) -> str:
        return v.upper()


class Review(Exception):
    """A document waits for a mapping or master record: `waits_for` (table:value) and why."""

    def __init__(self, waits_for: str, why: str) -> None:
        super().__init__(why)
        self.waits_for = waits_for
        self.why = why


def _code(value: Any) -> str:
    """The code of a Concur list/custom field ({Code, Value, ...}) or a plain value."""
    if isinstance(value, dict):
        return str(value.get("Code") or value.get("Value") or "").strip()
    return str(value or "").strip()


def match_vendor(name: str, *, tax_id: str = "", code: str = "", master: MasterData, mapped: Mapped) -> str:
    """The CardCode of a Concur vendor: by tax id, else the `vendors` mapping (keyed by the Concur
    vendor code, else the name as Concur spells it), else the normalised name. Raises `Review`
    when nothing matches, when a tax id or name matches more than one supplier (never guessed),
    or when a mapping names a CardCode Business One does not have."""
    key = code or name or "-"
    waits = mapping.waits_for("vendors", key)
    if tax_id and normalise_tax_id(tax_id):
        found = master.by_tax.get(normalise_tax_id(tax_id), ())
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise Review(waits, f"vendor {name!r}: tax id {tax_id} belongs to {len(found)} business partners "
                                f"({', '.join(found)}); map it")
    target = mapped("vendors", key) or (mapped("vendors", name) if code and name else None)
    if target:
        if target not in master.vendors:
            raise Review(waits, f"vendor {name!r} is mapped to {target}, which is not a supplier in Business One")
        return target
    found = master.by_name.get(normalise_name(name), ()) if name else ()
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise Review(waits, f"vendor {name!r} matches {len(found)} business partners by name "
                            f"({', '.join(found)}); map it")
    raise Review(waits, f"vendor {name!r} is not a business partner in Business One; map it")


def check_account(code: str, *, master: MasterData, mapped: Mapped, where: str) -> str:
    if not code:
        raise Review(mapping.waits_for("accounts", "-"), f"{where}: no account code")
    account = mapped("accounts", code) or code
    if account not in master.accounts:
        raise Review(mapping.waits_for("accounts", code),
                     f"{where}: account {account} is not in the Business One chart of accounts")
    return account


def costing_codes(allocation: dict[str, Any], *, options: Options, master: MasterData, mapped: Mapped,
                  where: str) -> dict[str, str]:
    """CostingCode..CostingCode5 of one allocation, each checked against its dimension's rules."""
    out: dict[str, str] = {}
    for dim, fname in sorted(options.dimension_fields.items()):
        code = _code(allocation.get(fname))
        if not code:
            continue
        rule = mapped("cost_centers", code) or code
        if rule not in master.dimensions.get(int(dim), frozenset()):
            raise Review(mapping.waits_for("cost_centers", code),
                         f"{where}: cost centre {rule} ({fname}) is not a distribution rule of dimension {dim}")
        out[COSTING_FIELDS[int(dim) - 1]] = rule
    return out


def split(amount: Decimal, percentages: list[Decimal]) -> list[Decimal]:
    """`amount` split by percentages, to the cent; the rounding rest goes to the last share so the
    shares add up to the amount exactly."""
    if not percentages:
        return []
    total_pct = sum(percentages, Decimal(0))
    shares = [(amount * p / total_pct).quantize(CENT, ROUND_HALF_UP) for p in percentages[:-1]]
    return [*shares, amount - sum(shares, Decimal(0))]


def shares_of(amount: Decimal, allocations: list[dict[str, Any]]) -> tuple[Decimal, list[Decimal]]:
    """The amount of each allocation and their total: the allocations' own `Amount` when every one
    has it (a FIS journal's amount, posted as Concur computed it), else `amount` split by
    `Percentage`."""
    if allocations and all(a.get("Amount") not in (None, "") for a in allocations):
        own = [Decimal(str(a["Amount"])).quantize(CENT, ROUND_HALF_UP) for a in allocations]
        return sum(own, Decimal(0)), own
    return amount, split(amount, [Decimal(str(a.get("Percentage") or 0)) for a in allocations])


def _amount_fields(side: str, amount: Decimal, currency: str, options: Options) -> dict[str, Any]:
    """Debit/Credit in local currency; a foreign-currency document gives FCCurrency and FCDebit/FCCredit,
    and Business One converts at its own rate of the posting date."""
    if currency == options.local_currency:
        return {side: float(amount)}
    return {"FCCurrency": currency, f"FC{side}": float(amount)}


def _balanced(debits: list[dict[str, Any]], credits: list[dict[str, Any]], total: Decimal,
              problems: list[str]) -> list[dict[str, Any]]:
    if not debits:
        problems.append("the document has no lines to post")
    return [*debits, *credits]


def report_to_journal_entry(key: str, report: dict[str, Any], *, master: MasterData, mapped: Mapped,
                            options: Options) -> Desired | Parked:
    """An approved Concur expense report (with `Entries[].Allocations`) → the journal entry to post,
    or `Parked` on the first vendor / account / cost centre that does not match."""
    currency = str(report.get("CurrencyCode") or options.local_currency).upper()
    problems: list[str] = []
    debits: list[dict[str, Any]] = []
    per_vendor: dict[str, Decimal] = {}
    vendor_names: dict[str, str] = {}
    total = Decimal(0)
    try:
        for n, e in enumerate(report.get("Entries") or [], start=1):
            where = f"report {report.get('ID')} entry {n} ({e.get('ID')})"
            if e.get("IsPersonal"):
                continue  # the employee's own money: not a company expense
            amount = Decimal(str(e.get("PostedAmount") if e.get("PostedAmount") is not None
                                 else e.get("ApprovedAmount") or 0)).quantize(CENT, ROUND_HALF_UP)
            vendor = str(e.get("VendorDescription") or e.get("VendorListItemName") or "").strip()
            card = match_vendor(vendor, code=str(e.get("VendorListItemID") or ""), master=master, mapped=mapped)
            allocs = [a for a in (e.get("Allocations") or [])]
            if not allocs:
                problems.append(f"{where}: no allocation (no account to post to)")
                continue
            amount, shares = shares_of(amount, allocs)
            for m, (a, share) in enumerate(zip(allocs, shares, strict=True), start=1):
                here = f"{where} allocation {m}"
                account = check_account(str(a.get("AccountCode1") or "").strip(), master=master, mapped=mapped,
                                        where=here)
                line = {"AccountCode": account, **_amount_fields("Debit", share, currency, options),
                        **costing_codes(a, options=options, master=master, mapped=mapped, where=here),
                        "LineMemo": f"{e.get('ExpenseTypeName') or e.get('ExpenseTypeCode')} {vendor}"[:50],
                        "Reference1": str(e.get("ID") or "")[:100],
                        "ReferenceDate1": str(e.get("TransactionDate") or "")[:10] or None}
                debits.append({k: v for k, v in line.items() if v is not None})
            per_vendor[card] = per_vendor.get(card, Decimal(0)) + amount
            vendor_names.setdefault(card, vendor)
            total += amount
    except Review as r:
        log.warning("expense report %s waits for review (%s): %s", key, r.waits_for, r.why)
        return Parked(key, r.waits_for, payload=report, reason=r.why)
    credits = [{"ShortName": card, **_amount_fields("Credit", amt, currency, options),
                "LineMemo": f"Concur {vendor_names[card]}"[:50]} for card, amt in per_vendor.items()]
    day = str(report.get("ProcessingPaymentDate") or report.get("SubmitDate") or "")[:10]
    entry = {"ReferenceDate": day, "TaxDate": day, "DueDate": day,
             "Memo": f"Concur {report.get('Name') or report.get('ID')}"[:50],
             "Reference": str(report.get("ID") or "")[:100], "Reference2": str(report.get("OwnerLoginID") or "")[:100],
             "JournalEntryLines": _balanced(debits, credits, total, problems)}
    return Desired(key, {"external_id": f"concur:{key}", "source": "expense report",
                         "source_id": str(report.get("ID") or ""), "currency": currency,
                         "total": str(total), "entry": entry, "problems": problems})


def _line_items(pr: dict[str, Any]) -> list[dict[str, Any]]:
    items = pr.get("LineItems") or []
    if isinstance(items, dict):  # the v3 GET wraps them: {"LineItem": [...]}
        items = items.get("LineItem") or []
    return list(items)


def _allocations(li: dict[str, Any]) -> list[dict[str, Any]]:
    allocs = li.get("Allocations") or []
    if isinstance(allocs, dict):
        allocs = allocs.get("Allocation") or []
    return list(allocs)


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)).quantize(CENT, ROUND_HALF_UP)
    except (ArithmeticError, ValueError):
        return None


def header_amount_line(pr: dict[str, Any], fname: str, account_code: str, label: str, *, currency: str,
                       master: MasterData, mapped: Mapped, options: Options,
                       problems: list[str]) -> tuple[dict[str, Any], Decimal] | None:
    """The journal line of a payment request's header amount (`ShippingAmount`, `TaxAmount`) on its
    own account, with the amount: a debit, or a credit when the amount is negative (a refund); None
    when it is zero.
    Raises `Review` when the account is not in the chart of accounts (after the `accounts` table)."""
    raw = pr.get(fname)
    amount = _decimal(raw if raw not in (None, "") else 0)
    where = f"payment request {pr.get('ID')} {label}"
    if amount is None:
        problems.append(f"{where}: {fname} {raw!r} is not an amount")
        return None
    if amount == 0:
        return None
    account = check_account(account_code, master=master, mapped=mapped, where=f"{where} ({fname} {amount})")
    side = "Debit" if amount > 0 else "Credit"
    return ({"AccountCode": account, **_amount_fields(side, abs(amount), currency, options),
             "LineMemo": f"{label.capitalize()} {pr.get('InvoiceNumber') or pr.get('ID')}"[:50]}, amount)


def payment_request_to_journal_entry(key: str, pr: dict[str, Any], *, master: MasterData, mapped: Mapped,
                                     options: Options) -> Desired | Parked:
    """An approved Concur payment request → the journal entry to post (debit per line allocation,
    credit the vendor), or `Parked` on what does not match."""
    currency = str(pr.get("CurrencyCode") or options.local_currency).upper()
    problems: list[str] = []
    debits: list[dict[str, Any]] = []
    total = Decimal(0)
    vendor = str((pr.get("VendorRemitAddress") or {}).get("Name") or "").strip()
    code = str((pr.get("VendorRemitToIdentifier") or {}).get("VendorCode") or "").strip()
    tax = _code(pr.get(options.payment_request_tax_id_field)) if options.payment_request_tax_id_field else ""
    try:
        card = match_vendor(vendor, tax_id=tax, code=code, master=master, mapped=mapped)
        for n, li in enumerate(_line_items(pr), start=1):
            where = f"payment request {pr.get('ID')} line {n}"
            amount = Decimal(str(li.get("ApprovedLineItemAmount") or li.get("TotalPrice") or 0)).quantize(CENT)
            allocs = _allocations(li)
            if not allocs:
                problems.append(f"{where}: no allocation (no account to post to)")
                continue
            amount, shares = shares_of(amount, allocs)
            for m, (a, share) in enumerate(zip(allocs, shares, strict=True), start=1):
                here = f"{where} allocation {m}"
                account = check_account(str(a.get("AllocationAccountCode") or "").strip(), master=master,
                                        mapped=mapped, where=here)
                debits.append({"AccountCode": account, **_amount_fields("Debit", share, currency, options),
                               **costing_codes(a, options=options, master=master, mapped=mapped, where=here),
                               "LineMemo": str(li.get("Description") or li.get("ExpenseTypeCode") or "")[:50],
                               "Reference1": str(li.get("LineItemId") or "")[:100]})
            total += amount
        for fname, account_code, label in (("ShippingAmount", options.shipping_account, "shipping"),
                                            ("TaxAmount", options.tax_account, "tax")):
            got = header_amount_line(pr, fname, account_code, label, currency=currency, master=master,
                                     mapped=mapped, options=options, problems=problems)
            if got is not None:
                debits.append(got[0])
                total += got[1]
    except Review as r:
        log.warning("payment request %s waits for review (%s): %s", key, r.waits_for, r.why)
        return Parked(key, r.waits_for, payload=pr, reason=r.why)
    calculated = pr.get("CalculatedAmount")
    if calculated not in (None, "") and _decimal(calculated) is not None and _decimal(calculated) != total:
        problems.append(f"payment request {pr.get('ID')}: lines + shipping + tax = {total}, but its "
                        f"CalculatedAmount is {calculated}")
    credits = [{"ShortName": card, **_amount_fields("Credit", total, currency, options),
                "LineMemo": f"Concur {pr.get('InvoiceNumber') or ''} {vendor}"[:50]}]
    day = str(pr.get("InvoiceDate") or "")[:10]
    entry = {"ReferenceDate": day, "TaxDate": day, "DueDate": str(pr.get("PaymentDueDate") or day)[:10],
             "Memo": f"Concur invoice {pr.get('InvoiceNumber') or pr.get('ID')}"[:50],
             "Reference": str(pr.get("InvoiceNumber") or "")[:100], "Reference2": vendor[:100],
             "JournalEntryLines": _balanced(debits, credits, total, problems)}
    return Desired(key, {"external_id": f"concur:{key}", "source": "payment request",
                         "source_id": str(pr.get("ID") or ""), "currency": currency,
                         "total": str(total), "entry": entry, "problems": problems})


def summarize(stream: str, record: dict[str, Any]) -> Summary | None:
    """A parked expense report or payment request as a finance reviewer knows it."""
    currency = str(record.get("CurrencyCode") or "")
    if stream == "expense_reports":
        vendors = sorted({str(e.get("VendorDescription") or e.get("VendorListItemName") or "").strip()
                          for e in record.get("Entries") or [] if not e.get("IsPersonal")} - {""})
        owner = str(record.get("OwnerName") or record.get("OwnerLoginID") or "")
        return Summary(document=f"expense report {record.get('Name') or ''!r} ({record.get('ID')}) of {owner}",
                       party=", ".join(vendors), amount=f"{record.get('Total') or ''} {currency}".strip())
    if stream == "payment_requests":
        amount = record.get("InvoiceAmount") or record.get("TotalApprovedAmount") or ""
        return Summary(document=f"invoice {record.get('InvoiceNumber') or ''} (payment request {record.get('ID')})",
                       party=str((record.get("VendorRemitAddress") or {}).get("Name") or ""),
                       amount=f"{amount} {currency}".strip())
    return None


def describe_entry(op: str, p: dict[str, Any]) -> str:
    lines = p["entry"]["JournalEntryLines"]
    parts = [f"{ln.get('AccountCode') or ln.get('ShortName')} "
             f"{'Dr' if ln.get('Debit') or ln.get('FCDebit') else 'Cr'} "
             f"{ln.get('Debit') or ln.get('FCDebit') or ln.get('Credit') or ln.get('FCCredit')}"
             + (f" {ln['CostingCode']}" if ln.get("CostingCode") else "") for ln in lines]
    return (f"post B1 journal entry {p['external_id']} ({p['source']}, {p['total']} {p['currency']}): "
            + ", ".join(parts))


# --------------------------------------------------------------------------- master data


def load_master_data(b1: ServiceLayerApi) -> MasterData:
    """The chart of accounts, the distribution rules and profit centres, and the suppliers."""
    size = 1000
    accounts = [r["Code"] for r in b1.get_all("ChartOfAccounts", {"$select": "Code,ActiveAccount"}, page_size=size)
                if r.get("ActiveAccount") in (None, "tYES")]
    rules = [(int(r["InWhichDimension"]), str(r["CenterCode"]))
             for r in b1.get_all("ProfitCenters", {"$select": "CenterCode,InWhichDimension,Active"}, page_size=size)
             if r.get("Active") in (None, "tYES") and r.get("InWhichDimension")]
    rules += [(int(r["InWhichDimension"]), str(r["FactorCode"]))
              for r in b1.get_all("DistributionRules", {"$select": "FactorCode,InWhichDimension,Active"},
                                  page_size=size)
              if r.get("Active") in (None, "tYES") and r.get("InWhichDimension")]
    vendors = [(str(r["CardCode"]), str(r.get("CardName") or ""), str(r.get("FederalTaxID") or ""))
               for r in b1.get_all("BusinessPartners", {"$select": "CardCode,CardName,FederalTaxID,Valid,Frozen",
                                                        "$filter": "CardType eq 'cSupplier'"}, page_size=size)
               if r.get("Valid") != "tNO" and r.get("Frozen") != "tYES"]
    return MasterData.build(accounts, rules, vendors)


# --------------------------------------------------------------------------- wiring

# Read by the configuration loader (without importing this module) to check a flow's `streams`.
STREAMS = ("expense_reports", "payment_requests")


class ConcurSapB1Flow(Flow):
    pair = "concur_sap_b1"
    #: Master data read once per run and kept this long (a mapping set later re-reads it).
    MASTER_TTL = 30.0

    def streams(self) -> dict[str, Stream]:
        if not hasattr(self, "_streams"):
            self._streams: dict[str, Stream] = self._build()
        return self._streams

    def _options(self) -> Options:
        return Options.model_validate(dict(getattr(self.cfg, "options", {}) or {}))

    def _master(self, ctx: RunContext) -> MasterData:
        if not hasattr(self, "_cache"):
            self._cache: tuple[str, float, MasterData] | None = None
            self._cache_lock = threading.Lock()
        with self._cache_lock:
            c = self._cache
            if c is not None and c[0] == ctx.run_id and time.monotonic() - c[1] < self.MASTER_TTL:
                return c[2]
            md = load_master_data(ctx.runtime.connection(self.cfg.target))
            self._cache = (ctx.run_id, time.monotonic(), md)
            return md

    def _build(self) -> dict[str, Stream]:
        options = self._options()
        concur, b1 = self.cfg.source, self.cfg.target
        page_size = options.page_size

        def mapped(ctx: RunContext) -> Mapped:
            def get(table: str, value: str) -> str | None:
                with ctx.runtime.db.read() as s:  # committed state; takes no write lock
                    return mapping.get(s, ctx.flow, table, value)
            return get

        after_post = self._confirm(concur, options) if options.confirm_to_concur else None
        tax_field = options.payment_request_tax_id_field
        if options.read_from == "fis":
            # No `systemId` on the list: whether FIS filters READY documents by it is undocumented.
            report_source: Source = FisExpenseSource(concur, page_size=page_size)
            invoice_source: Source = FisInvoiceSource(concur, page_size=page_size,
                                                      v3_fields=(tax_field,) if tax_field else ())
        else:
            report_source = ReadyExpenseReportsSource(concur, page_size=page_size)
            invoice_source = ApprovedPaymentRequestsSource(concur, page_size=page_size)
        reports = Stream(
            "expense_reports", report_source,
            lambda ctx, key, rec: report_to_journal_entry(key, rec, master=self._master(ctx), mapped=mapped(ctx),
                                                          options=options),
            JournalEntriesTarget(b1, after_post=after_post), mapping_tables=("vendors", "accounts", "cost_centers"),
            describe=describe_entry)
        payment_requests = Stream(
            "payment_requests", invoice_source,
            lambda ctx, key, rec: payment_request_to_journal_entry(key, rec, master=self._master(ctx),
                                                                   mapped=mapped(ctx), options=options),
            JournalEntriesTarget(b1, after_post=after_post), mapping_tables=("vendors", "accounts", "cost_centers"),
            describe=describe_entry)
        streams = {s.name: s for s in (reports, payment_requests)}
        assert tuple(streams) == STREAMS, "STREAMS must list the streams built here"
        return streams

    @classmethod
    def summarize(cls, stream: str, record: dict[str, Any]) -> Summary | None:
        return summarize(stream, record)

    @property
    def reconciles(self) -> bool:
        """Whether `reconcile` applies: the flow posts journal entries (both streams do)."""
        return bool(set(self.cfg.streams) & set(STREAMS))

    def reconcile(self, period: str) -> Any:
        """Month-end totals per account, cost centre and currency of the Concur documents against the
        Business One journal entries (flows/_concur_sap_b1_reconcile.py)."""
        from ml_connector.flows._concur_sap_b1_reconcile import reconcile_journal_entries

        return reconcile_journal_entries(self, period)

    @staticmethod
    def _confirm(concur: str, options: Options) -> Callable[[RunContext, Entry, Outcome], Outcome]:
        """Option `confirm_to_concur`: once the journal entry is in Business One, acknowledge the
        document's FIS record and confirm the posting (JdtNum/Number) to Concur. The journal
        entry stays posted if that fails: the entry fails with what happened, and `replay` sends
        the confirmation only (the lookup finds the journal entry)."""
        system_id, company_id = options.system_id, options.company_id

        def after(ctx: RunContext, e: Entry, posted: Outcome) -> Outcome:
            p = e.payload
            doc_type = "expense" if p.get("source") == "expense report" else "invoice"
            number = str((posted.response or {}).get("Number") or posted.target_id)
            day = str(p["entry"].get("ReferenceDate") or "")
            client: ConcurClient = ctx.runtime.connection(concur)
            try:
                doc_id = client.fis_document_id(doc_type, str(p.get("source_id")))
                if doc_id is not None:
                    client.confirm_posting(doc_type, doc_id, system_id=system_id, company_id=company_id,
                                           document_number=number, fiscal_year=day[:4], posting_date=day)
            except ConcurError as exc:
                return Outcome(e.id, "failed", request=p,
                               error=f"posted in Business One as JdtNum {posted.target_id}, but the posting "
                                     f"confirmation to Concur failed: {exc}; replay re-sends the confirmation only")
            return replace(posted, response={**(posted.response or {}), "fis_document": doc_id})
        return after


FLOW = ConcurSapB1Flow
