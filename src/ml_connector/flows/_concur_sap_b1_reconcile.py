"""Month-end reconciliation of SAP Concur expense reports and payment requests against SAP Business One
journal entries (the leading underscore keeps it out of the flow pairs).

Per journal account, cost centre (CostingCode, dimension 1) and currency, for a period (the journal
entry's posting date: a report's processing-payment date, an invoice's date):
- Concur: the documents that belong in Business One, read through the v3 APIs (FIS lists only what
  still waits, not what was posted: history is what FIS lacks): approved reports in Processing
  Payment or paid, approved payment requests; each mapped exactly as the flow maps it (same master
  data and mapping tables, so the accounts and cost centres are the ones Business One gets). The
  vendor (business partner) lines are left out: the expense side is compared.
- Business One: the journal entries whose `Reference3` carries the external id prefix of the
  flow's streams (`concur:report:`, `concur:payment_request:`), posted in the period; their account
  lines (no business partner), debit positive, credit negative.
Documents and journal entries are paired by the external id. What explains each difference: a
document not posted yet (missing, parked, failed), one changed after it was synced, a journal entry
without a document, amounts that differ. A report paid in Concur that the flow never read (paid
before the integration ran) shows as missing: it is not in Business One.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from decimal import Decimal
from typing import Any

from ml_connector.core import mapping
from ml_connector.core.ledger import Desired, content_hash
from ml_connector.core.reconcile import Explanation, Reconciliation, difference_kind, period_bounds, record_states
from ml_connector.systems.sap_b1.client import odata_quote

Key = tuple[str, str, str]
DIMENSIONS = ("account", "cost center", "currency")
PREFIX = "concur:"
#: stream -> the source keys' prefix (the external id is `concur:<source key>`)
KEY_PREFIX = {"expense_reports": "report", "payment_requests": "payment_request"}


def _line_amount(line: dict[str, Any]) -> tuple[Decimal, bool]:
    """(signed amount, is foreign currency) of a journal line: debit positive, credit negative."""
    if line.get("FCCurrency"):
        return Decimal(str(line.get("FCDebit") or 0)) - Decimal(str(line.get("FCCredit") or 0)), True
    return Decimal(str(line.get("Debit") or 0)) - Decimal(str(line.get("Credit") or 0)), False


def _lines(entry: dict[str, Any], currency: str) -> list[tuple[Key, Decimal]]:
    out = []
    for ln in entry.get("JournalEntryLines") or []:
        if ln.get("ShortName") and ln.get("ShortName") != ln.get("AccountCode"):
            continue  # the business partner's line: not an expense account
        amount, foreign = _line_amount(ln)
        ccy = str(ln.get("FCCurrency")) if foreign else currency
        out.append(((str(ln.get("AccountCode") or ""), str(ln.get("CostingCode") or ""), ccy),
                    amount.quantize(Decimal("0.01"))))
    return out


def _by_key(lines: list[tuple[Key, Decimal]]) -> dict[Key, Decimal]:
    out: dict[Key, Decimal] = defaultdict(Decimal)
    for key, amount in lines:
        out[key] += amount
    return dict(out)


def _parked_lines(stream: str, rec: dict[str, Any], options: Any) -> list[tuple[Key, Decimal]]:
    """A parked document's amounts under its Concur account and cost-centre codes (no mapping yet)."""
    from ml_connector.flows.concur_sap_b1 import _allocations, _code, _line_items, shares_of

    currency = str(rec.get("CurrencyCode") or options.local_currency).upper()
    cc_field = options.dimension_fields.get(1, "Custom1")
    out: list[tuple[Key, Decimal]] = []
    if stream == "expense_reports":
        for e in rec.get("Entries") or []:
            if e.get("IsPersonal"):
                continue
            allocs = list(e.get("Allocations") or [])
            _, shares = shares_of(Decimal(str(e.get("PostedAmount") or 0)), allocs)
            out += [((str(a.get("AccountCode1") or ""), _code(a.get(cc_field)), currency), s)
                    for a, s in zip(allocs, shares, strict=True)]
    else:
        for li in _line_items(rec):
            allocs = _allocations(li)
            _, shares = shares_of(Decimal(str(li.get("ApprovedLineItemAmount") or li.get("TotalPrice") or 0)), allocs)
            out += [((str(a.get("AllocationAccountCode") or ""), _code(a.get(cc_field)), currency), s)
                    for a, s in zip(allocs, shares, strict=True)]
    return out


def reconcile_journal_entries(flow: Any, period: str) -> Reconciliation:
    from ml_connector.flows.concur_sap_b1 import (
        load_master_data,
        payment_request_to_journal_entry,
        report_to_journal_entry,
    )

    first, last = period_bounds(period)
    lo, hi = first.isoformat(), last.isoformat()
    rt, name = flow.runtime, flow.name
    options = flow._options()
    concur = rt.connection(flow.cfg.source)
    b1 = rt.connection(flow.cfg.target)
    rec = Reconciliation(name, period, "SAP Concur", "SAP Business One", DIMENSIONS, currency="")
    master = load_master_data(b1)

    def mapped(table: str, value: str) -> str | None:
        with rt.db.read() as s:
            return mapping.get(s, name, table, value)

    # Concur: the documents that belong in Business One for the period, mapped as the flow maps them.
    documents: dict[tuple[str, str], dict[str, Any]] = {}  # (stream, source key) -> record
    if "expense_reports" in flow.cfg.streams:
        for report in concur.v3_all("/api/v3.0/expense/reports", {
                "user": "ALL", "approvalStatusCode": concur.ready.approval_status,
                "paymentStatusCode": f"{concur.ready.payment_status},P_PAID",
                "processingPaymentDateAfter": (first - timedelta(days=1)).isoformat(),
                "limit": concur.paging.reports_limit}):
            if lo <= str(report.get("ProcessingPaymentDate") or "")[:10] <= hi:
                documents[("expense_reports", f"report:{report['ID']}")] = concur.report_with_lines(report)
    if "payment_requests" in flow.cfg.streams:
        for digest in concur.v3_all("/api/v3.0/invoice/paymentrequestdigests", {
                "approvalStatus": concur.ready.payment_request_approval_status,
                "limit": concur.paging.digests_limit}):
            if str(digest.get("IsDeleted", "")).lower() == "true":
                continue
            pr = concur.payment_request(str(digest.get("PaymentRequestId") or digest["ID"]))
            if lo <= str(pr.get("InvoiceDate") or "")[:10] <= hi:
                documents[("payment_requests", f"payment_request:{pr['ID']}")] = pr
    desired: dict[str, tuple[str, Desired]] = {}
    source_lines: dict[str, list[tuple[Key, Decimal]]] = {}
    parked_lines: dict[str, list[tuple[Key, Decimal]]] = {}
    for (stream, key), record in documents.items():
        to_entry = report_to_journal_entry if stream == "expense_reports" else payment_request_to_journal_entry
        out = to_entry(key, record, master=master, mapped=mapped, options=options)
        if isinstance(out, Desired):
            desired[key] = (stream, out)
            source_lines[key] = _lines(out.payload["entry"], out.payload["currency"])
        else:
            parked_lines[key] = _parked_lines(stream, record, options)
    for lines in (*source_lines.values(), *parked_lines.values()):
        for k, amount in lines:
            rec.add(k, source=amount)

    # Business One: the flow's journal entries posted in the period.
    target_lines: dict[str, list[tuple[Key, Decimal]]] = {}
    local = options.local_currency
    # Only this flow's streams' entries (another flow of the pair may post the other stream).
    prefixes = tuple(f"{PREFIX}{KEY_PREFIX[st]}:" for st in flow.cfg.streams if st in KEY_PREFIX)
    for je in b1.get_all("JournalEntries", {
            "$filter": f"startswith(Reference3,{odata_quote(PREFIX)}) and ReferenceDate ge {odata_quote(lo)} "
                       f"and ReferenceDate le {odata_quote(hi)}",
            "$select": "JdtNum,Reference3,ReferenceDate,JournalEntryLines"}, page_size=200):
        ref = str(je.get("Reference3") or "")
        if not ref.startswith(prefixes) or not lo <= str(je.get("ReferenceDate") or "")[:10] <= hi:
            continue
        lines = _lines(je, local)
        target_lines.setdefault(ref[len(PREFIX):], []).extend(lines)
        for k, amount in lines:
            rec.add(k, target=amount)
    rec.currency = local

    # The records that explain the differences.
    differing = {t.key for t in rec.differences()}
    states: dict[str, tuple[str, str | None]] = {}
    with rt.db.read() as s:
        for stream in ("expense_reports", "payment_requests"):
            keys = sorted(k for (st, k) in documents if st == stream)
            states.update(record_states(s, name, stream, keys))
    for key, lines in parked_lines.items():
        for k, amount in _by_key(lines).items():
            rec.explanations.append(Explanation(k, key, "parked", amount, Decimal(0), _what(documents, key)))
    for key, lines in source_lines.items():
        ours, theirs = _by_key(lines), _by_key(target_lines.get(key, []))
        state, ledger_hash = states.get(key, ("", None))
        _, want = desired[key]
        for k in sorted(set(ours) | set(theirs)):
            if k not in differing or ours.get(k, Decimal(0)) == theirs.get(k, Decimal(0)):
                continue
            kind = difference_kind(bool(theirs), state, ledger_hash,
                                   content_hash({**want.payload, "__active": want.active}))
            rec.explanations.append(Explanation(k, key, kind, ours.get(k, Decimal(0)), theirs.get(k, Decimal(0)),
                                                _what(documents, key)))
    known = {*source_lines, *parked_lines}
    for key, lines in target_lines.items():
        if key in known:
            continue
        for k, amount in _by_key(lines).items():
            if k in differing:
                rec.explanations.append(Explanation(k, f"{PREFIX}{key}", "only_in_target", Decimal(0), amount))
    return rec


def _what(documents: dict[tuple[str, str], dict[str, Any]], key: str) -> str:
    for (stream, k), record in documents.items():
        if k == key:
            if stream == "expense_reports":
                return f"expense report {record.get('Name') or ''} of {record.get('OwnerName') or ''}".strip()
            return f"invoice {record.get('InvoiceNumber') or ''}".strip()
    return ""
