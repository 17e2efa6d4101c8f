"""PO-based Ramp bills → SAP MM invoices (BAPI_INCOMINGINVOICE_CREATE through Z_MLC_INCOMINGINVOICE_CREATE).

A bill that references a purchase order (`purchase_order_id`, or `purchase_order_ids`) is not an FI
vendor invoice: it is invoiced against the PO's items, so SAP's three-way match, GR/IR clearing and
the PO history stay right. The pure part (`po_bill_to_invoice`): each bill line finds its PO item
(EBELN from the Ramp PO's `remote_id`, else its `purchase_order_number`; EBELP from the linked PO
line's `remote_id`), through, in order: the line's `purchase_order_line_item_id`, the mapping table
`po_items` (`<bill id>:<line n>` → EBELP, or EBELN/EBELP), the PO's only line, the one PO line of
the same amount. A line none of these settles parks the bill on `po_items:<bill id>:<line n>`.
`validated_po_bill` then checks against SAP (systems/sap_ecc/purchase_orders.py): a PO or item SAP
lacks, or one that does not match (company code, vendor, currency, deleted, final-invoiced, value
exceeded), parks the bill with that reason; it posts by itself once SAP matches (parked bills are
mapped again at every run). The invoice's XBLNR is derived from the bill id, like an FI invoice:
RBKP is searched by it (and the vendor) before the call and after any uncertain one.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ml_connector.core import mapping
from ml_connector.core.ledger import Desired, Parked
from ml_connector.systems.sap_ecc.master_data import MasterDataCheck
from ml_connector.systems.sap_ecc.posting import format_amount, xblnr_for
from ml_connector.systems.sap_ecc.purchase_orders import POLine, PurchaseOrderCheck
from ml_connector.systems.sap_ecc.table_reader import alpha


def po_ids(bill: dict[str, Any]) -> list[str]:
    """The Ramp purchase orders a bill references ([] for a plain bill)."""
    ids = [bill.get("purchase_order_id"), *(bill.get("purchase_order_ids") or [])]
    return list(dict.fromkeys(str(i) for i in ids if i))


def _ebeln(po: dict[str, Any]) -> str:
    return str(po.get("remote_id") or po.get("purchase_order_number") or "").strip()


def po_bill_to_invoice(key: str, bill: dict[str, Any], pos: dict[str, dict[str, Any]], *,
                       mapped: Any, xblnr_prefix: str = "RMP", today: str = "") -> Desired | Parked:
    """A PO-based Ramp bill → the MM invoice to post (payload `kind: mm`), or Parked (see module docstring).
    `pos`: the bill's Ramp purchase orders by id; `mapped(table, value)`: the flow's mapping tables."""
    from ml_connector.flows.sap_ecc_ramp import _money, _sap_key, bill_header, bill_totals

    head = bill_header(key, bill, mapped)
    if isinstance(head, Parked):
        return head
    bukrs, lifnr, ccy = head
    total = bill.get("amount") or {}
    problems: list[str] = []
    po_lines: dict[str, tuple[str, str]] = {}  # Ramp PO line id -> (EBELN, EBELP)
    for po in pos.values():
        for pl in po.get("line_items") or []:
            po_lines[str(pl.get("id"))] = (_ebeln(po), str(pl.get("remote_id") or "").strip())
    lines = []
    for n, li in enumerate(bill.get("line_items") or [], start=1):
        amount = _money(li.get("amount"), ccy)
        link = str(li.get("purchase_order_line_item_id") or "")
        ebeln, ebelp = po_lines.get(link, ("", ""))
        if not ebelp:
            chosen = mapped("po_items", f"{key}:{n}") or ""
            if chosen:
                ebeln, _, ebelp = chosen.rpartition("/")
                ebeln = ebeln or (_ebeln(next(iter(pos.values()))) if len(pos) == 1 else "")
        if not ebelp and len(pos) == 1:
            po = next(iter(pos.values()))
            items = po.get("line_items") or []
            same = [pl for pl in items if _money(pl.get("amount"), ccy) == amount]
            pick = items if len(items) == 1 else same if len(same) == 1 else []
            if pick:
                ebeln, ebelp = _ebeln(po), str(pick[0].get("remote_id") or "").strip()
        if not ebeln or not ebelp:
            return Parked(key, mapping.waits_for("po_items", f"{key}:{n}"), payload=bill,
                          reason=f"line {n}: no purchase order item for it (link the line to a PO line in Ramp, "
                                 f"or map po_items {key}:{n} to the SAP item, e.g. 4500000001/00010)")
        lines.append({"po_number": _sap_key(ebeln, f"line {n}: purchase order", problems),
                      "po_item": ebelp.zfill(5)[-5:] if ebelp.isdigit() else ebelp,
                      "amount": format_amount(amount, ccy), "text": str(li.get("memo") or "")[:50]})
        if not ebelp.isdigit():
            problems.append(f"line {n}: PO item {ebelp!r} is not an SAP item number")
    credit, issued, posting = bill_totals(bill, lines, total, ccy, problems)
    payload = {"kind": "mm", "bill_id": key, "invoice_number": str(bill.get("invoice_number") or ""),
               "entity_id": str(bill.get("entity_id") or ""), "company_code": bukrs,
               "vendor": _sap_key(lifnr, "vendor", problems),
               "currency": ccy, "doc_date": issued or today, "posting_date": posting or today,
               "xblnr": xblnr_for(key, xblnr_prefix), "credit_memo": credit, "lines": lines, "problems": problems}
    return Desired(key, payload)


def validated_po_bill(m: Desired | Parked, bill: dict[str, Any], check: MasterDataCheck,
                      po_check: PurchaseOrderCheck, *, closed_period: str = "park",
                      tolerance: Decimal = Decimal(0)) -> Desired | Parked:
    """A mapped PO bill checked against SAP: company code and vendor (master data), then every line
    against its PO item (parked with the reason on the first mismatch), then the posting period
    (the same policy as FI invoices)."""
    from ml_connector.flows.sap_ecc_ramp import validated_period

    if isinstance(m, Parked) or m.payload.get("problems"):
        return m
    p = m.payload
    on = p["posting_date"].replace("-", "")
    missing = check.missing(p["company_code"], vendor=p["vendor"], on=on)
    if missing:
        return Parked(m.source_key, missing[0], payload=bill)
    lines = [POLine(n, ln["po_number"], ln["po_item"], Decimal(ln["amount"])) for n, ln in enumerate(p["lines"], 1)]
    wrong = po_check.mismatch(company_code=p["company_code"], vendor=p["vendor"], currency=p["currency"],
                              lines=[] if p["credit_memo"] else lines, xblnr=p["xblnr"], tolerance=tolerance)
    if wrong is None and p["credit_memo"]:  # a credit memo reduces what was invoiced: the items must exist
        wrong = po_check.mismatch(company_code=p["company_code"], vendor=p["vendor"], currency=p["currency"],
                                  lines=[POLine(ln.n, ln.ebeln, ln.ebelp, Decimal(0)) for ln in lines])
    if wrong is not None:
        return Parked(m.source_key, wrong[0], payload=bill, reason=wrong[1])
    for ln in p["lines"]:
        qty, unit = po_check.quantity(ln["po_number"], ln["po_item"], Decimal(ln["amount"]))
        if qty is not None:
            ln["quantity"], ln["po_unit"] = str(qty), unit
    return validated_period(m, bill, check, closed_period=closed_period)


def mm_invoice_of(p: dict[str, Any]) -> Any:
    """The mapped PO bill as the MM invoice to post."""
    from datetime import date

    from ml_connector.systems.sap_ecc.posting import MMInvoice, MMInvoiceItem

    return MMInvoice(
        source_id=p["bill_id"], company_code=p["company_code"], currency=p["currency"],
        doc_date=date.fromisoformat(p["doc_date"]), posting_date=date.fromisoformat(p["posting_date"]),
        items=tuple(MMInvoiceItem(po_number=ln["po_number"], po_item=ln["po_item"], amount=Decimal(ln["amount"]),
                                  quantity=Decimal(ln["quantity"]) if ln.get("quantity") else None,
                                  po_unit=str(ln.get("po_unit") or "")) for ln in p["lines"]),
        credit_memo=bool(p["credit_memo"]), header_text=f"Ramp {p['invoice_number']}"[:25],
        reference=p["xblnr"], vendor=alpha(p["vendor"], 10) if p["vendor"] else "")


def describe_po_bill(p: dict[str, Any]) -> str:
    gross = sum((Decimal(ln["amount"]) for ln in p["lines"]), Decimal(0))
    lines = ", ".join(f"PO {ln['po_number'].lstrip('0')}/{ln['po_item'].lstrip('0')} {ln['amount']}"
                      for ln in p["lines"])
    kind = "credit memo" if p["credit_memo"] else "invoice"
    return (f"post SAP MM {kind} (BAPI_INCOMINGINVOICE_CREATE) for Ramp bill {p['invoice_number']} ({p['bill_id']}): "
            f"company code {p['company_code']}, vendor {p['vendor'].lstrip('0')}, {gross} {p['currency']}, "
            f"XBLNR {p['xblnr']}, items [{lines}]")
