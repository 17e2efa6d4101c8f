"""The Concur → Business One mapping: pure functions, no I/O."""

from __future__ import annotations

from decimal import Decimal

from ml_connector.core.flow import Summary
from ml_connector.core.ledger import Desired, Parked
from ml_connector.flows.concur_sap_b1 import (
    ConcurSapB1Flow,
    Options,
    Review,
    match_vendor,
    normalise_name,
    payment_request_to_journal_entry,
    report_to_journal_entry,
    split,
)
from tests.support.concur import (
    allocation,
    entry,
    mappings,
    master,
    no_mappings,
    payment_request,
    report,
    sums,
)

OPTS = Options(dimension_fields={1: "Custom1", 2: "Custom2"})


def test_names_compare_without_case_punctuation_and_legal_form() -> None:
    assert normalise_name("Delta Air Lines, Inc.") == normalise_name("DELTA AIR LINES") == "delta air lines"
    assert normalise_name("The Hertz Corporation") == normalise_name("HERTZ") == "hertz"
    assert normalise_name("Café Zoë & Co") == "cafe zoe and"


def test_vendor_match_order_tax_id_then_mapping_then_name() -> None:
    md = master()
    # tax id wins over a differing name
    assert match_vendor("Delta Reisen", tax_id="580218548", master=md, mapped=no_mappings) == "V1"
    # a configured mapping (by Concur vendor code) wins over the name
    assert match_vendor("Marriott International", code="MAR01", master=md,
                        mapped=mappings(vendors={"MAR01": "V1"})) == "V1"
    assert match_vendor("MARRIOTT INTERNATIONAL", master=md, mapped=no_mappings) == "V2"


def test_ambiguous_or_unknown_vendors_are_never_guessed() -> None:
    md = master()
    for kwargs, words in (({"name": "Acme Print"}, "matches 2 business partners by name"),
                          ({"name": "North Star", "tax_id": "11-111"}, "belongs to 2 business partners"),
                          ({"name": "Blue Bottle Coffee"}, "not a business partner")):
        try:
            match_vendor(master=md, mapped=no_mappings, **kwargs)  # type: ignore[arg-type]
        except Review as r:
            assert words in r.why and r.waits_for == f"vendors:{kwargs['name']}"
        else:
            raise AssertionError(f"{kwargs} was matched")
    # a mapping to a CardCode Business One does not have is not taken either
    try:
        match_vendor("Blue Bottle Coffee", master=md, mapped=mappings(vendors={"Blue Bottle Coffee": "V999"}))
    except Review as r:
        assert "V999" in r.why
    else:
        raise AssertionError("mapped to an unknown CardCode")


def test_split_rounds_to_the_cent_and_keeps_the_total() -> None:
    shares = split(Decimal("610.50"), [Decimal(50), Decimal(25), Decimal(25)])
    assert shares == [Decimal("305.25"), Decimal("152.63"), Decimal("152.62")]
    assert sum(shares) == Decimal("610.50")


def test_report_becomes_a_balanced_entry_with_dimensions_and_vendor_credits() -> None:
    r = report([entry("E1", "DELTA AIR LINES", 612.40, [allocation("100", "6010", "CC01", "DEPT1")]),
                entry("E2", "Marriott International", 845.00, [allocation("60", "6020", "CC01"),
                                                                allocation("40", "6020", "CC02")]),
                entry("E3", "Delta Air Lines", 100.00, [allocation("100", "6010", "SPLIT12")]),
                entry("E4", "Blue Bottle Coffee", 9.99, [allocation("100", "6030", "CC01")], IsPersonal=True)])
    d = report_to_journal_entry("report:R1", r, master=master(), mapped=no_mappings, options=OPTS)
    assert isinstance(d, Desired)
    p = d.payload
    assert p["external_id"] == "concur:report:R1" and p["problems"] == []
    lines = p["entry"]["JournalEntryLines"]
    assert sums(lines, "Debit") == sums(lines, "Credit") == Decimal("1557.40")  # the personal entry is left out
    debits = [(ln["AccountCode"], ln["Debit"], ln.get("CostingCode"), ln.get("CostingCode2"))
              for ln in lines if "Debit" in ln]
    assert debits == [("6010", 612.40, "CC01", "DEPT1"), ("6020", 507.0, "CC01", None),
                      ("6020", 338.0, "CC02", None), ("6010", 100.0, "SPLIT12", None)]
    credits = {ln["ShortName"]: ln["Credit"] for ln in lines if "Credit" in ln}
    assert credits == {"V1": 712.40, "V2": 845.0}
    assert p["entry"]["ReferenceDate"] == "2026-11-05" and p["entry"]["Reference"] == "R1"


def test_unmatched_vendor_account_or_cost_centre_parks_the_source_record() -> None:
    md = master()
    cases = [(entry("E1", "Blue Bottle Coffee", 5.0, [allocation("100", "6030", "CC01")]),
              "vendors:Blue Bottle Coffee"),
             (entry("E1", "Delta Air Lines", 5.0, [allocation("100", "7777", "CC01")]), "accounts:7777"),
             (entry("E1", "Delta Air Lines", 5.0, [allocation("100", "6010", "CC99")]), "cost_centers:CC99"),
             # a dimension-2 code in the dimension-1 field is not a rule of dimension 1
             (entry("E1", "Delta Air Lines", 5.0, [allocation("100", "6010", "DEPT1")]), "cost_centers:DEPT1")]
    for e, waits in cases:
        r = report([e])
        out = report_to_journal_entry("report:R1", r, master=md, mapped=no_mappings, options=OPTS)
        assert isinstance(out, Parked) and out.waits_for == waits and out.payload is r


def test_mappings_translate_vendor_account_and_cost_centre() -> None:
    r = report([entry("E1", "Blue Bottle Coffee", 64.20, [allocation("100", "MEALS", "ENG")])])
    m = mappings(vendors={"Blue Bottle Coffee": "V3"}, accounts={"MEALS": "6030"}, cost_centers={"ENG": "CC02"})
    d = report_to_journal_entry("report:R1", r, master=master(), mapped=m, options=OPTS)
    assert isinstance(d, Desired)
    lines = d.payload["entry"]["JournalEntryLines"]
    assert lines[0]["AccountCode"] == "6030" and lines[0]["CostingCode"] == "CC02"
    assert lines[1] == {"ShortName": "V3", "Credit": 64.2, "LineMemo": "Concur Blue Bottle Coffee"}


def test_foreign_currency_report_posts_fc_amounts_for_b1_to_convert() -> None:
    r = report([entry("E1", "Delta Air Lines", 100.0, [allocation("100", "6010", "CC01")])], currency="EUR")
    d = report_to_journal_entry("report:R1", r, master=master(), mapped=no_mappings, options=OPTS)
    assert isinstance(d, Desired)
    debit, credit = d.payload["entry"]["JournalEntryLines"]
    assert (debit["FCCurrency"], debit["FCDebit"], "Debit" in debit) == ("EUR", 100.0, False)
    assert (credit["FCCurrency"], credit["FCCredit"]) == ("EUR", 100.0)


def test_entry_without_allocation_is_a_problem_naming_report_and_entry() -> None:
    d = report_to_journal_entry("report:R1", report([entry("E9", "Delta Air Lines", 5.0, [])]), master=master(),
                                mapped=no_mappings, options=OPTS)
    assert isinstance(d, Desired)
    assert d.payload["problems"] == ["report R1 entry 1 (E9): no allocation (no account to post to)",
                                     "the document has no lines to post"]


def test_payment_request_by_tax_id_with_line_allocations() -> None:
    pr = payment_request([("2400.00", "6020", "CC01"), ("350.00", "6030", "CC02")], vendor="Delta Travel Desk",
                         tax="58-0218548")
    d = payment_request_to_journal_entry("payment_request:PR1", pr, master=master(), mapped=no_mappings,
                                         options=Options(payment_request_tax_id_field="Custom5"))
    assert isinstance(d, Desired)
    lines = d.payload["entry"]["JournalEntryLines"]
    assert [(ln.get("AccountCode"), ln.get("Debit"), ln.get("CostingCode")) for ln in lines[:2]] == \
        [("6020", 2400.0, "CC01"), ("6030", 350.0, "CC02")]
    assert lines[2]["ShortName"] == "V1" and lines[2]["Credit"] == 2750.0
    assert d.payload["external_id"] == "concur:payment_request:PR1"
    # without the tax id field the unknown name parks it on the Concur vendor code
    out = payment_request_to_journal_entry("payment_request:PR1", pr, master=master(), mapped=no_mappings,
                                           options=Options())
    assert isinstance(out, Parked) and out.waits_for == "vendors:REGUS01"
    assert out.reason == "vendor 'Delta Travel Desk' is not a business partner in Business One; map it"
    # what its reviewer sees (`ml-connector review`)
    assert ConcurSapB1Flow.summarize("payment_requests", {**pr, "InvoiceAmount": "2750.00"}) == Summary(
        document="invoice INV-1 (payment request PR1)", party="Delta Travel Desk", amount="2750.00 USD")


def test_payment_request_tax_and_shipping_post_on_their_own_accounts_balanced() -> None:
    pr = payment_request([("2400.00", "6020", "CC01"), ("350.00", "6030", "CC02")], vendor="Marriott International",
                         shipping_amount="25.00", tax_amount="180.50")
    pr["CalculatedAmount"] = "2955.50"
    # tax on a configured account, shipping through the `accounts` table (Concur side code SHIPPING)
    d = payment_request_to_journal_entry("payment_request:PR1", pr, master=master(),
                                         mapped=mappings(accounts={"SHIPPING": "6030"}),
                                         options=Options(tax_account="2000"))
    assert isinstance(d, Desired) and d.payload["problems"] == []
    lines = d.payload["entry"]["JournalEntryLines"]
    assert [(ln.get("AccountCode") or ln.get("ShortName"), ln.get("Debit"), ln.get("Credit")) for ln in lines] == [
        ("6020", 2400.0, None), ("6030", 350.0, None), ("6030", 25.0, None), ("2000", 180.5, None),
        ("V2", None, 2955.5)]
    assert [ln["LineMemo"] for ln in lines[2:4]] == ["Shipping INV-1", "Tax INV-1"]
    assert "CostingCode" not in lines[2] and "CostingCode" not in lines[3]
    assert sums(lines, "Debit") == sums(lines, "Credit") == Decimal("2955.50")
    assert d.payload["total"] == "2955.50"


def test_payment_request_tax_account_not_in_business_one_parks_it_on_the_accounts_table() -> None:
    pr = payment_request([("100.00", "6020", "CC01")], vendor="Marriott International", tax_amount="8.25")
    out = payment_request_to_journal_entry("payment_request:PR1", pr, master=master(), mapped=no_mappings,
                                           options=Options())
    assert isinstance(out, Parked) and out.waits_for == "accounts:TAX"
    assert out.reason == ("payment request PR1 tax (TaxAmount 8.25): account TAX is not in the Business One "
                          "chart of accounts")
    # no tax and no shipping: no such line, and no account needed for them
    plain = payment_request([("100.00", "6020", "CC01")], vendor="Marriott International")
    d = payment_request_to_journal_entry("payment_request:PR1", plain, master=master(), mapped=no_mappings,
                                         options=Options())
    assert isinstance(d, Desired) and len(d.payload["entry"]["JournalEntryLines"]) == 2


def test_payment_request_negative_shipping_credits_its_account_and_a_wrong_total_is_a_problem() -> None:
    pr = payment_request([("100.00", "6020", "CC01")], vendor="Marriott International", shipping_amount="-10.00")
    d = payment_request_to_journal_entry("payment_request:PR1", pr, master=master(), mapped=no_mappings,
                                         options=Options(shipping_account="6030"))
    assert isinstance(d, Desired) and d.payload["problems"] == []
    lines = d.payload["entry"]["JournalEntryLines"]
    assert lines[1] == {"AccountCode": "6030", "Credit": 10.0, "LineMemo": "Shipping INV-1"}
    assert lines[2]["ShortName"] == "V2" and lines[2]["Credit"] == 90.0
    assert sums(lines, "Debit") == sums(lines, "Credit") == Decimal("100.00")
    wrong = {**pr, "CalculatedAmount": "100.00"}
    d = payment_request_to_journal_entry("payment_request:PR1", wrong, master=master(), mapped=no_mappings,
                                         options=Options(shipping_account="6030"))
    assert isinstance(d, Desired)
    assert d.payload["problems"] == ["payment request PR1: lines + shipping + tax = 90.00, but its "
                                     "CalculatedAmount is 100.00"]
