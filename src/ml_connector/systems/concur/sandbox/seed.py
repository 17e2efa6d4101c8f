"""The sandbox company: a consulting firm's approved expense reports and payment requests.

Vendors, accounts and cost centres match the SAP Business One sandbox's seed (systems/sap_b1/
sandbox/state.py, the `CONSULTING_*` tables), except the coffee shop of report 3, which Business
One does not know: that report goes to review until its vendor is mapped.
"""

from __future__ import annotations

from typing import Any

COMPANY_UUID = "7b1c2d3e-0f4a-4b5c-8d9e-a1b2c3d4e5f6"
CLIENT_ID = "concur-sandbox-client"
CLIENT_SECRET = "concur-sandbox-secret"  # public sandbox demo credential, not a secret
REQUEST_TOKEN = "concur-sandbox-company-request-token"  # public sandbox demo credential
HOME_REGION = "us2"
REGIONS = ("us2", "eu2", "apj1", "cn")
GLZ = "glz"
#: The vendor of report 3 that Business One does not know (the review case).
REVIEW_VENDOR = "Blue Bottle Coffee"

# (owner login, owner name, report name, approval, payment, date, entries)
# entry: (expense type code, type name, vendor, amount, date, [(percentage, account, cost centre, dept)],
#         attendees)
_REPORTS: list[tuple[str, str, str, str, str, str, list[tuple[Any, ...]]]] = [
    ("ana.ortiz@harborlane.example", "Ana Ortiz", "Client Alpha kickoff - Boston", "A_APPR", "P_PROC",
     "2026-11-03", [
         ("AIRFR", "Airfare", "DELTA AIR LINES", 612.40, "2026-10-27", [("100", "6010", "CC04", "DEPT1")], []),
         ("LODNG", "Hotel", "MARRIOTT INTERNATIONAL", 845.00, "2026-10-29",
          [("60", "6020", "CC04", "DEPT1"), ("40", "6020", "CC01", "DEPT1")], []),
         ("TAXIX", "Taxi", "Uber Technologies", 48.25, "2026-10-29", [("100", "6040", "CC04", "DEPT1")], []),
     ]),
    ("ben.keller@harborlane.example", "Ben Keller", "Sales conference Chicago", "A_APPR", "P_PROC",
     "2026-11-05", [
         ("AIRFR", "Airfare", "Delta Air Lines", 389.90, "2026-10-30", [("100", "6010", "CC01", "DEPT2")], []),
         ("LODNG", "Hotel", "Marriott International", 1020.00, "2026-11-01", [("100", "6020", "CC01", "DEPT2")],
          []),
         ("BUSML", "Business Meal", "The Capital Grille", 286.50, "2026-11-01", [("100", "6300", "CC01", "DEPT2")],
          [("Dana Whitfield", "Client Alpha"), ("Ben Keller", "Harbor & Lane")]),
     ]),
    ("chen.li@harborlane.example", "Chen Li", "Engineering offsite", "A_APPR", "P_PROC", "2026-11-06", [
        ("CARRT", "Car Rental", "HERTZ", 312.77, "2026-11-02", [("100", "6040", "CC02", "DEPT1")], []),
        ("BRKFT", "Breakfast", "Blue Bottle Coffee", 64.20, "2026-11-03", [("100", "6030", "CC02", "DEPT1")], []),
    ]),
    ("ana.ortiz@harborlane.example", "Ana Ortiz", "Client Beta audit - Denver", "A_APPR", "P_PROC",
     "2026-11-09", [
         ("AIRFR", "Airfare", "Delta Air Lines, Inc.", 455.00, "2026-11-04", [("100", "6010", "CC04", "DEPT2")],
          []),
         ("LODNG", "Hotel", "Marriott International", 610.50, "2026-11-06",
          [("50", "6020", "CC04", "DEPT2"), ("25", "6020", "CC02", "DEPT2"), ("25", "6020", "CC03", "DEPT2")], []),
         ("TAXIX", "Taxi", "UBER TECHNOLOGIES", 36.10, "2026-11-06", [("100", "6040", "CC04", "DEPT2")], []),
     ]),
    ("dev.patel@harborlane.example", "Dev Patel", "Team dinner (awaiting approval)", "A_PEND", "P_NOTP",
     "2026-11-10", [
         ("BUSML", "Business Meal", "The Capital Grille", 420.00, "2026-11-08", [("100", "6300", "CC03", "DEPT1")],
          []),
     ]),
    ("ben.keller@harborlane.example", "Ben Keller", "October travel (already paid)", "A_APPR", "P_PAID",
     "2026-10-12", [
         ("AIRFR", "Airfare", "Delta Air Lines", 299.00, "2026-10-02", [("100", "6010", "CC01", "DEPT2")], []),
     ]),
]

# (invoice number, vendor name, vendor code, tax id, date, [(description, expense type, amount, account,
#  cost centre)], approval)
_PAYMENT_REQUESTS: list[tuple[Any, ...]] = [
    ("INV-8841", "Regus Business Centre", "REGUS01", "98-7654321", "2026-11-01",
     [("Office space November", "RENT", "2400.00", "6500", "CC03"),
      ("Utilities November", "UTIL", "350.00", "6600", "CC03")], "A_APPR"),
    ("WW-2026-11", "WeWork", "WEWORK01", "", "2026-11-02",
     [("Hot desks, engineering", "RENT", "1200.00", "6500", "CC02")], "A_APPR"),
    ("ADOBE-77", "Adobe Inc.", "ADOBE01", "", "2026-11-04",
     [("Creative Cloud seats", "SOFT", "899.00", "6110", "CC03")], "A_PEND"),
]


def _custom(code: str, label: str) -> dict[str, Any]:
    return {"Type": "List", "Value": code, "Code": code, "ListItemID": f"li-{code}", "Label": label}


def seed(state: Any) -> None:
    """Fill `state` (a ConcurSandbox) with the firm's reports, entries, allocations, attendees and
    payment requests (v3 shapes of cloud-apis.md §3.3)."""
    for rn, (login, owner, name, appr, pay, submitted, entries) in enumerate(_REPORTS, start=1):
        rid = f"R{rn:04d}F9A3C2E1B0"
        total = round(sum(e[3] for e in entries), 2)
        modified = f"{submitted}T17:30:00"
        state.reports[rid] = {
            "ID": rid, "Name": name, "Total": total, "CurrencyCode": "USD", "Country": "US",
            "CountrySubdivision": None, "CreateDate": f"{submitted}T09:00:00", "SubmitDate": f"{submitted}T10:15:00",
            "ProcessingPaymentDate": modified if pay in ("P_PROC", "P_PAID") else None,
            "PaidDate": modified if pay == "P_PAID" else None, "UserDefinedDate": None,
            "LastModifiedDate": modified, "OwnerLoginID": login, "OwnerName": owner,
            "ApproverLoginID": "maria.ramos@harborlane.example", "ApprovalStatusCode": appr,
            "ApprovalStatusName": {"A_APPR": "Approved", "A_PEND": "Pending Approval"}.get(appr, appr),
            "PaymentStatusCode": pay,
            "PaymentStatusName": {"P_PROC": "Processing Payment", "P_PAID": "Paid",
                                  "P_NOTP": "Not Paid"}.get(pay, pay),
            "PersonalAmount": 0.0, "AmountDueEmployee": 0.0, "AmountDueCompanyCard": total,
            "TotalClaimedAmount": total, "TotalApprovedAmount": total, "LedgerName": "DEFAULT",
            "PolicyID": "pol-1", "EverSentBack": False, "HasException": False,
            **{f"OrgUnit{i}": None for i in range(1, 7)}, **{f"Custom{i}": None for i in range(1, 21)},
        }
        for en, (code, tname, vendor, amount, when, allocs, attendees) in enumerate(entries, start=1):
            eid = f"{rid}E{en:02d}"
            state.entries[eid] = {
                "ID": eid, "ReportID": rid, "ReportOwnerID": login, "ExpenseTypeCode": code,
                "ExpenseTypeName": tname, "SpendCategoryCode": code, "PaymentTypeID": "CBCP",
                "PaymentTypeName": "Company Billed", "TransactionDate": when, "TransactionCurrencyCode": "USD",
                "TransactionAmount": amount, "ExchangeRate": 1.0, "PostedAmount": amount, "ApprovedAmount": amount,
                "VendorDescription": vendor, "VendorListItemID": None, "VendorListItemName": None,
                "LocationName": None, "Description": None, "IsItemized": False, "IsPersonal": False,
                "IsBillable": False, "HasItemizations": False, "HasVAT": False, "HasAttendees": bool(attendees),
                "AllocationType": "N" if len(allocs) == 1 else "P", "LastModified": modified,
                **{f"OrgUnit{i}": None for i in range(1, 7)}, **{f"Custom{i}": None for i in range(1, 41)},
            }
            for an, (pct, account, cc, dept) in enumerate(allocs, start=1):
                aid = f"{eid}A{an}"
                state.allocations[aid] = {
                    "ID": aid, "EntryID": eid, "Percentage": f"{float(pct):.8f}", "IsHidden": len(allocs) == 1,
                    "AccountCode1": account, "AccountCode2": None,
                    "Custom1": _custom(cc, "Cost Center"), "Custom2": _custom(dept, "Department"),
                    **{f"Custom{i}": None for i in range(3, 21)},
                }
            for tn, (att_name, company) in enumerate(attendees, start=1):
                att = f"ATT{rn}{en}{tn}"
                state.attendees[att] = {"ID": att, "AttendeeTypeCode": "BUSGUEST", "FirstName": att_name.split()[0],
                                        "LastName": att_name.split()[-1], "Company": company}
                state.attendee_links.append({"ID": f"L{att}", "EntryID": eid, "AttendeeID": att,
                                             "Amount": round(amount / len(attendees), 2),
                                             "AssociatedAttendeeCount": 1})
    for pn, (number, vendor, vcode, tax, when, lines, appr) in enumerate(_PAYMENT_REQUESTS, start=1):
        pid = f"PR{pn:04d}7D5E"
        total = f"{sum(float(ln[2]) for ln in lines):.2f}"
        state.payment_requests[pid] = {
            "ID": pid, "URI": None, "PaymentRequestId": pid, "InvoiceNumber": number, "InvoiceDate": when,
            "PaymentDueDate": when, "CurrencyCode": "USD", "InvoiceAmount": total, "LineItemTotalAmount": total,
            "CalculatedAmount": total, "TotalApprovedAmount": total if appr == "A_APPR" else "0.00",
            "ShippingAmount": "0.00", "TaxAmount": "0.00", "PaidAmount": "0.00",
            "ApprovalStatus": "Approved" if appr == "A_APPR" else "Pending Approval", "ApprovalStatusCode": appr,
            "PaymentStatus": "Not Paid", "PaymentStatusCode": "P_NOTP", "LedgerCode": "DEFAULT",
            "OwnerLoginID": "maria.ramos@harborlane.example", "CreateDate": f"{when}T08:00:00",
            "LastModifiedDate": f"{when} 08:00:00.0", "ExtractDate": None, "PaidDate": None,
            "VendorRemitAddress": {"Name": vendor, "Address1": "1 Main St", "City": "Boston", "State": "MA",
                                   "PostalCode": "02110", "CountryCode": "US"},
            "VendorRemitToIdentifier": {"VendorCode": vcode, "AddressCode": "MAIN"},
            **{f"OrgUnit0{i}": None for i in range(1, 7)},
            **{f"Custom{i}": None for i in range(1, 25)},
            "LineItems": {"LineItem": [
                {"LineItemId": f"{pid}L{ln_no}", "RequestLineItemNumber": ln_no, "ExpenseTypeCode": etype,
                 "Description": desc, "Quantity": "1", "UnitPrice": amount, "TotalPrice": amount,
                 "ApprovedLineItemAmount": amount, "Tax": "0.00", "PurchaseOrderNumber": None,
                 "Allocations": {"Allocation": [{"Percentage": "100", "AllocationAccountCode": account,
                                                 "Custom1": _custom(cc, "Cost Center")}]}}
                for ln_no, (desc, etype, amount, account, cc) in enumerate(lines, start=1)]},
        }
        if tax:  # this company keeps the vendor's tax id in payment request field Custom5
            state.payment_requests[pid]["Custom5"] = {"Type": "Text", "Value": tax, "Code": tax}
