"""The SAP ECC ↔ Ramp mapping functions: pure, no servers, no database (milliseconds)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from ml_connector.core.flow import Outcome
from ml_connector.core.http import CredentialRefused, TokenEndpointError
from ml_connector.core.ledger import Desired, Parked
from ml_connector.flows.sap_ecc_ramp import (
    bill_status_to_sap,
    bill_to_invoice,
    cost_center_to_option,
    describe_bill,
    gl_account_to_ramp,
    invoice_of,
    match_accounting_vendor,
    match_billpay_vendor,
    no_token_yet,
    normalised_name,
    same_name_in_place,
    token_missing,
    vendor_to_ramp,
)
from ml_connector.systems.ramp.client import RampApiError, RampTransportError
from ml_connector.systems.sap_ecc.posting import xblnr_for
from ml_connector.systems.sap_ecc.targets import NotPostable

# --------------------------------------------------------------------------- vendors


def _vendor(**kw: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {"LIFNR": "0000100042", "NAME1": "Acme ", "NAME2": " Supplies", "LOEVM": "", "SPERR": "",
                           "_company_codes": {"1000": {"BUKRS": "1000", "LOEVM": ""}}}
    rec.update(kw)
    return rec


def test_vendor_payload_is_id_name_and_code_without_zeros():
    d = vendor_to_ramp("0000100042", _vendor())
    assert d == Desired("0000100042", {"id": "0000100042", "name": "Acme Supplies", "code": "100042"}, active=True)


def test_vendor_without_name_is_named_by_its_number_and_alphanumeric_keys_keep_their_form():
    assert vendor_to_ramp("0000100042", _vendor(NAME1="", NAME2="")).payload["name"] == "0000100042"
    assert vendor_to_ramp("ACME", _vendor(NAME2="")).payload == {"id": "ACME", "name": "Acme", "code": "ACME"}


@pytest.mark.parametrize(("lfa1_loevm", "company_codes", "active"), [
    ("X", {"1000": {"LOEVM": ""}}, False),  # deleted centrally
    ("", {"1000": {"LOEVM": "X"}, "2000": {"LOEVM": "X"}}, False),  # deleted in every company code read
    ("", {"1000": {"LOEVM": "X"}, "2000": {"LOEVM": ""}}, True),  # still live in one
    ("", {}, True),
])
def test_vendor_deletion_flags_deactivate(lfa1_loevm, company_codes, active):
    assert vendor_to_ramp("1", _vendor(LOEVM=lfa1_loevm, _company_codes=company_codes)).active is active


def test_vendor_posting_block_deactivates_only_when_configured():
    blocked = _vendor(SPERR="X")
    assert vendor_to_ramp("1", blocked).active is True
    assert vendor_to_ramp("1", blocked, deactivate_blocked=True).active is False
    assert vendor_to_ramp("1", _vendor(), deactivate_blocked=True).active is True


# --------------------------------------------------------------------------- GL accounts


def _account(**kw: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {"KTOPL": "INT", "SAKNR": "0000600000", "XBILK": "", "GVTYP": "X", "XLOEV": "",
                           "XSPEB": "", "_text": {"TXT20": "Office supplies", "TXT50": "Office supplies and paper"},
                           "_company_codes": [{"BUKRS": "1000", "XSPEB": "", "XLOEB": "", "MITKZ": ""}]}
    rec.update(kw)
    return rec


def test_gl_account_payload_long_text_code_and_classification():
    d = gl_account_to_ramp("0000600000", _account())
    assert d == Desired("0000600000", {"id": "0000600000", "name": "Office supplies and paper", "code": "600000",
                                       "classification": "EXPENSE"}, active=True)


def test_gl_account_name_falls_back_to_short_text_then_number():
    assert gl_account_to_ramp("0000600000", _account(_text={"TXT20": "Office"})).payload["name"] == "Office"
    assert gl_account_to_ramp("0000600000", _account(_text={})).payload["name"] == "600000"


def test_gl_account_classification_options_are_applied():
    d = gl_account_to_ramp("0000600000", _account(), overrides={"6": "asset"})
    assert d.payload["classification"] == "ASSET"
    assert gl_account_to_ramp("0000600000", _account(), revenue_prefixes=("6",)).payload["classification"] == "REVENUE"
    reconciliation = _account(XBILK="X", GVTYP="", _company_codes=[{"MITKZ": "K"}])
    assert gl_account_to_ramp("0000160000", reconciliation).payload["classification"] == "LIABILITY"


@pytest.mark.parametrize(("chart", "company_codes", "active"), [
    ({"XLOEV": "X"}, [{"XSPEB": "", "XLOEB": ""}], False),  # marked for deletion in the chart
    ({"XSPEB": "X"}, [{"XSPEB": "", "XLOEB": ""}], False),  # blocked in the chart
    ({}, [{"XSPEB": "X"}, {"XLOEB": "X"}], False),  # blocked or deleted in every company code
    ({}, [{"XSPEB": "X"}, {"XSPEB": "", "XLOEB": ""}], True),
])
def test_gl_account_blocks_deactivate(chart, company_codes, active):
    assert gl_account_to_ramp("0000600000", _account(**chart, _company_codes=company_codes)).active is active


# --------------------------------------------------------------------------- cost centers


def test_cost_center_option_value_and_code():
    rec = {"KOSTL": "0000001410", "BKZKP": "", "_valid_today": True, "_text": {"KTEXT": "Sales East",
                                                                              "LTEXT": "Sales, eastern region"}}
    assert cost_center_to_option("0000001410", rec) == Desired(
        "0000001410", {"id": "0000001410", "value": "Sales East", "code": "1410"}, active=True)
    assert cost_center_to_option("0000001410", dict(rec, _text={"LTEXT": "Long"})).payload["value"] == "Long"
    assert cost_center_to_option("0000001410", dict(rec, _text={})).payload["value"] == "1410"


def test_cost_center_not_valid_today_or_locked_is_inactive():
    rec = {"BKZKP": "", "_valid_today": True, "_text": {"KTEXT": "X"}}
    assert cost_center_to_option("1", dict(rec, _valid_today=False)).active is False
    assert cost_center_to_option("1", dict(rec, BKZKP="X")).active is False


# --------------------------------------------------------------------------- bills


def _sel(kind: str, external_id: str) -> dict[str, Any]:
    return {"external_id": external_id, "category_info": {"type": kind}}


def _bill(**kw: Any) -> dict[str, Any]:
    bill: dict[str, Any] = {
        "id": "b-1", "entity_id": "ent-1", "invoice_number": "INV-7", "issued_at": "2025-06-15T10:00:00Z",
        "vendor": {"id": "rv-1", "remote_id": "100042"}, "amount": {"amount": 20000, "currency_code": "USD"},
        "accounting_field_selections": [_sel("GL_ACCOUNT", "600000")],
        "line_items": [{"amount": {"amount": 12050, "currency_code": "USD"}, "memo": "Paper",
                        "accounting_field_selections": [_sel("COST_CENTER", "1000")]},
                       {"amount": {"amount": 7950, "currency_code": "USD"}, "memo": "Toner",
                        "accounting_field_selections": [_sel("GL_ACCOUNT", "0000610000"),
                                                        _sel("COST_CENTER", "0000001100")]}]}
    bill.update(kw)
    return bill


TABLES = {("entities", "ent-1"): "1000", ("vendors", "rv-9"): "100099"}


def _mapped(table: str, value: str) -> str | None:
    return TABLES.get((table, value))


def _map(bill: dict[str, Any], **kw: Any) -> Desired | Parked:
    return bill_to_invoice(bill["id"], bill, mapped=_mapped, today="2025-07-01", **kw)


def test_bill_becomes_an_invoice_with_line_coding_and_internal_keys():
    d = _map(_bill())
    assert isinstance(d, Desired) and d.active
    assert d.payload == {
        "bill_id": "b-1", "invoice_number": "INV-7", "entity_id": "ent-1", "company_code": "1000",
        "vendor": "0000100042", "currency": "USD", "doc_date": "2025-06-15", "posting_date": "2025-06-15",
        "xblnr": xblnr_for("b-1", "RMP"), "credit_memo": False, "problems": [],
        "lines": [{"gl_account": "0000600000", "cost_center": "0000001000", "amount": "120.50", "text": "Paper"},
                  {"gl_account": "0000610000", "cost_center": "0000001100", "amount": "79.50", "text": "Toner"}]}


def test_bill_posting_date_and_prefix_options():
    d = _map(_bill(accounting_date="2025-06-30", issued_at=None), xblnr_prefix="XY")
    assert isinstance(d, Desired)
    assert (d.payload["doc_date"], d.payload["posting_date"]) == ("2025-07-01", "2025-06-30")
    assert d.payload["xblnr"] == xblnr_for("b-1", "XY")


def test_bill_of_an_unmapped_entity_is_parked_with_the_bill():
    bill = _bill(entity_id="ent-2")
    assert _map(bill) == Parked("b-1", "entities:ent-2", payload=bill)
    assert _map(_bill(entity_id=None)) == Parked("b-1", "entities:-", payload=_bill(entity_id=None))


def test_bill_pay_vendor_without_remote_id_needs_the_vendors_mapping():
    bill = _bill(vendor={"id": "rv-9"})
    d = _map(bill)
    assert isinstance(d, Desired) and d.payload["vendor"] == "0000100099"
    unmapped = _bill(vendor={"id": "rv-3", "name": "Pat's Plumbing"})
    assert _map(unmapped) == Parked("b-1", "vendors:rv-3", payload=unmapped)


def test_cost_center_selection_by_custom_field_id():
    bill = _bill(line_items=[{"amount": "200", "accounting_field_selections": [
        {"external_id": "0000001300", "category_info": {"type": "OTHER", "external_id": "MY_CC"}}]}])
    d = _map(bill, cost_center_field_id="MY_CC")
    assert isinstance(d, Desired) and d.payload["lines"][0]["cost_center"] == "0000001300"
    d = _map(bill)
    assert isinstance(d, Desired) and d.payload["lines"][0]["cost_center"] == ""


@pytest.mark.parametrize(("change", "problem"), [
    ({"accounting_field_selections": []}, "line 1: no GL account selected; code the line in Ramp"),
    ({"line_items": []}, "the bill has no line items"),
    ({"amount": {"amount": 19999, "currency_code": "USD"}}, "the lines add up to 200.00 USD, the bill says 199.99 USD"),
    ({"accounting_field_selections": [_sel("GL_ACCOUNT", "123456789012")]},
     "line 1: GL account 123456789012 is longer than SAP's 10 characters"),
])
def test_bill_problems_sap_would_refuse_are_named(change, problem):
    d = _map(_bill(**change))
    assert isinstance(d, Desired) and problem in d.payload["problems"]
    with pytest.raises(NotPostable) as refused:
        invoice_of(d.payload)
    assert str(refused.value) == "; ".join(d.payload["problems"])


def test_negative_bill_is_a_credit_memo_with_positive_lines():
    bill = _bill(amount={"amount": -5000, "currency_code": "EUR"},
                 line_items=[{"amount": {"amount": -5000, "currency_code": "EUR"}}])
    d = _map(bill)
    assert isinstance(d, Desired)
    assert (d.payload["credit_memo"], d.payload["currency"], d.payload["lines"][0]["amount"]) == (True, "EUR", "50.00")
    inv = invoice_of(d.payload)
    assert (inv.credit_memo, inv.doc_type, inv.lines[0].amount) == (True, "KG", Decimal("50.00"))


def test_invoice_of_a_mapped_bill():
    d = _map(_bill())
    assert isinstance(d, Desired)
    inv = invoice_of(d.payload, doc_type="RE")
    assert (inv.source_id, inv.company_code, inv.vendor, inv.currency, inv.doc_type) == (
        "b-1", "1000", "0000100042", "USD", "RE")
    assert (inv.doc_date, inv.posting_date) == (date(2025, 6, 15), date(2025, 6, 15))
    assert [(ln.gl_account, ln.cost_center, ln.amount, ln.text) for ln in inv.lines] == [
        ("0000600000", "0000001000", Decimal("120.50"), "Paper"),
        ("0000610000", "0000001100", Decimal("79.50"), "Toner")]
    assert (inv.header_text, inv.vendor_text, inv.reference) == ("Ramp INV-7", "INV-7", xblnr_for("b-1", "RMP"))


def test_describe_bill_names_what_would_be_posted():
    d = _map(_bill())
    assert isinstance(d, Desired)
    assert describe_bill("create", d.payload) == (
        f"post SAP vendor invoice for Ramp bill INV-7 (b-1): company code 1000, vendor 100042, 200.00 USD, "
        f"XBLNR {xblnr_for('b-1', 'RMP')}, lines [GL 600000/CC 1000 120.50, GL 610000/CC 1100 79.50]")


# --------------------------------------------------------------------------- bill status back to SAP


def _paid(**kw: Any) -> dict[str, Any]:
    return _bill(payment_status="PAID", status="PAID", paid_at="2025-07-02T10:00:00+00:00",
                 payment={"id": "pay-1", "payment_date": "2025-07-02T10:00:00+00:00",
                          "effective_date": "2025-07-03T00:00:00+00:00",
                          "trace_id": {"descriptor": "ACH Trace ID", "trace_id": "TRACE-77"}}, **kw)


def test_paid_bill_clears_its_invoice_with_the_payment_reference_and_effective_date():
    b = _paid()
    d = bill_status_to_sap(b["id"], b, mapped=_mapped, document="1900000007/1000/2025")
    assert isinstance(d, Desired)
    p = d.payload
    assert (p["action"], p["document"], p["payment_date"], p["reference"]) == (
        "clear", "1900000007/1000/2025", "2025-07-03", "TRACE-77")
    assert p["xblnr"] == xblnr_for(b["id"], "RMP") and p["company_code"] == "1000"
    unblock = bill_status_to_sap(b["id"], b, mapped=_mapped, paid_action="unblock")
    assert isinstance(unblock, Desired) and unblock.payload["action"] == "unblock"
    assert unblock.payload["document"] == "" and unblock.payload["fiscal_year"] == "2025"


def test_rejected_bill_is_blocked_or_reversed_as_configured():
    b = _bill(approval_status="REJECTED", rejected_at="2025-07-05T08:00:00+00:00", rejection_reason="dup")
    block = bill_status_to_sap(b["id"], b, mapped=_mapped, block_key="R")
    assert isinstance(block, Desired) and (block.payload["action"], block.payload["block_key"]) == ("block", "R")
    rev = bill_status_to_sap(b["id"], b, mapped=_mapped, rejected_action="reverse")
    assert isinstance(rev, Desired)
    assert (rev.payload["action"], rev.payload["posting_date"]) == ("reverse", "2025-07-05")


def test_status_of_a_bill_of_an_unmapped_entity_waits_for_the_entity_mapping():
    b = _paid(entity_id="ent-unknown")
    out = bill_status_to_sap(b["id"], b, mapped=_mapped)
    assert isinstance(out, Parked) and out.waits_for == "entities:ent-unknown"


# --------------------------------------------------------------------------- vendor matching


def _bp(vid: str, name: str, **kw: Any) -> dict[str, Any]:
    return {"id": vid, "name": name, "country": "US", "accounting_vendor_remote_id": None, "is_active": True, **kw}


def test_normalised_names_ignore_case_punctuation_accents_and_legal_forms():
    assert normalised_name("ACME Supplies, Inc.") == normalised_name("Acme supplies") == "acme supplies"
    assert normalised_name("Müller & Söhne GmbH") == normalised_name("Muller Sohne") == "muller sohne"
    assert normalised_name("Acme") != normalised_name("Acme Tools")


def test_a_vendor_matches_by_tax_id_first_then_by_name_in_a_compatible_address():
    sap = _vendor(NAME1="Acme Supplies Inc.", NAME2="", LAND1="US", ORT01="Detroit", STCD1="12-3456789")
    by_tax = [_bp("v1", "Totally Different LLC", tax_id="123456789"), _bp("v2", "Acme Supplies")]
    assert match_billpay_vendor("0000100042", sap, by_tax) == ("v1", [])
    by_name = [_bp("v2", "ACME SUPPLIES"), _bp("v3", "Acme Supplies", country="DE"),
               _bp("v4", "Acme Supplies", address={"city": "Chicago"})]
    assert match_billpay_vendor("0000100042", sap, by_name) == ("v2", [])
    assert match_billpay_vendor("0000100042", sap, [_bp("v5", "Zenith Corp")]) == (None, [])


def test_bill_pay_and_accounting_vendors_share_one_name_and_place_rule():
    sap = _vendor(NAME1="Acme", NAME2="Supplies", LAND1="US", ORT01="Detroit")
    # country: same or unknown on one side; city: same, or unknown on one side (either way round)
    places = [{"country": "US", "address": {"city": "DETROIT "}}, {"country": "US"}, {"address": {"city": "Detroit"}},
              {}, {"country": "DE"}, {"country": "US", "address": {"city": "Chicago"}},
              {"address": {"country": "us", "city": "detroit"}}]
    expected = [True, True, True, True, False, False, True]
    cands = [{"id": f"v{i}", "ramp_id": f"r{i}", "name": "ACME Supplies, Inc.", "is_active": True, **p}
             for i, p in enumerate(places)]
    assert [c["id"] for c in same_name_in_place(sap, lambda name: [c for c in cands if name == "acme supplies"])] \
        == [c["id"] for c, ok in zip(cands, expected, strict=True) if ok]
    assert same_name_in_place(_vendor(NAME1="", NAME2="", LAND1="US", ORT01=""), lambda name: cands) == []
    # each candidate alone: both matchers take it exactly where the rule says so
    for c, ok in zip(cands, expected, strict=True):
        bp = {**c, "accounting_vendor_remote_id": None}
        assert match_billpay_vendor("0000100042", sap, [bp]) == ((c["id"], []) if ok else (None, []))
        assert match_accounting_vendor("0000100042", sap, [c]) == ((c["ramp_id"], []) if ok else (None, []))


def test_two_plausible_vendors_are_ambiguous_and_one_already_linked_wins():
    sap = _vendor(NAME1="Acme Supplies", NAME2="", LAND1="US", ORT01="")
    twins = [_bp("v1", "Acme Supplies Inc"), _bp("v2", "ACME Supplies LLC")]
    assert match_billpay_vendor("0000100042", sap, twins) == (None, ["v1", "v2"])
    linked = [*twins, _bp("v9", "Whatever", accounting_vendor_remote_id="0000100042")]
    assert match_billpay_vendor("0000100042", sap, linked) == ("v9", [])
    # A vendor linked to another SAP vendor is never taken.
    taken = [_bp("v1", "Acme Supplies", accounting_vendor_remote_id="0000100077")]
    assert match_billpay_vendor("0000100042", sap, taken) == (None, [])


def test_a_line_coded_on_a_ramp_dimension_takes_the_mapped_cost_center_or_waits_for_the_mapping():
    plant = {"external_id": "1100", "category_info": {"type": "OTHER", "external_id": "SAP_PLANT"}}
    b = _bill(line_items=[{"amount": {"amount": 20000, "currency_code": "USD"}, "memo": "Pallets",
                           "accounting_field_selections": [plant]}])
    waiting = _map(b, dimension_fields=("SAP_PLANT",))
    assert isinstance(waiting, Parked) and waiting.waits_for == "cost_center_dimensions:SAP_PLANT:1100"
    TABLES[("cost_center_dimensions", "SAP_PLANT:1100")] = "1610"
    try:
        d = _map(b, dimension_fields=("SAP_PLANT",))
    finally:
        del TABLES[("cost_center_dimensions", "SAP_PLANT:1100")]
    assert isinstance(d, Desired) and d.payload["lines"][0]["cost_center"] == "0000001610"
    # Without the option the dimension is not read: no cost center on the line.
    plain = _map(b)
    assert isinstance(plain, Desired) and plain.payload["lines"][0]["cost_center"] == ""


# --------------------------------------------------------------------------- reports to Ramp without a token


def test_a_report_to_ramp_waits_for_a_token_only_when_the_token_is_what_is_missing():
    assert token_missing(TokenEndpointError("ramp: token request failed (HTTP 503)"))
    assert token_missing(CredentialRefused("ramp: Ramp refused the credential (HTTP 401 invalid_client)"))
    assert token_missing(RampApiError(401, "DEVELOPER_7002", "Invalid, expired or missing access token."))
    assert not token_missing(RampApiError(400, "DEVELOPER_7001", "Invalid input."))
    assert not token_missing(RampApiError(403, "DEVELOPER_7003", "missing scope"))
    assert not token_missing(RampTransportError("Ramp POST /accounting/syncs: ConnectError"))
    posted = Outcome(7, "posted", target_id="1900000001/1000/2025", response={"document": "1900000001/1000/2025"})
    waiting = no_token_yet(posted, "posted in SAP as 1900000001/1000/2025", TokenEndpointError("HTTP 503"))
    assert (waiting.entry_id, waiting.state, waiting.target_id) == (7, "waiting", "1900000001/1000/2025")
    assert waiting.error is not None and "posted in SAP as 1900000001/1000/2025" in waiting.error
    assert "waits for a Ramp token: HTTP 503" in waiting.error
