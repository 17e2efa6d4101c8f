"""Posting FI documents and MM invoices to SAP ECC, exactly once (reference §3).

* Models: `VendorInvoice` (invoice or credit memo, with G/L lines and optional tax lines),
  `GLPosting` (signed lines) and `MMInvoice` (PO-based bill).
* `build_acc_document(doc)` gives the BAPI_ACC_DOCUMENT_POST/CHECK parameters: DOCUMENTHEADER,
  ACCOUNTGL, ACCOUNTPAYABLE, ACCOUNTTAX, CURRENCYAMOUNT. Sign convention of CURRENCYAMOUNT.AMT_DOCCUR:
  debit positive, credit negative; the document balances to zero per currency type (CURR_TYPE 00).
* `parse_return(rows)` turns RETURN (BAPIRET2) into a `PostResult` or a `PostingError`: any TYPE
  E, A or X is a failure; RW 605 is success with OBJ_KEY = BELNR(10) + BUKRS(4) + GJAHR(4)
  (`split_obj_key`); RW 609 plus detail rows becomes an error naming PARAMETER, ROW and FIELD.
* `DocumentPoster(caller)` posts through a wrapper FM that posts and commits in ONE request
  (Z_MLC_ACC_DOCUMENT_POST / Z_MLC_INCOMINGINVOICE_CREATE, ABAP source in abap/): over stateless
  SOAP-RFC a separate BAPI_TRANSACTION_COMMIT request commits nothing.

Exactly-once without an idempotency key
---------------------------------------
Every document carries a deterministic REF_DOC_NO (BKPF-XBLNR, CHAR16) derived from its source
record (`xblnr_for`: prefix + base32 of SHA-256). `post()`:

1. looks the document up in BKPF by BUKRS + XBLNR + GJAHR (RFC_READ_TABLE, or the read-only
   Z_MLC_DOCUMENT_BY_XBLNR); a non-reversed hit is returned as `already_posted` (a reversed
   document, STBLG filled, counts as not posted);
2. calls the wrapper once;
3. an error whose outcome is certain (connection refused, logon failure, a RETURN error) is raised
   as is - nothing was posted; the wrapper's own XBLNR duplicate guard (ZMLC 001) resolves to the
   existing document; the wrapper's XBLNR lock held by a concurrent attempt (MC 601, FOREIGN_LOCK
   of ENQUEUE_E_TABLE) is waited out: lookup again after `settle_seconds`, bounded by `max_attempts`;
4. an uncertain outcome (read timeout or dropped connection after the request was sent,
   SYSTEM_FAILURE of the non-idempotent wrapper - `RfcError.uncertain`) is resolved by the BKPF
   lookup (repeated `uncertain_lookups` times, `settle_seconds` apart), never by posting blindly: a
   hit is returned as `recovered`; only a lookup that *answers* "not there" allows another attempt,
   and the wrapper's XBLNR guard makes even a racing second attempt harmless. If no lookup
   answers, `OutcomeUnknownError` is raised; calling `post()` again later is safe (step 1).

The caller is anything with `call(fm, params, tables=...)` (SoapRfcClient, ChannelRfcCaller).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from ml_connector.core.http import PicklableError

from .client import RfcCaller
from .errors import RfcError
from .facts import ecc_facts
from .table_reader import TableReader, alpha, quote

log = logging.getLogger(__name__)

ACC_TABLES = ("ACCOUNTGL", "ACCOUNTPAYABLE", "ACCOUNTTAX", "CURRENCYAMOUNT", "RETURN")
INCINV_TABLES = ("ITEMDATA", "RETURN")
ERROR_TYPES = frozenset("EAX")
XBLNR_LENGTH = 16
CURRENCY_DECIMALS = {"JPY": 0, "KRW": 0, "HUF": 0, "CLP": 0, "ISK": 0, "BHD": 3, "KWD": 3, "OMR": 3,
                     "TND": 3, "JOD": 3}
BKPF_FIELDS = ("BELNR", "GJAHR", "BUKRS", "XBLNR", "STBLG", "BLART", "BUDAT", "AWTYP", "AWKEY")
RBKP_FIELDS = ("BELNR", "GJAHR", "BUKRS", "XBLNR", "LIFNR", "STBLG", "STJAH")
MM_ALREADY_REVERSED = ("ZMLC", "010")  # Z_MLC_INCOMINGINVOICE_CANCEL: V3/V4 = the reversal document
DUPLICATE_MESSAGE = ("ZMLC", "001")
LOCKED_MESSAGE = ("MC", "601")  # ENQUEUE FOREIGN_LOCK: "Object requested is currently locked by user &1"


# ---------------------------------------------------------------------------------------------
# models


@dataclass(frozen=True)
class GLLine:
    """A G/L line. In a VendorInvoice `amount` is the (net) expense of an invoice; in a GLPosting
    it is signed: debit positive, credit negative."""

    gl_account: str
    amount: Decimal
    cost_center: str = ""
    tax_code: str = ""
    text: str = ""
    order: str = ""
    profit_center: str = ""
    assignment: str = ""


@dataclass(frozen=True)
class TaxLine:
    tax_code: str
    amount: Decimal
    base_amount: Decimal = Decimal(0)
    gl_account: str = ""
    acct_key: str = "VST"  # input tax


@dataclass(frozen=True)
class VendorInvoice:
    """A vendor invoice (credit_memo=False) or credit memo (True) with expense lines."""

    source_id: str
    company_code: str
    vendor: str
    currency: str
    doc_date: date
    posting_date: date
    lines: tuple[GLLine, ...]
    credit_memo: bool = False
    taxes: tuple[TaxLine, ...] = ()
    doc_type: str = ""  # default KR (invoice) / KG (credit memo)
    header_text: str = ""
    vendor_text: str = ""
    payment_terms: str = ""
    baseline_date: date | None = None
    payment_block: str = ""
    reference: str = ""  # explicit XBLNR; default xblnr_for(source_id, xblnr_prefix)
    xblnr_prefix: str = "MLC"
    fiscal_year: int | None = None

    @property
    def gross_amount(self) -> Decimal:
        return sum((ln.amount for ln in self.lines), Decimal(0)) + sum((t.amount for t in self.taxes),
                                                                      Decimal(0))


@dataclass(frozen=True)
class GLPosting:
    """A G/L document (BLART SA): signed lines that must balance."""

    source_id: str
    company_code: str
    currency: str
    doc_date: date
    posting_date: date
    lines: tuple[GLLine, ...]
    doc_type: str = "SA"
    header_text: str = ""
    reference: str = ""
    xblnr_prefix: str = "MLC"
    fiscal_year: int | None = None


@dataclass(frozen=True)
class MMInvoiceItem:
    po_number: str
    po_item: int | str
    amount: Decimal
    quantity: Decimal | None = None
    po_unit: str = ""
    tax_code: str = ""
    ref_doc: str = ""  # goods receipt (material document), year, item
    ref_doc_year: str = ""
    ref_doc_item: str = ""


@dataclass(frozen=True)
class MMInvoice:
    """A PO-based supplier invoice (BAPI_INCOMINGINVOICE_CREATE)."""

    source_id: str
    company_code: str
    currency: str
    doc_date: date
    posting_date: date
    items: tuple[MMInvoiceItem, ...]
    credit_memo: bool = False
    invoicing_party: str = ""  # DIFF_INV; default the PO's vendor
    gross_amount: Decimal | None = None  # default: sum of the items
    calculate_tax: bool = False
    doc_type: str = "RE"
    header_text: str = ""
    payment_terms: str = ""
    payment_block: str = ""
    reference: str = ""
    xblnr_prefix: str = "MLC"
    fiscal_year: int | None = None
    vendor: str = ""  # the invoice's vendor (LIFNR): narrows the RBKP lookup; not sent


AccDocument = VendorInvoice | GLPosting
Document = VendorInvoice | GLPosting | MMInvoice


@dataclass(frozen=True)
class ReturnMessage:
    """One BAPIRET2 row."""

    type: str
    id: str = ""
    number: str = ""
    message: str = ""
    v1: str = ""
    v2: str = ""
    v3: str = ""
    v4: str = ""
    parameter: str = ""
    row: int = 0
    field: str = ""
    system: str = ""

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ReturnMessage:
        def s(name: str) -> str:
            v = row.get(name)
            return "" if v is None else str(v).strip()

        try:
            r = int(s("ROW") or 0)
        except ValueError:
            r = 0
        return cls(type=s("TYPE"), id=s("ID"), number=s("NUMBER"), message=s("MESSAGE"), v1=s("MESSAGE_V1"),
                   v2=s("MESSAGE_V2"), v3=s("MESSAGE_V3"), v4=s("MESSAGE_V4"), parameter=s("PARAMETER"),
                   row=r, field=s("FIELD"), system=s("SYSTEM"))

    @property
    def is_error(self) -> bool:
        return self.type in ERROR_TYPES

    @property
    def code(self) -> str:
        return f"{self.id} {self.number}".strip()

    def __str__(self) -> str:
        where = ""
        if self.parameter:
            where = f"{self.parameter} row {self.row}" + (f" field {self.field}" if self.field else "") + ": "
        return f"{where}{self.type} {self.code} {self.message}".strip()


@dataclass(frozen=True)
class DocRef:
    """A BKPF row found by the XBLNR lookup."""

    belnr: str
    bukrs: str
    gjahr: str
    xblnr: str = ""
    blart: str = ""
    stblg: str = ""
    budat: str = ""
    awtyp: str = ""
    awkey: str = ""

    @property
    def reversed(self) -> bool:
        return bool(self.stblg)


@dataclass(frozen=True)
class MMInvoiceRef:
    """An RBKP row (an MM invoice document): reversed when STBLG/STJAH name its reversal (MR8M)."""

    belnr: str
    gjahr: str
    bukrs: str = ""
    xblnr: str = ""
    lifnr: str = ""
    stblg: str = ""
    stjah: str = ""


def mm_invoice_key(ref: DocRef) -> tuple[str, str] | None:
    """(invoice number, fiscal year) of the MM invoice whose FI follow-on document `ref` is (AWTYP RMRP,
    AWKEY = RBKP-BELNR + GJAHR), or None for a document posted in FI."""
    key = ref.awkey.strip()
    if ref.awtyp != "RMRP" or len(key) != 14 or not key[10:].isdigit():
        return None
    return key[:10], key[10:]


@dataclass(frozen=True)
class PostResult:
    belnr: str
    bukrs: str
    gjahr: str
    xblnr: str = ""
    obj_type: str = ""
    obj_key: str = ""
    obj_sys: str = ""
    invoice_number: str = ""  # MM invoice (RBKP-BELNR); belnr is then the FI document
    messages: tuple[ReturnMessage, ...] = ()
    already_posted: bool = False  # found before posting (an earlier attempt had succeeded)
    recovered: bool = False  # outcome was uncertain; resolved by the BKPF lookup


class PostingError(PicklableError):
    """SAP refused the document (RETURN with TYPE E/A/X). Nothing was posted."""

    def __init__(self, messages: Sequence[ReturnMessage], *, function: str = "") -> None:
        self.messages = tuple(messages)
        self.function = function
        errors = [m for m in self.messages if m.is_error]
        details = [m for m in errors if (m.id, m.number) != ("RW", "609")] or errors
        # the RW interface sends each cause twice: plain and with PARAMETER/ROW/FIELD
        causes: list[ReturnMessage] = []
        for m in details:
            same = [c for c in causes if (c.id, c.number, c.v1, c.v2, c.v3, c.v4) ==
                    (m.id, m.number, m.v1, m.v2, m.v3, m.v4)]
            if not same:
                causes.append(m)
            elif m.parameter and not same[0].parameter:
                causes[causes.index(same[0])] = m
        self.causes = tuple(causes)
        primary = next((c for c in causes if c.parameter), causes[0] if causes else None)
        self.cause = primary
        self.parameter = primary.parameter if primary else ""
        self.row = primary.row if primary else 0
        self.field = primary.field if primary else ""
        self.msg_id = primary.id if primary else ""
        self.msg_number = primary.number if primary else ""
        text = str(primary) if primary else "RETURN reported an error without details"
        more = f" (+{len(causes) - 1} more)" if len(causes) > 1 else ""
        super().__init__(f"{function + ': ' if function else ''}{text}{more}")

    @property
    def duplicate_of(self) -> DocRef | None:
        """The existing document when the wrapper's XBLNR guard refused the posting (ZMLC 001)."""
        for m in self.causes:
            if (m.id, m.number) == DUPLICATE_MESSAGE and m.v2:
                return DocRef(belnr=m.v2, bukrs=m.v3, gjahr=m.v4, xblnr=m.v1)
        return None

    @property
    def locked(self) -> bool:
        """The wrapper could not lock the XBLNR: another attempt is posting it right now."""
        return any((m.id, m.number) == LOCKED_MESSAGE for m in self.causes)


class OutcomeUnknownError(PicklableError):
    """A posting's outcome is uncertain and no lookup could resolve it (SAP unreachable).
    Calling `post()` again later is safe: it looks the document up first."""

    def __init__(self, message: str, *, bukrs: str, xblnr: str, gjahr: str, cause: BaseException) -> None:
        super().__init__(message)
        self.bukrs, self.xblnr, self.gjahr, self.cause = bukrs, xblnr, gjahr, cause


# ---------------------------------------------------------------------------------------------
# pure helpers


def xblnr_for(source_id: str, prefix: str = "MLC") -> str:
    """A deterministic 16-character XBLNR for a source record: PREFIX + base32(SHA-256(id)).

    With a 3-character prefix, 13 base32 characters hold 65 bits; the chance that any two of n
    records collide is about n^2 / 2^66 (10^6 records: 1.4e-8). The lookup is also scoped to the
    company code and fiscal year, which lowers it further."""
    p = re.sub(r"[^A-Z0-9]", "", prefix.upper())
    if len(p) > 8:
        raise ValueError("the XBLNR prefix may have at most 8 characters (8 left for the hash)")
    digest = base64.b32encode(hashlib.sha256(source_id.encode("utf-8")).digest()).decode("ascii")
    return (p + digest)[:XBLNR_LENGTH]


def split_obj_key(obj_key: str) -> tuple[str, str, str]:
    """OBJ_KEY (AWKEY) of BKPFF = BELNR(10) + BUKRS(4) + GJAHR(4) -> (belnr, bukrs, gjahr)."""
    key = obj_key.strip()
    if len(key) != 18 or not key[14:].isdigit():
        raise ValueError(f"not a BKPFF object key: {obj_key!r}")
    return key[:10], key[10:14].strip(), key[14:]


def format_amount(value: Decimal | int | str, currency: str = "") -> str:
    d = Decimal(str(value))
    places = CURRENCY_DECIMALS.get(currency.upper(), 2)
    q = Decimal(1).scaleb(-places)
    return str(d.quantize(q, rounding=ROUND_HALF_UP))


def parse_amount(text: str) -> Decimal:
    """A packed value as RFC_READ_TABLE renders it: '1234.56', '1234.56-' or '-1234.56'."""
    t = (text or "").strip()
    if not t:
        return Decimal(0)
    neg = t.endswith("-")
    d = Decimal(t.rstrip("-"))
    return -d if neg else d


def _d(value: date | None) -> str:
    return value.strftime("%Y%m%d") if value else ""


def fiscal_year_of(doc: Document) -> str:
    """Fiscal year (variant K4, calendar year) unless the document states one."""
    return str(doc.fiscal_year or doc.posting_date.year)


def document_xblnr(doc: Document) -> str:
    ref = doc.reference or xblnr_for(doc.source_id, doc.xblnr_prefix)
    if len(ref) > XBLNR_LENGTH:
        raise ValueError(f"reference {ref!r} is longer than {XBLNR_LENGTH} characters")
    return ref


def _item(n: int) -> str:
    return str(n).zfill(10)


def build_acc_document(doc: AccDocument, *, username: str = "") -> dict[str, Any]:
    """BAPI_ACC_DOCUMENT_POST / _CHECK parameters for a vendor invoice, credit memo or G/L posting."""
    ccy = doc.currency.upper()
    header: dict[str, Any] = {
        "BUS_ACT": "RFBU",
        "USERNAME": username,
        "HEADER_TXT": doc.header_text[:25],
        "COMP_CODE": doc.company_code,
        "DOC_DATE": _d(doc.doc_date),
        "PSTNG_DATE": _d(doc.posting_date),
        "FISC_YEAR": fiscal_year_of(doc),
        "DOC_TYPE": doc.doc_type,
        "REF_DOC_NO": document_xblnr(doc),
    }
    if not username:
        del header["USERNAME"]
    gl_rows: list[dict[str, Any]] = []
    ap_rows: list[dict[str, Any]] = []
    tax_rows: list[dict[str, Any]] = []
    amounts: list[dict[str, Any]] = []

    def amount(item: int, value: Decimal, base: Decimal | None = None) -> None:
        row: dict[str, Any] = {"ITEMNO_ACC": _item(item), "CURR_TYPE": "00", "CURRENCY": ccy,
                               "AMT_DOCCUR": format_amount(value, ccy)}
        if base is not None:
            row["AMT_BASE"] = format_amount(base, ccy)
        amounts.append(row)

    n = 0
    sign = 1
    if isinstance(doc, VendorInvoice):
        if not doc.lines:
            raise ValueError("a vendor invoice needs at least one G/L line")
        sign = -1 if doc.credit_memo else 1
        header["DOC_TYPE"] = doc.doc_type or ("KG" if doc.credit_memo else "KR")
        n += 1
        ap: dict[str, Any] = {"ITEMNO_ACC": _item(n), "VENDOR_NO": alpha(doc.vendor, 10),
                              "ITEM_TEXT": (doc.vendor_text or doc.header_text)[:50]}
        if doc.payment_terms:
            ap["PMNTTRMS"] = doc.payment_terms
        if doc.baseline_date:
            ap["BLINE_DATE"] = _d(doc.baseline_date)
        if doc.payment_block:
            ap["PMNT_BLOCK"] = doc.payment_block
        ap_rows.append(ap)
        amount(n, -sign * doc.gross_amount)  # vendor: credit on an invoice, debit on a credit memo
    for ln in doc.lines:
        n += 1
        row: dict[str, Any] = {"ITEMNO_ACC": _item(n), "GL_ACCOUNT": alpha(ln.gl_account, 10),
                               "ITEM_TEXT": ln.text[:50]}
        for key, value in (("COSTCENTER", alpha(ln.cost_center, 10) if ln.cost_center else ""),
                           ("TAX_CODE", ln.tax_code), ("ORDERID", ln.order),
                           ("PROFIT_CTR", alpha(ln.profit_center, 10) if ln.profit_center else ""),
                           ("ALLOC_NMBR", ln.assignment)):
            if value:
                row[key] = value
        gl_rows.append(row)
        amount(n, sign * Decimal(str(ln.amount)))
    if isinstance(doc, VendorInvoice):
        for t in doc.taxes:
            n += 1
            trow: dict[str, Any] = {"ITEMNO_ACC": _item(n), "TAX_CODE": t.tax_code, "ACCT_KEY": t.acct_key}
            if t.gl_account:
                trow["GL_ACCOUNT"] = alpha(t.gl_account, 10)
            tax_rows.append(trow)
            amount(n, sign * Decimal(str(t.amount)), sign * Decimal(str(t.base_amount)))
    return {"DOCUMENTHEADER": header, "ACCOUNTGL": gl_rows, "ACCOUNTPAYABLE": ap_rows,
            "ACCOUNTTAX": tax_rows, "CURRENCYAMOUNT": amounts}


def build_incoming_invoice(doc: MMInvoice) -> dict[str, Any]:
    """BAPI_INCOMINGINVOICE_CREATE parameters (amounts positive; INVOICE_IND says the direction)."""
    ccy = doc.currency.upper()
    gross = doc.gross_amount if doc.gross_amount is not None else sum(
        (Decimal(str(i.amount)) for i in doc.items), Decimal(0))
    header: dict[str, Any] = {
        "INVOICE_IND": "" if doc.credit_memo else "X",
        "DOC_TYPE": doc.doc_type,
        "DOC_DATE": _d(doc.doc_date),
        "PSTNG_DATE": _d(doc.posting_date),
        "REF_DOC_NO": document_xblnr(doc),
        "COMP_CODE": doc.company_code,
        "CURRENCY": ccy,
        "GROSS_AMOUNT": format_amount(gross, ccy),
        "CALC_TAX_IND": "X" if doc.calculate_tax else "",
        "HEADER_TXT": doc.header_text[:25],
    }
    if doc.invoicing_party:
        header["DIFF_INV"] = alpha(doc.invoicing_party, 10)
    if doc.payment_terms:
        header["PMNTTRMS"] = doc.payment_terms
    if doc.payment_block:
        header["PMNT_BLOCK"] = doc.payment_block
    items = []
    for i, it in enumerate(doc.items, start=1):
        row: dict[str, Any] = {"INVOICE_DOC_ITEM": str(i).zfill(6), "PO_NUMBER": alpha(it.po_number, 10),
                               "PO_ITEM": str(it.po_item).zfill(5), "ITEM_AMOUNT": format_amount(it.amount, ccy)}
        if it.tax_code:
            row["TAX_CODE"] = it.tax_code
        if it.quantity is not None:
            row["QUANTITY"] = str(it.quantity)
            row["PO_UNIT"] = it.po_unit
        if it.ref_doc:
            row.update({"REF_DOC": it.ref_doc, "REF_DOC_YEAR": it.ref_doc_year, "REF_DOC_IT": it.ref_doc_item})
        items.append(row)
    return {"HEADERDATA": header, "ITEMDATA": items}


def _rows(value: Any) -> list[Mapping[str, Any]]:
    if isinstance(value, Mapping):
        return [value] if any(str(v).strip() for v in value.values()) else []
    if isinstance(value, list):
        return [r for r in value if isinstance(r, Mapping)]
    return []


def parse_return(rows: Any, *, obj_type: str = "", obj_key: str = "", obj_sys: str = "", xblnr: str = "",
                 function: str = "") -> PostResult | PostingError:
    """RETURN (table or structure) of a posting BAPI -> PostResult, or the PostingError to raise."""
    messages = tuple(ReturnMessage.from_row(r) for r in _rows(rows))
    if any(m.is_error for m in messages):
        return PostingError(messages, function=function)
    key = (obj_key or "").strip()
    ok = next((m for m in messages if (m.id, m.number) == ("RW", "605")), None)
    if ok is not None:
        key = key if key and key != "$" else ok.v2
        obj_type = obj_type or ok.v1
        obj_sys = obj_sys or ok.v3
    if not key or key == "$":
        return PostingError(messages or (ReturnMessage("E", message="no document key returned"),),
                            function=function)
    belnr, bukrs, gjahr = split_obj_key(key)
    return PostResult(belnr=belnr, bukrs=bukrs, gjahr=gjahr, xblnr=xblnr, obj_type=obj_type or "BKPFF",
                      obj_key=key, obj_sys=obj_sys, messages=messages)


# ---------------------------------------------------------------------------------------------
# payment status


@dataclass(frozen=True)
class PaymentStatus:
    status: Literal["open", "partially_paid", "paid", "reversed", "not_found"]
    bukrs: str
    belnr: str
    gjahr: str
    open_amount: Decimal = Decimal(0)  # document currency, unsigned (vendor items still open)
    paid_amount: Decimal = Decimal(0)  # partial payments referring to the invoice (REBZG)
    currency: str = ""
    clearing_document: str = ""
    clearing_date: str = ""
    payment_block: str = ""
    open_items: tuple[dict[str, str], ...] = ()
    cleared_items: tuple[dict[str, str], ...] = ()


_ITEM_KEYS = ("BUKRS", "LIFNR", "UMSKS", "UMSKZ", "AUGDT", "AUGBL", "ZUONR", "GJAHR", "BELNR", "BUZEI")
_ITEM_FIELDS = (*_ITEM_KEYS, "SHKZG", "WRBTR", "DMBTR", "WAERS", "ZLSPR", "ZFBDT", "ZTERM", "REBZG",
                "REBZJ", "REBZZ", "BLART", "XBLNR")


# ---------------------------------------------------------------------------------------------
# the poster


class DocumentPoster:
    """Posts documents exactly once through a one-LUW wrapper FM (see the module docstring)."""

    def __init__(self, caller: RfcCaller, *, wrapper: str = "Z_MLC_ACC_DOCUMENT_POST",
                 mm_wrapper: str = "Z_MLC_INCOMINGINVOICE_CREATE",
                 check_function: str = "BAPI_ACC_DOCUMENT_CHECK",
                 block_function: str = "Z_MLC_SET_PAYMENT_BLOCK",
                 lookup_function: str | None = None, username: str = "", lookup_first: bool = True,
                 max_attempts: int = 3, uncertain_lookups: int = 3, settle_seconds: float = 2.0,
                 sleep: Callable[[float], None] = time.sleep, reader: TableReader | None = None) -> None:
        self.caller = caller
        self.wrapper = wrapper
        self.mm_wrapper = mm_wrapper
        self.check_function = check_function
        self.block_function = block_function
        self.lookup_function = lookup_function  # e.g. Z_MLC_DOCUMENT_BY_XBLNR; None = RFC_READ_TABLE
        self.username = username
        self.lookup_first = lookup_first
        self.max_attempts = max(1, max_attempts)
        self.uncertain_lookups = max(1, uncertain_lookups)
        self.settle_seconds = settle_seconds
        self._sleep = sleep
        self.reader = reader or TableReader.probed(caller)
        self.stats: dict[str, int] = {"posts": 0, "lookups": 0, "recovered": 0, "already_posted": 0}

    # -- lookup --------------------------------------------------------------------------------

    def find_documents(self, bukrs: str, xblnr: str, gjahr: str | int) -> list[DocRef]:
        """All BKPF rows of `bukrs` with this XBLNR in fiscal year `gjahr` (reversed ones included)."""
        self.stats["lookups"] += 1
        year = str(gjahr).zfill(4)
        if self.lookup_function:
            out = self.caller.call(self.lookup_function, {"I_BUKRS": bukrs, "I_XBLNR": xblnr, "I_GJAHR": year},
                                   tables=("ET_DOCUMENTS",))
            rows = _rows(out.get("ET_DOCUMENTS"))
        else:
            where = f"BUKRS = {quote(bukrs)} AND XBLNR = {quote(xblnr)} AND GJAHR = {quote(year)}"
            rows = [r for page in self.reader.read("BKPF", BKPF_FIELDS, key_fields=("BUKRS", "BELNR", "GJAHR"),
                                                   where=where, page_size=ecc_facts().read_table.lookup_page_size)
                    for r in page.rows]
        return [DocRef(belnr=str(r.get("BELNR", "")).strip(), bukrs=str(r.get("BUKRS", "")).strip(),
                       gjahr=str(r.get("GJAHR", "")).strip(), xblnr=str(r.get("XBLNR", "")).strip(),
                       blart=str(r.get("BLART", "")).strip(), stblg=str(r.get("STBLG", "")).strip(),
                       budat=str(r.get("BUDAT", "")).strip(), awtyp=str(r.get("AWTYP", "")).strip(),
                       awkey=str(r.get("AWKEY", "")).strip()) for r in rows]

    def find_posted(self, bukrs: str, xblnr: str, gjahr: str | int) -> DocRef | None:
        """The posted, not reversed document with this XBLNR, or None."""
        live = [d for d in self.find_documents(bukrs, xblnr, gjahr) if not d.reversed]
        if len(live) > 1:
            log.warning("XBLNR %s in %s/%s matches %d live documents: %s", xblnr, bukrs, gjahr, len(live),
                        [d.belnr for d in live])
        return min(live, key=lambda d: d.belnr) if live else None

    def find_mm_invoice(self, bukrs: str, xblnr: str, gjahr: str | int, vendor: str = "") -> DocRef | None:
        """The live (not reversed) MM invoice with this reference: RBKP by BUKRS + GJAHR + XBLNR (+ LIFNR),
        as its FI document (BKPF, AWTYP RMRP, AWKEY = invoice number + year) when SAP has one, else
        as the invoice document itself."""
        self.stats["lookups"] += 1
        year = str(gjahr).zfill(4)
        where = f"BUKRS = {quote(bukrs)} AND GJAHR = {quote(year)} AND XBLNR = {quote(xblnr)}"
        if vendor:
            where += f" AND LIFNR = {quote(alpha(vendor, 10))}"
        every = [r for page in self.reader.read("RBKP", RBKP_FIELDS, key_fields=("BELNR", "GJAHR"), where=where,
                                                page_size=ecc_facts().read_table.lookup_page_size)
                 for r in page.rows]
        # Neither a reversed invoice (STBLG) nor the reversal document of one (MR8M copies the reference;
        # whether SAP fills the reversal's own STBLG is [U], so it is recognised from the original's too).
        reversals = {(str(r.get("STBLG") or "").strip(), str(r.get("STJAH") or "").strip()) for r in every}
        rows = [r for r in every if not str(r.get("STBLG") or "").strip()
                and (str(r.get("BELNR") or "").strip(), str(r.get("GJAHR") or "").strip()) not in reversals]
        if not rows:
            return None
        inv = min(rows, key=lambda r: str(r["BELNR"]))
        awkey = str(inv["BELNR"]).strip() + year
        fi = [d for d in self.find_documents(bukrs, xblnr, year) if d.awtyp == "RMRP" and d.awkey == awkey]
        if fi:
            return fi[0]
        return DocRef(belnr=str(inv["BELNR"]).strip(), bukrs=bukrs, gjahr=year, xblnr=xblnr, awtyp="RMRP",
                      awkey=awkey)

    def find(self, doc: Document) -> DocRef | None:
        """The posted document for `doc`: an MM invoice by RBKP, anything else by BKPF (XBLNR)."""
        bukrs, xblnr, gjahr = doc.company_code, document_xblnr(doc), fiscal_year_of(doc)
        if isinstance(doc, MMInvoice):
            return self.find_mm_invoice(bukrs, xblnr, gjahr, doc.vendor)
        return self.find_posted(bukrs, xblnr, gjahr)

    def _resolve(self, bukrs: str, xblnr: str, gjahr: str, cause: RfcError,
                 find: Callable[[], DocRef | None] | None = None) -> DocRef | None:
        """Settle an uncertain outcome by lookups; None only if a lookup answered 'not posted'."""
        answered = False
        last: Exception | None = None
        for i in range(self.uncertain_lookups):
            if i:
                self._sleep(self.settle_seconds)
            try:
                ref = find() if find is not None else self.find_posted(bukrs, xblnr, gjahr)
            except RfcError as exc:
                last = exc
                continue
            answered = True
            if ref is not None:
                return ref
        if not answered:
            raise OutcomeUnknownError(
                f"outcome of posting {xblnr} in {bukrs}/{gjahr} unknown ({cause}); lookup failed: {last}",
                bukrs=bukrs, xblnr=xblnr, gjahr=gjahr, cause=cause) from cause
        return None

    # -- posting -------------------------------------------------------------------------------

    def check(self, doc: AccDocument) -> tuple[ReturnMessage, ...]:
        """Dry run (BAPI_ACC_DOCUMENT_CHECK): raises PostingError, writes nothing."""
        if isinstance(doc, MMInvoice):
            raise TypeError("BAPI_ACC_DOCUMENT_CHECK checks FI documents only")
        out = self.caller.call(self.check_function, build_acc_document(doc, username=self.username),
                               tables=ACC_TABLES)
        messages = tuple(ReturnMessage.from_row(r) for r in _rows(out.get("RETURN")))
        if any(m.is_error for m in messages):
            raise PostingError(messages, function=self.check_function)
        return messages

    def post(self, doc: Document) -> PostResult:
        """Post `doc` exactly once (see the module docstring)."""
        bukrs, xblnr, gjahr = doc.company_code, document_xblnr(doc), fiscal_year_of(doc)
        if self.lookup_first:
            ref = self.find(doc)
            if ref is not None:
                self.stats["already_posted"] += 1
                return self._from_ref(ref, already_posted=True)
        attempt = 0
        while True:
            attempt += 1
            try:
                self.stats["posts"] += 1
                return self._post_once(doc, xblnr)
            except PostingError as exc:
                dup = exc.duplicate_of
                if dup is None and exc.locked and attempt < self.max_attempts:
                    log.info("posting %s in %s: XBLNR locked by a concurrent attempt; waiting", xblnr, bukrs)
                    self._sleep(self.settle_seconds)
                    ref = self.find(doc)
                    if ref is None:
                        continue
                    self.stats["already_posted"] += 1
                    return self._from_ref(ref, already_posted=True)
                if dup is None:
                    raise
                ref = self.find(doc) or dup
                self.stats["already_posted"] += 1
                return self._from_ref(ref, already_posted=True)
            except RfcError as exc:
                if not exc.uncertain:
                    raise  # refused before anything was processed
                log.warning("posting %s in %s: outcome uncertain (%s); resolving by lookup", xblnr, bukrs, exc)
                ref = self._resolve(bukrs, xblnr, gjahr, exc, lambda: self.find(doc))
                if ref is not None:
                    self.stats["recovered"] += 1
                    return self._from_ref(ref, recovered=True)
                if attempt >= self.max_attempts:
                    raise
                self._sleep(self.settle_seconds)

    def _post_once(self, doc: Document, xblnr: str) -> PostResult:
        if isinstance(doc, MMInvoice):
            out = self.caller.call(self.mm_wrapper, build_incoming_invoice(doc), tables=INCINV_TABLES)
            messages = tuple(ReturnMessage.from_row(r) for r in _rows(out.get("RETURN")))
            invno = str(out.get("INVOICEDOCNUMBER") or "").strip()
            if any(m.is_error for m in messages) or not invno:
                raise PostingError(messages or (ReturnMessage("E", message="no invoice number returned"),),
                                   function=self.mm_wrapper)
            gjahr = str(out.get("FISCALYEAR") or fiscal_year_of(doc)).strip()
            belnr = str(out.get("ACCOUNTING_DOC") or "").strip()
            if not belnr:
                ref = self.find_posted(doc.company_code, xblnr, gjahr)
                belnr = ref.belnr if ref else ""
            return PostResult(belnr=belnr, bukrs=doc.company_code, gjahr=gjahr, xblnr=xblnr, obj_type="RMRP",
                              obj_key=invno + gjahr, invoice_number=invno, messages=messages)
        out = self.caller.call(self.wrapper, build_acc_document(doc, username=self.username), tables=ACC_TABLES)
        result = parse_return(out.get("RETURN"), obj_type=str(out.get("OBJ_TYPE") or ""),
                              obj_key=str(out.get("OBJ_KEY") or ""), obj_sys=str(out.get("OBJ_SYS") or ""),
                              xblnr=xblnr, function=self.wrapper)
        if isinstance(result, PostingError):
            raise result
        return result

    @staticmethod
    def _from_ref(ref: DocRef, *, already_posted: bool = False, recovered: bool = False) -> PostResult:
        invoice = ref.awkey[:10] if ref.awtyp == "RMRP" else ""
        return PostResult(belnr=ref.belnr, bukrs=ref.bukrs, gjahr=ref.gjahr, xblnr=ref.xblnr,
                          obj_type=ref.awtyp or "BKPFF", obj_key=ref.awkey or ref.belnr + ref.bukrs + ref.gjahr,
                          invoice_number=invoice, already_posted=already_posted, recovered=recovered)

    # -- payment status and blocks ---------------------------------------------------------------

    def _items(self, table: str, where: str) -> list[dict[str, str]]:
        return [r for page in self.reader.read(table, _ITEM_FIELDS, key_fields=_ITEM_KEYS, where=where,
                                               page_size=ecc_facts().read_table.items_page_size)
                for r in page.rows]

    def payment_status(self, bukrs: str, belnr: str, gjahr: str | int) -> PaymentStatus:
        """open / partially_paid / paid / reversed / not_found, from BSIK (open) and BSAK (cleared)."""
        belnr = alpha(belnr, 10)
        year = str(gjahr).zfill(4)
        doc = f"BUKRS = {quote(bukrs)} AND BELNR = {quote(belnr)} AND GJAHR = {quote(year)}"
        refs = f"BUKRS = {quote(bukrs)} AND REBZG = {quote(belnr)} AND REBZJ = {quote(year)}"
        open_items = self._items("BSIK", doc)
        cleared = [] if open_items else self._items("BSAK", doc)
        if not open_items and not cleared:
            return PaymentStatus("not_found", bukrs, belnr, year)
        partials = self._items("BSIK", refs)

        def signed(r: Mapping[str, str]) -> Decimal:
            v = parse_amount(r.get("WRBTR", ""))
            return -v if r.get("SHKZG") == "H" else v

        paid = abs(sum((signed(r) for r in partials), Decimal(0)))
        currency = (open_items or cleared)[0].get("WAERS", "")
        if open_items:
            open_amt = abs(sum((signed(r) for r in open_items), Decimal(0)))
            return PaymentStatus("partially_paid" if partials else "open", bukrs, belnr, year,
                                 open_amount=open_amt - paid if partials else open_amt, paid_amount=paid,
                                 currency=currency,
                                 payment_block=next((r.get("ZLSPR", "") for r in open_items if r.get("ZLSPR")), ""),
                                 open_items=tuple(open_items), cleared_items=tuple(partials))
        augbl = next((r.get("AUGBL", "") for r in cleared if r.get("AUGBL")), "")
        augdt = next((r.get("AUGDT", "") for r in cleared if r.get("AUGBL")), "")
        status: Literal["paid", "reversed", "partially_paid"] = "paid"
        docs = self.find_documents(bukrs, cleared[0].get("XBLNR", ""), year) if cleared[0].get("XBLNR") else []
        if any(d.belnr == belnr and d.stblg and d.stblg == augbl for d in docs):
            status = "reversed"
        elif partials:
            status = "partially_paid"  # residual items still open
        return PaymentStatus(status, bukrs, belnr, year, open_amount=paid if partials else Decimal(0),
                             paid_amount=abs(sum((signed(r) for r in cleared), Decimal(0))), currency=currency,
                             clearing_document=augbl, clearing_date=augdt, cleared_items=tuple(cleared),
                             open_items=tuple(partials))

    def set_payment_block(self, bukrs: str, belnr: str, gjahr: str | int, block: str = "A", *,
                          item: int | str | None = None) -> int:
        """Set (block='A', ...) or remove (block='') the payment block on the invoice's open vendor
        items through Z_MLC_SET_PAYMENT_BLOCK; returns the number of items changed. Setting a value
        is idempotent, so an uncertain outcome is simply retried."""
        params: dict[str, Any] = {"I_BUKRS": bukrs, "I_BELNR": alpha(belnr, 10), "I_GJAHR": str(gjahr).zfill(4),
                                  "I_ZLSPR": block[:1]}
        if item is not None:
            params["I_BUZEI"] = str(item).zfill(3)
        out: dict[str, Any] = {}
        for attempt in range(1, self.max_attempts + 1):
            try:
                out = self.caller.call(self.block_function, params, tables=("RETURN",))
                break
            except RfcError as exc:
                if not (exc.uncertain or exc.retriable) or attempt >= self.max_attempts:
                    raise
                self._sleep(self.settle_seconds)
        messages = tuple(ReturnMessage.from_row(r) for r in _rows(out.get("RETURN")))
        if any(m.is_error for m in messages):
            raise PostingError(messages, function=self.block_function)
        return int(str(out.get("E_CHANGED") or "0").strip() or 0)

    def remove_payment_block(self, bukrs: str, belnr: str, gjahr: str | int, *,
                             item: int | str | None = None) -> int:
        return self.set_payment_block(bukrs, belnr, gjahr, "", item=item)

    # -- status changes decided outside SAP: an external payment, a reversal -----------------

    def document(self, bukrs: str, belnr: str, gjahr: str | int) -> DocRef | None:
        """The BKPF row of one document (None when SAP has no such document)."""
        self.stats["lookups"] += 1
        where = (f"BUKRS = {quote(bukrs)} AND BELNR = {quote(alpha(belnr, 10))} AND "
                 f"GJAHR = {quote(str(gjahr).zfill(4))}")
        rows = [r for page in self.reader.read("BKPF", BKPF_FIELDS, key_fields=("BUKRS", "BELNR", "GJAHR"),
                                               where=where, page_size=10) for r in page.rows]
        if not rows:
            return None
        r = rows[0]
        return DocRef(belnr=str(r.get("BELNR", "")).strip(), bukrs=str(r.get("BUKRS", "")).strip(),
                      gjahr=str(r.get("GJAHR", "")).strip(), xblnr=str(r.get("XBLNR", "")).strip(),
                      blart=str(r.get("BLART", "")).strip(), stblg=str(r.get("STBLG", "")).strip(),
                      budat=str(r.get("BUDAT", "")).strip(), awtyp=str(r.get("AWTYP", "")).strip(),
                      awkey=str(r.get("AWKEY", "")).strip())

    def _settle(self, what: str, cause: RfcError, done: Callable[[], str | None]) -> str | None:
        """An uncertain status call: `done()` (a lookup) says whether it took effect; None only when
        a lookup answered 'not done'; OutcomeUnknownError when no lookup could answer."""
        last: Exception | None = None
        for i in range(self.uncertain_lookups):
            if i:
                self._sleep(self.settle_seconds)
            try:
                return done()
            except RfcError as exc:
                last = exc
        raise OutcomeUnknownError(f"outcome of {what} unknown ({cause}); lookup failed: {last}",
                                  bukrs="", xblnr="", gjahr="", cause=cause) from cause

    def clear_by_payment(self, bukrs: str, belnr: str, gjahr: str | int, *, payment_date: date | None = None,
                         reference: str = "", text: str = "", bank_account: str = "",
                         function: str = "Z_MLC_CLEAR_VENDOR_ITEMS") -> tuple[str, bool]:
        """Clear the invoice's open vendor items with a payment made outside SAP, exactly once:
        (clearing document, known from a lookup: already cleared, or an uncertain call settled). The
        invoice's own state is the key: BSAK is read first and after any uncertain call, so a payment
        is never posted twice."""
        belnr, year = alpha(belnr, 10), str(gjahr).zfill(4)

        def cleared() -> str | None:
            st = self.payment_status(bukrs, belnr, year)
            if st.status == "not_found":
                raise PostingError((ReturnMessage("E", "ZMLC", "002", f"Document {belnr} {bukrs} {year} has no "
                                                  "vendor items", v1=belnr),), function=function)
            return st.clearing_document if st.status in ("paid", "reversed") else None

        done = cleared()
        if done is not None:
            return done, True
        params: dict[str, Any] = {"I_BUKRS": bukrs, "I_BELNR": belnr, "I_GJAHR": year,
                                  "I_XBLNR": reference[:16], "I_SGTXT": text[:50]}
        if payment_date is not None:
            params["I_AUGDT"] = _d(payment_date)
        if bank_account:
            params["I_HKONT"] = alpha(bank_account, 10)
        try:
            out = self.caller.call(function, params, tables=("RETURN",))
        except RfcError as exc:
            if not exc.uncertain:
                raise
            found = self._settle(f"clearing {belnr} {bukrs} {year}", exc, cleared)
            if found is None:
                raise OutcomeUnknownError(f"clearing {belnr} {bukrs} {year}: the call failed after sending "
                                          f"({exc}) and SAP shows it open; it is sent again on the next attempt",
                                          bukrs=bukrs, xblnr="", gjahr=year, cause=exc) from exc
            return found, True  # settled by the lookup
        messages = tuple(ReturnMessage.from_row(r) for r in _rows(out.get("RETURN")))
        already = next((m for m in messages if (m.id, m.number) == ("ZMLC", "004")), None)
        if already is not None:
            return already.v4, True
        if any(m.is_error for m in messages):
            raise PostingError(messages, function=function)
        return str(out.get("E_AUGBL") or "").strip(), False

    def reverse(self, bukrs: str, belnr: str, gjahr: str | int, *, posting_date: date | None = None,
                reason: str = "01", function: str = "Z_MLC_ACC_DOCUMENT_REVERSE") -> tuple[str, bool]:
        """Reverse a document exactly once: (reversal document, known from a lookup: already reversed,
        or an uncertain call settled). BKPF-STBLG of the
        document is read first and after any uncertain call."""
        belnr, year = alpha(belnr, 10), str(gjahr).zfill(4)

        def reversed_by() -> str | None:
            ref = self.document(bukrs, belnr, year)
            if ref is None:
                raise PostingError((ReturnMessage("E", "ZMLC", "002", f"Document {belnr} {bukrs} {year} does not "
                                                  "exist", v1=belnr),), function=function)
            return ref.stblg or None

        params: dict[str, Any] = {"I_BUKRS": bukrs, "I_BELNR": belnr, "I_GJAHR": year, "I_STGRD": reason[:2]}
        if posting_date is not None:
            params["I_BUDAT"] = _d(posting_date)
        found, out = self._reverse_once(f"reversing {belnr} {bukrs} {year}", function, params, reversed_by,
                                        bukrs=bukrs, gjahr=year)
        if found is not None:
            return found, True
        messages = tuple(ReturnMessage.from_row(r) for r in _rows(out.get("RETURN")))
        already = next((m for m in messages if (m.id, m.number) == ("ZMLC", "005")), None)
        if already is not None:
            return already.v4, True
        if any(m.is_error for m in messages):
            raise PostingError(messages, function=function)
        return str(out.get("E_STBLG") or "").strip(), False

    def _reverse_once(self, what: str, function: str, params: dict[str, Any],
                      reversed_by: Callable[[], str | None], *, bukrs: str, gjahr: str
                      ) -> tuple[str | None, dict[str, Any]]:
        """The exactly-once skeleton of a reversal: (its reversal, {}) when SAP shows one already, read
        before the call or after an uncertain call; else (None, the call's answer). An uncertain call
        that SAP shows not reversed raises OutcomeUnknownError (sent again on the next attempt)."""
        done = reversed_by()
        if done is not None:
            return done, {}
        try:
            return None, self.caller.call(function, params, tables=("RETURN",))
        except RfcError as exc:
            if not exc.uncertain:
                raise
            found = self._settle(what, exc, reversed_by)
            if found is None:
                raise OutcomeUnknownError(f"{what}: the call failed after sending ({exc}) and SAP shows it not "
                                          "reversed; it is sent again on the next attempt", bukrs=bukrs, xblnr="",
                                          gjahr=gjahr, cause=exc) from exc
            return found, {}  # settled by the lookup

    # -- MM invoices: reversal in MM (MR8M), never FB08 ----------------------------------------------

    def mm_invoice_doc(self, belnr: str, gjahr: str | int) -> MMInvoiceRef | None:
        """The RBKP row of MM invoice `belnr`/`gjahr` (None when SAP has no such invoice)."""
        self.stats["lookups"] += 1
        where = f"BELNR = {quote(alpha(belnr, 10))} AND GJAHR = {quote(str(gjahr).zfill(4))}"
        rows = [r for page in self.reader.read("RBKP", RBKP_FIELDS, key_fields=("BELNR", "GJAHR"), where=where,
                                               page_size=10) for r in page.rows]
        if not rows:
            return None
        r = {k: str(v or "").strip() for k, v in rows[0].items()}
        return MMInvoiceRef(belnr=r.get("BELNR", ""), gjahr=r.get("GJAHR", ""), bukrs=r.get("BUKRS", ""),
                            xblnr=r.get("XBLNR", ""), lifnr=r.get("LIFNR", ""), stblg=r.get("STBLG", ""),
                            stjah=r.get("STJAH", "").strip("0") and r.get("STJAH", ""))

    def is_reversed(self, ref: DocRef) -> bool:
        """Whether SAP shows the posted document reversed: BKPF-STBLG, or for the FI document of an MM
        invoice the invoice's RBKP-STBLG (what MR8M sets; BKPF-STBLG of the FI document is [U] there)."""
        if ref.stblg:
            return True
        inv = mm_invoice_key(ref)
        if inv is None:
            return False
        doc = self.mm_invoice_doc(*inv)
        return doc is not None and bool(doc.stblg)

    def cancel_mm_invoice(self, belnr: str, gjahr: str | int, *, posting_date: date | None = None,
                          reason: str = "01", function: str = "Z_MLC_INCOMINGINVOICE_CANCEL"
                          ) -> tuple[str, str, bool]:
        """Reverse an MM invoice exactly once, as MR8M does (BAPI_INCOMINGINVOICE_CANCEL through the one-LUW
        wrapper `function`): (reversal invoice number, its fiscal year, known from a lookup: already reversed,
        or an uncertain call settled). RBKP-STBLG/STJAH of the invoice are read first and after any
        uncertain call, so a retry never reverses twice."""
        belnr, year = alpha(belnr, 10), str(gjahr).zfill(4)

        def reversed_by() -> str | None:
            inv = self.mm_invoice_doc(belnr, year)
            if inv is None:
                raise PostingError((ReturnMessage("E", "ZMLC", "009", f"Invoice document {belnr} {year} does not "
                                                  "exist", v1=belnr, v2=year),), function=function)
            return f"{inv.stblg}/{inv.stjah or year}" if inv.stblg else None

        params: dict[str, Any] = {"I_BELNR": belnr, "I_GJAHR": year, "I_STGRD": reason[:2] or "01"}
        if posting_date is not None:
            params["I_BUDAT"] = _d(posting_date)
        found, out = self._reverse_once(f"reversing MM invoice {belnr} {year}", function, params, reversed_by,
                                        bukrs="", gjahr=year)
        if found is not None:
            rev, rev_year = found.split("/")
            return rev, rev_year, True
        messages = tuple(ReturnMessage.from_row(r) for r in _rows(out.get("RETURN")))
        already = next((m for m in messages if (m.id, m.number) == MM_ALREADY_REVERSED), None)
        if already is not None:
            return already.v3, already.v4 or year, True
        rev = str(out.get("E_STBLG") or "").strip()
        if any(m.is_error for m in messages) or not rev:
            raise PostingError(messages or (ReturnMessage("E", message="no reversal document returned"),),
                               function=function)
        return rev, str(out.get("E_STJAH") or "").strip() or year, False


__all__ = ["ACC_TABLES", "AccDocument", "DocRef", "Document", "DocumentPoster", "GLLine", "GLPosting",
           "MMInvoice", "MMInvoiceItem", "MMInvoiceRef", "OutcomeUnknownError", "PaymentStatus", "PostResult",
           "PostingError", "ReturnMessage", "TaxLine", "VendorInvoice", "build_acc_document",
           "build_incoming_invoice", "document_xblnr", "fiscal_year_of", "format_amount", "mm_invoice_key",
           "parse_amount", "parse_return", "split_obj_key", "xblnr_for"]
