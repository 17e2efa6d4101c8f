"""The SAP ECC → Marketing Cloud mapping: pure functions, no HTTP, no database."""

from __future__ import annotations

import pytest

from ml_connector.flows.sap_ecc_sfmc import (
    Options,
    contact_rows,
    customer_status_row,
    eligibility,
    hierarchy_rows,
    sales_document_row,
)
from ml_connector.systems.sap_ecc.sources import hierarchy_path, parent_of, parents_of, sales_document
from ml_connector.systems.sfmc.schema import DeField, DeHeld, DeSpec, SchemaMismatch, compare


def customer(kunnr: str, *, payer: str | None = None, **kna1: str) -> dict:
    knvp = [{"KUNNR": kunnr, "VKORG": "1000", "VTWEG": "10", "SPART": "00", "PARVW": pf, "PARZA": "000",
             "KUNN2": kunnr} for pf in ("AG", "WE", "RE")]
    knvp.append({"KUNNR": kunnr, "VKORG": "1000", "VTWEG": "10", "SPART": "00", "PARVW": "RG", "PARZA": "000",
                 "KUNN2": payer or kunnr})
    return {"KUNNR": kunnr, "NAME1": "Acme", "NAME2": "GmbH", "LAND1": "DE", "KTOKD": "0001", **kna1,
            "_knb1": [{"KUNNR": kunnr, "BUKRS": "1000", "SPERR": "", "LOEVM": ""}],
            "_knkk": [{"KUNNR": kunnr, "KKBER": "1000", "KLIMK": "10000.00", "SKFOR": "2000.00", "SAUFT": "500.00",
                       "SSOBL": "0.00", "CRBLB": "", "CASHC": "EUR"}],
            "_knvv": [{"KUNNR": kunnr, "VKORG": "1000", "VTWEG": "10", "SPART": "00", "AUFSD": "", "LIFSD": "",
                       "FAKSD": "", "CASSD": "", "LOEVM": ""}],
            "_knvp": knvp, "_used_by": [], "_spend": {"EUR": 1234.5}, "_ancestors": []}


def test_an_unblocked_customer_within_its_limit_is_eligible_with_its_credit_figures():
    row = customer_status_row("0000200001", customer("0000200001")).payload["rows"][0]
    assert row["CreditLimit"] == "10000.00" and row["CreditExposure"] == "2500.00"
    assert row["EligibleForMarketing"] == "True" and row["IneligibleReason"] == ""
    assert row["AccountStatus"] == "Active" and row["HistoricalSpend"] == "1234.50" and row["Name"] == "Acme GmbH"


@pytest.mark.parametrize(("where", "change", "reason"), [
    ("knkk", {"CRBLB": "X"}, "credit block"),
    ("knkk", {"SKFOR": "9800.00"}, "over credit limit"),
    ("kna1", {"AUFSD": "01"}, "order block 01"),
    ("kna1", {"LIFSD": "02"}, "delivery block 02"),
    ("kna1", {"SPERR": "X"}, "posting block"),
    ("knb1", {"SPERR": "X"}, "posting block"),
    ("knvv", {"AUFSD": "05"}, "order block 05"),
    ("kna1", {"LOEVM": "X"}, "flagged for deletion"),
])
def test_each_block_makes_the_customer_ineligible_naming_it(where, change, reason):
    rec = customer("0000200001")
    if where == "kna1":
        rec.update(change)
    else:
        rec[f"_{where}"][0].update(change)
    ok, why = eligibility(rec)
    assert not ok and reason in why
    row = customer_status_row("0000200001", rec).payload["rows"][0]
    assert row["EligibleForMarketing"] == "False" and reason in row["IneligibleReason"]


def test_a_billing_block_alone_does_not_stop_marketing_and_over_limit_is_an_option():
    rec = customer("0000200001", FAKSD="01")
    assert eligibility(rec) == (True, [])
    rec["_knkk"][0]["SKFOR"] = "9800.00"
    assert eligibility(rec, Options(over_limit_ineligible=False)) == (True, [])


def test_a_block_anywhere_up_the_hierarchy_makes_the_child_ineligible():
    child = customer("0000200001", payer="0000290001")
    assert parent_of(child) == "0000290001"
    grand = customer("0000290009")
    grand["_knkk"][0]["CRBLB"] = "X"
    child["_ancestors"] = [customer("0000290001"), grand]
    ok, why = eligibility(child)
    assert not ok and why == ["parent 0000290009: credit block"]
    row = customer_status_row("0000200001", child).payload["rows"][0]
    assert row["AccountStatus"] == "ParentBlocked" and row["ParentAccount"] == "0000290001"


def test_hierarchy_rows_link_each_partner_with_its_role_and_promotions_only_for_buyers():
    rec = customer("0000200001", payer="0000290001")
    rec["_ancestors"] = [customer("0000290001")]
    rows = hierarchy_rows("0000200001", rec).payload["rows"]
    roles = {(r["Role"], r["PartnerNumber"]): r for r in rows}
    assert set(roles) == {("SoldTo", "0000200001"), ("ShipTo", "0000200001"), ("BillTo", "0000200001"),
                          ("Payer", "0000290001")}
    assert roles[("Payer", "0000290001")]["PromotionsAllowed"] == "False"
    assert roles[("SoldTo", "0000200001")]["PromotionsAllowed"] == "True"
    assert all(r["HierarchyPath"] == "0000200001 > 0000290001" for r in rows)
    rec["_ancestors"][0]["AUFSD"] = "01"
    assert {r["EligibleForMarketing"] for r in hierarchy_rows("0000200001", rec).payload["rows"]} == {"False"}


def test_a_ship_to_party_hangs_below_the_sold_to_that_names_it():
    ship = {"KUNNR": "0000250001", "_knvp": [{"KUNNR": "0000250001", "PARVW": "WE", "KUNN2": "0000250001"}],
            "_used_by": [{"KUNNR": "0000200007", "PARVW": "WE", "KUNN2": "0000250001"}]}
    assert parent_of(ship) == "0000200007"


def node(kunnr: str, parent: str, datab: str = "20200101", datbi: str = "99991231", vkorg: str = "1000") -> dict:
    """A KNVH row: `kunnr` below `parent` in the customer hierarchy (type A) from DATAB to DATBI."""
    return {"HITYP": "A", "KUNNR": kunnr, "VKORG": vkorg, "VTWEG": "10", "SPART": "00", "DATAB": datab,
            "DATBI": datbi, "HKUNNR": parent}


def test_the_customer_hierarchy_node_valid_on_the_day_is_the_parent_and_payers_stay_parents_too():
    child = customer("0000200005", payer="0000290001")
    child["_knvh"] = [node("0000200005", "0000200002", "20180101", "20221231"),   # moved away from it
                      node("0000200005", "0000200003", "20230101"),               # the node now
                      node("0000200005", "0000200004", "20990101")]               # not yet valid
    assert parent_of(child, on="20240615") == "0000200003"
    assert parents_of(child, on="20240615") == ["0000200003", "0000290001"]  # a block on either counts
    assert parent_of(child, on="20200615") == "0000200002" and parent_of(child, on="20991231") == "0000200003"
    assert parents_of(child, on="20991231") == ["0000200003", "0000200004", "0000290001"]
    top = customer("0000200003")
    top["_knvh"] = [node("0000200003", "")]  # a top node: no higher-level customer
    assert parent_of(top) is None and parents_of(top) == []


def test_a_block_on_a_hierarchy_node_or_on_the_payer_makes_the_child_ineligible():
    child = customer("0000200005", payer="0000290001")
    child["_knvh"] = [node("0000200005", "0000200003")]
    top, payer = customer("0000200003", AUFSD="01"), customer("0000290001")
    top["_knvh"] = [node("0000200003", "")]
    child["_ancestors"] = [top, payer]
    ok, why = eligibility(child)
    assert not ok and why == ["parent 0000200003: order block 01"]
    assert hierarchy_path(child) == ["0000200005", "0000200003"]
    top["AUFSD"], payer["_knkk"][0]["CRBLB"] = "", "X"
    assert eligibility(child) == (False, ["parent 0000290001: credit block"])
    row = customer_status_row("0000200005", child).payload["rows"][0]
    assert row["ParentAccount"] == "0000200003" and row["AccountStatus"] == "ParentBlocked"


def test_contact_rows_link_each_contact_to_its_account_parent_and_role():
    rec = customer("0000200005")
    rec["_knvh"] = [node("0000200005", "0000200003")]
    top = customer("0000200003", LIFSD="01")
    rec["_ancestors"] = [top]
    rec["_knvk"] = [{"PARNR": "0000500002", "KUNNR": "0000200005", "NAMEV": "Emma", "NAME1": "Fischer",
                     "ABTNR": "0002", "ABTPA": "Purchasing", "PAFKT": "02", "ANRED": "Ms.", "PARLA": "D"},
                    {"PARNR": "0000500001", "KUNNR": "0000200005", "NAMEV": "Tom", "NAME1": "Owen",
                     "ABTNR": "0006", "ABTPA": "Accounting", "PAFKT": "05", "ANRED": "Mr.", "PARLA": "E"}]
    rows = contact_rows("0000200005", rec).payload["rows"]
    assert [r["ContactKey"] for r in rows] == ["0000500001", "0000500002"]
    emma = rows[1]
    assert (emma["AccountNumber"], emma["ParentAccount"], emma["HierarchyPath"], emma["Role"]) == \
        ("0000200005", "0000200003", "0000200005 > 0000200003", "ContactPerson")
    assert (emma["FirstName"], emma["LastName"], emma["Department"], emma["DepartmentName"], emma["Function"],
            emma["Language"]) == ("Emma", "Fischer", "0002", "Purchasing", "02", "de")
    assert emma["EligibleForMarketing"] == "False" and emma["PromotionsAllowed"] == "False"
    assert emma["IneligibleReason"] == "parent 0000200003: delivery block 01"
    top["LIFSD"] = ""
    assert {(r["EligibleForMarketing"], r["PromotionsAllowed"]) for r in
            contact_rows("0000200005", rec).payload["rows"]} == {("True", "True")}
    payer = customer("0000290001", KTOKD="0003")
    payer["_knvp"] = [p for p in payer["_knvp"] if p["PARVW"] in ("RE", "RG")]  # a payer only: no sold-to
    payer["_knvk"] = [dict(rec["_knvk"][0], KUNNR="0000290001")]
    (row,) = contact_rows("0000290001", payer).payload["rows"]
    assert row["EligibleForMarketing"] == "True" and row["PromotionsAllowed"] == "False"
    assert contact_rows("0000250001", customer("0000250001")).payload["rows"] == []  # no KNVK: no rows
    # ... and the account named, so that a full run finds its rows in Marketing Cloud (none, or stale ones)
    assert contact_rows("0000250001", customer("0000250001")).payload == {"rows": [], "owner": "0000250001"}


def _idoc(mestyp: str, segs: list[dict]) -> dict:
    return {"control": {"MESTYP": mestyp, "DOCNUM": "0000000000000042"}, "segments": segs}


def test_an_order_idoc_becomes_a_transactions_row_and_a_journey_entry_event():
    parsed = _idoc("ORDRSP", [
        {"segment": "E1EDK01", "fields": {"BELNR": "0000004711", "CURCY": "EUR"}},
        {"segment": "E1EDK03", "fields": {"IDDAT": "012", "DATUM": "20261201"}},
        {"segment": "E1EDKA1", "fields": {"PARVW": "AG", "PARTN": "0000200001"}},
        {"segment": "E1EDP01", "fields": {"POSEX": "000010"}},
        {"segment": "E1EDS01", "fields": {"SUMID": "002", "SUMME": "99.5", "SUNIT": "EUR"}}])
    rec = sales_document(parsed)
    assert rec is not None and rec["_key"] == "ORDER:0000004711"
    d = sales_document_row(rec["_key"], rec, opts=Options(event_key="post-purchase"))
    assert d.payload["row"] == {"DocumentNumber": "0000004711", "DocumentType": "ORDER", "CustomerNumber": "0000200001",
                                "DocumentDate": "20261201", "Amount": "99.50", "Currency": "EUR", "Items": "1"}
    assert d.payload["event"]["contact"] == "0000200001" and d.payload["event"]["key"] == "post-purchase"


def test_a_delivery_has_no_journey_event_and_a_purchase_order_is_not_a_customer_document():
    dlv = sales_document(_idoc("DESADV", [{"segment": "E1EDL20", "fields": {"VBELN": "0080000001"}, "children": [
        {"segment": "E1ADRM1", "fields": {"PARTNER_Q": "WE", "PARTNER_ID": "0000250001"}},
        {"segment": "E1EDL24", "fields": {"POSNR": "000010"}}]}]))
    assert dlv is not None and dlv["customer"] == "0000250001"
    assert sales_document_row(dlv["_key"], dlv).payload["event"] is None
    po = _idoc("ORDERS", [{"segment": "E1EDK01", "fields": {"BELNR": "4500000001"}},
                          {"segment": "E1EDKA1", "fields": {"PARVW": "LF", "PARTN": "0000100001"}}])
    assert sales_document(po) is None
    assert sales_document(_idoc("ORDRSP", [])) is None


def test_an_existing_data_extension_that_differs_is_refused_naming_the_field():
    spec = DeSpec("K", "K", (DeField("CustomerNumber", "Text", 10, primary=True), DeField("Limit", "Decimal",
                                                                                          precision=18, scale=2)))
    same = DeHeld("K", "K", [DeField("CustomerNumber", "Text", 10, primary=True),
                             DeField("Limit", "Decimal", precision=18, scale=2), DeField("Extra", "Text", 5)])
    compare(spec, same)  # extra columns of marketing's own are allowed
    with pytest.raises(SchemaMismatch, match="'Limit' is Number, the flow declares Decimal"):
        compare(spec, DeHeld("K", "K", [DeField("CustomerNumber", "Text", 10, primary=True),
                                        DeField("Limit", "Number")]))
    with pytest.raises(SchemaMismatch, match="'Limit' is missing"):
        compare(spec, DeHeld("K", "K", [DeField("CustomerNumber", "Text", 10, primary=True)]))
    with pytest.raises(SchemaMismatch, match="'CustomerNumber' holds 5 characters"):
        compare(spec, DeHeld("K", "K", [DeField("CustomerNumber", "Text", 5, primary=True),
                                        DeField("Limit", "Decimal", precision=18, scale=2)]))
    with pytest.raises(SchemaMismatch, match="'CustomerNumber' is not a primary key"):
        compare(spec, DeHeld("K", "K", [DeField("CustomerNumber", "Text", 10),
                                        DeField("Limit", "Decimal", precision=18, scale=2)]))
