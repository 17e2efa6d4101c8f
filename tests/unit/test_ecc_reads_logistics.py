"""Logistics tables of the ECC sandbox read through TableReader: seed invariants, DEC/FLTP quirks,
column groups, the table catalogue, incremental reads with overlap and dedupe, packages.

The reader talks to the sandbox's function modules in-process (no HTTP): `DirectCaller`."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date, datetime
from decimal import Decimal

import pytest

from ml_connector.systems.sap_ecc import incremental as inc
from ml_connector.systems.sap_ecc.sandbox import ddic
from ml_connector.systems.sap_ecc.sandbox.data import EccData
from ml_connector.systems.sap_ecc.sandbox.functions import (
    SandboxConfig,
    _render_float,
    _render_packed,
)
from ml_connector.systems.sap_ecc.sandbox.seed_logistics import (
    COST_CENTERS,
    change_customer,
    change_purchase_order,
    change_sales_order,
    controlling_area,
    cost_centers_of,
    seed_logistics,
)
from ml_connector.systems.sap_ecc.table_reader import FieldValueError, TableReader, parse_packed
from ml_connector.systems.sap_ecc.tables import CATALOGUE, table_info
from tests.support.ecc_data import DirectCaller, all_rows, fresh_data

CLIENT = "100"


@pytest.fixture(scope="module")
def data() -> EccData:
    d = EccData(clients=(CLIENT,))
    d.seed_vendors(800, 42, client=CLIENT)
    seed_logistics(d, seed=42, client=CLIENT)
    return d


# ------------------------------------------------------------------------------------------ seed


def test_seed_is_deterministic() -> None:
    # Not timed here (tests do not time things; a shared machine made a wall-time bound flaky).
    a, b = EccData(), EccData()
    a.seed_vendors(300, 3)
    b.seed_vendors(300, 3)
    counts = seed_logistics(a, seed=3)
    seed_logistics(b, seed=3)
    for table in counts:
        assert a.rows(table) == b.rows(table), table
    assert counts["EKPO"] >= 3000 and counts["EKKO"] == 900 and counts["KNA1"] > 600


def test_plants_company_codes_and_cost_centers(data: EccData) -> None:
    plants = {r["WERKS"]: r for r in data.rows("T001W")}
    assert sorted(plants) == ["1000", "1100", "1200", "2000", "2100", "3000", "3100"]
    t001k = {r["BWKEY"]: r["BUKRS"] for r in data.rows("T001K")}
    assert t001k == {"1000": "1000", "1100": "1000", "1200": "1000", "2000": "2000", "2100": "2000",
                     "3000": "3000", "3100": "3000"}
    assert {plants[w]["LAND1"] for w in ("1000", "1100", "1200")} == {"US"}
    assert {plants[w]["LAND1"] for w in ("3000", "3100")} == {"GB"}
    # cost centers come from sandbox/fi.py (CSKS per company code, one controlling area each)
    assert {r["BUKRS"]: r["KOKRS"] for r in data.rows("TKA02")} == {"1000": "1000", "2000": "2000", "3000": "3000"}
    assert controlling_area("2000") == "2000"
    assert "0000001000" in COST_CENTERS and "0000003610" in COST_CENTERS and len(set(COST_CENTERS)) == len(COST_CENTERS)
    assert set(cost_centers_of("2000")) == {"0000002000", "0000002100", "0000002300", "0000002500", "0000002610",
                                            "0000002700"}
    assert cost_centers_of("2000", "20240101") == ("0000002000", "0000002100", "0000002300", "0000002500",
                                                   "0000002610")  # 2700 is valid from 2030
    assert cost_centers_of("3100") == ("0000003610",)


def test_purchasing_invariants(data: EccData) -> None:
    ekko = {r["EBELN"]: r for r in data.rows("EKKO")}
    ekpo = data.rows("EKPO")
    ekkn = data.rows("EKKN")
    vendors = {(r["LIFNR"], r["BUKRS"]) for r in data.rows("LFB1")}
    plant_bukrs = {r["BWKEY"]: r["BUKRS"] for r in data.rows("T001K")}
    for h in ekko.values():
        assert len(h["EBELN"]) == 10 and h["EBELN"].startswith("45")
        assert (h["LIFNR"], h["BUKRS"]) in vendors
        assert len(h["AEDAT"]) == 8 and h["AEDAT"] >= "20230101" and h["BEDAT"] == h["AEDAT"]
    by_item = defaultdict(list)
    for a in ekkn:
        by_item[(a["EBELN"], a["EBELP"])].append(a)
        assert len(a["ZEKKN"]) == 2 and a["KOKRS"] == controlling_area(a["GSBER"])
    knttp = Counter(i["KNTTP"] for i in ekpo)
    assert knttp["K"] > 500 and knttp[""] > 1500 and knttp["F"] > 0
    for i in ekpo:
        assert len(i["EBELP"]) == 5 and i["EBELP"].endswith("0") and i["EBELN"] in ekko
        assert plant_bukrs[i["WERKS"]] == i["BUKRS"] == ekko[i["EBELN"]]["BUKRS"]
        assert Decimal(i["NETWR"]) == (Decimal(i["MENGE"]) * Decimal(i["NETPR"]) / int(i["PEINH"])).quantize(
            Decimal("0.01"))
        if i.get("MATNR"):
            assert len(i["MATNR"]) == 18 and i["MATNR"].isdigit()
        assigned = by_item.get((i["EBELN"], i["EBELP"]), [])
        if i["KNTTP"]:
            assert assigned and sum(Decimal(a["NETWR"]) for a in assigned) == Decimal(i["NETWR"])
        else:
            assert not assigned
        if i["KNTTP"] == "K":
            plant_centers = cost_centers_of(i["WERKS"], i["AEDAT"])
            assert all(a["KOSTL"] in plant_centers for a in assigned if len(plant_centers) >= 2 or len(assigned) == 1)
            assert all(len(a["SAKTO"]) == 10 and a["SAKTO"].isdigit() for a in assigned)
            if len(assigned) > 1:
                assert i["VRTKZ"] == "2" and sum(Decimal(a["VPROZ"]) for a in assigned) == 100
    assert any(h["WKURS"].startswith("-") for h in ekko.values())  # indirect quotation


def test_customer_and_partner_invariants(data: EccData) -> None:
    kna1 = {r["KUNNR"]: r for r in data.rows("KNA1")}
    assert all(len(k) == 10 and k.isdigit() for k in kna1)
    knvp = data.rows("KNVP")
    assert {r["PARVW"] for r in knvp} == {"AG", "WE", "RE", "RG"}  # internal codes, never SP/SH/BP/PY
    funcs: dict[str, set[str]] = defaultdict(set)
    for r in knvp:
        assert r["KUNN2"] in kna1 and len(r["PARZA"]) == 3 and r["VTWEG"] == "10"
        funcs[r["KUNNR"]].add(r["PARVW"])
    for kunnr, row in kna1.items():
        expected = {"0001": {"AG", "WE", "RE", "RG"}, "0002": {"WE"}, "0003": {"RE", "RG"}}[row["KTOKD"]]
        assert funcs[kunnr] == expected, kunnr
    knkk = data.rows("KNKK")
    assert {r["KUNNR"] for r in knkk} == {r["KUNNR"] for r in data.rows("KNB1")}
    assert any(Decimal(r["SKFOR"]) < 0 for r in knkk) and any(r.get("CRBLB") == "X" for r in knkk)
    assert all(r["KNKLI"] in kna1 and Decimal(r["KLIMK"]) > 0 for r in knkk)


def test_sales_and_delivery_invariants(data: EccData) -> None:
    vbak = {r["VBELN"]: r for r in data.rows("VBAK")}
    kna1 = {r["KUNNR"]: r for r in data.rows("KNA1")}
    assert {r["AUART"] for r in vbak.values()} == {"TA"} and {r["VBTYP"] for r in vbak.values()} == {"C"}
    assert any(r["AEDAT"] == "00000000" for r in vbak.values()) and any(r["AEDAT"] > r["ERDAT"] for r in vbak.values())
    totals: Counter[str] = Counter()
    for i in data.rows("VBAP"):
        assert len(i["POSNR"]) == 6 and i["VRKME"] == "ST"
        if not i.get("ABGRU"):
            totals[i["VBELN"]] += Decimal(i["NETWR"])  # type: ignore[assignment]
    assert all(Decimal(h["NETWR"]) == totals[v] for v, h in vbak.items())
    likp = data.rows("LIKP")
    assert len(likp) > 800 and all(r["VBELN"].startswith("008") and r["KUNAG"] in kna1 for r in likp)
    assert any(r["WADAT_IST"] == "00000000" for r in likp) and any(r["WADAT_IST"] != "00000000" for r in likp)


# ------------------------------------------------------------------------------------------ DEC / FLTP


@pytest.mark.parametrize(("value", "leng", "dec", "minus_last", "out"), [
    ("-1234.56", 13, 2, True, "     1234.56-"),
    ("-1234.56", 13, 2, False, "     -1234.56"),
    ("1234.56", 13, 2, True, "     1234.56 "),
    ("0.0", 3, 1, True, "0.0"),  # the blank sign position goes first
    ("50.0", 3, 1, True, "*.0"),  # then the value is cut on the left, '*' marks it
    ("-5.5", 3, 1, True, "*5-"),
    ("1.08000", 9, 5, True, " 1.08000 "),
    ("-1.08000", 9, 5, True, " 1.08000-"),
])
def test_packed_rendering_follows_move_p_to_c(value: str, leng: int, dec: int, minus_last: bool, out: str) -> None:
    assert _render_packed(value, leng, dec, minus_last) == out


def test_float_rendering_is_scientific_and_shortened() -> None:
    assert _render_float("1234.5", 16) == "1.2345000000E+03"
    assert _render_float("-0.00012", 24) == "-1.2000000000000000E-04".rjust(24)
    assert _render_float("1e300", 3) == "  *"
    for s in ("1.2345000000E+03", "1234.56-", "-1234.56", " 12.50 "):
        parse_packed(s)
    assert parse_packed("1234.56-") == Decimal("-1234.56") == parse_packed("-1234.56")
    assert parse_packed("1.2345000000E+03") == Decimal("1234.5")
    with pytest.raises(ValueError):
        parse_packed("*.0")


@pytest.mark.parametrize("minus_last", [True, False])
def test_reader_parses_negative_packed_and_float(minus_last: bool) -> None:
    d = fresh_data()
    ddic.register_table("ZML_FLTP_TEST", [("MANDT", "C", 3, 0, True, "Client"), ("ID", "C", 4, 0, True, "Id"),
                                          ("RATIO", "F", 16, 0, False, "Ratio (FLTP)"),
                                          ("AMOUNT", "P", 13, 2, False, "Amount")])
    d.insert("ZML_FLTP_TEST", {"ID": "A", "RATIO": "-1234.5", "AMOUNT": "-1234.56"}, CLIENT)
    d.insert("ZML_FLTP_TEST", {"ID": "B", "RATIO": "0.125", "AMOUNT": "99.5"}, CLIENT)
    caller = DirectCaller(d, SandboxConfig(packed_trailing_minus=minus_last))
    reader = TableReader(caller)
    rows = {r["ID"]: r for r in all_rows(reader.read("ZML_FLTP_TEST", key_fields=["ID"]))}
    assert Decimal(rows["A"]["AMOUNT"]) == Decimal("-1234.56") and rows["A"]["AMOUNT"] == "-1234.56"
    assert Decimal(rows["A"]["RATIO"]) == Decimal("-1234.5") and Decimal(rows["B"]["RATIO"]) == Decimal("0.125")
    assert rows["B"]["AMOUNT"] == "99.50"
    knkk = d.rows("KNKK")
    negative = next(r for r in knkk if Decimal(r["SKFOR"]) < 0)
    got = all_rows(reader.read("KNKK", ["SKFOR", "KLIMK"], key_fields=["KUNNR", "KKBER"],
                           where=f"KUNNR = '{negative['KUNNR']}'"))
    assert Decimal(got[0]["SKFOR"]) == Decimal(negative["SKFOR"]) < 0


def test_dec_overflow_is_refused_naming_table_and_field(data: EccData) -> None:
    reader = TableReader(DirectCaller(data))
    split = next(r for r in data.rows("EKKN") if r["VPROZ"] != "0.0")
    where = f"EBELN = '{split['EBELN']}'"
    with pytest.raises(FieldValueError) as ei:
        all_rows(reader.read("EKKN", ["KOSTL", "VPROZ"], key_fields=["EBELN", "EBELP", "ZEKKN"], where=where))
    msg = str(ei.value)
    assert ei.value.table == "EKKN" and ei.value.field == "VPROZ" and "EKKN-VPROZ" in msg
    assert "*" in ei.value.value and "/BODS/RFC_READ_TABLE" in msg and "Z extractor" in msg
    # the catalogue knows: read without the field and the rows come through
    info = table_info("EKKN")
    fields = info.read_fields([f.name for f in reader.describe("EKKN")])
    rows = all_rows(reader.read("EKKN", fields, key_fields=info.key_fields, where=where))
    assert rows and "VPROZ" not in rows[0]


# ------------------------------------------------------------------------------------------ catalogue, width


def test_catalogue_matches_the_sandbox_ddic() -> None:
    for name, info in CATALOGUE.items():
        t = ddic.table(name)
        if t is None:
            continue  # FI tables: defined by the FI part of the sandbox
        assert info.key_fields == t.data_key_fields, name
        for f in [*info.change_date_fields, *info.avoid_fields]:
            fld = t.field(f)
            assert fld is not None, (name, f)
        for f in info.change_date_fields:
            assert t.field(f).inttype == "D"  # type: ignore[union-attr]
        assert info.wider_than_512 == (t.width + len(t.fields) - 1 > 512), name
    assert table_info("kna1").incremental == "change_documents" and table_info("VBAK").incremental == "date"
    assert table_info("EKPO").filter("po", ebeln="4500000001") == "EBELN = '4500000001'"
    assert table_info("KNVP").filter("customer", kunnr=200001) == "KUNNR = '0000200001'"
    with pytest.raises(KeyError):
        table_info("ZZZ")


def test_cdpos_full_width_through_column_groups() -> None:
    d = fresh_data()
    change_customer(d, "0000200001", NAME2="c/o Receiving | Dock 7 " + "x" * 10)
    change_purchase_order(d, "4500000002", aedat="20250110", ZTERM="NT45")
    d.update_vendor("0000100001", NAME1="Renamed Vendor " + "y" * 20)
    reader = TableReader(DirectCaller(d))
    cdpos = ddic.table("CDPOS")
    assert cdpos is not None and cdpos.width > 512
    rows = all_rows(reader.read("CDPOS", key_fields=list(cdpos.data_key_fields), page_size=2))
    want = d.rows("CDPOS")
    assert len(rows) == len(want) >= 4
    assert reader.calls >= 1 + 3 * (len(want) // 2)  # per window: key probe + at least 2 column groups
    for got, exp in zip(rows, want, strict=True):
        assert got["VALUE_NEW"] == exp["VALUE_NEW"] and got["OBJECTCLAS"] == exp["OBJECTCLAS"]
        assert set(got) == set(cdpos.field_names)


# ------------------------------------------------------------------------------------------ incremental


def test_incremental_by_change_date_with_overlap_and_dedupe() -> None:
    d = fresh_data()
    reader = TableReader(DirectCaller(d))
    info = table_info("EKKO")
    first_cursor = inc.ChangeCursor(since=date(2024, 12, 1))
    first = [r for p in inc.read_incremental(reader, "EKKO", cursor=first_cursor, package_size=40, page_size=15)
             for r in p]
    expected = {r["EBELN"] for r in d.rows("EKKO") if r["AEDAT"] >= "20241130"}
    assert {r["EBELN"] for r in first} == expected and len(first) == len(expected) > 0
    assert first_cursor.since == max(date.fromisoformat(f"{a[:4]}-{a[4:6]}-{a[6:]}") for a in
                                     (r["AEDAT"] for r in first))
    # nothing changed: the overlap re-reads the last day, the dedupe drops it all
    same = inc.ChangeCursor.from_dict(first_cursor.to_dict())
    assert [r for p in inc.read_incremental(reader, "EKKO", cursor=same) for r in p] == []
    # change three POs (later AEDAT), one of them twice; the next run gets exactly those, once
    changed = ["4500000005", "4500000100", "4500000200"]
    change_purchase_order(d, changed[0], aedat="20250201", ZTERM="NT60")
    change_purchase_order(d, changed[1], aedat="20250202", items={"10": {"MENGE": "7.000"}})
    change_purchase_order(d, changed[1], aedat="20250203", EKGRP="002")
    change_purchase_order(d, changed[2], aedat="20250203", FRGKE="R")
    cursor = inc.ChangeCursor.from_dict(first_cursor.to_dict())
    second = [r for p in inc.read_incremental(reader, "EKKO", cursor=cursor, package_size=2, page_size=1)
              for r in p]
    assert sorted(r["EBELN"] for r in second) == changed
    assert cursor.since == date(2025, 2, 3)
    # the item change is visible through EKPO-AEDAT too
    items = [r for p in inc.read_changed(reader, "EKPO", date_field="AEDAT", since=date(2025, 2, 2),
                                         overlap_days=0, key_fields=("EBELN", "EBELP"), fields=["MENGE"]) for r in p]
    assert [(r["EBELN"], r["EBELP"], r["MENGE"]) for r in items] == [(changed[1], "00010", "7.000")]
    # re-run from the same cursor: 02-03 is in the overlap, already delivered -> nothing twice
    again = [r for p in inc.read_incremental(reader, "EKKO", cursor=cursor) for r in p]
    assert again == []
    # a row changed again later is delivered again
    change_purchase_order(d, changed[0], aedat="20250204", ZTERM="0001")
    third = [r["EBELN"] for p in inc.read_incremental(reader, "EKKO", cursor=cursor) for r in p]
    assert third == [changed[0]]
    assert info.change_date_fields == ("AEDAT",)


def test_incremental_with_two_date_fields_vbak() -> None:
    d = fresh_data()
    reader = TableReader(DirectCaller(d))
    since = date(2024, 11, 1)
    rows = [r for p in inc.read_incremental(reader, "VBAK", cursor=since, overlap_days=0, fields=["NETWR"]) for r in p]
    expected = {r["VBELN"] for r in d.rows("VBAK") if r["AEDAT"] >= "20241101" or r["ERDAT"] >= "20241101"}
    assert {r["VBELN"] for r in rows} == expected and len(rows) == len(expected)
    old = next(r for r in d.rows("VBAK") if r["ERDAT"] < "20240101" and r["AEDAT"] == "00000000")
    change_sales_order(d, old["VBELN"], aedat="20250301", LIFSK="01")
    cursor = inc.ChangeCursor(since=date(2025, 3, 1))
    got = [r for p in inc.read_incremental(reader, "VBAK", cursor=cursor, fields=["LIFSK"]) for r in p]
    assert [(r["VBELN"], r["LIFSK"], r["AEDAT"]) for r in got] == [(old["VBELN"], "01", "20250301")]


def test_incremental_by_change_documents_kna1() -> None:
    d = fresh_data()
    reader = TableReader(DirectCaller(d))
    assert change_customer(d, "0000200003", udate="20250105", NAME2="Einkauf") is not None
    assert change_customer(d, "0000200007", udate="20250106", SPERR="X") is not None
    d.update_vendor("0000100002", NAME2="not a customer")  # KRED, must not show up for DEBI
    cursor = inc.ChangeCursor(since=date(2025, 1, 1))
    rows = [r for p in inc.read_incremental(reader, "KNA1", cursor=cursor, fields=["NAME2", "SPERR"]) for r in p]
    assert next((r["KUNNR"], r["NAME2"], r["SPERR"]) for r in rows) == ("0000200003", "Einkauf", "")
    assert [r["KUNNR"] for r in rows] == ["0000200003", "0000200007"]
    assert cursor.since == date(2025, 1, 6)
    assert [r for p in inc.read_incremental(reader, "KNA1", cursor=cursor) for r in p] == []
    change_customer(d, "0000200007", udate="20250106", SPERR="")  # same day, new change document
    again = [r for p in inc.read_incremental(reader, "KNA1", cursor=cursor, fields=["SPERR"]) for r in p]
    assert [(r["KUNNR"], r["SPERR"]) for r in again] == [("0000200007", "")]
    vendors = [r["LIFNR"] for p in inc.read_incremental(reader, "LFA1", cursor=date.today(), fields=["NAME2"])
               for r in p]
    assert vendors == ["0000100002"]


def test_changed_object_ids_to_the_second() -> None:
    """The vendor source's incremental read: KRED change documents at or after a time of day."""
    d = fresh_data()
    reader = TableReader(DirectCaller(d))
    stamps = iter([datetime(2025, 1, 5, 10, 0, 0), datetime(2025, 1, 5, 10, 30, 0), datetime(2025, 1, 6, 8, 0, 0)])
    d.clock = lambda: next(stamps)
    d.update_vendor("0000100002", NAME2="first")
    d.update_vendor("0000100005", NAME2="second")
    change_customer(d, "0000200003", udate="20250106", NAME2="a customer")  # DEBI: not a vendor
    assert inc.changed_object_ids(reader, "KRED", datetime(2025, 1, 5, 10, 0, 0)) == ["0000100002", "0000100005"]
    assert inc.changed_object_ids(reader, "KRED", datetime(2025, 1, 5, 10, 0, 1)) == ["0000100005"]
    assert inc.changed_object_ids(reader, "kred", datetime(2025, 1, 5, 10, 30, 1), page_size=1) == []
    assert inc.changed_object_ids(reader, "DEBI", datetime(2025, 1, 6)) == ["0000200003"]


def test_packages_never_exceed_the_size_and_cover_everything(data: EccData) -> None:
    reader = TableReader(DirectCaller(data))
    sizes = []
    keys = []
    for package in inc.read_packages(reader, "EKPO", key_fields=["EBELN", "EBELP"], fields=["NETWR"],
                                     where="BUKRS = '2000'", package_size=250, page_size=100):
        sizes.append(len(package))
        keys += [(r["EBELN"], r["EBELP"]) for r in package]
    expected = [(r["EBELN"], r["EBELP"]) for r in data.rows("EKPO") if r["BUKRS"] == "2000"]
    assert max(sizes) <= 250 and all(s == 250 for s in sizes[:-1])
    assert sorted(keys) == sorted(expected) and len(set(keys)) == len(keys)
    with pytest.raises(ValueError):
        next(inc.read_packages(reader, "EKPO", key_fields=["EBELN", "EBELP"], package_size=50_001))
    with pytest.raises(ValueError):
        next(inc.read_changed(reader, "EKKO", date_field="AEDAT", since=date(2024, 1, 1), key_fields=["EBELN"],
                              package_size=0))
