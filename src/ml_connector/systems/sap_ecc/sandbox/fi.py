"""FI/MM posting in the ECC sandbox: tables, seed data, posting BAPIs, wrapper FMs, clearing.

Tables (DDIC registered here): T001, T001B (posting periods), T003 (document types), NRIV (number
ranges: object RF_BELEG per BUKRS/GJAHR/NUMKR, RE_BELEG for MM invoices), SKA1/SKAT/SKB1 (chart of
accounts INT), CSKS/CSKT (cost centers, time-dependent), BKPF, BSEG (wider than 512 characters),
BSIK/BSAK (vendor open/cleared items).

Function modules (reference §3):
- BAPI_ACC_DOCUMENT_POST: validates, assigns the number and holds the document in the request's
  update task. Only a BAPI_TRANSACTION_COMMIT *in the same request* writes it; the session ends
  with the request, so a commit sent in a separate request commits nothing (it still answers an
  empty RETURN structure, like a real system).
- BAPI_ACC_DOCUMENT_CHECK: same tables, validates, writes nothing.
- BAPI_INCOMINGINVOICE_CREATE: MM invoice (PO numbers are checked against EKKO/EKPO when those
  tables exist in the sandbox, else any PO is accepted); the FI follow-on document has
  AWTYP RMRP, AWKEY = invoice number + fiscal year.
- BAPI_TRANSACTION_COMMIT / BAPI_TRANSACTION_ROLLBACK.
- BAPI_ACC_DOCUMENT_REV_POST: reverses a document of the accounting interface (REVERSAL-OBJ_TYPE/OBJ_KEY);
  refuses an MM invoice's FI document (AWTYP RMRP), which is reversed only in MM.
- Wrappers shipped as ABAP in abap/: Z_MLC_ACC_DOCUMENT_POST, Z_MLC_INCOMINGINVOICE_CREATE
  (ENQUEUE on BKPF + MANDT/BUKRS/XBLNR held from the XBLNR duplicate guard through the commit, post,
  COMMIT WAIT or ROLLBACK in one LUW; a lock not obtained within `enqueue_wait_seconds` is
  E MC 601), Z_MLC_DOCUMENT_BY_XBLNR (read-only), Z_MLC_SET_PAYMENT_BLOCK, Z_MLC_CLEAR_VENDOR_ITEMS
  (an external payment clears an invoice, F-53), Z_MLC_ACC_DOCUMENT_REVERSE (FB08; refuses the FI
  document of an MM invoice, AWTYP RMRP, with E ZMLC 012, as SAP reverses those only in MM).
- BAPI_INCOMINGINVOICE_CANCEL (MR8M: reversal invoice in RBKP/RSEG, RBKP-STBLG/STJAH of the original,
  the FI follow-on document reversed; committed by BAPI_TRANSACTION_COMMIT in the same session) and its
  one-LUW wrapper Z_MLC_INCOMINGINVOICE_CANCEL (ENQUEUE on RBKP, E ZMLC 010 when already reversed).

Fault switches (`FiState.faults`, `POST /_sandbox/fi/faults`): `fail_after_commit=N` makes the
next N committing wrapper calls commit and then lose their answer, by `fail_after_commit_mode`:
'hang' (the answer comes after `hang_seconds`: the client times out although the document
exists), 'system_failure' (a SYSTEM_FAILURE fault), 'drop' (connection closed, no byte of a
response), 'partial' (status line, headers and half of the body, then the connection is closed),
'http_502' / 'http_504' (a gateway error page instead of the answer). drop/partial/http_* are
carried out by the HTTP layer (`app.fail_response`). `post_delay` makes each wrapper spend that
long between its duplicate guard and the commit (widens the window two concurrent attempts race in).

Python API / admin endpoints: `clear_item` (`POST /_sandbox/fi/clear`: pay an open item, full or
partial; BSIK -> BSAK with AUGDT/AUGBL), `reverse_document` (`POST /_sandbox/fi/reverse`),
`set_open_periods` (`POST /_sandbox/fi/periods`), `GET /_sandbox/fi/documents?bukrs=&xblnr=`.

Message numbers marked [U] in docs/sap-ecc-posting.md are plausible, not verified.
"""

from __future__ import annotations

import random
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from . import ddic
from .data import EccData, Row, alpha_in, alpha_out
from .functions import REGISTRY, AbapRuntimeError, CallContext, Param
from .soap import date_in

_K = True
_N = False

# ---------------------------------------------------------------------------------------------
# DDIC

_BSIK_FIELDS: list[ddic.FieldSpec] = [
    ("MANDT", "C", 3, 0, _K, "Client"),
    ("BUKRS", "C", 4, 0, _K, "Company Code"),
    ("LIFNR", "C", 10, 0, _K, "Account Number of Vendor or Creditor"),
    ("UMSKS", "C", 1, 0, _K, "Special G/L Transaction Type"),
    ("UMSKZ", "C", 1, 0, _K, "Special G/L Indicator"),
    ("AUGDT", "D", 8, 0, _K, "Clearing Date"),
    ("AUGBL", "C", 10, 0, _K, "Document Number of the Clearing Document"),
    ("ZUONR", "C", 18, 0, _K, "Assignment Number"),
    ("GJAHR", "N", 4, 0, _K, "Fiscal Year"),
    ("BELNR", "C", 10, 0, _K, "Accounting Document Number"),
    ("BUZEI", "N", 3, 0, _K, "Number of Line Item Within Accounting Document"),
    ("BUDAT", "D", 8, 0, _N, "Posting Date in the Document"),
    ("BLDAT", "D", 8, 0, _N, "Document Date in Document"),
    ("CPUDT", "D", 8, 0, _N, "Day On Which Accounting Document Was Entered"),
    ("WAERS", "C", 5, 0, _N, "Currency Key"),
    ("XBLNR", "C", 16, 0, _N, "Reference Document Number"),
    ("BLART", "C", 2, 0, _N, "Document Type"),
    ("MONAT", "N", 2, 0, _N, "Fiscal Period"),
    ("BSCHL", "C", 2, 0, _N, "Posting Key"),
    ("ZUMSK", "C", 1, 0, _N, "Target Special G/L Indicator"),
    ("SHKZG", "C", 1, 0, _N, "Debit/Credit Indicator"),
    ("GSBER", "C", 4, 0, _N, "Business Area"),
    ("MWSKZ", "C", 2, 0, _N, "Tax on sales/purchases code"),
    ("DMBTR", "P", 13, 2, _N, "Amount in Local Currency"),
    ("WRBTR", "P", 13, 2, _N, "Amount in Document Currency"),
    ("MWSTS", "P", 13, 2, _N, "Tax Amount in Local Currency"),
    ("WMWST", "P", 13, 2, _N, "Tax amount in document currency"),
    ("SGTXT", "C", 50, 0, _N, "Item Text"),
    ("EBELN", "C", 10, 0, _N, "Purchasing Document Number"),
    ("EBELP", "N", 5, 0, _N, "Item Number of Purchasing Document"),
    ("HKONT", "C", 10, 0, _N, "General Ledger Account"),
    ("ZFBDT", "D", 8, 0, _N, "Baseline Date for Due Date Calculation"),
    ("ZTERM", "C", 4, 0, _N, "Terms of Payment Key"),
    ("ZBD1T", "P", 3, 0, _N, "Cash Discount Days 1"),
    ("ZBD2T", "P", 3, 0, _N, "Cash Discount Days 2"),
    ("ZBD3T", "P", 3, 0, _N, "Net Payment Terms Period"),
    ("ZBD1P", "P", 5, 3, _N, "Cash Discount Percentage 1"),
    ("SKFBT", "P", 13, 2, _N, "Amount Eligible for Cash Discount in Document Currency"),
    ("ZLSCH", "C", 1, 0, _N, "Payment Method"),
    ("ZLSPR", "C", 1, 0, _N, "Payment Block Key"),
    ("REBZG", "C", 10, 0, _N, "Number of the Invoice the Transaction Belongs to"),
    ("REBZJ", "N", 4, 0, _N, "Fiscal Year of the Relevant Invoice (for Credit Memo)"),
    ("REBZZ", "N", 3, 0, _N, "Line Item in the Relevant Invoice"),
    ("XZAHL", "C", 1, 0, _N, "Indicator: Is Posting Key Used in a Payment Transaction?"),
    ("PRCTR", "C", 10, 0, _N, "Profit Center"),
]

_BSEG_FIELDS: list[ddic.FieldSpec] = [
    ("MANDT", "C", 3, 0, _K, "Client"),
    ("BUKRS", "C", 4, 0, _K, "Company Code"),
    ("BELNR", "C", 10, 0, _K, "Accounting Document Number"),
    ("GJAHR", "N", 4, 0, _K, "Fiscal Year"),
    ("BUZEI", "N", 3, 0, _K, "Number of Line Item Within Accounting Document"),
    ("BUZID", "C", 1, 0, _N, "Identification of the Line Item"),
    ("AUGDT", "D", 8, 0, _N, "Clearing Date"),
    ("AUGCP", "D", 8, 0, _N, "Clearing Entry Date"),
    ("AUGBL", "C", 10, 0, _N, "Document Number of the Clearing Document"),
    ("BSCHL", "C", 2, 0, _N, "Posting Key"),
    ("KOART", "C", 1, 0, _N, "Account Type"),
    ("UMSKZ", "C", 1, 0, _N, "Special G/L Indicator"),
    ("UMSKS", "C", 1, 0, _N, "Special G/L Transaction Type"),
    ("ZUMSK", "C", 1, 0, _N, "Target Special G/L Indicator"),
    ("SHKZG", "C", 1, 0, _N, "Debit/Credit Indicator"),
    ("GSBER", "C", 4, 0, _N, "Business Area"),
    ("TAXPS", "N", 6, 0, _N, "Tax document item number"),
    ("MWSKZ", "C", 2, 0, _N, "Tax on sales/purchases code"),
    ("QSSKZ", "C", 2, 0, _N, "Withholding Tax Code"),
    ("DMBTR", "P", 13, 2, _N, "Amount in Local Currency"),
    ("WRBTR", "P", 13, 2, _N, "Amount in Document Currency"),
    ("KZBTR", "P", 13, 2, _N, "Original Reduction Amount in Local Currency"),
    ("PSWBT", "P", 13, 2, _N, "Amount for Updating in General Ledger"),
    ("PSWSL", "C", 5, 0, _N, "Update Currency for General Ledger Transaction Figures"),
    ("HWBAS", "P", 13, 2, _N, "Tax Base Amount in Local Currency"),
    ("FWBAS", "P", 13, 2, _N, "Tax Base Amount in Document Currency"),
    ("MWART", "C", 1, 0, _N, "Tax Type"),
    ("KTOSL", "C", 3, 0, _N, "Transaction Key"),
    ("VALUT", "D", 8, 0, _N, "Value date"),
    ("ZUONR", "C", 18, 0, _N, "Assignment Number"),
    ("SGTXT", "C", 50, 0, _N, "Item Text"),
    ("VBUND", "C", 6, 0, _N, "Company ID of trading partner"),
    ("BEWAR", "C", 3, 0, _N, "Transaction Type"),
    ("VORGN", "C", 4, 0, _N, "Transaction Type for General Ledger"),
    ("FDLEV", "C", 2, 0, _N, "Planning Level"),
    ("FDTAG", "D", 8, 0, _N, "Planning Date"),
    ("KOKRS", "C", 4, 0, _N, "Controlling Area"),
    ("KOSTL", "C", 10, 0, _N, "Cost Center"),
    ("AUFNR", "C", 12, 0, _N, "Order Number"),
    ("VBELN", "C", 10, 0, _N, "Billing Document"),
    ("ANLN1", "C", 12, 0, _N, "Main Asset Number"),
    ("ANLN2", "C", 4, 0, _N, "Asset Subnumber"),
    ("XUMSW", "C", 1, 0, _N, "Indicator: Sales-Related Item?"),
    ("XOPVW", "C", 1, 0, _N, "Indicator: Open Item Management?"),
    ("XZAHL", "C", 1, 0, _N, "Indicator: Is Posting Key Used in a Payment Transaction?"),
    ("SAKNR", "C", 10, 0, _N, "G/L Account Number"),
    ("HKONT", "C", 10, 0, _N, "General Ledger Account"),
    ("KUNNR", "C", 10, 0, _N, "Customer Number"),
    ("LIFNR", "C", 10, 0, _N, "Account Number of Vendor or Creditor"),
    ("XBILK", "C", 1, 0, _N, "Indicator: Account is a balance sheet account?"),
    ("GVTYP", "C", 2, 0, _N, "P&L statement account type"),
    ("ZFBDT", "D", 8, 0, _N, "Baseline Date for Due Date Calculation"),
    ("ZTERM", "C", 4, 0, _N, "Terms of Payment Key"),
    ("ZBD1T", "P", 3, 0, _N, "Cash Discount Days 1"),
    ("ZBD2T", "P", 3, 0, _N, "Cash Discount Days 2"),
    ("ZBD3T", "P", 3, 0, _N, "Net Payment Terms Period"),
    ("ZBD1P", "P", 5, 3, _N, "Cash Discount Percentage 1"),
    ("SKFBT", "P", 13, 2, _N, "Amount Eligible for Cash Discount in Document Currency"),
    ("WSKTO", "P", 13, 2, _N, "Cash Discount Amount in Document Currency"),
    ("ZLSCH", "C", 1, 0, _N, "Payment Method"),
    ("ZLSPR", "C", 1, 0, _N, "Payment Block Key"),
    ("HBKID", "C", 5, 0, _N, "Short Key for a House Bank"),
    ("REBZG", "C", 10, 0, _N, "Number of the Invoice the Transaction Belongs to"),
    ("REBZJ", "N", 4, 0, _N, "Fiscal Year of the Relevant Invoice (for Credit Memo)"),
    ("REBZZ", "N", 3, 0, _N, "Line Item in the Relevant Invoice"),
    ("REBZT", "C", 1, 0, _N, "Follow-On Document Type"),
    ("EBELN", "C", 10, 0, _N, "Purchasing Document Number"),
    ("EBELP", "N", 5, 0, _N, "Item Number of Purchasing Document"),
    ("MENGE", "P", 13, 3, _N, "Quantity"),
    ("MEINS", "C", 3, 0, _N, "Base Unit of Measure"),
    ("PRCTR", "C", 10, 0, _N, "Profit Center"),
    ("PROJK", "N", 8, 0, _N, "Work Breakdown Structure Element (WBS Element)"),
    ("FKBER", "C", 16, 0, _N, "Functional Area"),
    ("SEGMENT", "C", 10, 0, _N, "Segment for Segmental Reporting"),
    ("PPRCT", "C", 10, 0, _N, "Partner Profit Center"),
    ("XREF1", "C", 12, 0, _N, "Business partner reference key"),
    ("XREF2", "C", 12, 0, _N, "Business partner reference key"),
    ("XREF3", "C", 20, 0, _N, "Reference key for line item"),
    ("XNEGP", "C", 1, 0, _N, "Indicator: Negative posting"),
    ("H_BUDAT", "D", 8, 0, _N, "Posting Date in the Document"),
    ("H_BLDAT", "D", 8, 0, _N, "Document Date in Document"),
    ("H_BLART", "C", 2, 0, _N, "Document Type"),
    ("H_WAERS", "C", 5, 0, _N, "Currency Key"),
]

FI_TABLES: dict[str, tuple[str, list[ddic.FieldSpec]]] = {
    "T001": ("Company Codes", [
        ("MANDT", "C", 3, 0, _K, "Client"),
        ("BUKRS", "C", 4, 0, _K, "Company Code"),
        ("BUTXT", "C", 25, 0, _N, "Name of Company Code or Company"),
        ("ORT01", "C", 25, 0, _N, "City"),
        ("LAND1", "C", 3, 0, _N, "Country Key"),
        ("WAERS", "C", 5, 0, _N, "Currency Key"),
        ("SPRAS", "C", 1, 0, _N, "Language Key"),
        ("KTOPL", "C", 4, 0, _N, "Chart of Accounts"),
        ("WAABW", "N", 2, 0, _N, "Maximum Exchange Rate Deviation in Percent"),
        ("PERIV", "C", 2, 0, _N, "Fiscal Year Variant"),
        ("KOKFI", "C", 1, 0, _N, "Allocation Indicator"),
        ("RCOMP", "C", 6, 0, _N, "Company"),
        ("ADRNR", "C", 10, 0, _N, "Address"),
        ("STCEG", "C", 20, 0, _N, "VAT Registration Number"),
        ("FIKRS", "C", 4, 0, _N, "Financial Management Area"),
        ("XFMCO", "C", 1, 0, _N, "Indicator: Project Cash Management Active?"),
        ("XFMCB", "C", 1, 0, _N, "Indicator: Activate Cash Budget Management?"),
        ("XFMCA", "C", 1, 0, _N, "Activate Funds Management"),
        ("TXJCD", "C", 15, 0, _N, "Tax Jurisdiction"),
        ("OPVAR", "C", 4, 0, _N, "Posting Period Variant"),
        ("KKBER", "C", 4, 0, _N, "Credit control area"),
        ("XVALV", "C", 1, 0, _N, "Indicator: Value Date Proposal"),
        ("XSKFN", "C", 1, 0, _N, "Discount base amount is the net value"),
        ("MWSKV", "C", 2, 0, _N, "Input Tax Code for Non-Taxable Transactions"),
        ("MWSKA", "C", 2, 0, _N, "Output Tax Code for Non-Taxable Transactions"),
    ]),
    "T001B": ("Permitted Posting Periods", [
        ("MANDT", "C", 3, 0, _K, "Client"),
        ("RRCTY", "C", 1, 0, _K, "Record Type"),
        ("BUKVS", "C", 4, 0, _K, "Variant for Open Posting Periods"),
        ("MKOAR", "C", 1, 0, _K, "Account Type or '+' for All Account Types"),
        ("BKONT", "C", 10, 0, _K, "To Account"),
        ("VKONT", "C", 10, 0, _N, "From Account"),
        ("FRPE1", "N", 3, 0, _N, "First Posting Period Allowed (Interval 1)"),
        ("FRYE1", "N", 4, 0, _N, "Fiscal Year of First Posting Period (Interval 1)"),
        ("TOPE1", "N", 3, 0, _N, "Last Posting Period Allowed (Interval 1)"),
        ("TOYE1", "N", 4, 0, _N, "Fiscal Year of Last Posting Period (Interval 1)"),
        ("FRPE2", "N", 3, 0, _N, "First Posting Period Allowed (Interval 2)"),
        ("FRYE2", "N", 4, 0, _N, "Fiscal Year of First Posting Period (Interval 2)"),
        ("TOPE2", "N", 3, 0, _N, "Last Posting Period Allowed (Interval 2)"),
        ("TOYE2", "N", 4, 0, _N, "Fiscal Year of Last Posting Period (Interval 2)"),
        ("BRGRU", "C", 4, 0, _N, "Authorization Group"),
    ]),
    "T003": ("Document Types", [
        ("MANDT", "C", 3, 0, _K, "Client"),
        ("BLART", "C", 2, 0, _K, "Document Type"),
        ("NUMKR", "C", 2, 0, _N, "Number range"),
        ("STBLG", "C", 2, 0, _N, "Reverse Document Type"),
        ("KOARS", "C", 5, 0, _N, "Account types allowed"),
        ("XNETB", "C", 1, 0, _N, "Indicator: Net document type?"),
        ("XKOAE", "C", 1, 0, _N, "Customer/vendor check"),
        ("XMGES", "C", 1, 0, _N, "Indicator: Negative postings permitted"),
    ]),
    "NRIV": ("Number Range Intervals", [
        ("CLIENT", "C", 3, 0, _K, "Client"),
        ("OBJECT", "C", 10, 0, _K, "Name of number range object"),
        ("SUBOBJECT", "C", 6, 0, _K, "Number range object subobject"),
        ("NRRANGENR", "C", 2, 0, _K, "Number range number"),
        ("TOYEAR", "N", 4, 0, _K, "To fiscal year"),
        ("FROMNUMBER", "C", 20, 0, _N, "From number"),
        ("TONUMBER", "C", 20, 0, _N, "To number"),
        ("NRLEVEL", "C", 20, 0, _N, "Number range status"),
        ("EXTERNIND", "C", 1, 0, _N, "Indicator for external number range"),
    ]),
    "SKA1": ("G/L Account Master (Chart of Accounts)", [
        ("MANDT", "C", 3, 0, _K, "Client"),
        ("KTOPL", "C", 4, 0, _K, "Chart of Accounts"),
        ("SAKNR", "C", 10, 0, _K, "G/L Account Number"),
        ("XBILK", "C", 1, 0, _N, "Indicator: Account is a balance sheet account?"),
        ("SAKAN", "C", 10, 0, _N, "G/L Account Number, Significant Length"),
        ("BILKT", "C", 10, 0, _N, "Group Account Number"),
        ("ERDAT", "D", 8, 0, _N, "Date on which the Record Was Created"),
        ("ERNAM", "C", 12, 0, _N, "Name of Person who Created the Object"),
        ("GVTYP", "C", 2, 0, _N, "P&L statement account type"),
        ("KTOKS", "C", 4, 0, _N, "G/L Account Group"),
        ("XLOEV", "C", 1, 0, _N, "Indicator: Account Marked for Deletion?"),
        ("XSPEA", "C", 1, 0, _N, "Indicator: account is blocked for creation?"),
        ("XSPEB", "C", 1, 0, _N, "Indicator: Is Account Blocked for Posting?"),
        ("XSPEP", "C", 1, 0, _N, "Indicator: account blocked for planning?"),
        ("FUNC_AREA", "C", 16, 0, _N, "Functional Area"),
    ]),
    "SKAT": ("G/L Account Master Record (Chart of Accounts: Description)", [
        ("MANDT", "C", 3, 0, _K, "Client"),
        ("SPRAS", "C", 1, 0, _K, "Language Key"),
        ("KTOPL", "C", 4, 0, _K, "Chart of Accounts"),
        ("SAKNR", "C", 10, 0, _K, "G/L Account Number"),
        ("TXT20", "C", 20, 0, _N, "G/L account short text"),
        ("TXT50", "C", 50, 0, _N, "G/L Account Long Text"),
        ("MCOD1", "C", 25, 0, _N, "Search Term for Matchcode Search"),
    ]),
    "SKB1": ("G/L account master (company code)", [
        ("MANDT", "C", 3, 0, _K, "Client"),
        ("BUKRS", "C", 4, 0, _K, "Company Code"),
        ("SAKNR", "C", 10, 0, _K, "G/L Account Number"),
        ("BEGRU", "C", 4, 0, _N, "Authorization Group"),
        ("BUSAB", "C", 2, 0, _N, "Accounting clerk"),
        ("DATLZ", "D", 8, 0, _N, "Date of Last Interest Calculation Run"),
        ("ERDAT", "D", 8, 0, _N, "Date on which the Record Was Created"),
        ("ERNAM", "C", 12, 0, _N, "Name of Person who Created the Object"),
        ("FDGRV", "C", 10, 0, _N, "Planning group"),
        ("FDLEV", "C", 2, 0, _N, "Planning Level"),
        ("FIPLS", "N", 3, 0, _N, "Financial Budget Item"),
        ("FSTAG", "C", 4, 0, _N, "Field status group"),
        ("HBKID", "C", 5, 0, _N, "Short Key for a House Bank"),
        ("MITKZ", "C", 1, 0, _N, "Account is reconciliation account"),
        ("MWSKZ", "C", 2, 0, _N, "Tax Category in Account Master Record"),
        ("WAERS", "C", 5, 0, _N, "Account Currency"),
        ("XINTB", "C", 1, 0, _N, "Indicator: Is account only posted to automatically?"),
        ("XKRES", "C", 1, 0, _N, "Indicator: Can Line Items Be Displayed by Account?"),
        ("XLOEB", "C", 1, 0, _N, "Indicator: Account marked for deletion?"),
        ("XOPVW", "C", 1, 0, _N, "Indicator: Open Item Management?"),
        ("XSPEB", "C", 1, 0, _N, "Indicator: Is Account Blocked for Posting?"),
        ("ZUAWA", "C", 3, 0, _N, "Key for sorting according to assignment numbers"),
        ("XMWNO", "C", 1, 0, _N, "Indicator: Tax code is not a required field"),
        ("XSALH", "C", 1, 0, _N, "Indicator: Only Manage Balances in Local Currency"),
    ]),
    "CSKS": ("Cost Center Master Data", [
        ("MANDT", "C", 3, 0, _K, "Client"),
        ("KOKRS", "C", 4, 0, _K, "Controlling Area"),
        ("KOSTL", "C", 10, 0, _K, "Cost Center"),
        ("DATBI", "D", 8, 0, _K, "Valid To Date"),
        ("DATAB", "D", 8, 0, _N, "Valid-From Date"),
        ("BKZKP", "C", 1, 0, _N, "Lock Indicator for Actual Primary Postings"),
        ("PKZKP", "C", 1, 0, _N, "Lock Indicator for Plan Primary Costs"),
        ("BUKRS", "C", 4, 0, _N, "Company Code"),
        ("GSBER", "C", 4, 0, _N, "Business Area"),
        ("KOSAR", "C", 1, 0, _N, "Cost Center Category"),
        ("VERAK", "C", 20, 0, _N, "Person Responsible"),
        ("WAERS", "C", 5, 0, _N, "Currency Key"),
        ("ERSDA", "D", 8, 0, _N, "Created On"),
        ("USNAM", "C", 12, 0, _N, "Entered by"),
        ("ABTEI", "C", 12, 0, _N, "Department"),
        ("KHINR", "C", 12, 0, _N, "Standard Hierarchy Area"),
        ("PRCTR", "C", 10, 0, _N, "Profit Center"),
        ("WERKS", "C", 4, 0, _N, "Plant"),
        ("LAND1", "C", 3, 0, _N, "Country Key"),
        ("FUNC_AREA", "C", 16, 0, _N, "Functional Area"),
    ]),
    "CSKT": ("Cost Center Texts", [
        ("MANDT", "C", 3, 0, _K, "Client"),
        ("SPRAS", "C", 1, 0, _K, "Language Key"),
        ("KOKRS", "C", 4, 0, _K, "Controlling Area"),
        ("KOSTL", "C", 10, 0, _K, "Cost Center"),
        ("DATBI", "D", 8, 0, _K, "Valid To Date"),
        ("KTEXT", "C", 20, 0, _N, "General Name"),
        ("LTEXT", "C", 40, 0, _N, "Description"),
        ("MCTXT", "C", 20, 0, _N, "Search term for matchcode search"),
    ]),
    "BKPF": ("Accounting Document Header", [
        ("MANDT", "C", 3, 0, _K, "Client"),
        ("BUKRS", "C", 4, 0, _K, "Company Code"),
        ("BELNR", "C", 10, 0, _K, "Accounting Document Number"),
        ("GJAHR", "N", 4, 0, _K, "Fiscal Year"),
        ("BLART", "C", 2, 0, _N, "Document Type"),
        ("BLDAT", "D", 8, 0, _N, "Document Date in Document"),
        ("BUDAT", "D", 8, 0, _N, "Posting Date in the Document"),
        ("MONAT", "N", 2, 0, _N, "Fiscal Period"),
        ("CPUDT", "D", 8, 0, _N, "Day On Which Accounting Document Was Entered"),
        ("CPUTM", "T", 6, 0, _N, "Time of Entry"),
        ("AEDAT", "D", 8, 0, _N, "Date of the Last Document Change by Transaction"),
        ("UPDDT", "D", 8, 0, _N, "Date of the Last Document Update"),
        ("WWERT", "D", 8, 0, _N, "Translation Date"),
        ("USNAM", "C", 12, 0, _N, "User name"),
        ("TCODE", "C", 20, 0, _N, "Transaction Code"),
        ("BVORG", "C", 16, 0, _N, "Number of Cross-Company Code Posting Transaction"),
        ("XBLNR", "C", 16, 0, _N, "Reference Document Number"),
        ("DBBLG", "C", 10, 0, _N, "Recurring Entry Document Number"),
        ("STBLG", "C", 10, 0, _N, "Reverse Document Number"),
        ("STJAH", "N", 4, 0, _N, "Reverse document fiscal year"),
        ("BKTXT", "C", 25, 0, _N, "Document Header Text"),
        ("WAERS", "C", 5, 0, _N, "Currency Key"),
        ("KURSF", "P", 9, 5, _N, "Exchange rate"),
        ("KZWRS", "C", 5, 0, _N, "Currency Key for the Group Currency"),
        ("BSTAT", "C", 1, 0, _N, "Document Status"),
        ("HWAER", "C", 5, 0, _N, "Local Currency"),
        ("STGRD", "C", 2, 0, _N, "Reason for Reversal or Inverse Posting"),
        ("AWTYP", "C", 5, 0, _N, "Reference Transaction"),
        ("AWKEY", "C", 20, 0, _N, "Object key"),
        ("AWSYS", "C", 10, 0, _N, "Logical System of Source Document"),
        ("GLVOR", "C", 4, 0, _N, "Business Transaction"),
        ("XREVERSAL", "C", 1, 0, _N, "Specifies whether doc. is reversal doc. or reversed doc."),
    ]),
    "BSEG": ("Accounting Document Segment", _BSEG_FIELDS),
    "BSIK": ("Accounting: Secondary Index for Vendors", _BSIK_FIELDS),
    "BSAK": ("Accounting: Secondary Index for Vendors (Cleared Items)", _BSIK_FIELDS),
    # MM invoice verification (MIRO / BAPI_INCOMINGINVOICE_CREATE): subsets in DDIC order
    "RBKP": ("Document Header: Invoice Receipt", [
        ("MANDT", "C", 3, 0, _K, "Client"),
        ("BELNR", "C", 10, 0, _K, "Document Number of an Invoice Document"),
        ("GJAHR", "N", 4, 0, _K, "Fiscal Year"),
        ("BLART", "C", 2, 0, _N, "Document Type"),
        ("BLDAT", "D", 8, 0, _N, "Invoice Date in Document"),
        ("BUDAT", "D", 8, 0, _N, "Posting Date in the Document"),
        ("USNAM", "C", 12, 0, _N, "User name"),
        ("TCODE", "C", 20, 0, _N, "Transaction Code"),
        ("CPUDT", "D", 8, 0, _N, "Day On Which Accounting Document Was Entered"),
        ("XBLNR", "C", 16, 0, _N, "Reference Document Number"),
        ("STBLG", "C", 10, 0, _N, "Reversal document number"),
        ("STJAH", "N", 4, 0, _N, "Fiscal year of reversal document"),
        ("LIFNR", "C", 10, 0, _N, "Different Invoicing Party"),
        ("WAERS", "C", 5, 0, _N, "Currency Key"),
        ("BUKRS", "C", 4, 0, _N, "Company Code"),
        ("RMWWR", "P", 13, 2, _N, "Gross invoice amount in document currency"),
        ("ZTERM", "C", 4, 0, _N, "Terms of Payment Key"),
        ("ZLSPR", "C", 1, 0, _N, "Payment Block Key"),
        ("BKTXT", "C", 25, 0, _N, "Document Header Text"),
        ("RBSTAT", "C", 1, 0, _N, "Invoice document status"),
        ("XRECH", "C", 1, 0, _N, "Indicator: post invoice"),
    ]),
    "RSEG": ("Document Item: Incoming Invoice", [
        ("MANDT", "C", 3, 0, _K, "Client"),
        ("BELNR", "C", 10, 0, _K, "Document Number of an Invoice Document"),
        ("GJAHR", "N", 4, 0, _K, "Fiscal Year"),
        ("BUZEI", "N", 6, 0, _K, "Document Item in Invoice Document"),
        ("EBELN", "C", 10, 0, _N, "Purchasing Document Number"),
        ("EBELP", "N", 5, 0, _N, "Item Number of Purchasing Document"),
        ("MATNR", "C", 18, 0, _N, "Material Number"),
        ("BUKRS", "C", 4, 0, _N, "Company Code"),
        ("WERKS", "C", 4, 0, _N, "Plant"),
        ("WRBTR", "P", 13, 2, _N, "Amount in document currency"),
        ("SHKZG", "C", 1, 0, _N, "Debit/Credit Indicator"),
        ("MWSKZ", "C", 2, 0, _N, "Tax on sales/purchases code"),
        ("MENGE", "P", 13, 3, _N, "Quantity"),
        ("BSTME", "C", 3, 0, _N, "Purchase Order Unit of Measure"),
    ]),
}


def register_tables() -> None:
    for name, (text, fields) in FI_TABLES.items():
        ddic.register_table(name, fields, text=text)


register_tables()

# ---------------------------------------------------------------------------------------------
# master data

COMPANIES = [
    # BUKRS, name, city, country, currency, language, VAT id
    ("1000", "ML Connector Inc.", "New York", "US", "USD", "E", ""),
    ("2000", "ML Connector GmbH", "Walldorf", "DE", "EUR", "D", "DE811234567"),
    ("3000", "ML Connector Ltd", "London", "GB", "GBP", "E", "GB123456789"),
]
KTOPL = "INT"
# units of company-code currency per unit of document currency (a TCURR-like fixed table)
RATES: dict[tuple[str, str], Decimal] = {
    ("USD", "EUR"): Decimal("0.92000"), ("EUR", "USD"): Decimal("1.08700"),
    ("USD", "GBP"): Decimal("0.79000"), ("GBP", "USD"): Decimal("1.26600"),
    ("EUR", "GBP"): Decimal("0.85900"), ("GBP", "EUR"): Decimal("1.16400"),
}

# SAKNR (external), short text, long text, balance sheet?, account group, recon type
ACCOUNTS = [
    ("100000", "Petty cash", "Petty cash", True, "LIQ", ""),
    ("113100", "Bank 1 (main)", "Bank account 1 - main operating account", True, "LIQ", ""),
    ("113109", "Bank 1 outg. paymts", "Bank 1 - outgoing payments clearing", True, "LIQ", ""),
    ("140000", "Trade receivables", "Customer receivables - domestic", True, "RECN", "D"),
    ("154000", "Input tax", "Input tax (VAT receivable)", True, "BS", ""),
    ("160000", "Trade payables dom.", "Vendor payables - domestic", True, "RECN", "K"),
    ("161000", "Trade payables for.", "Vendor payables - foreign", True, "RECN", "K"),
    ("175000", "Output tax", "Output tax (VAT payable)", True, "BS", ""),
    ("191100", "GR/IR clearing", "Goods received / invoice received clearing", True, "BS", ""),
    ("210000", "Trade creditors UK", "Trade creditors - United Kingdom", True, "RECN", "K"),
    ("300000", "Share capital", "Subscribed capital", True, "BS", ""),
    ("400000", "Raw materials cons.", "Consumption of raw materials", False, "PL", ""),
    ("600000", "Office supplies", "Office supplies and stationery", False, "PL", ""),
    ("610000", "Travel expenses", "Travel expenses - employees", False, "PL", ""),
    ("615000", "Meals & entertainm.", "Meals and entertainment", False, "PL", ""),
    ("620000", "Software subscript.", "Software subscriptions and licences", False, "PL", ""),
    ("630000", "Consulting fees", "External consulting and professional fees", False, "PL", ""),
    ("640000", "Rent & leases", "Rent and lease expenses", False, "PL", ""),
    ("650000", "Utilities", "Utilities (electricity, water, gas)", False, "PL", ""),
    ("660000", "Marketing & adv.", "Marketing and advertising", False, "PL", ""),
    ("670000", "Telephone/internet", "Telephone and internet", False, "PL", ""),
    ("680000", "Freight & postage", "Freight, postage and courier", False, "PL", ""),
    ("690000", "Bank charges", "Bank charges and fees", False, "PL", ""),
    ("699999", "Blocked legacy acct", "Legacy expense account (blocked for posting)", False, "PL", ""),
    ("800000", "Sales revenue", "Sales revenue - domestic", False, "PL", ""),
]
EXPENSE_ACCOUNTS = [a[0].zfill(10) for a in ACCOUNTS if a[0].startswith("6") and a[0] != "699999"]

# cost centers per company code: (KOSTL, text, category, plant, valid from, valid to)
COST_CENTERS: dict[str, list[tuple[str, str, str, str, str, str]]] = {
    "1000": [("1000", "Corporate Admin", "W", "1000", "20150101", "99991231"),
             ("1100", "Finance & Account.", "W", "1000", "20150101", "99991231"),
             ("1200", "Human Resources", "W", "1000", "20150101", "99991231"),
             ("1300", "IT Services", "W", "1000", "20150101", "99991231"),
             ("1410", "Sales East", "V", "1100", "20150101", "99991231"),
             ("1420", "Sales West", "V", "1200", "20150101", "99991231"),
             ("1500", "Marketing", "V", "1000", "20150101", "99991231"),
             ("1610", "Production NJ", "F", "1100", "20150101", "99991231"),
             ("1620", "Warehouse Chicago", "F", "1200", "20150101", "99991231"),
             ("1900", "Old R&D Lab", "E", "1000", "20150101", "20221231")],
    "2000": [("2000", "Verwaltung", "W", "2000", "20150101", "99991231"),
             ("2100", "Finanzbuchhaltung", "W", "2000", "20150101", "99991231"),
             ("2300", "IT-Dienste", "W", "2000", "20150101", "99991231"),
             ("2410", "Vertrieb Süd", "V", "2100", "20150101", "99991231"),
             ("2500", "Marketing DACH", "V", "2000", "20150101", "99991231"),
             ("2610", "Fertigung Walldorf", "F", "2000", "20150101", "99991231"),
             ("2620", "Lager Köln", "F", "2100", "20180101", "99991231"),
             ("2700", "Innovation Lab", "E", "2000", "20300101", "99991231")],
    "3000": [("3000", "UK Administration", "W", "3000", "20160101", "99991231"),
             ("3100", "UK Finance", "W", "3000", "20160101", "99991231"),
             ("3410", "UK Sales", "V", "3000", "20160101", "99991231"),
             ("3500", "UK Marketing", "V", "3000", "20160101", "99991231"),
             ("3610", "UK Distribution", "F", "3100", "20160101", "99991231")],
}

#: CSKS-ABTEI (the cost center's department, free text) by the cost center number without its first digit
DEPARTMENTS = {"000": "ADMIN", "100": "FINANCE", "200": "HR", "300": "IT", "410": "SALES", "420": "SALES",
               "500": "MARKETING", "610": "OPERATIONS", "620": "OPERATIONS", "900": "R&D", "700": "R&D"}

DOC_TYPES = [
    # BLART, NUMKR, reverse type, account types allowed
    ("SA", "01", "AB", "DKS"), ("AB", "01", "AB", "ADKMS"), ("KR", "19", "KR", "KS"),
    ("KG", "17", "KG", "KS"), ("KA", "19", "KA", "AKS"), ("KZ", "15", "KZ", "KS"),
    ("RE", "51", "RE", "KMS"), ("ZP", "20", "ZP", "DKS"),
]
NUMKR_FROM = {"01": "0100000000", "15": "1500000000", "17": "1700000000", "19": "1900000000",
              "20": "2000000000", "51": "5100000000"}
MM_INVOICE_FROM = "5105600000"
OPEN_FROM = (2020, 1)
OPEN_TO = (2035, 16)


def _dec(value: Any) -> Decimal:
    """An ABAP packed value in character form: '-800.0', '800.00-', '1,234.5' -> Decimal."""
    text = str(value or "").strip().replace(",", "")
    if not text:
        return Decimal(0)
    neg = text.endswith("-")
    if neg:
        text = text[:-1]
    try:
        d = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not a number: {value!r}") from None
    return -d if neg else d


def _amt(d: Decimal) -> str:
    return str(d.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


# ---------------------------------------------------------------------------------------------
# state and faults


@dataclass
class FiFaults:
    fail_after_commit: int = 0
    fail_after_commit_mode: str = "hang"  # see MODES
    hang_seconds: float = 1.5
    post_delay: float = 0.0  # seconds a wrapper spends between its duplicate guard and COMMIT WORK
    enqueue_wait_seconds: float = 5.0  # ENQUEUE _wait='X': how long a foreign lock is waited for

    # hang: the response comes after `hang_seconds` (the client times out); system_failure: a
    # SYSTEM_FAILURE fault; drop: the connection is closed without a response; partial: status,
    # headers and half of the body, then the connection is closed; http_502 / http_504: a gateway
    # answers instead of the (lost) response. In every mode the document is committed.
    MODES = ("hang", "system_failure", "drop", "partial", "http_502", "http_504")

    def update(self, **kw: Any) -> dict[str, Any]:
        if kw.pop("reset", False):
            self.__init__()  # type: ignore[misc]
        for key, value in kw.items():
            if key == "fail_after_commit":
                self.fail_after_commit = max(int(value or 0), 0)
            elif key == "fail_after_commit_mode":
                if value not in self.MODES:
                    raise ValueError(f"fail_after_commit_mode must be one of {self.MODES}")
                self.fail_after_commit_mode = str(value)
            elif key in ("hang_seconds", "post_delay", "enqueue_wait_seconds"):
                setattr(self, key, max(float(value or 0), 0.0))
            else:
                raise ValueError(f"unknown FI fault switch {key!r}")
        return self.to_dict()

    def to_dict(self) -> dict[str, Any]:
        return {"fail_after_commit": self.fail_after_commit,
                "fail_after_commit_mode": self.fail_after_commit_mode, "hang_seconds": self.hang_seconds,
                "post_delay": self.post_delay, "enqueue_wait_seconds": self.enqueue_wait_seconds}


class _Enqueue:
    """The lock table of the wrappers' ENQUEUE_E_TABLE on BKPF + MANDT/BUKRS/XBLNR: one exclusive
    lock per (client, company code, XBLNR), held from the duplicate guard through COMMIT WORK."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, str, str], tuple[threading.Lock, int]] = {}

    def acquire(self, key: tuple[str, str, str], wait: float) -> bool:
        with self._guard:
            lock, users = self._locks.get(key) or (threading.Lock(), 0)
            self._locks[key] = (lock, users + 1)
        if lock.acquire(timeout=wait) if wait > 0 else lock.acquire(blocking=False):
            return True
        self._forget(key)
        return False

    def release(self, key: tuple[str, str, str]) -> None:
        with self._guard:
            lock, _ = self._locks[key]
        lock.release()
        self._forget(key)

    def _forget(self, key: tuple[str, str, str]) -> None:
        with self._guard:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def held(self) -> int:
        with self._guard:
            return len(self._locks)


@dataclass
class FiState:
    faults: FiFaults = field(default_factory=FiFaults)
    seeded: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    enqueue: _Enqueue = field(default_factory=_Enqueue)

    def take_after_commit(self) -> str | None:
        with self.lock:
            if self.faults.fail_after_commit > 0:
                self.faults.fail_after_commit -= 1
                return self.faults.fail_after_commit_mode
            return None


_STATES: weakref.WeakKeyDictionary[EccData, FiState] = weakref.WeakKeyDictionary()


def state(data: EccData) -> FiState:
    """The FI state (fault switches) attached to `data`."""
    with data.lock:
        st = _STATES.get(data)
        if st is None:
            st = _STATES[data] = FiState()
        return st


def install(data: EccData, client: str, *, seed: bool = True, seed_value: int = 4711,
            documents: int = 300) -> FiState:
    """Attach FI to a sandbox's data; seed customizing, master data and history once per client."""
    st = state(data)
    if seed and client not in st.seeded:
        seed_fi(data, client, seed=seed_value, documents=documents)
        st.seeded.add(client)
    return st


# ---------------------------------------------------------------------------------------------
# posting core


@dataclass
class Line:
    """One line of a document to write; amounts signed (debit positive)."""

    koart: str  # S (G/L) or K (vendor)
    hkont: str
    wrbtr: Decimal
    dmbtr: Decimal
    lifnr: str = ""
    kostl: str = ""
    kokrs: str = ""
    mwskz: str = ""
    sgtxt: str = ""
    zuonr: str = ""
    aufnr: str = ""
    prctr: str = ""
    zterm: str = ""
    zfbdt: str = ""
    zlspr: str = ""
    zbd3t: int = 0
    zbd1t: int = 0
    rebzg: str = ""
    rebzj: str = ""
    rebzz: str = ""
    ebeln: str = ""
    ebelp: str = ""
    ktosl: str = ""
    bschl: str = ""


@dataclass
class Header:
    bukrs: str
    blart: str
    bldat: str
    budat: str
    waers: str
    xblnr: str = ""
    bktxt: str = ""
    usnam: str = "RFC_USER"
    tcode: str = "FBV0"
    awtyp: str = "BKPF"
    awkey: str = ""
    awsys: str = ""
    glvor: str = "RFBU"
    gjahr: str = ""
    kursf: Decimal = Decimal(1)


def company(data: EccData, bukrs: str, client: str) -> Row | None:
    return data.get("T001", (bukrs,), client)


def period_of(budat: str) -> tuple[str, str]:
    """(GJAHR, MONAT) for fiscal year variant K4 (calendar year)."""
    return budat[:4], budat[4:6]


def period_open(data: EccData, bukrs: str, budat: str, client: str) -> bool:
    t001 = company(data, bukrs, client)
    if t001 is None:
        return False
    var = t001.get("OPVAR") or bukrs
    gjahr, monat = period_of(budat)
    want = (int(gjahr), int(monat))
    with data.lock:
        for r in data.store("T001B", client).rows:
            if r.get("BUKVS") != var or r.get("MKOAR") != "+":
                continue
            for a, b, c, d in (("FRYE1", "FRPE1", "TOYE1", "TOPE1"), ("FRYE2", "FRPE2", "TOYE2", "TOPE2")):
                if not r.get(a) or int(r.get(a) or 0) == 0:
                    continue
                lo = (int(r[a]), int(r.get(b) or 0))
                hi = (int(r.get(c) or 0), int(r.get(d) or 0))
                if lo <= want <= hi:
                    return True
    return False


def set_open_periods(data: EccData, bukrs: str, from_year: int, from_period: int, to_year: int,
                     to_period: int, client: str) -> None:
    """OB52: set interval 1 of the '+' row of `bukrs`'s posting period variant."""
    t001 = company(data, bukrs, client)
    if t001 is None:
        raise KeyError(f"company code {bukrs} not defined")
    var = t001.get("OPVAR") or bukrs
    with data.lock:
        row = data.store("T001B", client).get(("0", var, "+", "ZZZZZZZZZZ"))
        if row is None:
            raise KeyError(f"no T001B row for variant {var}")
        row.update({"FRYE1": str(from_year), "FRPE1": str(from_period).zfill(3),
                    "TOYE1": str(to_year), "TOPE1": str(to_period).zfill(3)})


def next_number(data: EccData, client: str, obj: str, sub: str, nr: str, year: str, start: str) -> str:
    """Draw the next number from NRIV (interval created on first use)."""
    with data.lock:
        st = data.store("NRIV", client)
        row = st.get((client, obj, sub, nr, year))
        if row is None:
            row = {"CLIENT": client, "OBJECT": obj, "SUBOBJECT": sub, "NRRANGENR": nr, "TOYEAR": year,
                   "FROMNUMBER": start.zfill(20), "TONUMBER": str(int(start) + 99999999).zfill(20),
                   "NRLEVEL": str(int(start) - 1).zfill(20)}
            st.insert(row)
        level = int(row["NRLEVEL"]) + 1
        if level > int(row["TONUMBER"]):
            raise AbapRuntimeError("NUMBER_RANGE_INTERVAL_EXHAUSTED", f"{obj} {sub} {nr} {year}")
        row["NRLEVEL"] = str(level).zfill(20)
        return str(level).zfill(10)


def doc_number(data: EccData, client: str, bukrs: str, gjahr: str, blart: str) -> str:
    t003 = data.get("T003", (blart,), client)
    numkr = t003["NUMKR"] if t003 else "01"
    return next_number(data, client, "RF_BELEG", bukrs, numkr, gjahr,
                       NUMKR_FROM.get(numkr, "0100000000"))


def _bschl(line: Line) -> str:
    if line.bschl:
        return line.bschl
    debit = line.wrbtr >= 0
    if line.koart == "K":
        return "21" if debit else "31"
    return "40" if debit else "50"


def build_rows(data: EccData, client: str, hdr: Header, belnr: str, lines: list[Line],
               now: datetime) -> tuple[Row, list[Row], list[Row]]:
    """BKPF row, BSEG rows and BSIK rows of a document."""
    gjahr, monat = period_of(hdr.budat)
    gjahr = hdr.gjahr or gjahr
    t001 = company(data, hdr.bukrs, client) or {}
    hwaer = t001.get("WAERS", hdr.waers)
    bkpf: Row = {"MANDT": client, "BUKRS": hdr.bukrs, "BELNR": belnr, "GJAHR": gjahr, "BLART": hdr.blart,
                 "BLDAT": hdr.bldat, "BUDAT": hdr.budat, "MONAT": monat, "CPUDT": now.strftime("%Y%m%d"),
                 "CPUTM": now.strftime("%H%M%S"), "WWERT": hdr.budat, "USNAM": hdr.usnam[:12],
                 "TCODE": hdr.tcode, "XBLNR": hdr.xblnr[:16], "BKTXT": hdr.bktxt[:25], "WAERS": hdr.waers,
                 "KURSF": str(hdr.kursf), "HWAER": hwaer, "AWTYP": hdr.awtyp,
                 "AWKEY": hdr.awkey or (belnr + hdr.bukrs + gjahr), "AWSYS": hdr.awsys, "GLVOR": hdr.glvor}
    bseg: list[Row] = []
    bsik: list[Row] = []
    for i, ln in enumerate(lines, start=1):
        buzei = str(i).zfill(3)
        ska1 = data.get("SKA1", (KTOPL, ln.hkont), client) or {}
        row: Row = {"MANDT": client, "BUKRS": hdr.bukrs, "BELNR": belnr, "GJAHR": gjahr, "BUZEI": buzei,
                    "BSCHL": _bschl(ln), "KOART": ln.koart, "SHKZG": "S" if ln.wrbtr >= 0 else "H",
                    "MWSKZ": ln.mwskz, "DMBTR": _amt(abs(ln.dmbtr)), "WRBTR": _amt(abs(ln.wrbtr)),
                    "PSWBT": _amt(abs(ln.dmbtr)), "PSWSL": hwaer, "KTOSL": ln.ktosl, "ZUONR": ln.zuonr[:18],
                    "SGTXT": ln.sgtxt[:50], "KOKRS": ln.kokrs, "KOSTL": ln.kostl, "AUFNR": ln.aufnr,
                    "HKONT": ln.hkont, "SAKNR": ln.hkont if ln.koart == "S" else "", "LIFNR": ln.lifnr,
                    "XBILK": ska1.get("XBILK", ""), "GVTYP": ska1.get("GVTYP", ""), "PRCTR": ln.prctr,
                    "EBELN": ln.ebeln, "EBELP": ln.ebelp, "REBZG": ln.rebzg, "REBZJ": ln.rebzj,
                    "REBZZ": ln.rebzz, "H_BUDAT": hdr.budat, "H_BLDAT": hdr.bldat, "H_BLART": hdr.blart,
                    "H_WAERS": hdr.waers}
        if ln.koart == "K":
            row.update({"ZFBDT": ln.zfbdt or hdr.bldat, "ZTERM": ln.zterm, "ZBD1T": str(ln.zbd1t),
                        "ZBD3T": str(ln.zbd3t), "ZLSPR": ln.zlspr, "XOPVW": "X",
                        "SKFBT": _amt(abs(ln.wrbtr)), "XZAHL": "X" if hdr.blart == "KZ" else ""})
            bsik.append({k: row.get(k, "") for k in (
                "MANDT", "BUKRS", "LIFNR", "GJAHR", "BELNR", "BUZEI", "ZUONR", "BSCHL", "SHKZG", "MWSKZ",
                "DMBTR", "WRBTR", "SGTXT", "EBELN", "EBELP", "HKONT", "ZFBDT", "ZTERM", "ZBD1T", "ZBD3T",
                "SKFBT", "ZLSPR", "REBZG", "REBZJ", "REBZZ", "XZAHL", "PRCTR")} | {
                "BUDAT": hdr.budat, "BLDAT": hdr.bldat, "CPUDT": bkpf["CPUDT"], "WAERS": hdr.waers,
                "XBLNR": bkpf["XBLNR"], "BLART": hdr.blart, "MONAT": monat})
        bseg.append({k: v for k, v in row.items() if v not in ("", None)})
    bsik = [{k: v for k, v in r.items() if v not in ("", None)} for r in bsik]
    return bkpf, bseg, bsik


def write_document(data: EccData, client: str, bkpf: Row, bseg: list[Row], bsik: list[Row]) -> None:
    with data.lock:
        data.store("BKPF", client).insert(bkpf)
        for r in bseg:
            data.store("BSEG", client).insert(r)
        for r in bsik:
            data.store("BSIK", client).insert(r)


def post_now(data: EccData, client: str, hdr: Header, lines: list[Line],
             now: datetime | None = None, belnr: str | None = None) -> str:
    """Write a document directly (seed, clearing, reversal); returns BELNR (drawn now unless given)."""
    now = now or data.clock()
    gjahr = hdr.gjahr or period_of(hdr.budat)[0]
    with data.lock:
        belnr = belnr or doc_number(data, client, hdr.bukrs, gjahr, hdr.blart)
        bkpf, bseg, bsik = build_rows(data, client, hdr, belnr, lines, now)
        write_document(data, client, bkpf, bseg, bsik)
    return belnr


def _to_local(data: EccData, client: str, bukrs: str, waers: str, amount: Decimal) -> tuple[Decimal, Decimal]:
    """(local amount, rate) for a document-currency amount."""
    t001 = company(data, bukrs, client) or {}
    hwaer = t001.get("WAERS", waers)
    if hwaer == waers:
        return amount, Decimal(1)
    rate = RATES.get((waers, hwaer), Decimal(1))
    return (amount * rate).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP), rate


# ---------------------------------------------------------------------------------------------
# clearing / reversal / payment block (Python API, also used by the admin endpoints)


def _open_items(data: EccData, client: str, bukrs: str, belnr: str, gjahr: str) -> list[Row]:
    with data.lock:
        return [r for r in data.store("BSIK", client).rows
                if r["BUKRS"] == bukrs and r["BELNR"] == belnr and r["GJAHR"] == gjahr]


def _move_to_bsak(data: EccData, client: str, items: list[Row], augbl: str, augdt: str) -> None:
    with data.lock:
        bsik, bsak, bseg = (data.store(t, client) for t in ("BSIK", "BSAK", "BSEG"))
        for r in items:
            i = bsik.find(bsik.key_of(r))
            if i < 0:
                continue
            row = bsik.rows[i]
            del bsik.rows[i], bsik.keys[i], bsik.lead[i]
            bsak.insert({**row, "AUGBL": augbl, "AUGDT": augdt})
            b = bseg.get((row["BUKRS"], row["BELNR"], row["GJAHR"], row["BUZEI"]))
            if b is not None:
                b.update({"AUGBL": augbl, "AUGDT": augdt, "AUGCP": augdt})


def clear_item(data: EccData, bukrs: str, belnr: str, gjahr: str, *, client: str,
               amount: Decimal | str | None = None, clearing_date: str | None = None,
               bank_account: str = "0000113100", now: datetime | None = None) -> str:
    """Pay the open vendor items of an invoice (F-53 / payment run): posts a KZ payment document.

    Full payment (amount None or >= the open amount): the invoice items and the payment's vendor item
    move BSIK -> BSAK with AUGBL = payment document, AUGDT = clearing date. Partial payment: the
    payment's vendor item stays open with REBZG/REBZJ/REBZZ pointing at the invoice (status
    'partially paid'). Returns the payment document number."""
    belnr = alpha_in(belnr)
    items = _open_items(data, client, bukrs, belnr, gjahr)
    if not items:
        raise KeyError(f"no open vendor items for document {belnr} {bukrs} {gjahr}")
    with data.lock:  # earlier partial payments of this invoice are cleared together with it
        items += [r for r in data.store("BSIK", client).rows if r["BUKRS"] == bukrs
                  and r.get("REBZG") == belnr and r.get("REBZJ") == gjahr]
    augdt = date_in(clearing_date) if clearing_date else data.clock().strftime("%Y%m%d")
    open_doc = sum((_dec(r["WRBTR"]) * (-1 if r["SHKZG"] == "H" else 1) for r in items), Decimal(0))
    waers = items[0]["WAERS"]
    lifnr = items[0]["LIFNR"]
    pay = -open_doc if amount is None else (_dec(amount) if open_doc < 0 else -_dec(amount))
    full = abs(pay) >= abs(open_doc)
    if full:
        pay = -open_doc
    local, rate = _to_local(data, client, bukrs, waers, pay)
    hdr = Header(bukrs=bukrs, blart="KZ", bldat=augdt, budat=augdt, waers=waers, xblnr="PAYRUN",
                 bktxt="Payment run", tcode="F110", glvor="RFBU", kursf=rate)
    vend = Line(koart="K", hkont=items[0]["HKONT"], wrbtr=pay, dmbtr=local, lifnr=lifnr,
                sgtxt=f"Payment {alpha_out(belnr)}", zfbdt=augdt)
    if not full:
        vend.rebzg, vend.rebzj, vend.rebzz = belnr, gjahr, items[0]["BUZEI"]
    bank = Line(koart="S", hkont=bank_account, wrbtr=-pay, dmbtr=-local, sgtxt="Outgoing payment")
    with data.lock:
        paybelnr = post_now(data, client, hdr, [vend, bank], now)
        if full:
            pay_items = _open_items(data, client, bukrs, paybelnr, augdt[:4])
            _move_to_bsak(data, client, items + pay_items, paybelnr, augdt)
    return paybelnr


def reverse_document(data: EccData, bukrs: str, belnr: str, gjahr: str, *, client: str,
                     posting_date: str | None = None, reason: str = "01") -> str:
    """FB08: post the reversal document, link both via STBLG/STJAH, clear their vendor items.

    The FI document of an MM invoice (AWTYP RMRP) is refused, as SAP refuses it: an MM invoice is
    reversed in MM (MR8M, `cancel_mm_invoice`), which reverses its FI document too."""
    belnr = alpha_in(belnr)
    with data.lock:
        bkpf = data.store("BKPF", client).get((bukrs, belnr, gjahr))
        if bkpf is None:
            raise KeyError(f"document {belnr} {bukrs} {gjahr} does not exist")
        if bkpf.get("AWTYP") == "RMRP":
            awkey = str(bkpf.get("AWKEY", ""))
            raise ValueError(f"document {belnr} {bukrs} {gjahr} was posted by MM invoice {awkey[:10]} {awkey[10:]}: "
                             "it is reversed in MM (MR8M / BAPI_INCOMINGINVOICE_CANCEL), not with FB08")
        return _reverse_fi(data, client, bkpf, posting_date=posting_date, reason=reason, tcode="FB08")


def _reverse_fi(data: EccData, client: str, bkpf: Row, *, posting_date: str | None, reason: str, tcode: str,
                awtyp: str = "BKPF", awkey: str = "", number: str | None = None) -> str:
    """The FI reversal of one BKPF row (FB08, the FI part of MR8M, BAPI_ACC_DOCUMENT_REV_POST): caller holds
    `data.lock`. `number`: the reversal's BELNR when already drawn (a BAPI exports it before the commit)."""
    bukrs, belnr, gjahr = bkpf["BUKRS"], bkpf["BELNR"], bkpf["GJAHR"]
    if bkpf.get("STBLG"):
        raise ValueError(f"document {belnr} {bukrs} {gjahr} is already reversed")
    lines = [r for r in data.store("BSEG", client).rows
             if r["BUKRS"] == bukrs and r["BELNR"] == belnr and r["GJAHR"] == gjahr]
    if any(r.get("AUGBL") for r in lines if r.get("KOART") == "K"):
        raise ValueError(f"document {belnr} has cleared items; reset the clearing first")
    budat = date_in(posting_date) if posting_date else bkpf["BUDAT"]
    t003 = data.get("T003", (bkpf["BLART"],), client)
    hdr = Header(bukrs=bukrs, blart=(t003 or {}).get("STBLG") or bkpf["BLART"], bldat=bkpf["BLDAT"],
                 budat=budat, waers=bkpf["WAERS"], xblnr=bkpf.get("XBLNR", ""),
                 bktxt=bkpf.get("BKTXT", ""), tcode=tcode, kursf=_dec(bkpf.get("KURSF") or "1"),
                 awtyp=awtyp, awkey=awkey, awsys=bkpf.get("AWSYS", ""),
                 glvor="RMRP" if awtyp == "RMRP" else "RFBU")
    rev_lines = []
    for r in lines:
        sign = 1 if r["SHKZG"] == "H" else -1  # inverted
        rev_lines.append(Line(koart=r["KOART"], hkont=r["HKONT"], wrbtr=sign * _dec(r["WRBTR"]),
                              dmbtr=sign * _dec(r["DMBTR"]), lifnr=r.get("LIFNR", ""),
                              kostl=r.get("KOSTL", ""), kokrs=r.get("KOKRS", ""),
                              mwskz=r.get("MWSKZ", ""), sgtxt=r.get("SGTXT", ""),
                              zfbdt=r.get("ZFBDT", ""), zterm=r.get("ZTERM", ""), ebeln=r.get("EBELN", ""),
                              ebelp=r.get("EBELP", "")))
    rev = post_now(data, client, hdr, rev_lines, belnr=number)
    rev_gjahr = budat[:4]
    rev_row = data.store("BKPF", client).get((bukrs, rev, rev_gjahr))
    assert rev_row is not None
    bkpf.update({"STBLG": rev, "STJAH": rev_gjahr, "STGRD": reason, "XREVERSAL": "1"})
    rev_row.update({"STBLG": belnr, "STJAH": gjahr, "XREVERSAL": "2"})
    items = _open_items(data, client, bukrs, belnr, gjahr) + _open_items(data, client, bukrs, rev, rev_gjahr)
    _move_to_bsak(data, client, items, rev, budat)
    return rev


def mm_fi_documents(data: EccData, client: str, belnr: str, gjahr: str) -> list[Row]:
    """The FI follow-on documents of MM invoice `belnr`/`gjahr` (BKPF AWTYP RMRP, AWKEY = BELNR + GJAHR)."""
    awkey = alpha_in(belnr) + gjahr.zfill(4)
    with data.lock:
        return [r for r in data.store("BKPF", client).rows if r.get("AWTYP") == "RMRP" and r.get("AWKEY") == awkey]


def cancel_mm_invoice(data: EccData, belnr: str, gjahr: str, *, client: str, posting_date: str | None = None,
                      reason: str = "01", reversal_number: str | None = None) -> tuple[str, str]:
    """MR8M: reverse MM invoice `belnr`/`gjahr` - a reversal invoice document (RBKP/RSEG, the items with
    the opposite debit/credit indicator), the FI reversal of its follow-on document (AWTYP RMRP, AWKEY =
    the reversal's number + year; vendor items cleared against each other), and RBKP-STBLG/STJAH of the
    original set to the reversal. Returns (reversal invoice number, its fiscal year).

    [U] what real MR8M writes besides RBKP-STBLG/STJAH of the original: here the reversal's own RBKP-STBLG
    points back at the original, and both FI documents get BKPF-STBLG/STJAH as FB08 sets them."""
    belnr, gjahr = alpha_in(belnr), gjahr.zfill(4)
    with data.lock:
        rbkp = data.store("RBKP", client).get((belnr, gjahr))
        if rbkp is None:
            raise KeyError(f"invoice document {belnr} {gjahr} does not exist")
        if rbkp.get("STBLG"):
            raise ValueError(f"invoice document {belnr} {gjahr} is already reversed by {rbkp['STBLG']} "
                             f"{rbkp.get('STJAH', '')}")
        budat = date_in(posting_date) if posting_date else rbkp["BUDAT"]
        year = budat[:4]
        rev_no = reversal_number or next_number(data, client, "RE_BELEG", "", "01", year, MM_INVOICE_FROM)
        for fi_doc in mm_fi_documents(data, client, belnr, gjahr):
            _reverse_fi(data, client, fi_doc, posting_date=budat, reason=reason, tcode="MR8M", awtyp="RMRP",
                        awkey=rev_no + year)
        rev = {**rbkp, "BELNR": rev_no, "GJAHR": year, "BUDAT": budat, "TCODE": "MR8M",
               "CPUDT": data.clock().strftime("%Y%m%d"), "STBLG": belnr, "STJAH": gjahr,
               "XRECH": "" if rbkp.get("XRECH") == "X" else "X"}
        data.store("RBKP", client).insert(rev)
        for r in [dict(r) for r in data.store("RSEG", client).rows if r["BELNR"] == belnr and r["GJAHR"] == gjahr]:
            data.store("RSEG", client).insert({**r, "BELNR": rev_no, "GJAHR": year,
                                               "SHKZG": "H" if r.get("SHKZG") == "S" else "S"})
        rbkp.update({"STBLG": rev_no, "STJAH": year})
    return rev_no, year


def set_payment_block(data: EccData, bukrs: str, belnr: str, gjahr: str, zlspr: str, *, client: str,
                      buzei: str | None = None) -> int:
    """Set (or with '' remove) ZLSPR on the open vendor items; returns how many items changed."""
    belnr = alpha_in(belnr)
    n = 0
    with data.lock:
        bseg = data.store("BSEG", client)
        for r in _open_items(data, client, bukrs, belnr, gjahr):
            if buzei and r["BUZEI"] != buzei.zfill(3):
                continue
            r["ZLSPR"] = zlspr  # ZLSPR is not a key field: change the stored row in place
            b = bseg.get((bukrs, belnr, gjahr, r["BUZEI"]))
            if b is not None:
                b["ZLSPR"] = zlspr
            n += 1
    return n


def documents_by_xblnr(data: EccData, bukrs: str, xblnr: str, client: str) -> list[Row]:
    with data.lock:
        return [dict(r) for r in data.store("BKPF", client).rows
                if r["BUKRS"] == bukrs and r.get("XBLNR") == xblnr]


# ---------------------------------------------------------------------------------------------
# RETURN (BAPIRET2) rows


_TEXTS = {
    ("RW", "605"): "Document posted successfully: &1 &2 &3",
    ("RW", "609"): "Error in document: &1 &2 &3",
    ("RW", "614"): "Document check without errors",  # [U]
    ("F5", "104"): "Vendor &1 is not defined in company code &2",
    ("F5", "165"): "Company code &1 is not defined",  # [U]
    ("F5", "201"): "Posting period &1 &2 is not open",
    ("F5", "351"): "Account &1 in company code &2 is blocked for posting",  # [U]
    ("F5", "702"): "Balance in transaction currency",  # [U] number
    ("FH", "010"): "G/L account &1 is not defined in company code &2",  # [U]
    ("KI", "235"): "Account &1 requires an assignment to a CO object",
    ("KI", "248"): "Cost center &1/&2 does not exist on &3",
    ("RW", "624"): "No amount specified for line item &1",  # [U]
    ("M8", "366"): "Purchase order &1 item &2 does not exist",  # [U]
    ("M8", "060"): "Invoice document &1 was created",  # [U]
    ("MC", "601"): "Object requested is currently locked by user &1",
    ("ZMLC", "001"): "Document with reference &1 already posted: &2 &3 &4",
    ("ZMLC", "002"): "Document &1 &2 &3 has no open vendor item",
    ("ZMLC", "003"): "Payment block changed for document &1 &2 &3",
    ("ZMLC", "004"): "Document &1 &2 &3 already cleared by &4",
    ("ZMLC", "005"): "Document &1 &2 &3 already reversed by &4",
    ("ZMLC", "006"): "Document &1 &2 &3 has cleared vendor items; it cannot be reversed",
    ("ZMLC", "007"): "Vendor items of document &1 &2 &3 cleared by &4",
    ("ZMLC", "008"): "Document &1 &2 &3 reversed by &4",
    ("RW", "021"): "Document &1 &2 &3 was not posted in Accounting: reverse it in its sending application",  # [U]
    ("RW", "022"): "Document &1 &2 &3 does not exist in Accounting",  # [U]
    ("RW", "023"): "Document &1 &2 &3 is already reversed or cleared",  # [U]
    ("ZMLC", "009"): "Invoice document &1 &2 does not exist",
    ("ZMLC", "010"): "Invoice document &1 &2 already reversed by &3 &4",
    ("ZMLC", "011"): "Invoice document &1 &2 reversed by &3 &4",
    ("ZMLC", "012"): "Document &1 &2 &3 belongs to MM invoice &4: reverse it in MM (MR8M)",
    ("M8", "184"): "Invoice document &1 &2 does not exist",  # [P] reference §3.3
    ("M8", "110"): "Invoice document &1 &2 has already been reversed",  # [U] number and text
    ("M8", "111"): "Invoice document &1 &2: its vendor items are cleared; it cannot be reversed",  # [U]
}


def msg(mtype: str, mid: str, number: str, *v: str, parameter: str = "", row: int = 0, fld: str = "",
        system: str = "") -> dict[str, str]:
    vs = [str(x)[:50] for x in v] + [""] * (4 - len(v))
    text = _TEXTS.get((mid, number), "")
    for i, x in enumerate(vs, start=1):
        text = text.replace(f"&{i}", x)
    return {"TYPE": mtype, "ID": mid, "NUMBER": number, "MESSAGE": text.strip()[:220], "LOG_NO": "",
            "LOG_MSG_NO": "000000", "MESSAGE_V1": vs[0], "MESSAGE_V2": vs[1], "MESSAGE_V3": vs[2],
            "MESSAGE_V4": vs[3], "PARAMETER": parameter, "ROW": str(row), "FIELD": fld, "SYSTEM": system}


def _field_msg(mtype: str, mid: str, number: str, *v: str, parameter: str, row: int, fld: str,
               system: str) -> list[dict[str, str]]:
    """The cause row plus its field-specific copy (PARAMETER/ROW/FIELD), as the RW interface does."""
    return [msg(mtype, mid, number, *v, system=system),
            msg(mtype, mid, number, *v, parameter=parameter, row=row, fld=fld, system=system)]


def logsys(data: EccData, client: str) -> str:
    t000 = data.get("T000", (client,), "")
    return (t000 or {}).get("LOGSYS") or f"ECDCLNT{client}"


def _fmt_date(yyyymmdd: str) -> str:
    return f"{yyyymmdd[6:8]}.{yyyymmdd[4:6]}.{yyyymmdd[0:4]}"


# ---------------------------------------------------------------------------------------------
# BAPI_ACC_DOCUMENT_* validation


@dataclass
class Plan:
    header: Header
    lines: list[Line]
    errors: list[dict[str, str]]


def _cost_center_valid(data: EccData, client: str, kokrs: str, kostl: str, on: str) -> bool:
    with data.lock:
        for r in data.store("CSKS", client).scan(kokrs, True, kokrs, True):
            if r["KOSTL"] == kostl and r.get("DATAB", "00000000") <= on <= r["DATBI"] and not r.get("BKZKP"):
                return True
    return False


def plan_acc_document(ctx: CallContext) -> Plan:
    data, client = ctx.data, ctx.client
    req = ctx.request
    system = logsys(data, client)
    h = req.structure("DOCUMENTHEADER")
    gl = req.table("ACCOUNTGL")
    ap = req.table("ACCOUNTPAYABLE")
    tax = req.table("ACCOUNTTAX")
    cur = req.table("CURRENCYAMOUNT")
    errors: list[dict[str, str]] = []
    bukrs = (h.get("COMP_CODE") or "").strip()
    budat = date_in(h.get("PSTNG_DATE", "")) if h.get("PSTNG_DATE") else ""
    bldat = date_in(h.get("DOC_DATE", "")) if h.get("DOC_DATE") else budat
    blart = (h.get("DOC_TYPE") or "SA").strip()
    hdr = Header(bukrs=bukrs, blart=blart, bldat=bldat, budat=budat, waers="",
                 xblnr=(h.get("REF_DOC_NO") or "").strip()[:16], bktxt=(h.get("HEADER_TXT") or "")[:25],
                 usnam=(h.get("USERNAME") or ctx.user)[:12], awtyp="BKPFF", awsys=system,
                 glvor=(h.get("BUS_ACT") or "RFBU").strip(), tcode="BAPI")
    plan = Plan(hdr, [], errors)
    t001 = company(data, bukrs, client) if bukrs else None
    if t001 is None:
        errors += _field_msg("E", "F5", "165", bukrs, parameter="DOCUMENTHEADER", row=1, fld="COMP_CODE",
                             system=system)
        return plan
    if not budat or budat == "00000000":
        errors += _field_msg("E", "F5", "201", "000", "0000", parameter="DOCUMENTHEADER", row=1,
                             fld="PSTNG_DATE", system=system)
        return plan
    fisc_year = (h.get("FISC_YEAR") or "").strip()
    hdr.gjahr = fisc_year.zfill(4) if fisc_year.strip("0") else budat[:4]
    if not period_open(data, bukrs, budat, client):
        errors += _field_msg("E", "F5", "201", budat[4:6].zfill(3), budat[:4], parameter="DOCUMENTHEADER",
                             row=1, fld="PSTNG_DATE", system=system)

    amounts: dict[str, dict[str, tuple[Decimal, str, int]]] = {}
    for i, r in enumerate(cur, start=1):
        item = (r.get("ITEMNO_ACC") or "").strip().zfill(10)
        ctype = (r.get("CURR_TYPE") or "00").strip() or "00"
        try:
            value = _dec(r.get("AMT_DOCCUR"))
        except ValueError:
            value = Decimal(0)
        amounts.setdefault(item, {})[ctype] = (value, (r.get("CURRENCY") or r.get("CURRENCY_ISO") or "")
                                               .strip(), i)
    doc_waers = next((c[1] for a in amounts.values() for t, c in a.items() if t == "00" and c[1]),
                     t001.get("WAERS", ""))
    hdr.waers = doc_waers
    _, rate = _to_local(data, client, bukrs, doc_waers, Decimal(1))
    hdr.kursf = rate

    def amount_for(item: str, parameter: str, row: int) -> tuple[Decimal, Decimal] | None:
        a = amounts.get(item, {})
        if "00" not in a:
            errors.extend(_field_msg("E", "RW", "624", item.lstrip("0"), parameter=parameter, row=row,
                                     fld="ITEMNO_ACC", system=system))
            return None
        doc = a["00"][0]
        loc = a["10"][0] if "10" in a else _to_local(data, client, bukrs, doc_waers, doc)[0]
        return doc, loc

    kokrs = bukrs
    lines: list[tuple[str, Line]] = []
    for i, r in enumerate(gl, start=1):
        item = (r.get("ITEMNO_ACC") or "").strip().zfill(10)
        acct = alpha_in(r.get("GL_ACCOUNT") or "")
        skb1 = data.get("SKB1", (bukrs, acct), client)
        if skb1 is None:
            errors += _field_msg("E", "FH", "010", alpha_out(acct), bukrs, parameter="ACCOUNTGL", row=i,
                                 fld="GL_ACCOUNT", system=system)
            continue
        if skb1.get("XSPEB"):
            errors += _field_msg("E", "F5", "351", alpha_out(acct), bukrs, parameter="ACCOUNTGL", row=i,
                                 fld="GL_ACCOUNT", system=system)
        kostl = alpha_in(r.get("COSTCENTER") or "")
        aufnr = (r.get("ORDERID") or "").strip()
        ska1 = data.get("SKA1", (KTOPL, acct), client) or {}
        if kostl:
            if not _cost_center_valid(data, client, kokrs, kostl, budat):
                errors += _field_msg("E", "KI", "248", kokrs, alpha_out(kostl), _fmt_date(budat),
                                     parameter="ACCOUNTGL", row=i, fld="COSTCENTER", system=system)
        elif not aufnr and not ska1.get("XBILK") and acct[4] in "46":
            errors += _field_msg("E", "KI", "235", alpha_out(acct), parameter="ACCOUNTGL", row=i,
                                 fld="COSTCENTER", system=system)
        amt = amount_for(item, "ACCOUNTGL", i)
        if amt is None:
            continue
        lines.append((item, Line(koart="S", hkont=acct, wrbtr=amt[0], dmbtr=amt[1], kostl=kostl,
                                 kokrs=kokrs if kostl else "", mwskz=(r.get("TAX_CODE") or "").strip(),
                                 sgtxt=r.get("ITEM_TEXT") or "", zuonr=r.get("ALLOC_NMBR") or "",
                                 aufnr=aufnr, prctr=alpha_in(r.get("PROFIT_CTR") or ""))))
    for i, r in enumerate(ap, start=1):
        item = (r.get("ITEMNO_ACC") or "").strip().zfill(10)
        lifnr = alpha_in(r.get("VENDOR_NO") or "")
        lfb1 = data.get("LFB1", (lifnr, bukrs), client)
        if lfb1 is None:
            errors += _field_msg("E", "F5", "104", alpha_out(lifnr), bukrs, parameter="ACCOUNTPAYABLE",
                                 row=i, fld="VENDOR_NO", system=system)
            continue
        lfa1 = data.get("LFA1", (lifnr,), client) or {}
        if lfb1.get("SPERR") or lfa1.get("SPERR"):
            errors += _field_msg("E", "F5", "351", alpha_out(lifnr), bukrs, parameter="ACCOUNTPAYABLE",
                                 row=i, fld="VENDOR_NO", system=system)
        amt = amount_for(item, "ACCOUNTPAYABLE", i)
        if amt is None:
            continue
        zterm = (r.get("PMNTTRMS") or lfb1.get("ZTERM") or "").strip()
        bline = date_in(r["BLINE_DATE"]) if (r.get("BLINE_DATE") or "").strip("0 -") else bldat
        lines.append((item, Line(koart="K", hkont=lfb1.get("AKONT") or "0000160000", wrbtr=amt[0],
                                 dmbtr=amt[1], lifnr=lifnr, sgtxt=r.get("ITEM_TEXT") or "",
                                 zuonr=r.get("ALLOC_NMBR") or "", zterm=zterm, zfbdt=bline,
                                 zlspr=(r.get("PMNT_BLOCK") or "").strip(), zbd3t=_net_days(zterm))))
    for i, r in enumerate(tax, start=1):
        item = (r.get("ITEMNO_ACC") or "").strip().zfill(10)
        acct = alpha_in(r.get("GL_ACCOUNT") or "") or "0000154000"
        amt = amount_for(item, "ACCOUNTTAX", i)
        if amt is None:
            continue
        lines.append((item, Line(koart="S", hkont=acct, wrbtr=amt[0], dmbtr=amt[1],
                                 mwskz=(r.get("TAX_CODE") or "").strip(),
                                 ktosl=(r.get("ACCT_KEY") or "VST").strip())))
    # balance per currency type
    totals: dict[str, Decimal] = {}
    for a in amounts.values():
        for ctype, (value, _ccy, _) in a.items():
            totals[ctype] = totals.get(ctype, Decimal(0)) + value
    for ctype, total in sorted(totals.items()):
        if total != 0:
            errors.append(msg("E", "F5", "702", _amt(total), doc_waers if ctype == "00" else ctype,
                              parameter="CURRENCYAMOUNT", row=0, fld="AMT_DOCCUR", system=system))
    if not lines and not errors:
        errors.append(msg("E", "RW", "624", "1", parameter="CURRENCYAMOUNT", system=system))
    lines.sort(key=lambda p: p[0])
    plan.lines = [ln for _, ln in lines]
    return plan


def _net_days(zterm: str) -> int:
    return {"0001": 0, "NT30": 30, "NT45": 45, "NT60": 60, "ZB01": 30, "Z014": 14}.get(zterm, 30)


_ACC_PARAMS = (
    Param("DOCUMENTHEADER", "import", "structure", "BAPIACHE09", optional=False),
    Param("CUSTOMERCPD", "import", "structure", "BAPIACPA09"),
    Param("CONTRACTHEADER", "import", "structure", "BAPIACCAHD"),
    Param("OBJ_TYPE", "export", abap_type="AWTYP"),
    Param("OBJ_KEY", "export", abap_type="AWKEY"),
    Param("OBJ_SYS", "export", abap_type="AWSYS"),
    Param("ACCOUNTGL", "tables", "table", "BAPIACGL09"),
    Param("ACCOUNTRECEIVABLE", "tables", "table", "BAPIACAR09"),
    Param("ACCOUNTPAYABLE", "tables", "table", "BAPIACAP09"),
    Param("ACCOUNTTAX", "tables", "table", "BAPIACTX09"),
    Param("CURRENCYAMOUNT", "tables", "table", "BAPIACCR09"),
    Param("EXTENSION1", "tables", "table", "BAPIACEXTC"),
    Param("EXTENSION2", "tables", "table", "BAPIPAREX"),
    Param("RETURN", "tables", "table", "BAPIRET2"),
)


def _error_out(ctx: CallContext, errors: list[dict[str, str]], obj_type: str = "BKPFF") -> None:
    system = logsys(ctx.data, ctx.client)
    ctx.out["OBJ_TYPE"] = obj_type
    ctx.out["OBJ_KEY"] = "$"
    ctx.out["OBJ_SYS"] = system
    ctx.out["RETURN"] = [msg("E", "RW", "609", obj_type, "$", system, system=system), *errors]


def _acc_post(ctx: CallContext, *, check_only: bool = False) -> tuple[Plan, str | None]:
    """Validate; on success assign the number and queue the write in the update task."""
    plan = plan_acc_document(ctx)
    if plan.errors:
        _error_out(ctx, plan.errors)
        return plan, None
    system = logsys(ctx.data, ctx.client)
    hdr = plan.header
    if check_only:
        ctx.out["RETURN"] = [msg("S", "RW", "614", system=system)]
        return plan, None
    belnr = doc_number(ctx.data, ctx.client, hdr.bukrs, hdr.gjahr, hdr.blart)
    obj_key = belnr + hdr.bukrs + hdr.gjahr
    hdr.awkey = obj_key
    now = ctx.data.clock()
    bkpf, bseg, bsik = build_rows(ctx.data, ctx.client, hdr, belnr, plan.lines, now)
    data, client = ctx.data, ctx.client
    ctx.in_update_task(lambda: write_document(data, client, bkpf, bseg, bsik))
    ctx.out["OBJ_TYPE"] = "BKPFF"
    ctx.out["OBJ_KEY"] = obj_key
    ctx.out["OBJ_SYS"] = system
    ctx.out["RETURN"] = [msg("S", "RW", "605", "BKPFF", obj_key, system, system=system)]
    return plan, obj_key


@REGISTRY.register("BAPI_ACC_DOCUMENT_POST", _ACC_PARAMS)
def bapi_acc_document_post(ctx: CallContext) -> None:
    _acc_post(ctx)


@REGISTRY.register("BAPI_ACC_DOCUMENT_CHECK", _ACC_PARAMS)
def bapi_acc_document_check(ctx: CallContext) -> None:
    _acc_post(ctx, check_only=True)


@REGISTRY.register("BAPI_TRANSACTION_COMMIT", (
    Param("WAIT", "import", abap_type="BAPITA-WAIT"),
    Param("RETURN", "export", "structure", "BAPIRET2"),
))
def bapi_transaction_commit(ctx: CallContext) -> None:
    ctx.commit()  # only this session's update task: empty when the BAPI ran in another request
    ctx.out["RETURN"] = {k: ("000" if k == "NUMBER" else "000000" if k == "LOG_MSG_NO" else
                             "0" if k == "ROW" else "") for k in msg("", "", "")}


@REGISTRY.register("BAPI_TRANSACTION_ROLLBACK", (Param("RETURN", "export", "structure", "BAPIRET2"),))
def bapi_transaction_rollback(ctx: CallContext) -> None:
    ctx.rollback()
    ctx.out["RETURN"] = {k: ("000" if k == "NUMBER" else "000000" if k == "LOG_MSG_NO" else
                             "0" if k == "ROW" else "") for k in msg("", "", "")}


def _failed(rows: Iterable[dict[str, str]]) -> bool:
    return any(r.get("TYPE") in ("E", "A", "X") for r in rows)


def _commit_wait(ctx: CallContext) -> None:
    """BAPI_TRANSACTION_COMMIT WAIT='X' inside a wrapper, then the fail_after_commit fault."""
    ctx.commit()
    _after_commit_fault(ctx)


def _after_commit_fault(ctx: CallContext) -> None:
    """The fail_after_commit fault: the LUW is committed, the answer is lost or late."""
    mode = state(ctx.data).take_after_commit()
    if mode is None:
        return
    if mode == "hang":
        time.sleep(state(ctx.data).faults.hang_seconds)
    elif mode == "system_failure":
        raise AbapRuntimeError("SYSTEM_FAILURE", "Sandbox fault injection: SYSTEM_FAILURE after COMMIT WORK")
    else:  # drop / partial / http_502 / http_504: the HTTP layer loses the response (sandbox/app.py)
        from .app import fail_response

        if not fail_response(mode):
            raise ConnectionAbortedError(f"sandbox fault: {mode} after COMMIT WORK (no HTTP layer)")


def _active_by_xblnr(data: EccData, client: str, bukrs: str, xblnr: str, gjahr: str = "") -> Row | None:
    for r in documents_by_xblnr(data, bukrs, xblnr, client):
        if not r.get("STBLG") and (not gjahr or r["GJAHR"] == gjahr):
            return r
    return None


def _guarded_post(ctx: CallContext, bukrs: str, xblnr: str, parameter: str,
                  refuse: Callable[[list[dict[str, str]]], None], post: Callable[[], bool]) -> None:
    """The wrappers' LUW (abap/*.abap): ENQUEUE_E_TABLE BKPF on MANDT+BUKRS+XBLNR (waiting up to
    `enqueue_wait_seconds`, else FOREIGN_LOCK -> E MC 601), duplicate guard (E ZMLC 001), post, COMMIT
    WORK AND WAIT or ROLLBACK, DEQUEUE - the lock is held from the guard through the commit, so two
    concurrent calls with the same XBLNR cannot both pass the guard. `post()` runs the BAPI and
    returns True when it succeeded; `refuse(rows)` fills the wrapper's error outputs."""
    st = state(ctx.data)
    system = logsys(ctx.data, ctx.client)
    key = (ctx.client, bukrs, xblnr)
    locked = False
    committed = False
    if xblnr:
        if not st.enqueue.acquire(key, st.faults.enqueue_wait_seconds):
            refuse([msg("E", "MC", "601", ctx.user, parameter=parameter, row=1, fld="REF_DOC_NO", system=system)])
            return
        locked = True
    try:
        if xblnr:
            dup = _active_by_xblnr(ctx.data, ctx.client, bukrs, xblnr)
            if dup is not None:
                refuse([msg("E", "ZMLC", "001", xblnr, dup["BELNR"], dup["BUKRS"], dup["GJAHR"],
                            parameter=parameter, row=1, fld="REF_DOC_NO", system=system)])
                return
        ok = post()
        if not ok:
            ctx.rollback()
            return
        if st.faults.post_delay:
            time.sleep(st.faults.post_delay)  # a slow update task: widens any race window
        ctx.commit()
        committed = True
    finally:
        if locked:
            st.enqueue.release(key)
    if committed:
        _after_commit_fault(ctx)  # after DEQUEUE: the function module has finished, its answer is lost


@REGISTRY.register("BAPI_ACC_DOCUMENT_REV_POST", (  # SAP's interface (stechno copy of the FM documentation)
    Param("REVERSAL", "import", "structure", "BAPIACREV", optional=False),
    Param("BUS_ACT", "import", abap_type="BAPIACHE09-BUS_ACT", optional=False),
    Param("OBJ_TYPE", "export", abap_type="AWTYP"),
    Param("OBJ_KEY", "export", abap_type="AWKEY"),
    Param("OBJ_SYS", "export", abap_type="AWSYS"),
    Param("RETURN", "tables", "table", "BAPIRET2"),
))
def bapi_acc_document_rev_post(ctx: CallContext) -> None:
    """Reverse a document posted through the accounting interface, found by REVERSAL-OBJ_TYPE/OBJ_KEY
    (its AWTYP/AWKEY) in COMP_CODE; written by BAPI_TRANSACTION_COMMIT in the same session (no commit
    inside, like the other accounting BAPIs). The FI document of an MM invoice (AWTYP RMRP) is refused: an
    MM invoice is reversed in MM (MR8M), so a wrong path cannot pass silently. [U]: the message numbers
    (RW 609 + RW 021/022/023 here), OBJ_KEY of the reversal = its BELNR + BUKRS + GJAHR."""
    r = ctx.request.structure("REVERSAL")
    data, client = ctx.data, ctx.client
    obj_type, obj_key = (r.get("OBJ_TYPE") or "").strip(), (r.get("OBJ_KEY") or "").strip()
    bukrs = (r.get("COMP_CODE") or "").strip() or obj_key[10:14].strip()
    budat = date_in(r["PSTNG_DATE"]) if (r.get("PSTNG_DATE") or "").strip("0 -") else ""
    reason = (r.get("REASON_REV") or "").strip()[:2] or "01"
    system = logsys(data, client)
    with data.lock:
        # by its reference (AWTYP/AWKEY), or a BKPFF-style key naming the FI document itself
        found = [dict(d) for d in data.store("BKPF", client).rows if (not bukrs or d["BUKRS"] == bukrs) and (
            (d.get("AWKEY") == obj_key and d.get("AWTYP") in (obj_type, "RMRP"))
            or d["BELNR"] + d["BUKRS"] + d["GJAHR"] == obj_key)]
    err = None
    if obj_type == "RMRP" or any(d.get("AWTYP") == "RMRP" for d in found):
        err = msg("E", "RW", "021", obj_type or "RMRP", obj_key, system, parameter="REVERSAL", fld="OBJ_TYPE",
                  system=system)
    elif not found:
        err = msg("E", "RW", "022", obj_type, obj_key, system, parameter="REVERSAL", fld="OBJ_KEY", system=system)
    elif found[0].get("STBLG") or _cleared_by(data, client, found[0]["BUKRS"], found[0]["BELNR"], found[0]["GJAHR"]):
        err = msg("E", "RW", "023", obj_type, obj_key, system, parameter="REVERSAL", fld="OBJ_KEY", system=system)
    elif not period_open(data, found[0]["BUKRS"], budat or found[0]["BUDAT"], client):
        when = budat or found[0]["BUDAT"]
        err = msg("E", "F5", "201", when[4:6].zfill(3), when[:4], parameter="REVERSAL", fld="PSTNG_DATE",
                  system=system)
    if err is not None:
        _error_out(ctx, [err], obj_type or "BKPFF")
        return
    doc = found[0]
    when = budat or doc["BUDAT"]
    t003 = data.get("T003", (doc["BLART"],), client)
    rev = doc_number(data, client, doc["BUKRS"], when[:4], (t003 or {}).get("STBLG") or doc["BLART"])
    rev_key = rev + doc["BUKRS"] + when[:4]

    def update() -> None:
        with data.lock:
            row = data.store("BKPF", client).get((doc["BUKRS"], doc["BELNR"], doc["GJAHR"]))
            assert row is not None
            _reverse_fi(data, client, row, posting_date=budat or None, reason=reason, tcode="FBR2",
                        awtyp=obj_type, awkey=rev_key, number=rev)

    ctx.in_update_task(update)
    ctx.out["OBJ_TYPE"], ctx.out["OBJ_KEY"], ctx.out["OBJ_SYS"] = obj_type, rev_key, system
    ctx.out["RETURN"] = [msg("S", "RW", "605", obj_type, rev_key, system, system=system)]


@REGISTRY.register("Z_MLC_ACC_DOCUMENT_POST", _ACC_PARAMS)
def z_mlc_acc_document_post(ctx: CallContext) -> None:
    """Wrapper: ENQUEUE + XBLNR duplicate guard, POST, then COMMIT WAIT (or ROLLBACK) in one LUW."""
    h = ctx.request.structure("DOCUMENTHEADER")
    xblnr = (h.get("REF_DOC_NO") or "").strip()
    bukrs = (h.get("COMP_CODE") or "").strip()

    def post() -> bool:
        _acc_post(ctx)
        if _failed(ctx.out.get("RETURN", [])):
            ctx.out["OBJ_KEY"] = "$"
            return False
        return True

    _guarded_post(ctx, bukrs, xblnr, "DOCUMENTHEADER", lambda rows: _error_out(ctx, rows), post)


@REGISTRY.register("Z_MLC_DOCUMENT_BY_XBLNR", (
    Param("I_BUKRS", "import", abap_type="BUKRS", optional=False),
    Param("I_XBLNR", "import", abap_type="XBLNR1", optional=False),
    Param("I_GJAHR", "import", abap_type="GJAHR"),
    Param("ET_DOCUMENTS", "tables", "table", "ZMLC_S_DOCREF"),
))
def z_mlc_document_by_xblnr(ctx: CallContext) -> None:
    bukrs = ctx.request.scalar("I_BUKRS").strip()
    xblnr = ctx.request.scalar("I_XBLNR").strip()
    gjahr = ctx.request.scalar("I_GJAHR").strip().lstrip("0")
    rows = documents_by_xblnr(ctx.data, bukrs, xblnr, ctx.client)
    ctx.out["ET_DOCUMENTS"] = [{k: r.get(k, "") for k in ("BUKRS", "BELNR", "GJAHR", "XBLNR", "STBLG",
                                                           "BLART", "BUDAT", "AWTYP", "AWKEY")}
                               for r in rows if not gjahr or r["GJAHR"] == gjahr.zfill(4)]


# ---------------------------------------------------------------------------------------------
# MM invoice


_INCINV_PARAMS = (
    Param("HEADERDATA", "import", "structure", "BAPI_INCINV_CREATE_HEADER", optional=False),
    Param("ADDRESSDATA", "import", "structure", "BAPI_INCINV_CREATE_ADDRESSDATA"),
    Param("INVOICEDOCNUMBER", "export", abap_type="RE_BELNR"),
    Param("FISCALYEAR", "export", abap_type="GJAHR"),
    Param("ITEMDATA", "tables", "table", "BAPI_INCINV_CREATE_ITEM"),
    Param("ACCOUNTINGDATA", "tables", "table", "BAPI_INCINV_CREATE_ACCOUNT"),
    Param("GLACCOUNTDATA", "tables", "table", "BAPI_INCINV_CREATE_GL_ACCOUNT"),
    Param("TAXDATA", "tables", "table", "BAPI_INCINV_CREATE_TAX"),
    Param("RETURN", "tables", "table", "BAPIRET2"),
)


def _po_lookup(data: EccData, client: str, ebeln: str, ebelp: str) -> tuple[bool, Row | None]:
    """(checked, EKPO/EKKO row) - unchecked when the sandbox has no EKKO/EKPO tables."""
    if ddic.table("EKKO") is None or ddic.table("EKPO") is None:
        return False, None
    with data.lock:
        ekko = data.store("EKKO", client).get((ebeln,))
        ekpo = data.store("EKPO", client).get((ebeln, ebelp))
    if ekko is None or ekpo is None:
        return True, None
    return True, {**ekpo, "LIFNR": ekko.get("LIFNR", ""), "EKKO_BUKRS": ekko.get("BUKRS", "")}


def _incinv(ctx: CallContext) -> tuple[str, str] | None:
    data, client = ctx.data, ctx.client
    system = logsys(data, client)
    h = ctx.request.structure("HEADERDATA")
    items = ctx.request.table("ITEMDATA")
    errors: list[dict[str, str]] = []
    bukrs = (h.get("COMP_CODE") or "").strip()
    budat = date_in(h.get("PSTNG_DATE", "")) if h.get("PSTNG_DATE") else ""
    bldat = date_in(h.get("DOC_DATE", "")) if h.get("DOC_DATE") else budat
    waers = (h.get("CURRENCY") or h.get("CURRENCY_ISO") or "").strip()
    invoice = (h.get("INVOICE_IND") or "").strip() == "X"
    t001 = company(data, bukrs, client)
    ctx.out["RETURN"] = []
    if t001 is None:
        errors += _field_msg("E", "F5", "165", bukrs, parameter="HEADERDATA", row=1, fld="COMP_CODE",
                             system=system)
    elif not budat or not period_open(data, bukrs, budat, client):
        errors += _field_msg("E", "F5", "201", budat[4:6].zfill(3), budat[:4], parameter="HEADERDATA",
                             row=1, fld="PSTNG_DATE", system=system)
    lifnr = alpha_in(h.get("DIFF_INV") or "")
    total = Decimal(0)
    gl_lines: list[Line] = []
    for i, r in enumerate(items, start=1):
        ebeln = alpha_in(r.get("PO_NUMBER") or "")
        ebelp = (r.get("PO_ITEM") or "").strip().zfill(5)
        checked, po = _po_lookup(data, client, ebeln, ebelp)
        if checked and po is None:
            errors += _field_msg("E", "M8", "366", ebeln, ebelp.lstrip("0"), parameter="ITEMDATA", row=i,
                                 fld="PO_NUMBER", system=system)
            continue
        if po is not None and not lifnr:
            lifnr = po.get("LIFNR", "")
        amount = _dec(r.get("ITEM_AMOUNT"))
        total += amount
        gl_lines.append(Line(koart="S", hkont="0000191100", wrbtr=amount if invoice else -amount,
                             dmbtr=Decimal(0), mwskz=(r.get("TAX_CODE") or "").strip(), ebeln=ebeln,
                             ebelp=ebelp, ktosl="WRX", sgtxt=f"PO {alpha_out(ebeln)}/{ebelp.lstrip('0')}"))
    if not items:
        errors.append(msg("E", "M8", "366", "", "", parameter="ITEMDATA", system=system))
    gross = _dec(h.get("GROSS_AMOUNT"))
    if not errors and gross != total:
        errors.append(msg("E", "F5", "702", _amt(gross - total), waers, parameter="HEADERDATA", row=1,
                          fld="GROSS_AMOUNT", system=system))
    lfb1 = data.get("LFB1", (lifnr, bukrs), client) if lifnr else None
    if not errors and lfb1 is None:
        errors += _field_msg("E", "F5", "104", alpha_out(lifnr), bukrs, parameter="HEADERDATA", row=1,
                             fld="DIFF_INV", system=system)
    if errors:
        ctx.out["RETURN"] = errors
        ctx.out["INVOICEDOCNUMBER"] = ""
        ctx.out["FISCALYEAR"] = "0000"
        return None
    assert lfb1 is not None
    gjahr = budat[:4]
    invno = next_number(data, client, "RE_BELEG", "", "01", gjahr, MM_INVOICE_FROM)
    for ln in gl_lines:
        ln.dmbtr = _to_local(data, client, bukrs, waers, ln.wrbtr)[0]
    vend_doc = -sum((ln.wrbtr for ln in gl_lines), Decimal(0))
    zterm = (h.get("PMNTTRMS") or lfb1.get("ZTERM") or "").strip()
    vend = Line(koart="K", hkont=lfb1.get("AKONT") or "0000160000", wrbtr=vend_doc,
                dmbtr=-sum((ln.dmbtr for ln in gl_lines), Decimal(0)), lifnr=lifnr,
                sgtxt=(h.get("HEADER_TXT") or "")[:50], zterm=zterm, zbd3t=_net_days(zterm),
                zfbdt=date_in(h["BLINE_DATE"]) if (h.get("BLINE_DATE") or "").strip("0 -") else bldat,
                zlspr=(h.get("PMNT_BLOCK") or "").strip())
    _, rate = _to_local(data, client, bukrs, waers, Decimal(1))
    hdr = Header(bukrs=bukrs, blart=(h.get("DOC_TYPE") or "RE").strip(), bldat=bldat, budat=budat,
                 waers=waers, xblnr=(h.get("REF_DOC_NO") or "").strip()[:16],
                 bktxt=(h.get("HEADER_TXT") or "")[:25], usnam=ctx.user, tcode="MIRO", awtyp="RMRP",
                 awkey=invno + gjahr, awsys=system, glvor="RMRP", kursf=rate)
    belnr = doc_number(data, client, bukrs, gjahr, hdr.blart)
    now = data.clock()
    bkpf, bseg, bsik = build_rows(data, client, hdr, belnr, [vend, *gl_lines], now)
    # the invoice document itself (MIRO): header RBKP, one RSEG row per PO item
    rbkp = {"MANDT": client, "BELNR": invno, "GJAHR": gjahr, "BLART": hdr.blart, "BLDAT": bldat, "BUDAT": budat,
            "USNAM": ctx.user, "TCODE": "MIRO", "CPUDT": now.strftime("%Y%m%d"), "XBLNR": hdr.xblnr,
            "LIFNR": lifnr, "WAERS": waers, "BUKRS": bukrs, "RMWWR": _amt(gross), "ZTERM": zterm,
            "ZLSPR": vend.zlspr, "BKTXT": hdr.bktxt, "RBSTAT": "5", "XRECH": "X" if invoice else ""}
    rseg = []
    for n, (ln, r) in enumerate(zip(gl_lines, items, strict=True), start=1):
        _, po = _po_lookup(data, client, ln.ebeln, ln.ebelp)
        rseg.append({k: v for k, v in {
            "MANDT": client, "BELNR": invno, "GJAHR": gjahr, "BUZEI": str(n).zfill(6), "EBELN": ln.ebeln,
            "EBELP": ln.ebelp, "MATNR": (po or {}).get("MATNR", ""), "BUKRS": bukrs,
            "WERKS": (po or {}).get("WERKS", ""), "WRBTR": _amt(abs(ln.wrbtr)), "SHKZG": "S" if invoice else "H",
            "MWSKZ": ln.mwskz, "MENGE": str(r.get("QUANTITY") or "").strip(),
            "BSTME": str(r.get("PO_UNIT") or "").strip()}.items() if v not in ("", None)})

    def write() -> None:
        write_document(data, client, bkpf, bseg, bsik)
        with data.lock:
            data.store("RBKP", client).insert({k: v for k, v in rbkp.items() if v not in ("", None)})
            for row in rseg:
                data.store("RSEG", client).insert(row)

    ctx.in_update_task(write)
    ctx.out["INVOICEDOCNUMBER"] = invno
    ctx.out["FISCALYEAR"] = gjahr
    ctx.out["RETURN"] = [msg("S", "M8", "060", invno, system=system)]
    return invno, belnr


@REGISTRY.register("BAPI_INCOMINGINVOICE_CREATE", _INCINV_PARAMS)
def bapi_incominginvoice_create(ctx: CallContext) -> None:
    _incinv(ctx)


_Z_INCINV_PARAMS = (*_INCINV_PARAMS, Param("ACCOUNTING_DOC", "export", abap_type="BELNR_D"))


@REGISTRY.register("Z_MLC_INCOMINGINVOICE_CREATE", _Z_INCINV_PARAMS)
def z_mlc_incominginvoice_create(ctx: CallContext) -> None:
    """Wrapper: ENQUEUE + XBLNR duplicate guard, BAPI_INCOMINGINVOICE_CREATE, COMMIT WAIT or
    ROLLBACK in one LUW (same lock as Z_MLC_ACC_DOCUMENT_POST: BKPF + MANDT/BUKRS/XBLNR)."""
    h = ctx.request.structure("HEADERDATA")
    xblnr = (h.get("REF_DOC_NO") or "").strip()
    bukrs = (h.get("COMP_CODE") or "").strip()

    def refuse(rows: list[dict[str, str]]) -> None:
        ctx.out["INVOICEDOCNUMBER"] = ""
        ctx.out["FISCALYEAR"] = "0000"
        ctx.out["RETURN"] = rows

    def post() -> bool:
        done = _incinv(ctx)
        if done is None or _failed(ctx.out.get("RETURN", [])):
            ctx.out["INVOICEDOCNUMBER"] = ""
            return False
        ctx.out["ACCOUNTING_DOC"] = done[1]
        return True

    _guarded_post(ctx, bukrs, xblnr, "HEADERDATA", refuse, post)


_CANCEL_PARAMS = (  # SAP's interface (stechno / consolut copies of the FM documentation, function group MRM_BAPI)
    Param("INVOICEDOCNUMBER", "import", abap_type="RE_BELNR", optional=False),
    Param("FISCALYEAR", "import", abap_type="GJAHR", optional=False),
    Param("REASONREVERSAL", "import", abap_type="STGRD", optional=False),
    Param("POSTINGDATE", "import", abap_type="BUDAT"),
    Param("INVOICEDOCNUMBER_REVERSAL", "export", abap_type="RE_BELNR"),
    Param("FISCALYEAR_REVERSAL", "export", abap_type="GJAHR"),
    Param("RETURN", "tables", "table", "BAPIRET2"),
)


def _incinv_cancel(ctx: CallContext, belnr: str, gjahr: str, reason: str, budat: str,
                   parameter: str) -> tuple[list[dict[str, str]], tuple[str, str] | None]:
    """BAPI_INCOMINGINVOICE_CANCEL's checks, then the reversal queued in the update task (a
    BAPI_TRANSACTION_COMMIT in the same session writes it): (RETURN rows, (number, year) or None)."""
    data, client = ctx.data, ctx.client
    system = logsys(data, client)
    belnr, gjahr = alpha_in(belnr), gjahr.strip().zfill(4)
    with data.lock:
        rbkp = data.store("RBKP", client).get((belnr, gjahr))
        rbkp = dict(rbkp) if rbkp is not None else None
    if rbkp is None:
        return [msg("E", "M8", "184", belnr, gjahr, parameter=parameter, system=system)], None
    if rbkp.get("STBLG"):
        return [msg("E", "M8", "110", belnr, gjahr, rbkp["STBLG"], rbkp.get("STJAH", ""), parameter=parameter,
                    system=system)], None
    fi_docs = mm_fi_documents(data, client, belnr, gjahr)
    if any(_cleared_by(data, client, d["BUKRS"], d["BELNR"], d["GJAHR"]) for d in fi_docs):
        return [msg("E", "M8", "111", belnr, gjahr, parameter=parameter, system=system)], None
    when = budat or rbkp["BUDAT"]
    if not period_open(data, rbkp["BUKRS"], when, client):
        return [msg("E", "F5", "201", when[4:6].zfill(3), when[:4], parameter="POSTINGDATE", system=system)], None
    year = when[:4]
    # the number is drawn now (it is exported before the commit); the documents are written by the commit
    rev_no = next_number(data, client, "RE_BELEG", "", "01", year, MM_INVOICE_FROM)
    def update() -> None:
        cancel_mm_invoice(data, belnr, gjahr, client=client, posting_date=budat or None, reason=reason or "01",
                          reversal_number=rev_no)

    ctx.in_update_task(update)
    return [], (rev_no, year)


@REGISTRY.register("BAPI_INCOMINGINVOICE_CANCEL", _CANCEL_PARAMS)
def bapi_incominginvoice_cancel(ctx: CallContext) -> None:
    """MR8M as a BAPI: no transaction control (the caller commits with BAPI_TRANSACTION_COMMIT in the same
    session, as SAP documents it); the reversal's number and year in the exports, errors in RETURN."""
    req = ctx.request
    budat = date_in(req.scalar("POSTINGDATE").strip()) if req.scalar("POSTINGDATE").strip("0 -") else ""
    rows, done = _incinv_cancel(ctx, req.scalar("INVOICEDOCNUMBER"), req.scalar("FISCALYEAR"),
                                req.scalar("REASONREVERSAL").strip()[:2], budat, "INVOICEDOCNUMBER")
    ctx.out["INVOICEDOCNUMBER_REVERSAL"] = done[0] if done else ""
    ctx.out["FISCALYEAR_REVERSAL"] = done[1] if done else "0000"
    ctx.out["RETURN"] = rows


@REGISTRY.register("Z_MLC_INCOMINGINVOICE_CANCEL", (
    Param("I_BELNR", "import", abap_type="RE_BELNR", optional=False),
    Param("I_GJAHR", "import", abap_type="GJAHR", optional=False),
    Param("I_STGRD", "import", abap_type="STGRD"),
    Param("I_BUDAT", "import", abap_type="BUDAT"),
    Param("E_STBLG", "export", abap_type="RE_BELNR"),
    Param("E_STJAH", "export", abap_type="GJAHR"),
    Param("RETURN", "tables", "table", "BAPIRET2"),
))
def z_mlc_incominginvoice_cancel(ctx: CallContext) -> None:
    """Wrapper (abap/zmlc_posting.fugr.z_mlc_incominginvoice_cancel.abap): ENQUEUE_E_TABLE RBKP on
    MANDT+BELNR+GJAHR, RBKP-STBLG read (already reversed: E ZMLC 010 naming the reversal, which the caller
    treats as done; no such invoice: E ZMLC 009), BAPI_INCOMINGINVOICE_CANCEL, COMMIT WAIT or ROLLBACK, in
    one LUW."""
    req = ctx.request
    belnr, gjahr = alpha_in(req.scalar("I_BELNR")), req.scalar("I_GJAHR").strip().zfill(4)
    budat = date_in(req.scalar("I_BUDAT").strip()) if req.scalar("I_BUDAT").strip("0 -") else ""
    stgrd = req.scalar("I_STGRD").strip()[:2] or "01"
    st = state(ctx.data)
    system = logsys(ctx.data, ctx.client)
    ctx.out["E_STBLG"], ctx.out["E_STJAH"] = "", "0000"
    key = (ctx.client, "RBKP/", belnr + gjahr)  # never a company code + XBLNR key
    if not st.enqueue.acquire(key, st.faults.enqueue_wait_seconds):
        ctx.out["RETURN"] = [msg("E", "MC", "601", ctx.user, parameter="I_BELNR", system=system)]
        return
    committed = False
    try:
        with ctx.data.lock:
            rbkp = ctx.data.store("RBKP", ctx.client).get((belnr, gjahr))
            rbkp = dict(rbkp) if rbkp is not None else None
        if rbkp is None:
            ctx.out["RETURN"] = [msg("E", "ZMLC", "009", belnr, gjahr, parameter="I_BELNR", system=system)]
            return
        if rbkp.get("STBLG"):
            ctx.out["RETURN"] = [msg("E", "ZMLC", "010", belnr, gjahr, rbkp["STBLG"], rbkp.get("STJAH", ""),
                                     parameter="I_BELNR", system=system)]
            return
        rows, done = _incinv_cancel(ctx, belnr, gjahr, stgrd, budat, "I_BELNR")
        if done is None or _failed(rows):
            ctx.rollback()
            ctx.out["RETURN"] = rows
            return
        ctx.commit()
        committed = True
        ctx.out["E_STBLG"], ctx.out["E_STJAH"] = done
        ctx.out["RETURN"] = [msg("S", "ZMLC", "011", belnr, gjahr, *done, system=system)]
    finally:
        st.enqueue.release(key)
    if committed:
        _after_commit_fault(ctx)


# ---------------------------------------------------------------------------------------------
# payment block wrapper


@REGISTRY.register("Z_MLC_SET_PAYMENT_BLOCK", (
    Param("I_BUKRS", "import", abap_type="BUKRS", optional=False),
    Param("I_BELNR", "import", abap_type="BELNR_D", optional=False),
    Param("I_GJAHR", "import", abap_type="GJAHR", optional=False),
    Param("I_BUZEI", "import", abap_type="BUZEI"),
    Param("I_ZLSPR", "import", abap_type="DZLSPR"),
    Param("E_CHANGED", "export", abap_type="INT4"),
    Param("RETURN", "tables", "table", "BAPIRET2"),
))
def z_mlc_set_payment_block(ctx: CallContext) -> None:
    req = ctx.request
    bukrs, belnr = req.scalar("I_BUKRS").strip(), alpha_in(req.scalar("I_BELNR"))
    gjahr = req.scalar("I_GJAHR").strip().zfill(4)
    buzei = req.scalar("I_BUZEI").strip().lstrip("0")
    zlspr = req.scalar("I_ZLSPR").strip()[:1]
    system = logsys(ctx.data, ctx.client)
    with ctx.data.lock:
        items = [r for r in _open_items(ctx.data, ctx.client, bukrs, belnr, gjahr)
                 if not buzei or r["BUZEI"] == buzei.zfill(3)]
    if not items:
        ctx.out["E_CHANGED"] = "0"
        ctx.out["RETURN"] = [msg("E", "ZMLC", "002", belnr, bukrs, gjahr, parameter="I_BELNR",
                                 system=system)]
        return
    data, client = ctx.data, ctx.client
    def update() -> None:
        set_payment_block(data, bukrs, belnr, gjahr, zlspr, client=client, buzei=buzei or None)

    ctx.in_update_task(update)
    ctx.out["E_CHANGED"] = str(len(items))
    ctx.out["RETURN"] = [msg("S", "ZMLC", "003", belnr, bukrs, gjahr, system=system)]
    _commit_wait(ctx)


def _cleared_by(data: EccData, client: str, bukrs: str, belnr: str, gjahr: str) -> str:
    """The clearing document of the invoice's vendor items ('' while open or unknown)."""
    with data.lock:
        return next((r["AUGBL"] for r in data.store("BSAK", client).rows if r["BUKRS"] == bukrs
                     and r["BELNR"] == belnr and r["GJAHR"] == gjahr and r.get("AUGBL")), "")


@REGISTRY.register("Z_MLC_CLEAR_VENDOR_ITEMS", (
    Param("I_BUKRS", "import", abap_type="BUKRS", optional=False),
    Param("I_BELNR", "import", abap_type="BELNR_D", optional=False),
    Param("I_GJAHR", "import", abap_type="GJAHR", optional=False),
    Param("I_AUGDT", "import", abap_type="AUGDT"),
    Param("I_XBLNR", "import", abap_type="XBLNR1"),
    Param("I_SGTXT", "import", abap_type="SGTXT"),
    Param("I_HKONT", "import", abap_type="HKONT"),
    Param("E_AUGBL", "export", abap_type="AUGBL"),
    Param("E_AUGDT", "export", abap_type="AUGDT"),
    Param("RETURN", "tables", "table", "BAPIRET2"),
))
def z_mlc_clear_vendor_items(ctx: CallContext) -> None:
    """Wrapper (abap/zmlc_posting.fugr.z_mlc_clear_vendor_items.abap): an outgoing payment posted
    outside SAP (e.g. by Ramp) clears the invoice's open vendor items (POSTING_INTERFACE_CLEARING,
    as F-53), payment date = AUGDT/BUDAT, the payment's reference in the payment document's XBLNR
    and item text; COMMIT WAIT in one LUW. Already cleared: E ZMLC 004 naming the clearing document
    (the caller treats that as done)."""
    req = ctx.request
    bukrs, belnr = req.scalar("I_BUKRS").strip(), alpha_in(req.scalar("I_BELNR"))
    gjahr = req.scalar("I_GJAHR").strip().zfill(4)
    augdt = date_in(req.scalar("I_AUGDT").strip()) if req.scalar("I_AUGDT").strip() else ""
    xblnr, sgtxt = req.scalar("I_XBLNR").strip()[:16], req.scalar("I_SGTXT").strip()[:50]
    hkont = req.scalar("I_HKONT").strip()
    system = logsys(ctx.data, ctx.client)
    data, client = ctx.data, ctx.client
    if not _open_items(data, client, bukrs, belnr, gjahr):
        done = _cleared_by(data, client, bukrs, belnr, gjahr)
        ctx.out["RETURN"] = [msg("E", "ZMLC", "004", belnr, bukrs, gjahr, done, parameter="I_BELNR", system=system)
                             if done else msg("E", "ZMLC", "002", belnr, bukrs, gjahr, parameter="I_BELNR",
                                              system=system)]
        return
    if augdt and not period_open(data, bukrs, augdt, client):
        ctx.out["RETURN"] = [msg("E", "F5", "201", augdt[4:6], augdt[:4], parameter="I_AUGDT", system=system)]
        return
    made: list[str] = []

    def update() -> None:
        aug = clear_item(data, bukrs, belnr, gjahr, client=client, clearing_date=augdt or None,
                         bank_account=alpha_in(hkont) if hkont else "0000113100")
        with data.lock:  # the payment's own header keeps the external reference and text
            year = (augdt or data.clock().strftime("%Y%m%d"))[:4]
            pay = data.store("BKPF", client).get((bukrs, aug, year))
            if pay is not None:
                pay.update({"XBLNR": xblnr or pay.get("XBLNR", ""), "BKTXT": sgtxt[:25] or pay.get("BKTXT", ""),
                            "TCODE": "F-53"})
        made.append(aug)

    ctx.in_update_task(update)
    ctx.commit()
    aug = made[0] if made else ""
    ctx.out["E_AUGBL"] = aug
    ctx.out["E_AUGDT"] = augdt or data.clock().strftime("%Y%m%d")
    ctx.out["RETURN"] = [msg("S", "ZMLC", "007", belnr, bukrs, gjahr, aug, system=system)]
    _after_commit_fault(ctx)


@REGISTRY.register("Z_MLC_ACC_DOCUMENT_REVERSE", (
    Param("I_BUKRS", "import", abap_type="BUKRS", optional=False),
    Param("I_BELNR", "import", abap_type="BELNR_D", optional=False),
    Param("I_GJAHR", "import", abap_type="GJAHR", optional=False),
    Param("I_BUDAT", "import", abap_type="BUDAT"),
    Param("I_STGRD", "import", abap_type="STGRD"),
    Param("E_STBLG", "export", abap_type="BELNR_D"),
    Param("E_STJAH", "export", abap_type="GJAHR"),
    Param("RETURN", "tables", "table", "BAPIRET2"),
))
def z_mlc_acc_document_reverse(ctx: CallContext) -> None:
    """Wrapper (abap/zmlc_posting.fugr.z_mlc_acc_document_reverse.abap): FB08 / CALL_FB08 of one
    document, COMMIT WAIT in one LUW. Already reversed: E ZMLC 005 naming the reversal (the caller
    treats that as done); cleared vendor items: E ZMLC 006."""
    req = ctx.request
    bukrs, belnr = req.scalar("I_BUKRS").strip(), alpha_in(req.scalar("I_BELNR"))
    gjahr = req.scalar("I_GJAHR").strip().zfill(4)
    budat = date_in(req.scalar("I_BUDAT").strip()) if req.scalar("I_BUDAT").strip() else ""
    stgrd = req.scalar("I_STGRD").strip()[:2] or "01"
    system = logsys(ctx.data, ctx.client)
    data, client = ctx.data, ctx.client
    with data.lock:
        bkpf = data.store("BKPF", client).get((bukrs, belnr, gjahr))
        cleared = bool(_cleared_by(data, client, bukrs, belnr, gjahr))
    if bkpf is None:
        ctx.out["RETURN"] = [msg("E", "ZMLC", "002", belnr, bukrs, gjahr, parameter="I_BELNR", system=system)]
        return
    if bkpf.get("AWTYP") == "RMRP":  # an MM invoice is reversed in MM (MR8M), never by FB08
        awkey = str(bkpf.get("AWKEY", ""))
        ctx.out["RETURN"] = [msg("E", "ZMLC", "012", belnr, bukrs, gjahr, f"{awkey[:10]} {awkey[10:]}",
                                 parameter="I_BELNR", system=system)]
        return
    if bkpf.get("STBLG"):
        ctx.out["RETURN"] = [msg("E", "ZMLC", "005", belnr, bukrs, gjahr, bkpf["STBLG"], parameter="I_BELNR",
                                 system=system)]
        return
    if cleared:
        ctx.out["RETURN"] = [msg("E", "ZMLC", "006", belnr, bukrs, gjahr, parameter="I_BELNR", system=system)]
        return
    when = budat or bkpf["BUDAT"]
    if not period_open(data, bukrs, when, client):
        ctx.out["RETURN"] = [msg("E", "F5", "201", when[4:6], when[:4], parameter="I_BUDAT", system=system)]
        return
    made: list[str] = []
    ctx.in_update_task(lambda: made.append(reverse_document(data, bukrs, belnr, gjahr, client=client,
                                                            posting_date=budat or None, reason=stgrd)))
    ctx.commit()
    ctx.out["E_STBLG"] = made[0] if made else ""
    ctx.out["E_STJAH"] = when[:4]
    ctx.out["RETURN"] = [msg("S", "ZMLC", "008", belnr, bukrs, gjahr, ctx.out["E_STBLG"], system=system)]
    _after_commit_fault(ctx)


# ---------------------------------------------------------------------------------------------
# seed


def seed_fi(data: EccData, client: str, *, seed: int = 4711, documents: int = 300) -> None:
    """Deterministic customizing, chart of accounts, cost centers and FI history for `client`."""
    rnd = random.Random(seed)
    with data.lock:
        _seed_customizing(data, client)
        _seed_history(data, client, rnd, documents)


def _seed_customizing(data: EccData, client: str) -> None:
    def load(table: str, rows: list[Row]) -> None:
        data.store(table, client).bulk_load([{"MANDT": client, **r} if table != "NRIV" else r
                                             for r in rows])

    load("T001", [{"BUKRS": b, "BUTXT": n, "ORT01": c, "LAND1": la, "WAERS": w, "SPRAS": s, "KTOPL": KTOPL,
                   "PERIV": "K4", "OPVAR": b, "KKBER": b, "RCOMP": b.rjust(6, "0"), "STCEG": v,
                   "ADRNR": str(9000 + i).zfill(10), "WAABW": "10"}
                  for i, (b, n, c, la, w, s, v) in enumerate(COMPANIES)])
    load("T001B", [{"RRCTY": "0", "BUKVS": b, "MKOAR": "+", "BKONT": "ZZZZZZZZZZ", "VKONT": "",
                    "FRYE1": str(OPEN_FROM[0]), "FRPE1": str(OPEN_FROM[1]).zfill(3),
                    "TOYE1": str(OPEN_TO[0]), "TOPE1": str(OPEN_TO[1]).zfill(3)}
                   for b, *_ in COMPANIES])
    load("T003", [{"BLART": b, "NUMKR": n, "STBLG": s, "KOARS": k, "XMGES": "X"} for b, n, s, k in DOC_TYPES])
    ska1, skat, skb1 = [], [], []
    for nr, short, long_, bs, group, recon in ACCOUNTS:
        saknr = nr.zfill(10)
        ska1.append({"KTOPL": KTOPL, "SAKNR": saknr, "XBILK": "X" if bs else "", "SAKAN": nr,
                     "GVTYP": "" if bs else "X", "KTOKS": group, "ERDAT": "20150101", "ERNAM": "MIGRATION"})
        for spras in ("E", "D"):
            skat.append({"SPRAS": spras, "KTOPL": KTOPL, "SAKNR": saknr, "TXT20": short[:20],
                         "TXT50": long_[:50], "MCOD1": short[:25].upper()})
        for b, _n, _c, _la, w, *_ in COMPANIES:
            row: Row = {"BUKRS": b, "SAKNR": saknr, "WAERS": w, "ERDAT": "20150101", "ERNAM": "MIGRATION",
                        "FSTAG": "G001" if bs else "G004", "XKRES": "X", "ZUAWA": "001"}
            if recon:
                row["MITKZ"] = recon
            if nr.startswith(("113", "191")) or recon:
                row["XOPVW"] = "" if recon else "X"
            if nr == "699999":
                row["XSPEB"] = "X"
            if not bs:
                row["MWSKZ"] = "+"
            skb1.append(row)
    load("SKA1", ska1)
    load("SKAT", skat)
    load("SKB1", skb1)
    csks, cskt = [], []
    for b, rows in COST_CENTERS.items():
        w = next(c[4] for c in COMPANIES if c[0] == b)
        la = next(c[3] for c in COMPANIES if c[0] == b)
        for kostl, text, cat, werks, datab, datbi in rows:
            k = kostl.zfill(10)
            csks.append({"KOKRS": b, "KOSTL": k, "DATBI": datbi, "DATAB": datab, "BUKRS": b, "KOSAR": cat,
                         "VERAK": "Controller " + b, "WAERS": w, "ERSDA": datab, "USNAM": "MIGRATION",
                         "KHINR": f"H{b}", "PRCTR": ("P" + kostl).zfill(10)[:10], "WERKS": werks,
                         "LAND1": la, "ABTEI": DEPARTMENTS.get(kostl[1:], "")})
            cskt.append({"SPRAS": "E", "KOKRS": b, "KOSTL": k, "DATBI": datbi, "KTEXT": text[:20],
                         "LTEXT": text[:40], "MCTXT": text[:20].upper()})
    load("CSKS", csks)
    load("CSKT", cskt)


def _valid_cost_centers(bukrs: str, on: str) -> list[str]:
    return [k.zfill(10) for k, _t, _c, _w, a, b in COST_CENTERS[bukrs] if a <= on <= b]


def _seed_history(data: EccData, client: str, rnd: random.Random, n: int) -> None:
    """`n` vendor invoices / credit memos / G/L documents in 2024-2025, most invoices paid."""
    vendors: dict[str, list[Row]] = {b: [] for b, *_ in COMPANIES}
    for r in data.store("LFB1", client).rows:
        if r["BUKRS"] in vendors and not r.get("LOEVM") and not r.get("SPERR") and len(vendors[r["BUKRS"]]) < 60:
            vendors[r["BUKRS"]].append(r)
    base = date(2024, 1, 2)
    now = datetime(2025, 7, 1, 9, 0, 0)
    texts = ["Office supplies Q", "Cloud subscription", "Consulting services", "Travel reimbursement",
             "Freight charges", "Monthly rent", "Utility bill", "Marketing campaign", "Telecom services"]
    for i in range(n):
        bukrs = rnd.choice(["1000"] * 5 + ["2000"] * 3 + ["3000"] * 2)
        waers = next(c[4] for c in COMPANIES if c[0] == bukrs)
        budat_d = base + timedelta(days=int(rnd.random() * 540))
        budat = budat_d.strftime("%Y%m%d")
        bldat = (budat_d - timedelta(days=int(rnd.random() * 10))).strftime("%Y%m%d")
        centers = _valid_cost_centers(bukrs, budat)
        nlines = 1 + int(rnd.random() * 3)
        gl: list[Line] = []
        for _ in range(nlines):
            amt = Decimal(int(rnd.random() * 1_500_000 + 2_000)) / 100
            gl.append(Line(koart="S", hkont=rnd.choice(EXPENSE_ACCOUNTS), wrbtr=amt, dmbtr=amt,
                           kostl=rnd.choice(centers), kokrs=bukrs, sgtxt=rnd.choice(texts),
                           mwskz="I1" if bukrs == "1000" else "V1"))
        total = sum((ln.wrbtr for ln in gl), Decimal(0))
        kind = rnd.random()
        xblnr = f"INV-{budat[:4]}-{i + 1:05d}"
        if not vendors[bukrs] or kind < 0.1:  # G/L reclassification
            credit = Line(koart="S", hkont="0000113100", wrbtr=-total, dmbtr=-total, sgtxt="Accrual")
            hdr = Header(bukrs=bukrs, blart="SA", bldat=bldat, budat=budat, waers=waers, xblnr=f"GL{i:06d}",
                         bktxt="Month-end accrual", usnam="GL_CLERK1", tcode="FB50")
            post_now(data, client, hdr, [*gl, credit], now)
            continue
        v = rnd.choice(vendors[bukrs])
        memo = kind < 0.18
        sign = -1 if memo else 1
        for ln in gl:
            ln.wrbtr = ln.dmbtr = sign * ln.wrbtr
        zterm = v.get("ZTERM") or "NT30"
        vend = Line(koart="K", hkont=v.get("AKONT") or "0000160000", wrbtr=-sign * total,
                    dmbtr=-sign * total, lifnr=v["LIFNR"], zterm=zterm, zbd3t=_net_days(zterm),
                    zfbdt=bldat, sgtxt=gl[0].sgtxt,
                    zlspr="A" if rnd.random() < 0.05 else "")
        hdr = Header(bukrs=bukrs, blart="KG" if memo else "KR", bldat=bldat, budat=budat, waers=waers,
                     xblnr=xblnr, bktxt=("Credit memo " if memo else "Invoice ") + xblnr[-5:],
                     usnam=rnd.choice(["AP_CLERK1", "AP_CLERK2", "JSMITH"]), tcode="FB60" if not memo else "FB65")
        belnr = post_now(data, client, hdr, [vend, *gl], now)
        age = (date(2025, 7, 1) - budat_d).days
        if not vend.zlspr and (age > 75 or rnd.random() < 0.3) and rnd.random() < 0.85:
            pay_day = budat_d + timedelta(days=min(_net_days(zterm), 60) + int(rnd.random() * 5))
            if rnd.random() < 0.08:
                clear_item(data, bukrs, belnr, budat[:4], client=client,
                           amount=_amt(abs(total) / 2), clearing_date=pay_day.strftime("%Y%m%d"), now=now)
            else:
                clear_item(data, bukrs, belnr, budat[:4], client=client,
                           clearing_date=pay_day.strftime("%Y%m%d"), now=now)


# ---------------------------------------------------------------------------------------------
# admin endpoints


def add_routes(app: Any, sandbox: Any) -> None:
    """`/_sandbox/fi/...` admin endpoints on the sandbox FastAPI app."""

    def fi_state() -> FiState:
        return state(sandbox.data)

    async def body_of(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw.strip():
            return {}
        body = await request.json()
        if not isinstance(body, dict):
            raise ValueError("expected a JSON object")
        return body

    def guarded(fn: Callable[[dict[str, Any]], Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> JSONResponse:
            try:
                return JSONResponse(fn(await body_of(request)))
            except KeyError as exc:
                return JSONResponse({"error": str(exc)}, status_code=404)
            except (ValueError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return endpoint

    def client_of(body: dict[str, Any]) -> str:
        return str(body.pop("client", sandbox.client))

    def faults(body: dict[str, Any]) -> dict[str, Any]:
        return fi_state().faults.update(**body) if body else fi_state().faults.to_dict()

    def clear(body: dict[str, Any]) -> dict[str, Any]:
        c = client_of(body)
        aug = clear_item(sandbox.data, str(body["bukrs"]), str(body["belnr"]), str(body["gjahr"]), client=c,
                         amount=body.get("amount"), clearing_date=body.get("clearing_date"))
        return {"clearing_document": aug}

    def reverse(body: dict[str, Any]) -> dict[str, Any]:
        c = client_of(body)
        rev = reverse_document(sandbox.data, str(body["bukrs"]), str(body["belnr"]), str(body["gjahr"]),
                               client=c, posting_date=body.get("posting_date"))
        return {"reversal_document": rev}

    def periods(body: dict[str, Any]) -> dict[str, Any]:
        c = client_of(body)
        set_open_periods(sandbox.data, str(body["bukrs"]), int(body["from_year"]), int(body["from_period"]),
                         int(body["to_year"]), int(body["to_period"]), client=c)
        return {"ok": True}

    def block(body: dict[str, Any]) -> dict[str, Any]:
        c = client_of(body)
        n = set_payment_block(sandbox.data, str(body["bukrs"]), str(body["belnr"]), str(body["gjahr"]),
                              str(body.get("zlspr", "")), client=c)
        return {"changed": n}

    app.add_api_route("/_sandbox/fi/faults", guarded(faults), methods=["GET", "POST"])
    app.add_api_route("/_sandbox/fi/clear", guarded(clear), methods=["POST"])
    app.add_api_route("/_sandbox/fi/reverse", guarded(reverse), methods=["POST"])
    app.add_api_route("/_sandbox/fi/periods", guarded(periods), methods=["POST"])
    app.add_api_route("/_sandbox/fi/payment-block", guarded(block), methods=["POST"])

    async def documents(request: Request) -> JSONResponse:
        q = request.query_params
        c = q.get("client", sandbox.client)
        return JSONResponse(documents_by_xblnr(sandbox.data, q.get("bukrs", ""), q.get("xblnr", ""), c))

    app.add_api_route("/_sandbox/fi/documents", documents, methods=["GET"])
