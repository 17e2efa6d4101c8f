"""SOAP-RFC endpoint in process (Starlette TestClient): RFC_READ_TABLE semantics, faults, logon."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from lxml import etree

from ml_connector.systems.sap_ecc.sandbox.app import EccSandbox, create_app
from ml_connector.systems.sap_ecc.sandbox.soap import SoapParseError, parse_request
from tests.support.ecc_soap import (
    AUTH,
    RFC_NS,
    call,
    data_of,
    envelope,
    fault,
    fields_of,
    local,
    read_table_body,
    response_el,
    xml,
)


@pytest.fixture(scope="module")
def sandbox() -> EccSandbox:
    return EccSandbox(vendors=3000)


@pytest.fixture
def client(sandbox: EccSandbox) -> Iterator[TestClient]:
    sandbox.faults.reset()
    saved = dict(sandbox.config.__dict__)
    saved["installed_modules"] = set(sandbox.config.installed_modules)
    with TestClient(create_app(sandbox)) as c:
        yield c
    sandbox.config.__dict__.update(saved)


# -- RFC_READ_TABLE -------------------------------------------------------------------------

def test_t000_offsets_match_the_real_capture(client: TestClient) -> None:
    r = call(client, "RFC_READ_TABLE", read_table_body("T000", ["MANDT", "MTEXT", "CCCATEGORY"]))
    assert r.status_code == 200, r.text
    root = xml(r)
    resp = response_el(root)
    assert etree.QName(resp).localname == "RFC_READ_TABLE.Response"
    assert etree.QName(resp).namespace == RFC_NS and resp.prefix == "urn"
    f = fields_of(root)
    assert [(x["FIELDNAME"], x["OFFSET"], x["LENGTH"], x["TYPE"]) for x in f] == [
        ("MANDT", "000000", "000003", "C"), ("MTEXT", "000004", "000025", "C"),
        ("CCCATEGORY", "000030", "000001", "C")]
    assert f[0]["FIELDTEXT"] == "Client"
    rows = data_of(root)
    assert "000|SAP AG                   |S" in rows
    assert sorted(w[:3] for w in rows) == ["000", "001", "066", "100"]  # T000 is cross-client


def test_t000_offsets_with_all_fields_and_without_delimiter(client: TestClient) -> None:
    # with all fields CCCATEGORY comes after ORT01 C25, MWAER C5, ADRNR C10: offset 30 only holds
    # for the field list MANDT, MTEXT, CCCATEGORY
    r = call(client, "RFC_READ_TABLE", read_table_body("T000", None, no_data="X"))
    offsets = {x["FIELDNAME"]: int(x["OFFSET"]) for x in fields_of(xml(r))}
    assert offsets["MTEXT"] == 4 and offsets["ORT01"] == 30 and offsets["CCCATEGORY"] == 30 + 26 + 6 + 11
    r = call(client, "RFC_READ_TABLE", read_table_body("T000", ["MANDT", "MTEXT", "CCCATEGORY"],
                                                         delimiter=None))
    root = xml(r)
    assert [x["OFFSET"] for x in fields_of(root)] == ["000000", "000003", "000028"]
    assert "000SAP AG                   S" in data_of(root)
    # a blank DELIMITER is CHAR1 initial: strlen 0, no delimiter either
    r = call(client, "RFC_READ_TABLE", read_table_body("T000", ["MANDT", "MTEXT"], delimiter=" "))
    assert [x["OFFSET"] for x in fields_of(xml(r))] == ["000000", "000003"]


def test_data_rows_are_internal_format_padded_and_offsets_slice(client: TestClient,
                                                                sandbox: EccSandbox) -> None:
    fields = ["LIFNR", "NAME1", "LAND1", "ERDAT"]
    r = call(client, "RFC_READ_TABLE", read_table_body("LFA1", fields, ["NAME1 LIKE '%|%'"]))
    root = xml(r)
    f = fields_of(root)
    rows = data_of(root)
    assert rows, "the seed has names containing the delimiter"
    by_key = {v["LIFNR"]: v for v in sandbox.data.rows("LFA1")}
    for wa in rows:
        cut = {x["FIELDNAME"]: wa[int(x["OFFSET"]):int(x["OFFSET"]) + int(x["LENGTH"])] for x in f}
        src = by_key[cut["LIFNR"]]
        assert cut["NAME1"] == src["NAME1"].ljust(35)  # left-justified, blank-padded
        assert cut["ERDAT"] == src["ERDAT"] and len(cut["ERDAT"]) == 8 and cut["ERDAT"].isdigit()
        assert len(wa.split("|")) > 4  # splitting at the delimiter would be wrong
    # no trailing-blank trimming when switched off: every WA is full width
    sandbox.config.trim_trailing_blanks = False
    body = read_table_body("LFA1", ["LIFNR", "NAME2"], rowcount=5)
    rows = data_of(xml(call(client, "RFC_READ_TABLE", body)))
    assert {len(w) for w in rows} == {10 + 1 + 35}


def test_mandt_filtered_by_logon_client(client: TestClient, sandbox: EccSandbox) -> None:
    sandbox.data.insert("LFA1", {"LIFNR": "0009999999", "NAME1": "Other client"}, client="200")
    rows = data_of(xml(call(client, "RFC_READ_TABLE", read_table_body("LFA1", ["MANDT", "LIFNR"],
                                                                      ["LIFNR = '0009999999'"]))))
    assert rows == []
    rows = data_of(xml(call(client, "RFC_READ_TABLE", read_table_body("LFA1", ["MANDT"], rowcount=50))))
    assert set(rows) == {"100"}


def test_empty_fields_means_all_fields(client: TestClient) -> None:
    r = call(client, "RFC_READ_TABLE", read_table_body("LFB1", None, ["LIFNR = '0000100001'"]))
    assert r.status_code == 200, r.text
    root = xml(r)
    names = [x["FIELDNAME"] for x in fields_of(root)]
    assert names[:4] == ["MANDT", "LIFNR", "BUKRS", "PERNR"] and "WEBTR" in names
    webtr = next(x for x in fields_of(root) if x["FIELDNAME"] == "WEBTR")
    assert webtr["TYPE"] == "P" and webtr["LENGTH"] == "000013"
    wa = data_of(root)[0]
    # packed MOVEd to CHAR: right-justified, sign position last (blank when positive)
    assert wa[int(webtr["OFFSET"]):int(webtr["OFFSET"]) + 13] == "0.00 ".rjust(13)


def test_table_not_available(client: TestClient) -> None:
    f = fault(call(client, "RFC_READ_TABLE", read_table_body("T008X", ["MANDT"])))
    assert f["faultstring"] == "TABLE_NOT_AVAILABLE" and f["Name"] == "TABLE_NOT_AVAILABLE"
    assert (f["ID"], f["Number"], f["V1"]) == ("SV", "029", "T008X")


def test_table_without_data_and_field_not_valid(client: TestClient) -> None:
    assert fault(call(client, "RFC_READ_TABLE", read_table_body("BAPIRET2")))["Name"] == "TABLE_WITHOUT_DATA"
    assert fault(call(client, "RFC_READ_TABLE", read_table_body("LFA1", ["LIFNR", "BUKRS"])))["Name"] \
        == "FIELD_NOT_VALID"


def test_data_buffer_exceeded_only_without_no_data(client: TestClient) -> None:
    assert fault(call(client, "RFC_READ_TABLE", read_table_body("CDPOS")))["Name"] == "DATA_BUFFER_EXCEEDED"
    r = call(client, "RFC_READ_TABLE", read_table_body("CDPOS", no_data="X"))
    assert r.status_code == 200, r.text
    f = fields_of(xml(r))
    assert len(f) == 15 and f[-1]["FIELDNAME"] == "VALUE_OLD"
    assert int(f[-1]["OFFSET"]) + int(f[-1]["LENGTH"]) == 774 + 14
    assert data_of(xml(r)) == []
    # boundary: 254|254|C1 = 511 fits, 254|254|C3 = 513 does not; without delimiter 511 fits
    ok = call(client, "RFC_READ_TABLE", read_table_body("CDPOS", ["VALUE_NEW", "VALUE_OLD", "CHNGIND"]))
    assert ok.status_code == 200
    bad = call(client, "RFC_READ_TABLE", read_table_body("CDPOS", ["VALUE_NEW", "VALUE_OLD", "UNIT_OLD"]))
    assert fault(bad)["Name"] == "DATA_BUFFER_EXCEEDED"
    ok = call(client, "RFC_READ_TABLE", read_table_body("CDPOS", ["VALUE_NEW", "VALUE_OLD", "UNIT_OLD"],
                                                         delimiter=None))
    assert ok.status_code == 200


def test_bods_read_table_is_2048_wide_and_only_when_installed(client: TestClient,
                                                              sandbox: EccSandbox) -> None:
    assert fault(call(client, "/BODS/RFC_READ_TABLE", read_table_body("CDPOS")))["Name"] == "FU_NOT_FOUND"
    sandbox.config.installed_modules = {"/BODS/RFC_READ_TABLE", "BBP_RFC_READ_TABLE"}
    r = call(client, "/BODS/RFC_READ_TABLE", read_table_body("CDPOS"))
    assert r.status_code == 200, r.text
    assert etree.QName(response_el(xml(r))).localname == "_-BODS_-RFC_READ_TABLE.Response"
    bbp = call(client, "BBP_RFC_READ_TABLE", read_table_body("CDPOS"))
    assert fault(bbp)["Name"] == "DATA_BUFFER_EXCEEDED"


def test_not_authorized_per_user(client: TestClient, sandbox: EccSandbox) -> None:
    sandbox.faults.update(not_authorized={"RFC_USER": ["LFB1"]})
    denied = call(client, "RFC_READ_TABLE", read_table_body("LFB1", ["LIFNR"]))
    assert fault(denied)["Name"] == "NOT_AUTHORIZED"
    assert call(client, "RFC_READ_TABLE", read_table_body("LFA1", ["LIFNR"], rowcount=1)).status_code == 200
    sandbox.faults.update(not_authorized={}, not_authorized_functions={"RFC_USER": ["STFC_CONNECTION"]})
    f = fault(call(client, "STFC_CONNECTION", "<REQUTEXT>x</REQUTEXT>"))
    assert f["faultstring"].startswith("RFC_AUTHORIZATION_FAILURE")


def test_bad_where_classic_dump_vs_class_based_exception(client: TestClient, sandbox: EccSandbox) -> None:
    body = read_table_body("LFA1", ["LIFNR"], ["LIFNR='0000100001'"])
    f = fault(call(client, "RFC_READ_TABLE", body))
    assert f["type"] == "SAPSQL_PARSE_ERROR" and "Name" not in f
    sandbox.config.release_variant = "class_based"
    f = fault(call(client, "RFC_READ_TABLE", body))
    assert f["Name"] == "OPTION_NOT_VALID"
    f = fault(call(client, "RFC_READ_TABLE", read_table_body("LFA1", ["LIFNR"], ["NOPE = 'x'"])))
    assert f["Name"] == "OPTION_NOT_VALID"
    # a NO_DATA probe does not run the SELECT, so it does not see the bad WHERE
    assert call(client, "RFC_READ_TABLE", read_table_body("LFA1", ["LIFNR"], ["LIFNR='1'"], no_data="X")) \
        .status_code == 200


def test_rowskips_rowcount_unsorted_and_complete(client: TestClient, sandbox: EccSandbox) -> None:
    def page(skip: int, count: int) -> list[str]:
        return data_of(xml(call(client, "RFC_READ_TABLE", read_table_body(
            "LFA1", ["LIFNR"], ["LAND1 = 'US'"], rowcount=count, rowskips=skip))))

    us = sorted(r["LIFNR"] for r in sandbox.data.rows("LFA1") if r["LAND1"] == "US")
    p1, p2 = page(0, 100), page(100, 100)
    assert len(p1) == len(p2) == 100
    assert p1 != sorted(p1)  # no ORDER BY: not in key order
    assert sorted(p1) == us[:100] and sorted(p2) == us[100:200]
    assert page(0, 100) == p1  # deterministic without the shuffle switch
    assert len(page(len(us) - 5, 100)) == 5
    assert len(data_of(xml(call(client, "RFC_READ_TABLE", read_table_body("LFA1", ["LIFNR"],
                                                                          ["LAND1 = 'US'"]))))) == len(us)
    sandbox.config.shuffle = True
    a, b = page(0, 200), page(0, 200)
    assert sorted(a) == sorted(b) == us[:200] and a != b


def test_key_range_paging_is_complete_by_default_and_lossy_with_arbitrary_subset(
        client: TestClient, sandbox: EccSandbox) -> None:
    def extract() -> set[str]:
        seen: set[str] = set()
        last = ""
        while True:
            rows = data_of(xml(call(client, "RFC_READ_TABLE", read_table_body(
                "LFA1", ["LIFNR"], [f"LIFNR > '{last}'"], rowcount=700))))
            if not rows:
                return seen
            seen.update(rows)
            last = max(rows)

    assert len(extract()) == sandbox.data.count("LFA1")
    sandbox.config.arbitrary_subset = True
    assert len(extract()) < sandbox.data.count("LFA1")


def test_tables_not_declared_are_not_returned(client: TestClient, sandbox: EccSandbox) -> None:
    r = call(client, "RFC_READ_TABLE", read_table_body("T000", None, declare=("DATA",)))
    resp = response_el(xml(r))
    assert [c.tag for c in resp] == ["DATA"]
    sandbox.config.return_undeclared_tables = True
    r = call(client, "RFC_READ_TABLE", read_table_body("T000", None, declare=("DATA",)))
    assert [c.tag for c in response_el(xml(r))] == ["DATA", "FIELDS", "OPTIONS"]


def test_response_prefix_switch(client: TestClient, sandbox: EccSandbox) -> None:
    r = call(client, "RFC_PING", "", prefix="ns1")
    assert response_el(xml(r)).prefix == "ns1"
    sandbox.config.response_prefix = "rfc"
    r = call(client, "RFC_PING", "")
    el = response_el(xml(r))
    assert el.prefix == "rfc" and etree.QName(el).localname == "RFC_PING.Response" and len(el) == 0


# -- other FMs, unknown FM, exception shapes -------------------------------------------------

def test_system_info_and_stfc_connection(client: TestClient) -> None:
    root = xml(call(client, "RFC_SYSTEM_INFO", "<RFCSI_EXPORT/>"))
    si = {c.tag: c.text or "" for c in local(root, "RFCSI_EXPORT")[0]}
    assert si["RFCSYSID"] == "ECD" and si["RFCSAPRL"] == "731" and si["RFCDBSYS"]
    assert list(si)[:4] == ["RFCPROTO", "RFCCHARTYP", "RFCINTTYP", "RFCFLOTYP"] and "RFCIPV6ADDR" in si
    root = xml(call(client, "STFC_CONNECTION", "<REQUTEXT>Hallo &amp; Grüße</REQUTEXT>"))
    assert local(root, "ECHOTEXT")[0].text == "Hallo & Grüße"
    resptext = local(root, "RESPTEXT")[0].text
    assert "Sysid: ECD" in resptext and "100/RFC_USER/E" in resptext


def test_unknown_function_and_exception_shapes(client: TestClient, sandbox: EccSandbox) -> None:
    f = fault(call(client, "Z_DOES_NOT_EXIST", ""))
    assert (f["Name"], f["ID"], f["Number"], f["V1"]) == ("FU_NOT_FOUND", "FL", "046", "Z_DOES_NOT_EXIST")
    r = call(client, "RFC_READ_TABLE", read_table_body("T008X"))
    exc = local(xml(r), "RFC_READ_TABLE.Exception")[0]
    assert etree.QName(exc).namespace == RFC_NS and exc.prefix == "rfc"
    sandbox.config.exception_shape = "faultstring_only"
    f = fault(call(client, "RFC_READ_TABLE", read_table_body("T008X")))
    assert f["faultstring"] == "TABLE_NOT_AVAILABLE" and "Name" not in f


def test_parser_is_namespace_aware_and_hardened() -> None:
    req = parse_request(envelope("/BODS/RFC_READ_TABLE", "<QUERY_TABLE>T000</QUERY_TABLE><FIELDS><item>"
                                 "<FIELDNAME>MANDT</FIELDNAME></item></FIELDS><X><A>1</A></X><DATA/>",
                                 prefix="q").encode())
    assert req.function == "/BODS/RFC_READ_TABLE" and req.prefix == "q"
    assert req.scalar("QUERY_TABLE") == "T000" and req.table("FIELDS") == [{"FIELDNAME": "MANDT"}]
    assert req.structure("X") == {"A": "1"} and req.table("DATA") == [] and req.has("DATA")
    with pytest.raises(SoapParseError):  # wrong namespace for the FM element
        parse_request(b'<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body>'
                      b'<RFC_PING xmlns="urn:other"/></e:Body></e:Envelope>')
    evil = (b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b'<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body>'
            b'<u:STFC_CONNECTION xmlns:u="urn:sap-com:document:sap:rfc:functions"><REQUTEXT>&x;</REQUTEXT>'
            b"</u:STFC_CONNECTION></e:Body></e:Envelope>")
    with pytest.raises(SoapParseError):
        parse_request(evil)
    with pytest.raises(SoapParseError):
        parse_request(b"<a>" * 10, max_bytes=5)


def test_malformed_request_is_a_fault_not_a_crash(client: TestClient) -> None:
    r = client.post("/sap/bc/soap/rfc?sap-client=100", content=b"<not-xml", auth=AUTH)
    assert r.status_code == 500 and b"Fault" in r.content


# -- logon ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("auth", "sap_client", "realm_client"), [
    (("RFC_USER", "wrong"), "100", "100"),
    (None, "100", "100"),
    (AUTH, "999", "999"),  # unknown client
    (AUTH, None, "000"),  # no sap-client: the ICM default client, where RFC_USER does not exist
])
def test_logon_failures(client: TestClient, auth: Any, sap_client: str | None, realm_client: str) -> None:
    r = call(client, "RFC_PING", "", sap_client=sap_client, auth=auth)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == \
        f'Basic realm="SAP NetWeaver Application Server [ECD/{realm_client}]"'
    assert "<title>Logon Error Message</title>" in r.text
    assert r.headers["sap-server"] == "true" and r.headers["sap-system"] == "ECD"
    assert f"sap-usercontext=sap-client={realm_client}; path=/" in r.headers.get_list("set-cookie")


def test_success_headers_and_session_cookie(client: TestClient) -> None:
    r = call(client, "RFC_PING", "")
    assert r.status_code == 200
    assert r.headers["sap-system"] == "ECD" and r.headers["content-type"].startswith("text/xml")
    cookies = r.headers.get_list("set-cookie")
    assert "sap-usercontext=sap-client=100; path=/" in cookies
    assert any(c.startswith("SAP_SESSIONID_ECD_100=") for c in cookies)
    # lower-case user names log on too (SAP user names are upper case)
    assert call(client, "RFC_PING", "", auth=("rfc_user", "Sandbox-1234")).status_code == 200


def test_injected_faults(client: TestClient, sandbox: EccSandbox) -> None:
    sandbox.faults.update(fail_next=2, fail_kind="system_failure")
    for _ in range(2):
        f = fault(call(client, "RFC_PING", ""))
        assert f["type"] == "SYSTEM_FAILURE"
    assert call(client, "RFC_PING", "").status_code == 200
    sandbox.faults.update(fail_next=1, fail_kind="http_500")
    r = call(client, "RFC_PING", "")
    assert r.status_code == 500 and b"Fault" not in r.content
    sandbox.faults.update(fail_next=1, fail_kind="logon")
    assert call(client, "RFC_PING", "").status_code == 401
    assert call(client, "RFC_PING", "").status_code == 200
    with pytest.raises(ValueError):
        sandbox.faults.update(fail_kind="nope")


def test_date_and_time_inputs_accept_both_formats() -> None:
    from ml_connector.systems.sap_ecc.sandbox.soap import date_in, time_in

    assert date_in("2024-03-31") == date_in("20240331") == "20240331"
    assert date_in("0000-00-00") == date_in("") == "00000000"
    assert time_in("13:45:10") == time_in("134510") == "134510"
    with pytest.raises(SoapParseError):
        date_in("31.03.2024")


def test_config_switches_are_validated(sandbox: EccSandbox) -> None:
    with pytest.raises(ValueError):
        sandbox.set_config(release_variant="newest")
    with pytest.raises(ValueError):
        sandbox.set_config(no_such_switch=1)
    assert sandbox.config.release_variant == "classic"
    assert sandbox.set_config(installed_modules=["bbp_rfc_read_table"])["installed_modules"] == \
        ["BBP_RFC_READ_TABLE"]
    sandbox.set_config(installed_modules=[])
