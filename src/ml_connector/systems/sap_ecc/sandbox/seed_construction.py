"""Labor cost distributions for the SAP ECC → Procore flow (additive to the FI seed).

`post_labor_distribution` writes what a payroll posting's cost distribution looks like in FI: a G/L
document (BLART SA, FB50) debiting expense accounts on cost centers (job sites), credited against the
payroll clearing account, so the flow sees labor cost lines in BSEG like any other cost-center line.
`seed_labor(data, client)` posts a deterministic week of them on the demo's job-site cost centers.

`seed_job_sites(data, client, sites=150)` adds the weekly purchase orders of the firm's job sites: one
PO per job-site cost center (2001, 2002, …; the demo mappings send each to its own Procore project),
every fifth a progress-billed subcontract (EKKO-BSART `ZSUB`), whose lines the flow opens
requisitions on.
"""

from __future__ import annotations

from decimal import Decimal

from . import fi
from .data import DEFAULT_CLIENT, EccData
from .seed_logistics import _vendor_pool, controlling_area

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


#: Job-site cost centers are JOB_SITE_BASE + 1, + 2, … (external format).
JOB_SITE_BASE = 2000
#: EKKO-BSART of a subcontract billed by progress: the flow opens a requisition on each of its lines.
SUBCONTRACT_TYPE = "ZSUB"
#: The job-site PO's lines: (G/L account, material group, text, unit, base quantity, unit price).
JOB_SITE_LINES: tuple[tuple[str, str, str, str, int, str], ...] = (
    ("630000", "SERV01", "Site crew services", "H", 120, "68.50"),
    ("640000", "SERV03", "Equipment rental", "TAG", 10, "410.00"),
    ("620000", "IT0001", "Site communications", "AU", 1, "1250.00"),
)


def job_site(i: int) -> str:
    """The cost center (external format) of job site `i` (1-based)."""
    return str(JOB_SITE_BASE + i)


def seed_job_sites(data: EccData, client: str = DEFAULT_CLIENT, *, sites: int = 150, bukrs: str = "1000",
                   bedat: str = "20250602", subcontract_every: int = 5, first_ebeln: int = 4510000001) -> list[str]:
    """One PO per job site 1..`sites` (EKKO/EKPO/EKKN, items account-assigned to the site's cost
    center, KNTTP K), dated `bedat`; every `subcontract_every`-th a subcontract (BSART ZSUB).
    Deterministic; a PO already there is left alone. Returns the EBELNs."""
    vendors = _vendor_pool(data, client)[bukrs]
    if not vendors:
        raise ValueError(f"no vendor of company code {bukrs} to order from (seed the vendors first)")
    waers = next(c[4] for c in fi.COMPANIES if c[0] == bukrs)
    out = []
    with data.lock:
        for i in range(1, sites + 1):
            ebeln = str(first_ebeln + i - 1)
            out.append(ebeln)
            if data.store("EKKO", client).get((ebeln,)) is not None:
                continue
            lifnr, zterm = vendors[(i * 7) % len(vendors)]
            kostl = job_site(i).zfill(10)
            bsart = SUBCONTRACT_TYPE if i % subcontract_every == 0 else "NB"
            lines = JOB_SITE_LINES[: 2 + i % 2]
            total = Decimal(0)
            for j, (sakto, matkl, text, meins, base_qty, price) in enumerate(lines, 1):
                ebelp = str(j * 10).zfill(5)
                qty = Decimal(base_qty + (i % 7) * (1 if base_qty < 10 else 8))
                netwr = (qty * Decimal(price)).quantize(Decimal("0.01"))
                total += netwr
                data.insert("EKPO", {"EBELN": ebeln, "EBELP": ebelp, "AEDAT": bedat, "BUKRS": bukrs, "WERKS": "1000",
                                     "BSTYP": "F", "TXZ01": f"{text} site {job_site(i)}", "MATKL": matkl,
                                     "KNTTP": "K", "MENGE": f"{qty:.3f}", "MEINS": meins, "NETPR": price,
                                     "PEINH": "1", "NETWR": f"{netwr:.2f}", "PSTYP": "9" if bsart == "ZSUB" else "0"},
                            client)
                data.insert("EKKN", {"EBELN": ebeln, "EBELP": ebelp, "ZEKKN": "01", "AEDAT": bedat,
                                     "SAKTO": sakto.zfill(10), "KOSTL": kostl, "KOKRS": controlling_area(bukrs),
                                     "MENGE": f"{qty:.3f}", "NETWR": f"{netwr:.2f}"}, client)
            data.insert("EKKO", {"EBELN": ebeln, "BUKRS": bukrs, "BSTYP": "F", "BSART": bsart, "STATU": "9",
                                 "AEDAT": bedat, "ERNAM": "SITE_BUYER", "LIFNR": lifnr, "ZTERM": zterm,
                                 "EKORG": bukrs, "EKGRP": "001", "WAERS": waers, "WKURS": "1.00000", "BEDAT": bedat,
                                 "RLWRT": f"{total:.2f}"}, client)
    return out
