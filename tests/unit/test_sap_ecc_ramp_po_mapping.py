"""PO-based Ramp bills → MM invoices: the pure mapping (flows/_sap_ecc_ramp_po.py), milliseconds."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ml_connector.core.ledger import Desired, Parked
from ml_connector.flows._sap_ecc_ramp_po import po_bill_to_invoice, po_ids
from ml_connector.flows.sap_ecc_ramp import describe_bill, invoice_of
from ml_connector.systems.sap_ecc.posting import MMInvoice, build_incoming_invoice, xblnr_for

PO = {"id": "po-1", "remote_id": "4500000123", "purchase_order_number": "PO-77",
      "line_items": [{"id": "pl-1", "remote_id": "00010", "amount": {"amount": 15000, "currency_code": "USD"}},
                     {"id": "pl-2", "remote_id": "00020", "amount": {"amount": 50000, "currency_code": "USD"}}]}


def _bill(lines: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    total = sum(int(ln["amount"]["amount"]) for ln in lines)
    return {"id": "bill-1", "entity_id": "ent-1", "invoice_number": "INV-9", "issued_at": "2025-06-15",
            "vendor": {"id": "v-1", "remote_id": "100005"}, "amount": {"amount": total, "currency_code": "USD"},
            "purchase_order_id": "po-1", "line_items": lines, **kw}


def _line(cents: int, link: str = "", memo: str = "x") -> dict[str, Any]:
    out: dict[str, Any] = {"amount": {"amount": cents, "currency_code": "USD"}, "memo": memo}
    if link:
        out["purchase_order_line_item_id"] = link
    return out


def _mapped(extra: dict[tuple[str, str], str] | None = None) -> Any:
    table = {("entities", "ent-1"): "1000", **(extra or {})}
    return lambda t, v: table.get((t, v))


def test_po_ids_of_a_bill():
    assert po_ids({"purchase_order_id": "a", "purchase_order_ids": ["b", "a"]}) == ["a", "b"]
    assert po_ids({"line_items": []}) == []


def test_lines_find_their_po_items_by_link_mapping_or_amount():
    bill = _bill([_line(15000, "pl-1"), _line(50000), _line(1000)])
    m = po_bill_to_invoice("bill-1", bill, {"po-1": PO}, mapped=_mapped({("po_items", "bill-1:3"): "00020"}))
    assert isinstance(m, Desired)
    p = m.payload
    assert [(ln["po_number"], ln["po_item"], ln["amount"]) for ln in p["lines"]] == [
        ("4500000123", "00010", "150.00"),  # its link to the PO line
        ("4500000123", "00020", "500.00"),  # the one PO line of that amount
        ("4500000123", "00020", "10.00")]   # the po_items mapping
    assert (p["kind"], p["company_code"], p["vendor"], p["xblnr"]) == ("mm", "1000", "0000100005",
                                                                       xblnr_for("bill-1", "RMP"))
    inv = invoice_of(p)
    assert isinstance(inv, MMInvoice) and inv.vendor == "0000100005" and inv.reference == p["xblnr"]
    params = build_incoming_invoice(inv)
    assert params["HEADERDATA"]["GROSS_AMOUNT"] == "660.00" and params["HEADERDATA"]["REF_DOC_NO"] == p["xblnr"]
    assert [r["PO_ITEM"] for r in params["ITEMDATA"]] == ["00010", "00020", "00020"]
    assert "PO 4500000123/10 150.00" in describe_bill("create", p)


def test_a_line_no_rule_settles_parks_with_the_reason_and_the_mapping_key():
    bill = _bill([_line(15000, "pl-1"), _line(1234)])
    m = po_bill_to_invoice("bill-1", bill, {"po-1": PO}, mapped=_mapped())
    assert isinstance(m, Parked) and m.waits_for == "po_items:bill-1:2" and m.payload is bill
    assert "line 2: no purchase order item" in m.reason


def test_po_number_without_remote_id_and_a_single_line_po():
    po = {"id": "po-1", "purchase_order_number": "4500000777",
          "line_items": [{"id": "pl-9", "remote_id": "10", "amount": {"amount": 99, "currency_code": "USD"}}]}
    m = po_bill_to_invoice("bill-1", _bill([_line(500)]), {"po-1": po}, mapped=_mapped())
    assert isinstance(m, Desired) and m.payload["lines"][0]["po_number"] == "4500000777"
    assert m.payload["lines"][0]["po_item"] == "00010"


def test_unmapped_entity_and_lines_not_adding_up():
    parked = po_bill_to_invoice("bill-1", _bill([_line(100, "pl-1")], entity_id="ent-x"), {"po-1": PO},
                                mapped=_mapped())
    assert isinstance(parked, Parked) and parked.waits_for == "entities:ent-x"
    bad = _bill([_line(100, "pl-1")])
    bad["amount"] = {"amount": 999, "currency_code": "USD"}
    m = po_bill_to_invoice("bill-1", bad, {"po-1": PO}, mapped=_mapped())
    assert isinstance(m, Desired) and m.payload["problems"] == ["the lines add up to 1.00 USD, the bill says 9.99 USD"]
    assert Decimal(m.payload["lines"][0]["amount"]) == Decimal("1.00")


def test_a_reversal_says_whether_it_is_done_in_mm():
    rev = {"action": "reverse", "document": "5105600001/2026", "invoice_number": "INV-1", "bill_id": "b1"}
    assert "5105600001/2026 in MM (MR8M) of Ramp bill INV-1" in describe_bill("create", {**rev, "kind": "mm"})
    assert "5105600001/2026 of Ramp bill INV-1" in describe_bill("create", rev)
