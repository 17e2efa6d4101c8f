"""Labor cost distributions for the SAP ECC → Procore flow (additive to the FI seed).

`post_labor_distribution` writes what a payroll posting's cost distribution looks like in FI: a G/L
document (BLART SA, FB50) debiting expense accounts on cost centers (job sites), credited against the
payroll clearing account, so the flow sees labor cost lines in BSEG like any other cost-center line.
`seed_labor(data, client)` posts a deterministic week of them on the demo's job-site cost centers.
"""

from __future__ import annotations

from decimal import Decimal

from . import fi
from .data import DEFAULT_CLIENT, EccData

#: The account the distributions are credited against (fi.py's accrual/clearing account).
CLEARING_ACCOUNT = "0000113100"
#: (cost center, G/L account, amount, text) of the demo's labor week.
LABOR_WEEK: tuple[tuple[str, str, str, str], ...] = (
    ("1610", "630000", "18450.00", "Field labor crew A wk 49"),
    ("1610", "610000", "1220.50", "Supervision travel wk 49"),
    ("1620", "630000", "9875.25", "Field labor crew B wk 49"),
    ("1410", "630000", "4310.00", "Field labor service wk 49"),
    ("1500", "690000", "640.00", "Overhead allocation wk 49"),
)


def post_labor_distribution(data: EccData, lines: list[tuple[str, str, str, str]], *, bukrs: str = "1000",
                            budat: str = "20250605", client: str = DEFAULT_CLIENT,
                            text: str = "Labor distribution") -> str:
    """One FB50 document: each (cost center, G/L account, amount, text) a debit line, one credit to
    CLEARING_ACCOUNT; returns BELNR."""
    waers = next(c[4] for c in fi.COMPANIES if c[0] == bukrs)
    gl = [fi.Line(koart="S", hkont=hkont.zfill(10), wrbtr=Decimal(amount), dmbtr=Decimal(amount),
                  kostl=kostl.zfill(10), kokrs=bukrs, sgtxt=sgtxt) for kostl, hkont, amount, sgtxt in lines]
    total = sum((ln.wrbtr for ln in gl), Decimal(0))
    credit = fi.Line(koart="S", hkont=CLEARING_ACCOUNT, wrbtr=-total, dmbtr=-total, sgtxt="Payroll clearing")
    hdr = fi.Header(bukrs=bukrs, blart="SA", bldat=budat, budat=budat, waers=waers, xblnr="PAYROLL",
                    bktxt=text[:25], usnam="PAYROLL", tcode="FB50")
    return fi.post_now(data, client, hdr, [*gl, credit])


def seed_labor(data: EccData, client: str = DEFAULT_CLIENT) -> str:
    """The demo's labor week (LABOR_WEEK) as one document; returns BELNR."""
    return post_labor_distribution(data, list(LABOR_WEEK), client=client, text="Labor distribution wk 49")
