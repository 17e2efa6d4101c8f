"""PurchaseOrderCheck over SOAP-RFC against the ECC emulator: why a PO bill would not match its PO
(the reasons a parked PO bill shows), and what RSEG already invoiced (reversed invoices and the
bill's own reference left out)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal

import pytest

from ml_connector.core.ratelimit import reset_budgets
from ml_connector.core.servers import ServerHandle, serve_in_thread
from ml_connector.systems.sap_ecc.client import SessionCache, SoapRfcClient
from ml_connector.systems.sap_ecc.posting import DocumentPoster, MMInvoice, MMInvoiceItem, xblnr_for
from ml_connector.systems.sap_ecc.purchase_orders import POLine, PurchaseOrderCheck
from ml_connector.systems.sap_ecc.sandbox.app import DEMO_PASSWORD, DEMO_USER, EccSandbox, create_app
from ml_connector.systems.sap_ecc.sandbox.seed_logistics import create_purchase_order


@pytest.fixture(scope="module")
def sap() -> Iterator[tuple[EccSandbox, SoapRfcClient]]:
    state = EccSandbox(vendors=20, seed_logistics=False)
    handle: ServerHandle = serve_in_thread(create_app(state), name="ecc-po-check")
    reset_budgets()
    client = SoapRfcClient(handle.url, "100", DEMO_USER, DEMO_PASSWORD, sessions=SessionCache(600),
                           calls_per_second=50, timeout=10.0, sleep=lambda s: None)
    try:
        yield state, client
    finally:
        handle.stop()


def _vendor(state: EccSandbox, n: int) -> str:
    return sorted(r["LIFNR"] for r in state.data.rows("LFB1", state.client)
                  if r["BUKRS"] == "1000" and not r.get("LOEVM") and not r.get("SPERR"))[n]


def test_mismatch_reasons(sap: tuple[EccSandbox, SoapRfcClient]) -> None:
    state, client = sap
    v, other = _vendor(state, 0), _vendor(state, 1)
    ebeln = create_purchase_order(state.data, bukrs="1000", lifnr=v, client=state.client,
                                  items=[{"menge": 2, "netpr": "100.00"}, {"menge": 1, "netpr": "50.00"}])
    check = PurchaseOrderCheck(client)

    def why(*lines: POLine, vendor: str = v, bukrs: str = "1000", currency: str = "USD") -> tuple[str, str] | None:
        return check.mismatch(company_code=bukrs, vendor=vendor, currency=currency, lines=lines)

    n = ebeln.lstrip("0")
    assert why(POLine(1, ebeln, "10", Decimal("200.00")), POLine(2, ebeln, "20", Decimal("50"))) is None
    assert why(POLine(1, "4599999998", "10", Decimal(1))) == (
        "purchase_order:4599999998", "line 1: purchase order 4599999998 does not exist in SAP")
    assert why(POLine(1, ebeln, "30", Decimal(1))) == (
        f"po_item:{ebeln}/00030", f"line 1: purchase order item {n}/30 does not exist in SAP")
    assert why(POLine(1, ebeln, "10", Decimal("150")), POLine(2, ebeln, "10", Decimal("60"))) == (
        f"po_item:{ebeln}/00010", f"line 2: purchase order item {n}/10: 210 USD invoiced with this bill (0 before it) "
        "exceeds the item's net value 200.00 USD")
    assert why(POLine(1, ebeln, "10", Decimal(1)), vendor=other)[1] == (  # type: ignore[index]
        f"line 1: purchase order {n} is with vendor {v.lstrip('0')}, the bill is from vendor {other.lstrip('0')}")
    assert "belongs to company code 1000, the bill to 2000" in why(  # type: ignore[index]
        POLine(1, ebeln, "10", Decimal(1)), bukrs="2000")[1]
    assert "is in USD, the bill in EUR" in why(POLine(1, ebeln, "10", Decimal(1)), currency="EUR")[1]  # type: ignore[index]
    assert check.quantity(ebeln, "10", Decimal("150.00")) == (Decimal("1.500"), "EA")


def test_invoiced_amounts_leave_out_reversed_invoices_and_the_bills_own(sap: tuple[EccSandbox, SoapRfcClient]) -> None:
    state, client = sap
    v = _vendor(state, 2)
    ebeln = create_purchase_order(state.data, bukrs="1000", lifnr=v, client=state.client,
                                  items=[{"menge": 10, "netpr": "10.00"}])
    poster = DocumentPoster(client, sleep=lambda s: None, settle_seconds=0.0)
    mine = MMInvoice(source_id="bill-a", company_code="1000", currency="USD", doc_date=date(2025, 6, 2),
                     posting_date=date(2025, 6, 3), items=(MMInvoiceItem(ebeln, 10, Decimal("60.00")),),
                     reference=xblnr_for("bill-a", "RMP"), vendor=v)
    res = poster.post(mine)
    again = poster.post(mine)  # found by RBKP (XBLNR + vendor) before any call: not posted twice
    assert again.already_posted and again.invoice_number == res.invoice_number
    other = MMInvoice(source_id="bill-b", company_code="1000", currency="USD", doc_date=date(2025, 6, 2),
                      posting_date=date(2025, 6, 3), items=(MMInvoiceItem(ebeln, 10, Decimal("30.00")),),
                      reference=xblnr_for("bill-b", "RMP"), vendor=v)
    poster.post(other)
    with state.data.lock:  # MR8M reversed the other invoice
        rbkp = next(r for r in state.data.store("RBKP", state.client).rows if r.get("XBLNR") == other.reference)
        rbkp["STBLG"], rbkp["STJAH"] = "5105699999", "2025"
    check = PurchaseOrderCheck(client)
    assert check.invoiced(ebeln, "10") == Decimal("60.00")
    assert check.invoiced(ebeln, "10", except_xblnr=mine.reference) == Decimal(0)
    # re-mapping bill-a (posted, report to Ramp pending) still matches: its own invoice is not counted
    assert check.mismatch(company_code="1000", vendor=v, currency="USD",
                          lines=[POLine(1, ebeln, "10", Decimal("60.00"))], xblnr=mine.reference) is None
    assert poster.find_mm_invoice("1000", mine.reference, "2025", v) is not None
    assert poster.find_mm_invoice("1000", mine.reference, "2025", _vendor(state, 3)) is None
