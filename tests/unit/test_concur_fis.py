"""FIS documents as the records the Concur → Business One mapping reads (pure functions)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from ml_connector.core.ledger import Desired
from ml_connector.flows.concur_sap_b1 import Options, payment_request_to_journal_entry, report_to_journal_entry
from ml_connector.systems.concur.fis import FisDocumentError, day, expense_record, invoice_record
from tests.support.concur import mappings, master, no_mappings, sums


def _expense_item(as_text: bool = False) -> dict[str, Any]:
    doc = {"employee": {"employeeFirstName": "Ana", "employeeLastName": "Ortiz", "loginId": "ana@x.example"},
           "report": {"reportId": "R9", "reportName": "Boston", "totalApprovedAmount": 250,
                      "employeeCurrencyAlphaCode": "USD", "reportPaymentProcessingDate": "2026-11-05T18:34:30.260Z",
                      "reportSubmitDate": "2026-11-04T10:00:00.000Z"},
           "expenseEntry": [
               {"entryId": "E1", "expenseTypeCode": "LODNG", "expenseTypeName": "Hotel", "entryIsPersonal": "N",
                "entryVendorCode": "Marriott International", "entryVendorDescription": "Marriott International",
                "entryDate": "2026-10-29T00:00:00.000Z", "entryApprovedAmount": 200,
                # one allocation, two journal rows on two accounts (the schema's example)
                "allocation": [{"allocationId": "A1", "allocationPercentage": 100, "allocationCustom1Code": "CC01",
                                "allocationCustom2Code": "", "journal": [
                                    {"journalAccountCode": "6020", "amountGross": 150, "amountNetOfTax": 150},
                                    {"journalAccountCode": "6030", "amountGross": 50.005}]}]},
               {"entryId": "E2", "expenseTypeCode": "BRKFT", "entryIsPersonal": "Y",
                "entryVendorDescription": "Blue Bottle Coffee", "entryDate": "2026-10-30T00:00:00.000Z",
                "allocation": [{"allocationId": "A2", "allocationPercentage": 100, "allocationCustom1Code": "CC01",
                                "journal": [{"journalAccountCode": "6030", "amountGross": 9.5}]}]}]}
    return {"id": "fis-1", "docType": "expense", "docStatus": "READY",
            "document": json.dumps(doc) if as_text else doc}


def test_expense_document_posts_concurs_journal_amounts_per_account_and_cost_centre() -> None:
    for as_text in (False, True):  # DocumentFormatAs: JSON or text
        rec = expense_record(_expense_item(as_text))
        assert (rec["ID"], rec["FisDocumentId"], rec["OwnerName"], rec["ProcessingPaymentDate"]) == \
            ("R9", "fis-1", "Ana Ortiz", "2026-11-05")
        d = report_to_journal_entry("report:R9", rec, master=master(), mapped=no_mappings, options=Options())
        assert isinstance(d, Desired) and d.payload["problems"] == []
        lines = d.payload["entry"]["JournalEntryLines"]
        assert [(ln.get("AccountCode") or ln["ShortName"], ln.get("Debit"), ln.get("Credit"), ln.get("CostingCode"))
                for ln in lines] == [("6020", 150.0, None, "CC01"), ("6030", 50.01, None, "CC01"),
                                     ("V2", None, 200.01, None)]  # the personal breakfast is left out
        assert sums(lines, "Debit") == sums(lines, "Credit")
        assert d.payload["entry"]["ReferenceDate"] == "2026-11-05"


def test_invoice_document_dates_lines_shipping_and_tax() -> None:
    alloc = {"allocationAccountCode": "6020", "allocationPercentage": 100.0, "allocationCustom1Code": "CC01",
             "journal": {"accountCode": "6020", "amountNet": 100.0, "amountGross": 112.0, "amountShipping": 4.0,
                         "tax": 8.0}}
    item = {"id": "fis-inv-9", "docType": "invoice", "document": {
        "requestHeader": {"requestId": "PR9", "vendorInvoiceNumber": "INV-9", "invoiceDate": "08/09/2026",
                          "paymentDueDate": "09/08/2026", "currencyAlphaCode": "USD", "requestTotal": 112.0,
                          "amountShippingTotal": 4.0},
        "vendor": {"vendorName": "Marriott International", "vendorCode": "MAR01"},
        "lineItem": [{"lineItemDescription": "Rooms", "expenseTypeCode": "LODNG  ", "allocation": [alloc]}]}}
    rec = invoice_record(item)
    assert (rec["InvoiceDate"], rec["PaymentDueDate"], rec["ShippingAmount"], rec["TaxAmount"]) == \
        ("2026-08-09", "2026-09-08", "4.0", "8.0")
    d = payment_request_to_journal_entry("payment_request:PR9", rec, master=master(),
                                         mapped=mappings(accounts={"TAX": "2000", "SHIPPING": "6030"}),
                                         options=Options())
    assert isinstance(d, Desired) and d.payload["problems"] == []
    lines = d.payload["entry"]["JournalEntryLines"]
    assert [(ln.get("AccountCode") or ln["ShortName"], ln.get("Debit") or -ln["Credit"]) for ln in lines] == \
        [("6020", 100.0), ("6030", 4.0), ("2000", 8.0), ("V2", -112.0)]
    assert sums(lines, "Debit") == sums(lines, "Credit") == Decimal("112.00")


def test_bad_documents_are_named() -> None:
    with pytest.raises(FisDocumentError, match="fis-x: `document` is not JSON"):
        expense_record({"id": "fis-x", "document": "{not json"})
    with pytest.raises(FisDocumentError, match=r"fis-y: no report\.reportId"):
        expense_record({"id": "fis-y", "document": {"report": {}}})
    assert day("2018-03-02T18:34:30.260Z") == "2018-03-02" and day("8/9/2026") == "2026-08-09" and day(None) == ""
