"""Deterministic logistics seed: plants, purchase orders, customers, sales orders and deliveries.

`seed_logistics(data, seed=42, client='100')` fills T001W/T001K/TKA02, EKKO/EKPO/EKKN, KNA1/KNB1/
KNKK/KNVV/KNVP/KNVH/KNVK, VBAK/VBAP and LIKP/LIPS in well under a second. Facts it respects (reference §4):

- keys in internal format: EBELN/VBELN/KUNNR/LIFNR/KOSTL/SAKTO CHAR10 zero-padded, MATNR CHAR18
  zero-padded, EBELP NUMC5 ('00010'), POSNR NUMC6, PARZA NUMC3, ZEKKN NUMC2;
- DATS 'YYYYMMDD', initial '00000000' (VBAK-AEDAT until the order is changed, LIKP-WADAT_IST until
  goods issue), open validity '99991231';
- internal codes, not the English display values: KNVP-PARVW AG/WE/RE/RG, VBAK-AUART 'TA' (OR),
  unit 'ST' (PC);
- packed values as '1234.56'; negative EKKO-WKURS for indirectly quoted rates (DE, GB company
  codes), negative KNKK-SKFOR for customers in credit; EKKN-VPROZ (DEC3,1) '50.0' on split
  account assignments, which RFC_READ_TABLE cannot render in 3 characters ('*.0');
- plants 1000/1100/1200 (company code 1000, US), 2000/2100 (2000, DE), 3000/3100 (3000, GB): every
  plant a CSKS row names; T001K maps BWKEY = WERKS to BUKRS;
- cost centers: the FI part of the sandbox (sandbox/fi.py) seeds CSKS/CSKT and is the one source of
  truth. This module runs fi's customizing seed once into a scratch EccData (well under a
  millisecond) and takes from it the cost centers (KOKRS, KOSTL, BUKRS, WERKS, validity, PRCTR),
  the controlling area of each company code (one per company code: KOKRS = the CSKS-KOKRS of its
  cost centers; also seeded as TKA02) and the G/L accounts of each company code (SKB1).
  EKKN-KOSTL is a cost center of the item's plant (else of its company code) valid on the PO date,
  EKKN-KOKRS its controlling area, EKKN-PRCTR its profit center, EKKN-SAKTO an expense account
  that exists in SKB1 and is not blocked for posting;
- customers: KNVV (sales area VKORG = company code, VTWEG 10, SPART 00) for every KNA1 row, the
  sales area of every KNVP row; sales orders are placed in the sold-to's sales area from its
  delivering plant (KNVV-VWERK); deliveries carry one LIPS item per order item that is not
  rejected (VGBEL/VGPOS = order item, VGTYP C), LIKP weights are the sums of their items and
  LIKP-KUNNR is the sold-to's default ship-to party (KNVP WE);
- customer hierarchy (KNVH, type A): a few sold-to parties that pay for themselves (the highest
  numbers of each sales area) are top nodes (HKUNNR initial); about 15 % of the other sold-to
  parties that pay for themselves hang below one of them in their sales area (valid from a past
  DATAB to '99991231'), some moved there from another node (an expired row, DATBI in the past);
- contact persons (KNVK): one to three per sold-to and payer, PARNR 0000500001.. (NUMC10), KUNNR
  the account, department (ABTNR, with ABTPA text) and function (PAFKT) codes; the seed has no
  ADRC/ADR6, so no e-mail addresses.

Purchase orders take their vendors from the seeded LFB1 (vendor must exist in the PO's company
code); without vendors they fall back to LIFNRs 0000100001-0000100300.

Change helpers (`change_purchase_order`, `change_sales_order`, `change_delivery`,
`change_customer`) update rows the way the transactions do (AEDAT on documents; change documents
EINKBELEG / VERKBELEG / LIEFERUNG / DEBI in CDHDR/CDPOS).
"""

from __future__ import annotations

import gc
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from typing import Any

from . import ddic, tables_mm, tables_sd
from . import fi as _fi
from .data import (
    _DE_CITIES,
    _DE_FIRST,
    _DE_SECOND,
    _DE_STREETS,
    _DE_SUFFIX,
    _GB_CITIES,
    _GB_FIRST,
    _GB_SECOND,
    _GB_STREETS,
    _GB_SUFFIX,
    _US_CITIES,
    _US_FIRST,
    _US_SECOND,
    _US_STREETS,
    _US_SUFFIX,
    DEFAULT_CLIENT,
    EccData,
    Row,
)

__all__ = [
    "COST_CENTERS",
    "CURRENCY",
    "PLANTS",
    "CostCenter",
    "Plant",
    "change_customer",
    "change_delivery",
    "change_purchase_order",
    "change_sales_order",
    "controlling_area",
    "cost_center",
    "cost_centers_of",
    "seed_logistics",
]

tables_mm.register()
tables_sd.register()

CURRENCY = {"1000": "USD", "2000": "EUR", "3000": "GBP"}
_LAND = {"1000": "US", "2000": "DE", "3000": "GB"}


@dataclass(frozen=True)
class Plant:
    werks: str
    bukrs: str
    name1: str
    land1: str
    regio: str
    pstlz: str
    ort01: str
    stras: str


# Names and places follow the company codes (T001: New York, Walldorf, London) and the cost centers
# fi.py assigns to the plants (1100: Production NJ, Sales East; 1200: Warehouse Chicago, Sales West;
# 2100: Lager Köln; 3100: UK Distribution).
PLANTS: tuple[Plant, ...] = (
    Plant("1000", "1000", "Plant New York", "US", "NY", "10013", "New York", "350 Hudson St"),
    Plant("1100", "1000", "Plant Newark NJ", "US", "NJ", "07114", "Newark", "600 Doremus Ave"),
    Plant("1200", "1000", "Chicago Distribution Center", "US", "IL", "60607", "Chicago", "1200 W Fulton Market"),
    Plant("2000", "2000", "Werk Walldorf", "DE", "08", "69190", "Walldorf", "Industriestraße 12"),
    Plant("2100", "2000", "Werk Köln", "DE", "05", "50829", "Köln", "Mathias-Brüggen-Straße 4"),
    Plant("3000", "3000", "London Works", "GB", "", "E16 2QA", "London", "Royal Victoria Dock 7"),
    Plant("3100", "3000", "Manchester Distribution", "GB", "", "M17 1AB", "Manchester", "Trafford Park Road 7"),
)
_PLANTS_OF: dict[str, tuple[str, ...]] = {b: tuple(p.werks for p in PLANTS if p.bukrs == b) for b in CURRENCY}


@dataclass(frozen=True)
class CostCenter:
    """One CSKS row as sandbox/fi.py seeds it (KOSTL internal, dates DATS)."""

    kokrs: str
    kostl: str
    bukrs: str
    werks: str
    datab: str
    datbi: str
    prctr: str
    locked: bool

    def valid_on(self, day: str) -> bool:
        return self.datab <= day <= self.datbi and not self.locked


@dataclass(frozen=True)
class _FiMaster:
    cost_centers: tuple[CostCenter, ...]
    kokrs_of: dict[str, str]  # BUKRS -> KOKRS
    accounts: dict[str, frozenset[str]]  # BUKRS -> SAKNR postable (SKB1 without XSPEB)


_SCRATCH_CLIENT = "000"


@cache
def _fi_master() -> _FiMaster:
    """Cost centers, controlling areas and G/L accounts exactly as sandbox/fi.py seeds them.

    fi.seed_fi with no documents writes only customizing and master data (T001, SKA1/SKB1, CSKS/
    CSKT, ...); running it into a scratch EccData keeps fi.py the one source of truth."""
    scratch = EccData(clients=(_SCRATCH_CLIENT,))
    _fi.seed_fi(scratch, _SCRATCH_CLIENT, documents=0)
    centers = tuple(CostCenter(r["KOKRS"], r["KOSTL"], r.get("BUKRS", ""), r.get("WERKS", ""),
                               r.get("DATAB") or "00000000", r["DATBI"], r.get("PRCTR", ""), bool(r.get("BKZKP")))
                    for r in scratch.rows("CSKS", _SCRATCH_CLIENT))
    kokrs_of: dict[str, str] = {}
    for c in centers:
        if kokrs_of.setdefault(c.bukrs, c.kokrs) != c.kokrs:
            raise ValueError(f"fi.py seeds cost centers of company code {c.bukrs} in two controlling areas")
    accounts: dict[str, set[str]] = {}
    for r in scratch.rows("SKB1", _SCRATCH_CLIENT):
        if not r.get("XSPEB") and not r.get("XLOEB"):
            accounts.setdefault(r["BUKRS"], set()).add(r["SAKNR"])
    return _FiMaster(centers, kokrs_of, {b: frozenset(a) for b, a in accounts.items()})


def controlling_area(bukrs: str) -> str:
    """KOKRS of a company code (TKA02), as fi.py's CSKS rows have it."""
    return _fi_master().kokrs_of[bukrs]


@cache
def cost_center(kostl: str) -> CostCenter:
    """The cost center `kostl` (internal format) of the seed (the row with the latest DATBI)."""
    rows = [c for c in _fi_master().cost_centers if c.kostl == kostl]
    if not rows:
        raise KeyError(f"cost center {kostl} is not seeded")
    return max(rows, key=lambda c: c.datbi)


@cache
def cost_centers_of(werks: str, on: str | None = None) -> tuple[str, ...]:
    """Cost centers (KOSTL, internal format) whose CSKS-WERKS is `werks`; only those valid and not
    locked on `on` (DATS) when given."""
    return tuple(dict.fromkeys(c.kostl for c in _fi_master().cost_centers
                               if c.werks == werks and (on is None or c.valid_on(on))))


@cache
def _company_cost_centers(bukrs: str, on: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(c.kostl for c in _fi_master().cost_centers if c.bukrs == bukrs and c.valid_on(on)))


COST_CENTERS: tuple[str, ...] = tuple(dict.fromkeys(c.kostl for c in _fi_master().cost_centers))

# Expense account per material group of account-assigned items (fi.py's chart INT); checked
# against the company code's SKB1 when used, with fi.EXPENSE_ACCOUNTS as the fallback.
_ACCOUNT_OF_GROUP = {"OFFICE": "0000600000", "IT0001": "0000600000", "PPE001": "0000600000",
                     "SERV01": "0000630000", "SERV02": "0000630000", "SERV03": "0000640000",
                     "SERV04": "0000615000"}
_MATERIALS = [  # (number, text, group, unit, price range)
    (100120, "Steel sheet 2mm DC01", "RAW001", "KG", (0.8, 2.5)),
    (100121, "Aluminium profile 40x40", "RAW001", "M", (4.0, 12.0)),
    (100230, "Hex bolt M8x40 DIN 933", "FAST01", "ST", (4.0, 9.0)),  # price per 100
    (100231, "Washer M8 DIN 125", "FAST01", "ST", (1.0, 3.0)),
    (100340, "Hydraulic oil HLP 46", "CHEM01", "L", (2.0, 6.0)),
    (100341, "Industrial degreaser 25l", "CHEM01", "ST", (40.0, 95.0)),
    (100450, "Corrugated box 600x400x400", "PACK01", "ST", (0.6, 2.2)),
    (100451, "Stretch film 500mm x 300m", "PACK01", "RL", (9.0, 22.0)),
    (100560, "Bearing 6204-2RS", "SPARE1", "ST", (3.0, 11.0)),
    (100561, "V-belt SPZ 1250", "SPARE1", "ST", (8.0, 25.0)),
    (100670, "Electric motor 4kW IE3", "SPARE1", "ST", (380.0, 720.0)),
    (100780, "Copper cable NYM-J 3x1.5", "ELEC01", "M", (0.7, 1.9)),
]
_K_TEXTS = [("Office chairs ergonomic", "OFFICE", "ST", (120.0, 480.0)),
            ("Laptop 14in standard config", "IT0001", "ST", (700.0, 1600.0)),
            ("Printer toner black", "OFFICE", "ST", (45.0, 140.0)),
            ("Maintenance service compressor", "SERV01", "H", (65.0, 140.0)),
            ("Facility cleaning monthly", "SERV01", "AU", (900.0, 4200.0)),
            ("Safety gloves size 9", "PPE001", "PAA", (2.0, 7.0)),
            ("External consulting IT security", "SERV02", "H", (110.0, 260.0)),
            ("Forklift rental", "SERV03", "TAG", (85.0, 190.0)),
            ("Canteen catering", "SERV04", "AU", (1500.0, 9000.0))]
_FINISHED = [(200010, "Pump housing PH-200", 180.0), (200011, "Pump housing PH-300", 240.0),
             (200020, "Gear unit GU-15", 410.0), (200021, "Gear unit GU-30", 655.0),
             (200030, "Control panel CP-1", 1290.0), (200040, "Spare part kit SK-A", 75.5),
             (200041, "Spare part kit SK-B", 98.0), (200050, "Valve block VB-8", 320.0)]
_ZTERM_DISCOUNT: dict[str, tuple[str, str, str, str, str]] = {  # ZBD1T, ZBD1P, ZBD2T, ZBD2P, ZBD3T
    "0001": ("0", "0.000", "0", "0.000", "0"), "NT30": ("0", "0.000", "0", "0.000", "30"),
    "NT45": ("0", "0.000", "0", "0.000", "45"), "NT60": ("0", "0.000", "0", "0.000", "60"),
    "ZB01": ("14", "3.000", "30", "2.000", "45"), "Z014": ("14", "2.000", "0", "0.000", "30"),
}
_TAX = {"1000": "I1", "2000": "VN", "3000": "P1"}
_CENT = Decimal("0.01")


@cache
def _d(value: date) -> str:
    return f"{value.year:04d}{value.month:02d}{value.day:02d}"


def _money(value: float | Decimal) -> Decimal:
    return Decimal(str(value)).quantize(_CENT, rounding=ROUND_HALF_UP)


def seed_logistics(data: EccData, *, seed: int = 42, client: str = DEFAULT_CLIENT, purchase_orders: int = 900,
                   customers: int = 500, sales_orders: int = 1000) -> dict[str, int]:
    """Add the logistics data set to `client`; returns the row count per table."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        rnd = random.Random(seed * 7919 + 17)
        tables: dict[str, list[Row]] = {}
        tables.update(_plants(client))
        tables.update(_purchase_orders(data, rnd, client, purchase_orders))
        customer_tables, sold_to = _customers(rnd, client, customers)
        tables.update(customer_tables)
        # Its own generator: adding the customer hierarchy and contacts left every other table as it was.
        tables.update(_hierarchy_and_contacts(random.Random(seed * 7919 + 29), client, customer_tables))
        tables.update(_sales(rnd, client, sales_orders, sold_to, customer_tables["KNVV"], customer_tables["KNVP"]))
        with data.lock:
            for name, rows in tables.items():
                data.store(name, client).bulk_load(rows)
        return {name: len(rows) for name, rows in tables.items()}
    finally:
        if was_enabled:
            gc.enable()


# --------------------------------------------------------------------------------------------- plants


def _plants(client: str) -> dict[str, list[Row]]:
    t001w: list[Row] = []
    t001k: list[Row] = []
    for i, p in enumerate(PLANTS):
        t001w.append({"MANDT": client, "WERKS": p.werks, "NAME1": p.name1, "BWKEY": p.werks,
                      "FABKL": p.land1, "STRAS": p.stras, "PSTLZ": p.pstlz, "ORT01": p.ort01,
                      "EKORG": p.bukrs, "VKORG": p.bukrs, "LAND1": p.land1, "REGIO": p.regio,
                      "ADRNR": str(9100 + i).zfill(10), "VTWEG": "10", "SPART": "00",
                      "SPRAS": "D" if p.land1 == "DE" else "E", "KORDB": "X" if p.bukrs == "2000" else ""})
        t001k.append({"MANDT": client, "BWKEY": p.werks, "BUKRS": p.bukrs, "BWMOD": "0001"})
    tka02 = [{"MANDT": client, "BUKRS": b, "GSBER": "", "KOKRS": k} for b, k in sorted(_fi_master().kokrs_of.items())]
    return {"T001W": t001w, "T001K": t001k, "TKA02": tka02}


# --------------------------------------------------------------------------------------------- purchasing


def _vendor_pool(data: EccData, client: str) -> dict[str, list[tuple[str, str]]]:
    """Per company code: (LIFNR, ZTERM) of vendors that are neither deleted nor blocked."""
    pool: dict[str, list[tuple[str, str]]] = {b: [] for b in CURRENCY}
    with data.lock:
        for r in data.store("LFB1", client).rows:
            if r.get("LOEVM") or r.get("SPERR") or r.get("BUKRS") not in pool:
                continue
            pool[r["BUKRS"]].append((r["LIFNR"], r.get("ZTERM") or "0001"))
    for bukrs, vendors in pool.items():
        if not vendors:
            off = {"1000": 0, "2000": 100, "3000": 200}[bukrs]
            vendors.extend((str(100001 + off + i).zfill(10), "NT30") for i in range(100))
    return pool


def _purchase_orders(data: EccData, rnd: random.Random, client: str, n: int) -> dict[str, list[Row]]:
    rand = rnd.random

    def choice(seq: Sequence[Any]) -> Any:
        return seq[int(rand() * len(seq))]

    pool = _vendor_pool(data, client)
    weight = {"1000": 2, "1100": 2, "1200": 1, "2000": 3, "2100": 2, "3000": 2, "3100": 1}
    plant_plan = [p for p in PLANTS for _ in range(weight.get(p.werks, 1))]
    item_counts = (1, 1, 2, 2, 3, 3, 4, 5, 6, 8)
    ernams = ("MM_BUYER01", "MM_BUYER02", "JSMITH", "KBAUER", "ECATT_PO", "TJONES")
    ekko: list[Row] = []
    ekpo: list[Row] = []
    ekkn: list[Row] = []
    base = date(2023, 1, 2)
    for i in range(n):
        plant = choice(plant_plan)
        bukrs = plant.bukrs
        lifnr, zterm = choice(pool[bukrs])
        bedat = base + timedelta(days=i * 720 // max(n, 1) + int(rand() * 3))
        ebeln = str(4500000001 + i)
        waers = CURRENCY[bukrs]
        wkurs = "1.00000"
        if rand() < 0.12:  # foreign-currency purchase
            if bukrs == "1000":
                waers, wkurs = "EUR", choice(("1.08000", "1.09250", "1.07420"))
            else:  # indirect quotation: stored negative in WKURS
                waers = "USD" if bukrs == "2000" or rand() < 0.5 else "EUR"
                wkurs = choice(("-1.08000", "-1.09250")) if bukrs == "2000" else choice(("-1.26500", "-1.16000"))
        disc = _ZTERM_DISCOUNT.get(zterm, _ZTERM_DISCOUNT["NT30"])
        n_items = choice(item_counts)
        header: Row = {"MANDT": client, "EBELN": ebeln, "BUKRS": bukrs, "BSTYP": "F", "BSART": "NB",
                       "STATU": "9", "AEDAT": _d(bedat), "ERNAM": choice(ernams), "PINCR": "00010",
                       "LPONR": str(n_items * 10).zfill(5), "LIFNR": lifnr,
                       "SPRAS": "D" if bukrs == "2000" else "E", "ZTERM": zterm, "ZBD1T": disc[0],
                       "ZBD1P": disc[1], "ZBD2T": disc[2], "ZBD2P": disc[3], "ZBD3T": disc[4], "EKORG": bukrs,
                       "EKGRP": choice(("001", "002", "003", "004")), "WAERS": waers, "WKURS": wkurs,
                       "BEDAT": _d(bedat), "KNUMV": str(1000000 + i).zfill(10), "KALSM": "RM0000",
                       "INCO1": choice(("EXW", "FCA", "DAP", "DDP")), "PROCSTAT": "05"}
        header["INCO2"] = plant.ort01
        if rand() < 0.01:
            header["LOEKZ"] = "L"
        old = bedat < date(2024, 7, 1)
        total = Decimal(0)
        for j in range(n_items):
            ebelp = str((j + 1) * 10).zfill(5)
            werks = plant.werks
            siblings = [w for w in _PLANTS_OF[bukrs] if w != plant.werks]
            if siblings and rand() < 0.15:  # sibling plant of the same company code
                werks = choice(siblings)
            r = rand()
            item: Row = {"MANDT": client, "EBELN": ebeln, "EBELP": ebelp, "AEDAT": _d(bedat), "BUKRS": bukrs,
                         "WERKS": werks, "MWSKZ": _TAX[bukrs], "PSTYP": "0", "BSTYP": "F", "PRDAT": _d(bedat)}
            if r < 0.58:  # stock material
                matnr, text, matkl, meins, (lo, hi) = choice(_MATERIALS)
                peinh = 100 if matkl == "FAST01" else 1
                qty = Decimal(int(1 + rand() * 400) * (100 if peinh == 100 else 1))
                item.update({"MATNR": str(matnr).zfill(18), "EMATN": str(matnr).zfill(18), "TXZ01": text,
                             "MATKL": matkl, "LGORT": "0001", "IDNLF": f"V-{matnr}-{int(rand() * 90) + 10}",
                             "WEPOS": "X", "REPOS": "X", "WEBRE": "X", "INSMK": "", "LMEIN": meins})
                knttp = ""
            else:
                text, matkl, meins, (lo, hi) = choice(_K_TEXTS)
                peinh = 1
                qty = Decimal(int(1 + rand() * (160 if meins == "H" else 20)))
                item.update({"TXZ01": text, "MATKL": matkl, "REPOS": "X", "LMEIN": meins,
                             "WEPOS": "" if meins in ("H", "AU") else "X", "KZVBR": "V"})
                knttp = "K" if r < 0.91 else ("F" if r < 0.97 else "A")
            price = _money(lo + rand() * (hi - lo))
            netwr = _money(qty * price / peinh)
            total += netwr
            item.update({"KNTTP": knttp, "MENGE": f"{qty:.3f}", "MEINS": meins, "BPRME": meins,
                         "BPUMZ": "1", "BPUMN": "1", "UMREZ": "1", "UMREN": "1", "NETPR": f"{price:.2f}",
                         "PEINH": str(peinh), "NETWR": f"{netwr:.2f}", "BRTWR": f"{netwr:.2f}",
                         "EFFWR": f"{netwr:.2f}"})
            if old and rand() < 0.9:
                item["ELIKZ"] = "X"
                item["EREKZ"] = "X" if rand() < 0.85 else ""
            if rand() < 0.02:
                item["LOEKZ"] = "L"
            if knttp:
                ekkn.extend(_account_assignments(item, knttp, bedat, client, rand, choice))
            ekpo.append(item)
        header["RLWRT"] = f"{total:.2f}"
        if total > 25000:
            header.update({"FRGGR": "01", "FRGSX": "S1", "FRGZU": "XX", "FRGKE": "R"})
            if bedat > date(2024, 12, 10) and rand() < 0.5:
                header.update({"FRGKE": "B", "FRGZU": "X", "FRGRL": "X"})
        ekko.append(header)
    return {"EKKO": ekko, "EKPO": ekpo, "EKKN": ekkn}


def _expense_account(bukrs: str, matkl: str, choice: Callable[[Sequence[Any]], Any]) -> str:
    postable = _fi_master().accounts.get(bukrs, frozenset())
    sakto = _ACCOUNT_OF_GROUP.get(matkl, "")
    if sakto in postable:
        return sakto
    return choice([a for a in _fi.EXPENSE_ACCOUNTS if a in postable] or _fi.EXPENSE_ACCOUNTS)


def _account_assignments(item: Row, knttp: str, bedat: date, client: str, rand: Callable[[], float],
                         choice: Callable[[Sequence[Any]], Any]) -> list[Row]:
    werks, bukrs, day = item["WERKS"], item["BUKRS"], _d(bedat)
    qty, netwr = Decimal(item["MENGE"]), Decimal(item["NETWR"])
    centers = cost_centers_of(werks, day) or _company_cost_centers(bukrs, day)
    if not centers:
        raise ValueError(f"fi.py seeds no cost center of company code {bukrs} valid on {day}")
    base: Row = {"MANDT": client, "EBELN": item["EBELN"], "EBELP": item["EBELP"], "AEDAT": day,
                 "SAKTO": _expense_account(bukrs, item.get("MATKL", ""), choice),
                 "KOKRS": controlling_area(bukrs), "GSBER": bukrs,
                 "PRCTR": cost_center(centers[0]).prctr, "VPROZ": "0.0"}
    if knttp == "F":
        return [{**base, "ZEKKN": "01", "AUFNR": str(400100 + int(rand() * 400)).zfill(12), "MENGE": item["MENGE"],
                 "NETWR": item["NETWR"]}]
    if knttp == "A":
        return [{**base, "ZEKKN": "01", "SAKTO": "", "ANLN1": str(100000 + int(rand() * 900)).zfill(12),
                 "ANLN2": "0000", "MENGE": item["MENGE"], "NETWR": item["NETWR"]}]
    pair = centers if len(centers) >= 2 else _company_cost_centers(bukrs, day)
    if rand() < 0.12 and qty >= 2 and len(pair) >= 2:  # multiple account assignment by percentage (VRTKZ 2)
        item["VRTKZ"] = "2"
        split = choice((Decimal("50.0"), Decimal("60.0"), Decimal("70.0")))
        q1 = (qty * split / 100).quantize(Decimal("0.001"))
        n1 = _money(netwr * split / 100)
        i = int(rand() * len(pair))
        first, second = pair[i], pair[(i + 1 + int(rand() * (len(pair) - 1))) % len(pair)]
        return [{**base, "ZEKKN": "01", "KOSTL": first, "PRCTR": cost_center(first).prctr,
                 "VPROZ": f"{split:.1f}", "MENGE": f"{q1:.3f}", "NETWR": f"{n1:.2f}"},
                {**base, "ZEKKN": "02", "KOSTL": second, "PRCTR": cost_center(second).prctr,
                 "VPROZ": f"{100 - split:.1f}", "MENGE": f"{qty - q1:.3f}", "NETWR": f"{netwr - n1:.2f}"}]
    kostl = choice(centers)
    return [{**base, "ZEKKN": "01", "KOSTL": kostl, "PRCTR": cost_center(kostl).prctr, "MENGE": item["MENGE"],
             "NETWR": item["NETWR"]}]


# --------------------------------------------------------------------------------------------- customers


def _name_and_address(land1: str, choice: Callable[[Sequence[Any]], Any],
                      randint: Callable[[int, int], int]) -> tuple[str, str, str, str, str]:
    if land1 == "DE":
        name = f"{choice(_DE_FIRST)} {choice(_DE_SECOND)} {choice(_DE_SUFFIX)}"
        city, regio, pstlz = choice(_DE_CITIES)
        street = f"{choice(_DE_STREETS)} {randint(1, 180)}"
    elif land1 == "GB":
        name = f"{choice(_GB_FIRST)} {choice(_GB_SECOND)} {choice(_GB_SUFFIX)}"
        city, regio, pstlz = choice(_GB_CITIES)
        street = f"{randint(1, 250)} {choice(_GB_STREETS)}"
    else:
        name = f"{choice(_US_FIRST)} {choice(_US_SECOND)} {choice(_US_SUFFIX)}"
        city, regio, pstlz = choice(_US_CITIES)
        street = f"{randint(1, 9999)} {choice(_US_STREETS)}"
    return name[:35], city[:35], regio, pstlz, street[:35]


def _customers(rnd: random.Random, client: str, n: int) -> tuple[dict[str, list[Row]], list[Row]]:
    """KNA1/KNB1/KNKK/KNVV/KNVP. Sold-to parties 0000200001.. (account group 0001), ship-to parties
    0000250001.. (0002) and payers 0000290001.. (0003), each with sales data (KNVV) in the sales area
    of its company code. Returns the tables and the sold-to rows."""
    rand = rnd.random

    def choice(seq: Sequence[Any]) -> Any:
        return seq[int(rand() * len(seq))]

    def randint(a: int, b: int) -> int:
        return a + int(rand() * (b - a + 1))

    plan = ["1000"] * 5 + ["2000"] * 3 + ["3000"] * 2
    kna1: list[Row] = []
    knb1: list[Row] = []
    knkk: list[Row] = []
    knvp: list[Row] = []
    knvv: list[Row] = []
    base = date(2012, 1, 1)
    n_payers = max(n // 15, 1)
    n_ship = max(n // 5, 1)

    def general(kunnr: str, bukrs: str, ktokd: str, idx: int) -> Row:
        land1 = _LAND[bukrs]
        name, city, regio, pstlz, street = _name_and_address(land1, choice, randint)
        row: Row = {"MANDT": client, "KUNNR": kunnr, "LAND1": land1, "NAME1": name, "ORT01": city,
                    "PSTLZ": pstlz, "REGIO": regio, "SORTL": name[:10].upper(), "STRAS": street,
                    "MCOD1": name[:25].upper(), "MCOD3": city[:25].upper(), "ADRNR": str(60000 + idx).zfill(10),
                    "KTOKD": ktokd, "ERDAT": _d(base + timedelta(days=randint(0, 4300))),
                    "ERNAM": choice(("MIGRATION", "SD_MASTER1", "MWEBER", "BATCH_MDG")),
                    "SPRAS": "D" if land1 == "DE" else "E", "TELF1": f"+{randint(1, 49)} {randint(100, 999)} "
                                                                     f"{randint(100000, 999999)}"[:16],
                    "BRSCH": choice(("MANU", "RETL", "CONS", "TRAD"))}
        if land1 != "US":
            row["STCEG"] = f"{land1}{randint(100000000, 999999999)}"
        else:
            row["STCD1"] = f"{randint(10, 99)}-{randint(1000000, 9999999)}"
        return row

    def company(kunnr: str, bukrs: str, erdat: str) -> Row:
        return {"MANDT": client, "KUNNR": kunnr, "BUKRS": bukrs, "ERDAT": erdat, "ERNAM": "SD_MASTER1",
                "AKONT": "0000140000", "ZUAWA": "009", "ZTERM": choice(("0001", "NT30", "NT30", "NT45", "ZB01")),
                "ZWELS": choice(("", "E", "U")), "FDGRV": "E1", "BUSAB": "01", "XZVER": "X",
                "VLIBB": "0.00", "VRSZL": "0", "VRSPR": "0.0"}

    def credit(kunnr: str, bukrs: str, erdat: str, knkli: str) -> Row:
        klimk = Decimal(choice((5000, 10000, 25000, 50000, 100000, 250000, 500000)))
        r = rand()
        skfor = _money(Decimal(str(rand())) * klimk * Decimal("1.15"))
        if r < 0.03:
            skfor = -_money(Decimal(str(rand())) * 5000)  # customer in credit
        row: Row = {"MANDT": client, "KUNNR": kunnr, "KKBER": bukrs, "KLIMK": f"{klimk:.2f}", "KNKLI": knkli,
                    "SAUFT": f"{_money(Decimal(str(rand())) * klimk / 4):.2f}", "SKFOR": f"{skfor:.2f}",
                    "SSOBL": "0.00", "ERNAM": "FSCM_CR01", "ERDAT": erdat,
                    "CTLPC": choice(("001", "002", "002", "003")), "SBGRP": choice(("001", "002")),
                    "DTREV": _d(date(2024, 1, 1) + timedelta(days=randint(0, 300))),
                    "NXTRV": _d(date(2025, 1, 1) + timedelta(days=randint(0, 300))), "GRUPP": "0001",
                    "CASHC": CURRENCY[bukrs], "CASHA": "0.00"}
        if skfor > klimk:
            row["UEDAT"] = _d(date(2024, 6, 1) + timedelta(days=randint(0, 200)))
            row["CRBLB"] = "X" if rand() < 0.5 else ""
        elif rand() < 0.02:
            row["CRBLB"] = "X"
        if rand() < 0.4:
            row["AEDAT"] = _d(date(2024, 1, 1) + timedelta(days=randint(0, 360)))
            row["AENAM"] = "FSCM_CR02"
        if rand() < 0.7:
            row["CASHD"] = _d(date(2024, 9, 1) + timedelta(days=randint(0, 110)))
            row["CASHA"] = f"{_money(Decimal(str(rand())) * klimk / 10):.2f}"
        return row

    def sales_data(general_row: Row, bukrs: str, zterm: str) -> Row:
        """KNVV in sales area (VKORG = company code, 10, 00): delivering plant, sales office/group,
        shipping, incoterms, currency and payment terms of the sales area."""
        vwerk = choice(_PLANTS_OF[bukrs])
        incoterms = choice(("FCA", "DAP", "DAP", "EXW", "CPT"))
        row = {"MANDT": client, "KUNNR": general_row["KUNNR"], "VKORG": bukrs, "VTWEG": "10", "SPART": "00",
               "ERNAM": general_row["ERNAM"], "ERDAT": general_row["ERDAT"], "VERSG": "1", "KALKS": "1",
               "KDGRP": choice(("01", "02", "03")), "BZIRK": f"{_LAND[bukrs]}000{randint(1, 4)}",
               "KONDA": choice(("01", "02")), "PLTYP": "01", "AWAHR": "100", "INCO1": incoterms,
               "INCO2": (general_row["ORT01"] if incoterms in ("DAP", "CPT") else
                         next(p.ort01 for p in PLANTS if p.werks == vwerk))[:28],
               "ANTLF": "9", "KZAZU": "X", "CHSPL": "X", "LPRIO": "02", "VSBED": choice(("01", "01", "02")),
               "PERFK": _LAND[bukrs], "WAERS": CURRENCY[bukrs], "KTGRD": "01", "ZTERM": zterm, "VWERK": vwerk,
               "VKBUR": f"{bukrs[0]}{'1' if vwerk.endswith('000') else '2'}00",
               "VKGRP": choice(("101", "102", "201")), "KURST": "M", "PRFRE": "X", "KKBER": bukrs,
               "UEBTO": "0.0", "UNTTO": "0.0", "MRNKZ": "", "LOEVM": general_row.get("LOEVM", "")}
        if general_row["KTOKD"] == "0002":  # ship-to only: no pricing or billing in its own right
            row.update({"KALKS": "", "KONDA": "", "PLTYP": "", "KTGRD": "", "ZTERM": ""})
        return row

    def partner(kunnr: str, vkorg: str, parvw: str, parza: int, kunn2: str, defpa: str = "") -> Row:
        return {"MANDT": client, "KUNNR": kunnr, "VKORG": vkorg, "VTWEG": "10", "SPART": "00", "PARVW": parvw,
                "PARZA": str(parza).zfill(3), "KUNN2": kunn2, "DEFPA": defpa}

    payers: dict[str, list[str]] = {b: [] for b in CURRENCY}
    for i in range(n_payers):
        bukrs = plan[i % len(plan)]
        kunnr = str(290001 + i).zfill(10)
        row = general(kunnr, bukrs, "0003", 5000 + i)
        row["NAME2"] = "Central Accounts Payable"
        kna1.append(row)
        knb1.append(company(kunnr, bukrs, row["ERDAT"]))
        knvv.append(sales_data(row, bukrs, knb1[-1]["ZTERM"]))
        knkk.append(credit(kunnr, bukrs, row["ERDAT"], kunnr))
        knvp.extend([partner(kunnr, bukrs, "RE", 0, kunnr), partner(kunnr, bukrs, "RG", 0, kunnr)])
        payers[bukrs].append(kunnr)
    ship_to: dict[str, list[str]] = {b: [] for b in CURRENCY}
    for i in range(n_ship):
        bukrs = plan[i % len(plan)]
        kunnr = str(250001 + i).zfill(10)
        row = general(kunnr, bukrs, "0002", 3000 + i)
        row["NAME2"] = choice(("Goods Receiving", "Warenannahme Tor 3", "Dock 4", "Site Office"))
        kna1.append(row)  # ship-to parties have no company-code or credit data
        knvv.append(sales_data(row, bukrs, ""))
        knvp.append(partner(kunnr, bukrs, "WE", 0, kunnr))
        ship_to[bukrs].append(kunnr)
    sold_to: list[Row] = []
    for i in range(n):
        bukrs = plan[i % len(plan)] if i % 9 else choice(plan)
        kunnr = str(200001 + i).zfill(10)
        row = general(kunnr, bukrs, "0001", i)
        r = rand()
        if r < 0.02:
            row["AUFSD"] = "01"
        elif r < 0.03:
            row["LIFSD"] = "01"
        elif r < 0.04:
            row["FAKSD"] = "01"
        elif r < 0.05:
            row["SPERR"] = "X"
        if rand() < 0.02:
            row["LOEVM"] = "X"
        kna1.append(row)
        knb1.append(company(kunnr, bukrs, row["ERDAT"]))
        knvv.append(sales_data(row, bukrs, knb1[-1]["ZTERM"]))
        payer = kunnr
        if payers[bukrs] and rand() < 0.12:
            payer = choice(payers[bukrs])
        knkk.append(credit(kunnr, bukrs, row["ERDAT"], payer))
        knvp.extend([partner(kunnr, bukrs, "AG", 0, kunnr), partner(kunnr, bukrs, "RE", 0, kunnr),
                     partner(kunnr, bukrs, "RG", 0, payer)])
        if ship_to[bukrs] and rand() < 0.25:
            knvp.extend([partner(kunnr, bukrs, "WE", 0, kunnr),
                         partner(kunnr, bukrs, "WE", 1, choice(ship_to[bukrs]), "X")])
        else:
            knvp.append(partner(kunnr, bukrs, "WE", 0, kunnr))
        sold_to.append(row)
    return {"KNA1": kna1, "KNB1": knb1, "KNKK": knkk, "KNVV": knvv, "KNVP": knvp}, sold_to


_CONTACT_FIRST = ["Anna", "Ben", "Clara", "David", "Emma", "Felix", "Grace", "Henry", "Ines", "Jonas", "Kate",
                  "Lukas", "Mia", "Noah", "Olivia", "Paul", "Sophie", "Tom"]
_CONTACT_LAST = ["Adams", "Becker", "Clarke", "Dietrich", "Evans", "Fischer", "Green", "Hartmann", "Jones",
                 "Keller", "Lang", "Miller", "Neumann", "Owen", "Richter", "Walker"]
#: (ABTNR, ABTPA, PAFKT): department code and text at the customer, function code.
_CONTACT_ROLES = [("0001", "Management", "01"), ("0002", "Purchasing", "02"), ("0002", "Purchasing", "03"),
                  ("0003", "Sales", "04"), ("0006", "Accounting", "05"), ("0007", "Logistics", "06")]


def _hierarchy_and_contacts(rnd: random.Random, client: str, customer_tables: dict[str, list[Row]]
                            ) -> dict[str, list[Row]]:
    """KNVH (customer hierarchy, type A) and KNVK (contact persons), consistent with KNA1/KNVV/KNVP."""
    rand = rnd.random
    kna1 = customer_tables["KNA1"]
    area = {r["KUNNR"]: (r["VKORG"], r["VTWEG"], r["SPART"]) for r in customer_tables["KNVV"]}
    own_payer = {p["KUNNR"] for p in customer_tables["KNVP"] if p["PARVW"] == "RG" and p["KUNN2"] == p["KUNNR"]}
    sold_to = [r for r in kna1 if r["KTOKD"] == "0001" and r["KUNNR"] in own_payer]
    knvh: list[Row] = []

    def node(kunnr: str, parent: str, datab: str, datbi: str = "99991231") -> Row:
        vkorg, vtweg, spart = area[kunnr]
        return {"MANDT": client, "HITYP": "A", "KUNNR": kunnr, "VKORG": vkorg, "VTWEG": vtweg, "SPART": spart,
                "DATAB": datab, "DATBI": datbi, "HKUNNR": parent, "HVKORG": vkorg if parent else "",
                "HVTWEG": vtweg if parent else "", "HSPART": spart if parent else "", "GRPNO": "000",
                "BOKRE": "X", "PRFRE": "X", "HZUOR": "00"}

    tops: dict[str, list[str]] = {}
    for r in reversed(sold_to):  # the last numbers: the first ones stay plain accounts for the scenarios
        a = area[r["KUNNR"]][0]
        if len(tops.setdefault(a, [])) < 3:
            tops[a].append(r["KUNNR"])
            knvh.append(node(r["KUNNR"], "", "20190101"))
    top_set = {k for v in tops.values() for k in v}
    for r in sold_to:
        k = r["KUNNR"]
        if k in top_set or rand() >= 0.15:
            continue
        candidates = tops[area[k][0]]
        parent = candidates[int(rand() * len(candidates))]
        start = f"20{20 + int(rand() * 4)}0{1 + int(rand() * 9)}01"
        if len(candidates) > 1 and rand() < 0.3:  # moved: below another node until the day before
            before = next(c for c in candidates if c != parent)
            knvh.append(node(k, before, "20180101", _d(date(int(start[:4]), int(start[4:6]), 1) - timedelta(days=1))))
        knvh.append(node(k, parent, start))
    knvk: list[Row] = []
    parnr = 500001
    for r in kna1:
        if r["KTOKD"] not in ("0001", "0003"):
            continue
        for _ in range(1 + int(rand() * 3)):
            abtnr, abtpa, pafkt = _CONTACT_ROLES[int(rand() * len(_CONTACT_ROLES))]
            first = _CONTACT_FIRST[int(rand() * len(_CONTACT_FIRST))]
            last = _CONTACT_LAST[int(rand() * len(_CONTACT_LAST))]
            knvk.append({"MANDT": client, "PARNR": str(parnr).zfill(10), "KUNNR": r["KUNNR"], "NAMEV": first,
                         "NAME1": last, "ORT01": r["ORT01"], "ABTPA": abtpa, "ABTNR": abtnr, "PAFKT": pafkt,
                         "TELF1": r.get("TELF1", ""), "ANRED": "Ms." if first in ("Anna", "Clara", "Emma", "Grace",
                                                                                 "Ines", "Kate", "Mia", "Olivia",
                                                                                 "Sophie") else "Mr.",
                         "PARLA": r["SPRAS"], "ERDAT": r["ERDAT"], "ERNAM": "SD_MASTER1",
                         "SORTL": last[:10].upper(), "PRSNR": str(parnr).zfill(10)})
            parnr += 1
    return {"KNVH": knvh, "KNVK": knvk}


# --------------------------------------------------------------------------------------------- sales


def _sales(rnd: random.Random, client: str, n: int, sold_to: list[Row], knvv: list[Row],
           knvp: list[Row]) -> dict[str, list[Row]]:
    rand = rnd.random

    def choice(seq: Sequence[Any]) -> Any:
        return seq[int(rand() * len(seq))]

    vbak: list[Row] = []
    vbap: list[Row] = []
    likp: list[Row] = []
    lips: list[Row] = []
    active = [r for r in sold_to if not r.get("LOEVM") and not r.get("AUFSD")]
    area_of = {(r["KUNNR"], r["VKORG"]): r for r in knvv}
    ship_to: dict[tuple[str, str], str] = {}  # (sold-to, VKORG) -> default ship-to (KNVP WE, DEFPA or first)
    for p in knvp:
        if p["PARVW"] == "WE" and ((p["KUNNR"], p["VKORG"]) not in ship_to or p.get("DEFPA")):
            ship_to[(p["KUNNR"], p["VKORG"])] = p["KUNN2"]
    base = date(2023, 1, 3)
    delivery_nr = 80000001
    for i in range(n):
        cust = choice(active)
        bukrs = {"US": "1000", "DE": "2000", "GB": "3000"}[cust["LAND1"]]
        erdat = base + timedelta(days=i * 720 // max(n, 1))
        vbeln = str(10001 + i).zfill(10)
        area = area_of[(cust["KUNNR"], bukrs)]
        waerk = area["WAERS"]
        werks = area["VWERK"] if rand() < 0.85 else choice(_PLANTS_OF[bukrs])
        header: Row = {"MANDT": client, "VBELN": vbeln, "ERDAT": _d(erdat),
                       "ERZET": f"{8 + int(rand() * 10):02d}{int(rand() * 60):02d}{int(rand() * 60):02d}",
                       "ERNAM": choice(("SD_CLERK01", "SD_CLERK02", "EDI_ORDERS", "MWEBER")), "AUDAT": _d(erdat),
                       "VBTYP": "C", "TRVOG": "0", "AUART": "TA", "WAERK": waerk, "VKORG": bukrs, "VTWEG": "10",
                       "SPART": "00", "VKBUR": f"{bukrs[0]}{'1' if werks.endswith('000') else '2'}00",
                       "VKGRP": area["VKGRP"], "KNUMV": str(5000000 + i).zfill(10),
                       "VDATU": _d(erdat + timedelta(days=7 + int(rand() * 21))), "VPRGR": "1",
                       "KALSM": "RVAA01", "VSBED": area["VSBED"], "BSTNK": f"PO-{int(rand() * 900000) + 100000}",
                       "BSTDK": _d(erdat - timedelta(days=int(rand() * 3))), "KUNNR": cust["KUNNR"],
                       "STWAE": "USD", "KKBER": bukrs, "KNKLI": cust["KUNNR"], "GRUPP": "0001",
                       "CTLPC": choice(("001", "002", "003")), "CMWAE": waerk, "BUKRS_VF": bukrs, "TAXK1": "1",
                       "OBJNR": f"VB{vbeln}", "AEDAT": "00000000"}
        if rand() < 0.3:
            header["AEDAT"] = _d(erdat + timedelta(days=1 + int(rand() * 20)))
        blocked = rand() < 0.03
        if blocked:
            header["LIFSK"] = choice(("01", "Z1"))
        total = Decimal(0)
        order_items: list[Row] = []
        n_items = choice((1, 1, 2, 2, 3, 3, 4, 5, 6))
        for j in range(n_items):
            matnr, text, price_base = choice(_FINISHED)
            qty = Decimal(1 + int(rand() * 50))
            price = _money(price_base * (0.9 + rand() * 0.2))
            netwr = _money(qty * price)
            item: Row = {"MANDT": client, "VBELN": vbeln, "POSNR": str((j + 1) * 10).zfill(6),
                         "MATNR": str(matnr).zfill(18), "MATWA": str(matnr).zfill(18), "MATKL": "FERT01",
                         "ARKTX": text, "PSTYV": "TAN", "LFREL": "X", "FKREL": "A", "MEINS": "ST",
                         "SPART": "00", "NETWR": f"{netwr:.2f}", "WAERK": waerk, "KWMENG": f"{qty:.3f}",
                         "VRKME": "ST", "BRGEW": f"{qty * Decimal('12.500'):.3f}",
                         "NTGEW": f"{qty * Decimal('11.800'):.3f}", "GEWEI": "KG", "WERKS": werks, "LGORT": "0001",
                         "VSTEL": werks, "ERDAT": header["ERDAT"], "ERNAM": header["ERNAM"],
                         "ERZET": header["ERZET"], "TAXM1": "1", "NETPR": f"{price:.2f}", "KPEIN": "1",
                         "KMEIN": "ST", "PRCTR": f"00000{werks}0", "UMZIZ": "1", "UMZIN": "1",
                         "UEBTO": "0.0", "UNTTO": "0.0",
                         "MWSBP": f"{_money(netwr * Decimal('0.19' if bukrs == '2000' else '0.07')):.2f}"}
            if rand() < 0.02:
                item["ABGRU"] = "02"  # rejected: not delivered, not in the order value
            else:
                total += netwr
                order_items.append(item)
            vbap.append(item)
        header["NETWR"] = f"{total:.2f}"
        header["AMTBL"] = f"{total:.2f}"
        vbak.append(header)
        if blocked or erdat > date(2024, 12, 20) or rand() < 0.12 or not order_items:
            continue
        created = erdat + timedelta(days=1 + int(rand() * 4))
        wadat = created + timedelta(days=1 + int(rand() * 3))
        delivery: Row = {"MANDT": client, "VBELN": str(delivery_nr).zfill(10), "ERNAM": "SD_SHIP01",
                         "ERZET": "061500", "ERDAT": _d(created), "VSTEL": werks, "VKORG": bukrs, "LFART": "LF",
                         "WADAT": _d(wadat), "LDDAT": _d(wadat), "TDDAT": _d(wadat), "KODAT": _d(wadat),
                         "LFDAT": _d(wadat + timedelta(days=2)), "INCO1": area["INCO1"],
                         "INCO2": area["INCO2"], "VBTYP": "J", "LPRIO": area["LPRIO"], "VSBED": header["VSBED"],
                         "KUNNR": ship_to.get((cust["KUNNR"], bukrs), cust["KUNNR"]), "KUNAG": cust["KUNNR"],
                         "GEWEI": "KG",
                         "ANZPK": str(1 + int(rand() * 9)).zfill(5), "TRAGR": "0001", "FKARV": "F2",
                         "WAERK": waerk, "VKBUR": header["VKBUR"], "AEDAT": "00000000", "WADAT_IST": "00000000"}
        if wadat < date(2024, 12, 15):
            delivery["WADAT_IST"] = _d(wadat)
            delivery["AEDAT"] = _d(wadat)
            delivery["AENAM"] = "SD_SHIP01"
            delivery["FKDAT"] = _d(wadat)
        btgew = ntgew = Decimal(0)
        for it in order_items:  # one delivery item per order item that is not rejected, full quantity
            btgew += Decimal(it["BRGEW"])
            ntgew += Decimal(it["NTGEW"])
            lips.append({"MANDT": client, "VBELN": delivery["VBELN"], "POSNR": it["POSNR"], "PSTYV": "TAN",
                         "ERNAM": "SD_SHIP01", "ERZET": "061500", "ERDAT": delivery["ERDAT"], "MATNR": it["MATNR"],
                         "MATWA": it["MATWA"], "MATKL": it["MATKL"], "WERKS": it["WERKS"], "LGORT": it["LGORT"],
                         "LFIMG": it["KWMENG"], "MEINS": it["MEINS"], "VRKME": it["VRKME"], "UMVKZ": "1",
                         "UMVKN": "1", "NTGEW": it["NTGEW"], "BRGEW": it["BRGEW"], "GEWEI": it["GEWEI"],
                         "VOLUM": "0.000", "UEBTO": "0.0", "UNTTO": "0.0", "MBDAT": delivery["WADAT"],
                         "LGMNG": it["KWMENG"], "ARKTX": it["ARKTX"], "VGBEL": vbeln, "VGPOS": it["POSNR"],
                         "VBELV": vbeln, "POSNV": it["POSNR"], "VBTYV": "C", "FKREL": "A", "LADGR": "0001",
                         "TRAGR": "0001", "BWART": "601", "VGTYP": "C", "MTART": "FERT",
                         "SPART": it["SPART"], "VTWEG": header["VTWEG"], "VKBUR": header["VKBUR"],
                         "VKGRP": header["VKGRP"], "PRCTR": it["PRCTR"],
                         "AEDAT": delivery["AEDAT"]})
        delivery["BTGEW"] = f"{btgew:.3f}"
        delivery["NTGEW"] = f"{ntgew:.3f}"
        likp.append(delivery)
        delivery_nr += 1
    return {"VBAK": vbak, "VBAP": vbap, "LIKP": likp, "LIPS": lips}


# --------------------------------------------------------------------------------------------- changes


def _as_dats(value: date | str | None, data: EccData) -> str:
    if value is None:
        return data.clock().strftime("%Y%m%d")
    if isinstance(value, date):
        return _d(value)
    return value


def _write_change_document(data: EccData, client: str, objectclas: str, objectid: str, tcode: str,
                           udate: str, items: list[tuple[str, str, str, str, str]]) -> str:
    """CDHDR + CDPOS rows; items are (TABNAME, TABKEY, FNAME, OLD, NEW)."""
    now: datetime = data.clock()
    changenr = data._next_changenr(client)
    data.store("CDHDR", client).insert({"MANDT": client, "OBJECTCLAS": objectclas, "OBJECTID": objectid,
                                        "CHANGENR": changenr, "USERNAME": data.change_user, "UDATE": udate,
                                        "UTIME": now.strftime("%H%M%S"), "TCODE": tcode, "CHANGE_IND": "U",
                                        "LANGU": "E"})
    pos = data.store("CDPOS", client)
    for tabname, tabkey, fname, old, new in items:
        pos.insert({"MANDT": client, "OBJECTCLAS": objectclas, "OBJECTID": objectid, "CHANGENR": changenr,
                    "TABNAME": tabname, "TABKEY": tabkey, "FNAME": fname, "CHNGIND": "U",
                    "VALUE_OLD": old[:254], "VALUE_NEW": new[:254]})
    return changenr


def _update(data: EccData, table: str, key: tuple[str, ...], fields: dict[str, Any], client: str,
            tabkey: str) -> list[tuple[str, str, str, str, str]]:
    t = ddic.table(table)
    assert t is not None
    row = data.store(table, client).get(key)
    if row is None:
        raise KeyError(f"{table} {key} not found")
    items = []
    for name, value in fields.items():
        f = t.field(name)
        if f is None or f.keyflag:
            raise KeyError(f"{table}-{name.upper()} is not a changeable field")
        new = "" if value is None else str(value)
        old = row.get(f.fieldname) or ""
        if new != old:
            items.append((table, tabkey, f.fieldname, old, new))
            row[f.fieldname] = new
    return items


def change_purchase_order(data: EccData, ebeln: str, *, aedat: date | str | None = None,
                          client: str = DEFAULT_CLIENT, items: dict[str, dict[str, Any]] | None = None,
                          **fields: Any) -> str:
    """Change a PO as ME22N does: header `fields`, item fields per EBELP in `items`; EKKO-AEDAT and
    the changed items' EKPO-AEDAT become `aedat` (default: today). Writes change document
    EINKBELEG; returns the change number."""
    day = _as_dats(aedat, data)
    with data.lock:
        changes = _update(data, "EKKO", (ebeln,), {**fields, "AEDAT": day}, client, client + ebeln)
        for ebelp, item_fields in (items or {}).items():
            ebelp = ebelp.zfill(5)
            changes += _update(data, "EKPO", (ebeln, ebelp), {**item_fields, "AEDAT": day}, client,
                               client + ebeln + ebelp)
        return _write_change_document(data, client, "EINKBELEG", ebeln, "ME22N", day, changes)


def change_sales_order(data: EccData, vbeln: str, *, aedat: date | str | None = None,
                       client: str = DEFAULT_CLIENT, **fields: Any) -> str:
    """Change a sales order header as VA02 does (VBAK-AEDAT; change document VERKBELEG)."""
    day = _as_dats(aedat, data)
    with data.lock:
        changes = _update(data, "VBAK", (vbeln,), {**fields, "AEDAT": day}, client, client + vbeln)
        return _write_change_document(data, client, "VERKBELEG", vbeln, "VA02", day, changes)


def change_delivery(data: EccData, vbeln: str, *, aedat: date | str | None = None,
                    client: str = DEFAULT_CLIENT, **fields: Any) -> str:
    """Change a delivery header as VL02N does (LIKP-AEDAT; change document LIEFERUNG)."""
    day = _as_dats(aedat, data)
    with data.lock:
        changes = _update(data, "LIKP", (vbeln,), {**fields, "AEDAT": day, "AENAM": data.change_user},
                          client, client + vbeln)
        return _write_change_document(data, client, "LIEFERUNG", vbeln, "VL02N", day, changes)


def change_customer(data: EccData, kunnr: str, *, bukrs: str | None = None, udate: date | str | None = None,
                    client: str = DEFAULT_CLIENT, **fields: Any) -> str | None:
    """Change KNA1 (or KNB1 for `bukrs`) fields as XD02 does: change document DEBI (KNA1 has no
    change date of its own). Returns the change number, or None when nothing changed."""
    table, key = ("KNB1", (kunnr, bukrs)) if bukrs else ("KNA1", (kunnr,))
    with data.lock:
        changes = _update(data, table, key, fields, client, client + kunnr + (bukrs or ""))
        if not changes:
            return None
        return _write_change_document(data, client, "DEBI", kunnr, "XD02", _as_dats(udate, data), changes)


def create_purchase_order(data: EccData, *, bukrs: str, lifnr: str, items: Sequence[dict[str, Any]],
                          waers: str | None = None, ebeln: str | None = None, bedat: date | str | None = None,
                          client: str = DEFAULT_CLIENT) -> str:
    """A purchase order as ME21N creates it, for tests and demos: EKKO + one EKPO per item
    ({ebelp?, txz01, menge, netpr, meins?, peinh?, werks?, knttp?}; NETWR = MENGE x NETPR / PEINH).
    `ebeln` defaults to the next free number from 4500900001; returns it."""
    day = _as_dats(bedat, data)
    with data.lock:
        if ebeln is None:
            taken = {r["EBELN"] for r in data.store("EKKO", client).rows}
            ebeln = next(str(n) for n in range(4500900001, 4599999999) if str(n) not in taken)
        ebeln = ebeln.zfill(10)
        if data.store("EKKO", client).get((ebeln,)) is not None:
            raise ValueError(f"purchase order {ebeln} exists")
        werks = next((p.werks for p in PLANTS if p.bukrs == bukrs), "")
        currency = waers or CURRENCY.get(bukrs, "USD")
        total = Decimal(0)
        rows: list[Row] = []
        for i, it in enumerate(items, start=1):
            ebelp = str(it.get("ebelp") or i * 10).zfill(5)
            menge, netpr = Decimal(str(it["menge"])), Decimal(str(it["netpr"]))
            peinh = int(it.get("peinh") or 1)
            netwr = _money(menge * netpr / peinh)
            total += netwr
            rows.append({"MANDT": client, "EBELN": ebeln, "EBELP": ebelp, "AEDAT": day, "BUKRS": bukrs,
                         "WERKS": str(it.get("werks") or werks), "TXZ01": str(it.get("txz01") or f"Item {i}"),
                         "MENGE": f"{menge:.3f}", "MEINS": str(it.get("meins") or "EA"),
                         "BPRME": str(it.get("meins") or "EA"), "NETPR": f"{netpr:.2f}", "PEINH": str(peinh),
                         "NETWR": f"{netwr:.2f}", "BRTWR": f"{netwr:.2f}", "EFFWR": f"{netwr:.2f}",
                         "KNTTP": str(it.get("knttp") or ""), "PSTYP": "0", "BSTYP": "F", "REPOS": "X",
                         "WEPOS": "X", "MWSKZ": _TAX.get(bukrs, ""), "PRDAT": day})
        data.store("EKKO", client).insert({
            "MANDT": client, "EBELN": ebeln, "BUKRS": bukrs, "BSTYP": "F", "BSART": "NB", "STATU": "9",
            "AEDAT": day, "ERNAM": data.change_user, "PINCR": "00010", "LPONR": rows[-1]["EBELP"] if rows else "",
            "LIFNR": lifnr.zfill(10) if lifnr.isdigit() else lifnr, "ZTERM": "NT30", "EKORG": bukrs,
            "EKGRP": "001", "WAERS": currency, "WKURS": "1.00000", "BEDAT": day, "RLWRT": f"{total:.2f}"})
        for r in rows:
            data.store("EKPO", client).insert({k: v for k, v in r.items() if v != ""})
    return ebeln
