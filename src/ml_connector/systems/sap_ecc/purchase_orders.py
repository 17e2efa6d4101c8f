"""Does a PO-based invoice match its purchase order in SAP? EKKO / EKPO, and what RSEG already invoiced.

`PurchaseOrderCheck.mismatch(...)` answers with the first reason an MM invoice
(BAPI_INCOMINGINVOICE_CREATE) would be wrong for the PO, as `(waits_for, reason)`, or None when
every line matches: the PO exists and is not deleted, belongs to the invoice's company code,
vendor and currency; each item exists, is not deleted or final-invoiced, and the amount invoiced so
far (RSEG, reversed invoices and the invoice's own reference left out) plus this line stays within
the item's net value (EKPO-NETWR, plus `tolerance`). Reads are RFC_READ_TABLE by key, cached for the
life of the object (a flow builds one per run, so a PO changed in SAP is seen by the next run).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from ml_connector.systems.sap_ecc.client import RfcCaller
from ml_connector.systems.sap_ecc.posting import parse_amount
from ml_connector.systems.sap_ecc.table_reader import TableReader, alpha, quote

EKKO_FIELDS = ["EBELN", "BUKRS", "BSTYP", "LOEKZ", "LIFNR", "WAERS"]
EKPO_FIELDS = ["EBELN", "EBELP", "LOEKZ", "TXZ01", "WERKS", "MENGE", "MEINS", "NETPR", "PEINH", "NETWR",
               "MWSKZ", "EREKZ"]


@dataclass(frozen=True)
class POLine:
    """A bill line to invoice against a PO item: `n` is the line's number on the bill."""

    n: int
    ebeln: str
    ebelp: str
    amount: Decimal


def _dec(text: Any) -> Decimal:
    try:
        return parse_amount(str(text or ""))
    except (InvalidOperation, ValueError):
        return Decimal(0)


class PurchaseOrderCheck:
    def __init__(self, caller: RfcCaller, *, reader: TableReader | None = None) -> None:
        self.reader = reader or TableReader.probed(caller)
        self._orders: dict[str, dict[str, Any] | None] = {}
        self._items: dict[str, dict[str, dict[str, Any]]] = {}
        self._invoiced: dict[str, list[tuple[str, str, Decimal]]] = {}
        self.reads = 0

    def _rows(self, table: str, fields: list[str], keys: list[str], where: str) -> list[dict[str, Any]]:
        self.reads += 1
        return [r for page in self.reader.read(table, fields, key_fields=keys, where=where, page_size=500)
                for r in page.rows]

    def order(self, ebeln: str) -> dict[str, Any] | None:
        """The EKKO row of a purchase order (None when SAP has none)."""
        ebeln = alpha(ebeln, 10)
        if ebeln not in self._orders:
            rows = self._rows("EKKO", EKKO_FIELDS, ["EBELN"], f"EBELN = {quote(ebeln)}")
            self._orders[ebeln] = rows[0] if rows else None
        return self._orders[ebeln]

    def items(self, ebeln: str) -> dict[str, dict[str, Any]]:
        """The PO's EKPO rows by item number (EBELP, 5 digits)."""
        ebeln = alpha(ebeln, 10)
        if ebeln not in self._items:
            rows = self._rows("EKPO", EKPO_FIELDS, ["EBELN", "EBELP"], f"EBELN = {quote(ebeln)}")
            self._items[ebeln] = {str(r.get("EBELP", "")).strip().zfill(5): r for r in rows}
        return self._items[ebeln]

    def _invoice_rows(self, ebeln: str) -> list[tuple[str, str, Decimal]]:
        """(EBELP, XBLNR of its invoice, signed amount) of every live invoice item for the PO."""
        ebeln = alpha(ebeln, 10)
        if ebeln not in self._invoiced:
            rseg = self._rows("RSEG", ["BELNR", "GJAHR", "BUZEI", "EBELN", "EBELP", "WRBTR", "SHKZG"],
                              ["BELNR", "GJAHR", "BUZEI"], f"EBELN = {quote(ebeln)}")
            heads: dict[tuple[str, str], dict[str, Any]] = {}
            for belnr, gjahr in sorted({(str(r["BELNR"]).strip(), str(r["GJAHR"]).strip()) for r in rseg}):
                for row in self._rows("RBKP", ["BELNR", "GJAHR", "XBLNR", "STBLG"], ["BELNR", "GJAHR"],
                                    f"BELNR = {quote(belnr)} AND GJAHR = {quote(gjahr)}"):
                    heads[(belnr, gjahr)] = row
            out = []
            for r in rseg:
                head = heads.get((str(r["BELNR"]).strip(), str(r["GJAHR"]).strip()))
                if head is None or str(head.get("STBLG") or "").strip():
                    continue  # reversed (MR8M) or unknown: not invoiced
                amount = _dec(r.get("WRBTR"))
                out.append((str(r.get("EBELP", "")).strip().zfill(5), str(head.get("XBLNR") or "").strip(),
                            -amount if str(r.get("SHKZG") or "S").strip() == "H" else amount))
            self._invoiced[ebeln] = out
        return self._invoiced[ebeln]

    def invoiced(self, ebeln: str, ebelp: str, *, except_xblnr: str = "") -> Decimal:
        """Amount already invoiced on a PO item, leaving out invoices with reference `except_xblnr`."""
        want = str(ebelp).strip().zfill(5)
        rows = self._invoice_rows(ebeln)
        return sum((a for p, x, a in rows if p == want and (not except_xblnr or x != except_xblnr)), Decimal(0))

    def mismatch(self, *, company_code: str, vendor: str, currency: str, lines: Sequence[POLine],
                 xblnr: str = "", tolerance: Decimal = Decimal(0)) -> tuple[str, str] | None:
        """(waits_for, reason) of the first thing that does not match, else None (see module docstring)."""
        lifnr = alpha(vendor, 10) if vendor else ""
        wanted: dict[tuple[str, str], Decimal] = {}
        for ln in lines:
            ebeln = alpha(ln.ebeln, 10)
            po = self.order(ebeln)
            if po is None:
                return (f"purchase_order:{ebeln}",
                        f"line {ln.n}: purchase order {ebeln.lstrip('0')} does not exist in SAP")
            if str(po.get("LOEKZ") or "").strip():
                return f"purchase_order:{ebeln}", f"line {ln.n}: purchase order {ebeln.lstrip('0')} is deleted in SAP"
            bukrs = str(po.get("BUKRS") or "").strip()
            if bukrs != company_code:
                return (f"purchase_order:{ebeln}", f"line {ln.n}: purchase order {ebeln.lstrip('0')} belongs to "
                        f"company code {bukrs}, the bill to {company_code}")
            po_vendor = str(po.get("LIFNR") or "").strip()
            if lifnr and po_vendor and alpha(po_vendor, 10) != lifnr:
                return (f"purchase_order:{ebeln}", f"line {ln.n}: purchase order {ebeln.lstrip('0')} is with vendor "
                        f"{po_vendor.lstrip('0')}, the bill is from vendor {lifnr.lstrip('0')}")
            waers = str(po.get("WAERS") or "").strip()
            if waers and currency and waers != currency:
                return (f"purchase_order:{ebeln}", f"line {ln.n}: purchase order {ebeln.lstrip('0')} is in {waers}, "
                        f"the bill in {currency}")
            ebelp = str(ln.ebelp).strip().zfill(5)
            item = self.items(ebeln).get(ebelp)
            key = f"po_item:{ebeln}/{ebelp}"
            where = f"line {ln.n}: purchase order item {ebeln.lstrip('0')}/{ebelp.lstrip('0')}"
            if item is None:
                return key, f"{where} does not exist in SAP"
            if str(item.get("LOEKZ") or "").strip():
                return key, f"{where} is deleted in SAP"
            if str(item.get("EREKZ") or "").strip() == "X":
                return key, f"{where} is final-invoiced in SAP (EKPO-EREKZ)"
            wanted[(ebeln, ebelp)] = wanted.get((ebeln, ebelp), Decimal(0)) + ln.amount
            netwr = _dec(item.get("NETWR"))
            done = self.invoiced(ebeln, ebelp, except_xblnr=xblnr)
            if done + wanted[(ebeln, ebelp)] > netwr * (1 + tolerance):
                return key, (f"{where}: {done + wanted[(ebeln, ebelp)]} {currency} invoiced with this bill "
                             f"({done} before it) exceeds the item's net value {netwr} {waers or currency}")
        return None

    def quantity(self, ebeln: str, ebelp: str, amount: Decimal) -> tuple[Decimal | None, str]:
        """(quantity, PO unit) the amount stands for at the item's net price (None when it has no price)."""
        item = self.items(ebeln).get(str(ebelp).strip().zfill(5)) or {}
        price, per = _dec(item.get("NETPR")), _dec(item.get("PEINH")) or Decimal(1)
        if price <= 0:
            return None, str(item.get("MEINS") or "").strip()
        return (abs(amount) * per / price).quantize(Decimal("0.001")), str(item.get("MEINS") or "").strip()
