"""Month-end reconciliation of Ramp bills against SAP ECC vendor invoices (the `bills` stream); the leading
underscore keeps it out of the flow pairs (a pair is a module of ml_connector.flows).

Per company code, GL account and cost center, for a period (posting date):
- Ramp: the bills that belong in SAP (approved and waiting, or synced), mapped exactly as the flow maps
  them (so the company code and accounts are the ones SAP would get); credit memos count negative;
- SAP: the documents of the flow's document types whose XBLNR carries the flow's prefix, posted in the
  period and not reversed; their G/L lines (KOART S), debit positive, credit negative.
Bills and documents are paired by XBLNR (derived from the bill id). What explains each difference: a
bill not posted yet (missing, parked, failed), a bill changed after it was synced, a document without
a bill, amounts that differ.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from ml_connector.core import mapping
from ml_connector.core.ledger import Desired, content_hash
from ml_connector.core.reconcile import Explanation, Reconciliation, difference_kind, period_bounds, record_states
from ml_connector.systems.sap_ecc.posting import parse_amount, xblnr_for
from ml_connector.systems.sap_ecc.table_reader import TableReader, quote

Key = tuple[str, str, str]
DIMENSIONS = ("company code", "GL account", "cost center")


def _strip(value: str) -> str:
    return value.lstrip("0") or value


def reconcile_bills(flow: Any, period: str) -> Reconciliation:
    from ml_connector.flows.sap_ecc_ramp import COST_CENTER_FIELD_ID, _money, _selection, bill_to_invoice

    first, last = period_bounds(period)
    rt, name = flow.runtime, flow.name
    opts = dict(getattr(flow.cfg, "options", {}) or {})
    prefix = str(opts.get("xblnr_prefix", "RMP"))
    cc_field = str(opts.get("cost_center_field_id", "")) or None
    doc_types = (str(opts.get("document_type", "KR")), "KG")
    ramp = rt.connection(flow.connection_of("ramp"))
    sap = rt.connection(flow.connection_of("sap_ecc"))
    rec = Reconciliation(name, period, "Ramp", "SAP ECC", DIMENSIONS)

    def mapped(table: str, value: str) -> str | None:
        with rt.db.read() as s:
            return mapping.get(s, name, table, value)

    # Ramp: every bill that belongs in SAP, mapped as the flow maps it.
    bills: dict[str, dict[str, Any]] = {}
    for kw in ({"sync_ready": True}, {"sync_status": "BILL_SYNCED"}):
        for b in ramp.iter_bills(**kw):
            bills[str(b["id"])] = b
    source_lines: dict[str, list[tuple[Key, Decimal]]] = {}
    parked_lines: dict[str, list[tuple[Key, Decimal]]] = {}
    desired: dict[str, Desired] = {}
    kwargs: dict[str, Any] = {"cost_center_field_id": cc_field} if cc_field else {}
    from ml_connector.flows._sap_ecc_ramp_po import po_ids

    for bill_id, bill in bills.items():
        if po_ids(bill):
            continue  # a PO-based bill is an MM invoice (document type RE, GR/IR lines): not compared here
        out = bill_to_invoice(bill_id, bill, mapped=mapped, xblnr_prefix=prefix, **kwargs)
        if isinstance(out, Desired):
            p = out.payload
            if not first.isoformat() <= p["posting_date"] <= last.isoformat():
                continue
            sign = Decimal(-1) if p["credit_memo"] else Decimal(1)
            desired[bill_id] = out
            rec.currency = rec.currency or p["currency"]
            source_lines[bill_id] = [((p["company_code"], _strip(ln["gl_account"]), _strip(ln["cost_center"])),
                                      sign * Decimal(ln["amount"])) for ln in p["lines"]]
        else:  # parked: no company code yet; counted on the source side under its accounts
            posting = str(bill.get("posting_date") or bill.get("accounting_date") or bill.get("issued_at") or "")[:10]
            if not first.isoformat() <= posting <= last.isoformat():
                continue
            total = bill.get("amount") or {}
            ccy = str(total.get("currency_code") or "USD").upper() if isinstance(total, dict) else "USD"
            sels = bill.get("accounting_field_selections") or []
            cc_id = cc_field or COST_CENTER_FIELD_ID
            lines = []
            for li in bill.get("line_items") or []:
                li_sels = li.get("accounting_field_selections") or []
                gl = _selection(li_sels, "GL_ACCOUNT", cc_id) or _selection(sels, "GL_ACCOUNT", cc_id)
                cc = _selection(li_sels, "COST_CENTER", cc_id) or _selection(sels, "COST_CENTER", cc_id)
                lines.append((("?", _strip(gl), _strip(cc)), _money(li.get("amount"), ccy)))
            parked_lines[bill_id] = lines
    for lines in (*source_lines.values(), *parked_lines.values()):
        for key, amount in lines:
            rec.add(key, source=amount)

    # SAP: the flow's documents posted in the period, not reversed.
    reader = TableReader.probed(sap)
    where = (f"BUDAT BETWEEN {quote(first.strftime('%Y%m%d'))} AND {quote(last.strftime('%Y%m%d'))} "
             f"AND XBLNR LIKE {quote(prefix + '%')}")
    docs = [r for page in reader.read("BKPF", ("BUKRS", "BELNR", "GJAHR", "XBLNR", "BLART", "STBLG", "WAERS"),
                                      key_fields=("BUKRS", "BELNR", "GJAHR"), where=where, page_size=1000)
            for r in page.rows if r.get("BLART") in doc_types and not r.get("STBLG")]
    target_lines: dict[str, list[tuple[Key, Decimal]]] = {}
    # Their G/L lines, 50 documents per read (BSEG is always read by company code, year and document).
    by_doc = {(d["BUKRS"], d["GJAHR"], d["BELNR"]): d["XBLNR"] for d in docs}
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for bukrs, gjahr, belnr in by_doc:
        groups[(bukrs, gjahr)].append(belnr)
    for (bukrs, gjahr), belnrs in sorted(groups.items()):
        for i in range(0, len(belnrs), 50):
            chunk = ", ".join(quote(b) for b in belnrs[i:i + 50])
            doc_where = f"BUKRS = {quote(bukrs)} AND GJAHR = {quote(gjahr)} AND BELNR IN ({chunk})"
            for page in reader.read("BSEG", ("BUKRS", "BELNR", "GJAHR", "BUZEI", "KOART", "HKONT", "KOSTL",
                                             "SHKZG", "WRBTR"), key_fields=("BUKRS", "BELNR", "GJAHR", "BUZEI"),
                                    where=doc_where):
                for r in page.rows:
                    xblnr = by_doc.get((r["BUKRS"], r["GJAHR"], r["BELNR"]))
                    if xblnr is None or r.get("KOART") != "S":
                        continue
                    amount = parse_amount(r.get("WRBTR", "0"))
                    key = (bukrs, _strip(r.get("HKONT", "")), _strip(r.get("KOSTL", "")))
                    signed = amount if r.get("SHKZG") == "S" else -amount
                    target_lines.setdefault(xblnr, []).append((key, signed))
                    rec.add(key, target=signed)

    # The records that explain the differences.
    differing = {t.key for t in rec.differences()}
    by_xblnr = {xblnr_for(bill_id, prefix): bill_id for bill_id in (*source_lines, *parked_lines)}
    with rt.db.read() as s:
        states = record_states(s, name, "bills", sorted({*source_lines, *parked_lines}))
    for bill_id, lines in parked_lines.items():
        for key, amount in lines:
            rec.explanations.append(Explanation(key, bill_id, "parked", amount, Decimal(0),
                                                str(bills[bill_id].get("invoice_number") or "")))
    for bill_id, lines in source_lines.items():
        theirs = _by_key(target_lines.get(xblnr_for(bill_id, prefix), []))
        ours = _by_key(lines)
        state, ledger_hash = states.get(bill_id, ("", None))
        want = desired[bill_id]
        for key in sorted(set(ours) | set(theirs)):
            if key not in differing or ours.get(key, Decimal(0)) == theirs.get(key, Decimal(0)):
                continue
            kind = difference_kind(bool(theirs), state, ledger_hash,
                                   content_hash({**want.payload, "__active": want.active}))
            rec.explanations.append(Explanation(key, bill_id, kind, ours.get(key, Decimal(0)),
                                                theirs.get(key, Decimal(0)), want.payload["invoice_number"]))
    for xblnr, lines in target_lines.items():
        if xblnr in by_xblnr:
            continue
        for key, amount in _by_key(lines).items():
            if key in differing:
                rec.explanations.append(Explanation(key, xblnr, "only_in_target", Decimal(0), amount))
    return rec


def _by_key(lines: list[tuple[Key, Decimal]]) -> dict[Key, Decimal]:
    out: dict[Key, Decimal] = defaultdict(Decimal)
    for key, amount in lines:
        out[key] += amount
    return dict(out)
