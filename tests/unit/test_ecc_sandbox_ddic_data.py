"""DDIC model and the in-memory database (seed, mutation API, change documents)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from ml_connector.core.providers import fact
from ml_connector.systems.sap_ecc.sandbox import ddic
from ml_connector.systems.sap_ecc.sandbox.data import EccData, alpha_in, generate_vendors


def test_ddic_field_facts() -> None:
    lfa1 = ddic.table("lfa1")
    assert lfa1 is not None
    assert lfa1.field_names[:4] == ("MANDT", "LIFNR", "LAND1", "NAME1")
    assert [f.fieldname for f in lfa1.key_fields] == ["MANDT", "LIFNR"]
    f = lfa1.field("NAME1")
    assert f is not None and (f.inttype, f.leng, f.keyflag) == ("C", 35, False)
    erdat = lfa1.field("ERDAT")
    assert erdat is not None and (erdat.inttype, erdat.leng) == ("D", 8)
    for name, leng in [("STCD1", 16), ("STCD2", 11), ("STCEG", 20), ("TELF1", 16), ("KTOKK", 4),
                       ("PSTLZ", 10), ("REGIO", 3)]:
        fld = lfa1.field(name)
        assert fld is not None and fld.leng == leng, name
    t000 = ddic.table("T000")
    assert t000 is not None and not t000.client_dependent
    assert t000.field_names[:6] == ("MANDT", "MTEXT", "ORT01", "MWAER", "ADRNR", "CCCATEGORY")
    cdpos = ddic.table("CDPOS")
    assert cdpos is not None and cdpos.width == 774 > 512  # the PyRFC issue #42 example
    lfb1 = ddic.table("LFB1")
    assert lfb1 is not None and lfb1.data_key_fields == ("LIFNR", "BUKRS")
    assert ddic.table("ZZNOPE") is None
    assert ddic.table("BAPIRET2") is not None and ddic.table("BAPIRET2").kind == "INTTAB"  # type: ignore[union-attr]


def test_register_table_extends_ddic() -> None:
    t = ddic.register_table("ZSANDBOX_T", [("MANDT", "C", 3, 0, True, "Client"),
                                           ("K", "C", 4, 0, True, "Key")])
    assert ddic.table("zsandbox_t") is t and t.data_key_fields == ("K",)


def test_seed_is_deterministic_realistic_and_fast() -> None:
    a1, b1 = generate_vendors(400, seed=7)
    a2, b2 = generate_vendors(400, seed=7)
    assert a1 == a2 and b1 == b2
    assert generate_vendors(400, seed=8)[0] != a1
    d = EccData()
    d.seed_vendors(3000)
    rows = d.rows("LFA1")
    assert len(rows) == 3000
    assert rows[0]["LIFNR"] == "0000100001" and rows[-1]["LIFNR"] == "0000103000"
    assert all(len(r["LIFNR"]) == 10 and r["MANDT"] == "100" for r in rows)
    assert all(len(r["NAME1"]) <= 35 for r in rows)
    names = [r["NAME1"] for r in rows]
    assert any("|" in n for n in names)
    assert any(len(n) == 35 for n in names)
    assert any(c in n for n in names for c in "äöüß")
    assert sum(r.get("LOEVM") == "X" for r in rows) > 30
    assert any(r.get("SPERR") == "X" for r in rows)
    assert {r["LAND1"] for r in rows} >= {"US", "DE", "GB"}
    assert any(r.get("STCEG", "").startswith("DE") for r in rows)
    lfb1 = d.rows("LFB1")
    assert {r["BUKRS"] for r in lfb1} == {"1000", "2000", "3000"}
    assert len(lfb1) > 3000  # some vendors are extended to a second company code
    assert all(len(r["ZTERM"]) <= 4 for r in lfb1)
    start = time.process_time()  # CPU time: other processes on a busy CI box do not count
    big = EccData()
    big.seed_vendors(50000)
    assert time.process_time() - start < 2.0
    assert big.count("LFA1") == 50000


def test_update_vendor_writes_change_documents() -> None:
    now = datetime(2024, 5, 17, 13, 45, 10, tzinfo=UTC)
    d = EccData(clock=lambda: now)
    d.seed_vendors(50)
    old = d.get("LFA1", ("0000100007",))
    assert old is not None
    nr = d.update_vendor("100007", NAME1="Neuer Name GmbH", TELF1="+49 89 1234")
    assert nr == "0000000001"
    assert d.get("LFA1", ("0000100007",))["NAME1"] == "Neuer Name GmbH"  # type: ignore[index]
    [hdr] = d.rows("CDHDR")
    assert hdr["OBJECTCLAS"] == "KRED" and hdr["OBJECTID"] == "0000100007" and hdr["CHANGENR"] == nr
    assert (hdr["UDATE"], hdr["UTIME"]) == ("20240517", "134510")
    assert (hdr["CHANGE_IND"], hdr["TCODE"]) == ("U", "XK02")
    pos = {r["FNAME"]: r for r in d.rows("CDPOS")}
    assert set(pos) == {"NAME1", "TELF1"}
    assert pos["NAME1"]["VALUE_OLD"] == old["NAME1"] and pos["NAME1"]["VALUE_NEW"] == "Neuer Name GmbH"
    assert pos["NAME1"]["TABNAME"] == "LFA1" and pos["NAME1"]["TABKEY"] == "1000000100007"
    assert pos["NAME1"]["CHNGIND"] == "U"
    # no change -> no change document
    assert d.update_vendor("100007", NAME1="Neuer Name GmbH") is None
    # next change number increases
    assert d.flag_vendor_for_deletion("0000100008") == "0000000002"
    assert d.get("LFA1", ("0000100008",))["LOEVM"] == "X"  # type: ignore[index]
    hdrs = d.rows("CDHDR")
    assert [h["CHANGENR"] for h in hdrs] == ["0000000001", "0000000002"] and hdrs[1]["TCODE"] == "XK06"
    with pytest.raises(KeyError):
        d.update_vendor("999999", NAME1="x")
    with pytest.raises(KeyError):
        d.update_vendor("100007", NOPE="x")
    with pytest.raises(ValueError):
        d.update_vendor("100007", NAME1="x" * 36)


def test_update_vendor_company_code_and_create() -> None:
    d = EccData()
    d.seed_vendors(10)
    lfb1 = d.rows("LFB1")[0]
    nr = d.update_vendor(lfb1["LIFNR"], bukrs=lfb1["BUKRS"], ZTERM="NT99")
    assert nr is not None
    pos = [p for p in d.rows("CDPOS") if p["CHANGENR"] == nr]
    assert [(p["TABNAME"], p["FNAME"], p["VALUE_NEW"]) for p in pos] == [("LFB1", "ZTERM", "NT99")]
    assert pos[0]["TABKEY"] == "100" + lfb1["LIFNR"] + lfb1["BUKRS"]
    lifnr = d.create_vendor(name1="Brand New Vendor Inc.", land1="US", bukrs=["1000", "3000"])
    assert lifnr == "0000100011"
    assert d.get("LFB1", (lifnr, "3000")) is not None
    [hdr] = [h for h in d.rows("CDHDR") if h["OBJECTID"] == lifnr]
    assert hdr["CHANGE_IND"] == "I"
    items = [p for p in d.rows("CDPOS") if p["CHANGENR"] == hdr["CHANGENR"]]
    assert {(p["TABNAME"], p["FNAME"], p["CHNGIND"]) for p in items} == {("LFA1", "KEY", "I"),
                                                                          ("LFB1", "KEY", "I")}
    assert alpha_in("42") == "0000000042" and alpha_in("ABC") == "ABC"


def test_provider_yaml_facts() -> None:
    assert fact("sap_ecc", "transport", "paths", "rfc") == "/sap/bc/soap/rfc"
    assert fact("sap_ecc", "read_table", "row_width") == 512
    assert fact("sap_ecc", "read_table", "options_line_length") == 72
    assert fact("sap_ecc", "rate_limit", "max_concurrent") == 8
    assert fact("sap_ecc", "retry", "max_retries") == 5  # 6 attempts
    assert fact("sap_ecc", "ping", "calls") == ["RFC_PING", "RFC_SYSTEM_INFO"]
    assert fact("sap_ecc", "sandbox", "sid") == "ECD"
