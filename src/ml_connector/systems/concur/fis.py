"""Financial Integration Service (FIS) v4 documents as the records the flows map (pure functions).

A FIS document (`content[]` of `GET /financialintegration/fi/v4/companies/transactiontypes/{docType}/
transactions`, schema v4.financial-documents-schema) carries what a posting needs: for an expense
report its entries with Concur's own journal rows (account, gross amount) per allocation; for an
invoice (payment request) its line items with a journal object per allocation (net, shipping, tax).
The records keep the field names of the v3 APIs (`Entries[].Allocations[]`, `LineItems.LineItem[]`),
so that one mapping reads either source, and add:

- `Amount` on an allocation: the journal's amount, posted as it is (no re-split by percentage), so
  the journal entry carries Concur's amounts to the cent;
- `FisDocumentId`: the FIS document's id (for the record's reader; the journal entry's payload
  does not carry it, so a document maps to the same entry whichever API it was read through).

The `document` is an object (`DocumentFormatAs: JSON`) or a JSON string (`text`); both are read.
Dates come as ISO times (`2018-03-02T18:34:30.260Z`) or, in the invoice example, `MM/DD/YYYY`; both
become `YYYY-MM-DD`.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

#: The allocation custom fields a FIS document carries (allocationCustom1Code .. allocationCustom20Code).
CUSTOM_FIELDS = range(1, 21)


class FisDocumentError(ValueError):
    """A FIS document without what a posting needs (names the document and the field)."""


def document(item: dict[str, Any]) -> dict[str, Any]:
    """The financial document of a `content[]` item, parsed when it came as text."""
    doc = item.get("document")
    if isinstance(doc, str):
        try:
            doc = json.loads(doc)
        except ValueError:
            raise FisDocumentError(f"FIS document {item.get('id')}: `document` is not JSON") from None
    if not isinstance(doc, dict):
        raise FisDocumentError(f"FIS document {item.get('id')}: no `document` object")
    return doc


def day(value: Any) -> str:
    """`YYYY-MM-DD` of an ISO date/time or a `MM/DD/YYYY` date; "" when empty."""
    text = str(value or "").strip()
    m = re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4})", text[:10])
    if m:
        return f"{m.group(3)}-{int(m.group(1)):02d}-{int(m.group(2)):02d}"
    return text[:10]


def _yes(value: Any) -> bool:
    return value is True or str(value).strip().upper() in ("Y", "YES", "TRUE")


def _amount(value: Any) -> Decimal:
    return Decimal(str(value if value not in (None, "") else 0))


def _customs(alloc: dict[str, Any]) -> dict[str, Any]:
    """allocationCustomNCode as the v3 `CustomN` list-item object the mapping reads."""
    out: dict[str, Any] = {}
    for i in CUSTOM_FIELDS:
        code = alloc.get(f"allocationCustom{i}Code")
        if code not in (None, ""):
            out[f"Custom{i}"] = {"Code": str(code), "Value": alloc.get(f"allocationCustom{i}Value") or str(code)}
    return out


def expense_record(item: dict[str, Any]) -> dict[str, Any]:
    """An expense document → the report record: `Entries[]` with an allocation per journal row."""
    doc = document(item)
    rep = doc.get("report") or {}
    emp = doc.get("employee") or {}
    if not rep.get("reportId"):
        raise FisDocumentError(f"FIS expense document {item.get('id')}: no report.reportId")
    entries = []
    for e in doc.get("expenseEntry") or []:
        allocs = []
        for a in e.get("allocation") or []:
            journals = a.get("journal") or []
            if isinstance(journals, dict):
                journals = [journals]
            for n, j in enumerate(journals, start=1):
                allocs.append({"ID": f"{a.get('allocationId')}" + (f"-{n}" if len(journals) > 1 else ""),
                               "Percentage": str(a.get("allocationPercentage") or ""),
                               "AccountCode1": str(j.get("journalAccountCode") or ""),
                               "Amount": str(_amount(j.get("amountGross"))), **_customs(a)})
        vendor = str(e.get("entryVendorDescription") or e.get("entryVendorName") or "").strip()
        entries.append({"ID": str(e.get("entryId") or ""), "ExpenseTypeCode": e.get("expenseTypeCode"),
                        "ExpenseTypeName": e.get("expenseTypeName") or e.get("expenseTypeCode"),
                        "VendorDescription": vendor or str(e.get("entryVendorCode") or ""),
                        "VendorListItemID": (str(e["entryVendorCode"]) if e.get("entryVendorCode")
                                             and str(e["entryVendorCode"]).strip() != vendor else None),
                        "PostedAmount": str(sum((_amount(a["Amount"]) for a in allocs), Decimal(0))),
                        "ApprovedAmount": e.get("entryApprovedAmount"), "TransactionDate": day(e.get("entryDate")),
                        "IsPersonal": _yes(e.get("entryIsPersonal")), "Allocations": allocs})
    owner = " ".join(str(emp.get(k) or "") for k in ("employeeFirstName", "employeeLastName")).strip()
    return {"ID": str(rep["reportId"]), "Name": rep.get("reportName"), "Total": rep.get("totalApprovedAmount"),
            "CurrencyCode": rep.get("employeeCurrencyAlphaCode"), "OwnerLoginID": emp.get("loginId"),
            "OwnerName": owner or emp.get("employeeId"),
            "ProcessingPaymentDate": day(rep.get("reportPaymentProcessingDate")),
            "SubmitDate": day(rep.get("reportSubmitDate")), "LedgerName": rep.get("ledgerCode"),
            "FisDocumentId": str(item.get("id") or ""), "Entries": entries}


def invoice_record(item: dict[str, Any]) -> dict[str, Any]:
    """An invoice document → the payment request record: `LineItems.LineItem[]` with allocations
    carrying the journal's net amount; the journals' shipping and tax summed into the header's
    `ShippingAmount` and `TaxAmount` (the flow posts those on their own accounts)."""
    doc = document(item)
    head = doc.get("requestHeader") or {}
    vendor = doc.get("vendor") or {}
    if not head.get("requestId"):
        raise FisDocumentError(f"FIS invoice document {item.get('id')}: no requestHeader.requestId")
    lines = []
    shipping = tax = Decimal(0)
    for n, li in enumerate(doc.get("lineItem") or [], start=1):
        allocs = []
        net = Decimal(0)
        for a in li.get("allocation") or []:
            j = a.get("journal") or {}
            if isinstance(j, list):  # the schema gives an object; tolerate a one-row list
                j = j[0] if j else {}
            amount = _amount(j.get("amountNet") if j.get("amountNet") is not None else j.get("amountGross"))
            shipping += _amount(j.get("amountShipping"))
            tax += _amount(j.get("tax"))
            net += amount
            allocs.append({"Percentage": str(a.get("allocationPercentage") or ""),
                           "AllocationAccountCode": str(a.get("allocationAccountCode") or j.get("accountCode") or ""),
                           "Amount": str(amount), **_customs(a)})
        lines.append({"LineItemId": str(li.get("externalLineItemId") or li.get("lineItemSequenceOrder") or n),
                      "ExpenseTypeCode": str(li.get("expenseTypeCode") or "").strip(),
                      "Description": li.get("lineItemDescription") or li.get("expenseTypeName"),
                      "TotalPrice": str(net), "Allocations": {"Allocation": allocs}})
    if not shipping and head.get("amountShippingTotal") not in (None, ""):
        shipping = _amount(head.get("amountShippingTotal"))
    return {"ID": str(head["requestId"]), "InvoiceNumber": head.get("vendorInvoiceNumber"),
            "InvoiceDate": day(head.get("invoiceDate")), "PaymentDueDate": day(head.get("paymentDueDate")),
            "CurrencyCode": head.get("currencyAlphaCode"), "InvoiceAmount": head.get("requestTotal"),
            "ShippingAmount": str(shipping), "TaxAmount": str(tax),
            "VendorRemitAddress": {"Name": vendor.get("vendorName")},
            "VendorRemitToIdentifier": {"VendorCode": vendor.get("vendorCode"),
                                        "AddressCode": vendor.get("vendorRemitToAddressCode")},
            "FisDocumentId": str(item.get("id") or ""), "LineItems": {"LineItem": lines}}
