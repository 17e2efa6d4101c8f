"""The SAP ECC → Procore mapping functions: pure, no servers, no database (milliseconds)."""

from __future__ import annotations

from types import SimpleNamespace

from ml_connector.core.flow import FlowSchedule
from ml_connector.core.ledger import Desired, Parked
from ml_connector.flows.sap_ecc_procore import (
    SapEccProcoreFlow,
    cost_lines_to_direct_cost,
    external,
    held_for_review,
    po_project,
    po_to_contract,
    vendor_to_procore,
)
from tests.support.procore import cost_group, demo, po_record, without


def test_external_format_drops_leading_zeros_of_numbers_only():
    assert (external("0000001410"), external("FAST01"), external(""), external("0000")) == ("1410", "FAST01", "", "0")


def test_vendor_is_upserted_by_number_with_tax_id_and_terms_and_deletion_deactivates():
    rec = {"LIFNR": "0000100042", "NAME1": "Acme ", "NAME2": "Steel", "ORT01": "Newark", "LAND1": "US",
           "STCD1": "12-3456789", "LOEVM": "", "_company_codes": {"1000": {"ZTERM": "NT30", "LOEVM": ""}}}
    d = vendor_to_procore("0000100042", rec)
    assert d == Desired("0000100042", {"origin_id": "0000100042", "name": "Acme Steel", "origin_code": "100042",
                                       "city": "Newark", "country_code": "US",
                                       "origin_data": "tax id 12-3456789; payment terms NT30"}, active=True)
    gone = vendor_to_procore("0000100042", {**rec, "_company_codes": {"1000": {"LOEVM": "X"}}})
    assert gone.active is False


def test_po_goes_to_the_cost_center_project_with_split_lines_on_their_cost_codes():
    d = po_to_contract("4500000123", po_record(), mapped=demo)
    assert isinstance(d, Desired)
    p = d.payload
    assert (p["origin_id"], p["project"], p["vendor"], p["status"]) == ("SAP-PO-4500000123", "26-003", "0000100042",
                                                                        "Approved")
    assert [(ln["origin_id"], ln["cost_code"], ln["amount"]) for ln in p["lines"]] == [
        ("4500000123-00010", "05-500", "20.00"),          # stock item: material group FAST01
        ("4500000123-00020-01", "01-540", "600.00"),      # split item: G/L 640000 on 1610
        ("4500000123-00020-02", "90-100", "400.00")]      # G/L 630000 on 1620
    assert p["contract_date"] == "2024-10-15"


def test_project_precedence_is_wbs_then_cost_center_then_plant():
    po = po_record()
    assert po_project(po, demo) == ("26-003", "")  # cost center 1610
    po["_items"][1]["_accounts"][0]["PS_PSP_PNR"] = "00004711"
    assert po_project(po, lambda t, v: {"wbs": {"4711": "26-100"}}.get(t, {}).get(v) or demo(t, v)) == ("26-100", "")
    assert po_project(po, without("cost_centers", "1610")) == ("26-003", "")  # falls back to the plant 1100
    assert po_project(po, lambda t, v: None) == (None, "wbs:4711")


def test_po_without_mapped_project_or_cost_code_is_parked_on_what_it_waits_for():
    po = po_record(werks="1300", items=[{**po_record()["_items"][0], "WERKS": "1300"}])
    assert po_to_contract("4500000123", po, mapped=demo) == Parked("4500000123", "plants:1300", payload=po)
    po = po_record()
    parked = po_to_contract("4500000123", po, mapped=without("cost_codes", "630000"))
    assert isinstance(parked, Parked) and parked.waits_for == "cost_codes:630000" and parked.payload is po


def test_deleted_items_and_pos_keep_their_lines_at_zero_so_the_same_contract_is_updated():
    po = po_record()
    po["_items"][0]["LOEKZ"] = "L"
    lines = po_to_contract("4500000123", po, mapped=demo).payload["lines"]
    assert lines[0]["amount"] == "0.00" and lines[0]["description"].startswith("[deleted in SAP]")
    assert [ln["amount"] for ln in lines[1:]] == ["600.00", "400.00"]
    closed = po_to_contract("4500000123", po_record(LOEKZ="L"), mapped=demo).payload
    assert closed["status"] == "Closed" and {ln["amount"] for ln in closed["lines"]} == {"0.00"}


def test_cost_lines_become_one_direct_cost_grouped_by_cost_code():
    d = cost_lines_to_direct_cost("1000/2025/0100000008/0000001610", cost_group(), mapped=demo,
                                  direct_cost_type="payroll")
    assert isinstance(d, Desired)
    p = d.payload
    assert (p["origin_id"], p["project"], p["invoice_number"], p["direct_cost_type"], p["direct_cost_date"]) == (
        "SAP-GL-1000-2025-0100000008-1610", "26-003", "0100000008/2025", "payroll", "2025-06-05")
    assert [(ln["origin_id"], ln["cost_code"], ln["amount"]) for ln in p["lines"]] == [
        ("SAP-GL-1000-2025-0100000008-1610-90-100", "90-100", "18500.00"),
        ("SAP-GL-1000-2025-0100000008-1610-90-200", "90-200", "1220.50")]


def test_a_reversal_document_becomes_a_reversing_direct_cost():
    rev = cost_group(BELNR="0100000009", XREVERSAL="2", STBLG="0100000008", STJAH="2025",
                     lines=[("0000630000", "H", "18500.00", "Crew A")])
    p = cost_lines_to_direct_cost("k", rev, mapped=demo).payload
    assert p["origin_id"] == "SAP-GL-1000-2025-0100000009-1610"
    assert [ln["amount"] for ln in p["lines"]] == ["-18500.00"]
    assert p["description"].startswith("Reversal of SAP document 0100000008/2025")


def test_unmapped_cost_center_or_account_parks_the_group():
    g = cost_group(kostl="0000001300")
    assert cost_lines_to_direct_cost("k", g, mapped=demo) == Parked("k", "cost_centers:1300", payload=g)
    parked = cost_lines_to_direct_cost("k", cost_group(), mapped=without("cost_codes", "610000"))
    assert isinstance(parked, Parked) and parked.waits_for == "cost_codes:610000"


def test_a_subcontract_po_asks_for_one_requisition_per_line_with_an_amount_others_for_none():
    assert "requisitions" not in po_to_contract("4500000123", po_record(), mapped=demo).payload
    po = po_record(BSART="ZSUB")
    po["_items"][0]["LOEKZ"] = "L"  # a deleted item (amount 0) is not billed
    p = po_to_contract("4500000123", po, mapped=demo).payload
    assert [(r["origin_id"], r["line"], r["invoice_number"]) for r in p["requisitions"]] == [
        ("SAP-REQ-4500000123-00020-01", "4500000123-00020-01", "4500000123-00020-01"),
        ("SAP-REQ-4500000123-00020-02", "4500000123-00020-02", "4500000123-00020-02")]
    assert p["requisitions"][0]["origin_data"] == ("SAP PO 4500000123 line 4500000123-00020-01: 600.00 "
                                                   "on cost code 01-540")
    assert "requisitions" not in po_to_contract("4500000123", po_record(BSART="ZSUB", LOEKZ="L"), mapped=demo).payload
    assert "requisitions" not in po_to_contract("4500000123", po, mapped=demo, requisition_types=()).payload


def test_a_po_mapped_to_another_project_is_held_for_review_until_the_move_is_approved():
    po = po_record()
    d = po_to_contract("4500000123", po, mapped=demo)
    assert isinstance(d, Desired) and d.payload["project"] == "26-003"
    assert held_for_review("4500000123", po, d, None, demo) is None       # never written: nothing moves
    assert held_for_review("4500000123", po, d, "26-003", demo) is None   # same project
    held = held_for_review("4500000123", po, d, "26-001", demo)
    assert isinstance(held, Parked) and held.waits_for == "project_moves:4500000123" and held.payload is po
    assert "26-003" in held.reason and "26-001" in held.reason
    approved = {("project_moves", "4500000123"): "26-003"}
    assert held_for_review("4500000123", po, d, "26-001", lambda t, v: approved.get((t, v)) or demo(t, v)) is None
    # An approval for another project does not release it.
    other = {("project_moves", "4500000123"): "26-009"}
    assert held_for_review("4500000123", po, d, "26-001", lambda t, v: other.get((t, v)) or demo(t, v)) is not None


def test_drift_check_option_schedules_runs_of_the_drift_stream():
    def flow(options: dict[str, object]) -> SapEccProcoreFlow:
        return SapEccProcoreFlow(None, "f", SimpleNamespace(options=options))  # type: ignore[arg-type]

    assert flow({}).schedules() == []
    assert flow({"drift_check": {"cron": "0 6 * * 1-5", "timezone": "America/Chicago"}}).schedules() == [
        FlowSchedule("drift", "0 6 * * 1-5", ("drift",), "incremental", "America/Chicago")]
