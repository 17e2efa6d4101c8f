"""SOAP-RFC envelope building, reply parsing and fault mapping (reference §1.1)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from ml_connector.core.channel import ChannelFault
from ml_connector.systems.sap_ecc.errors import (
    ABAPApplicationError,
    ABAPRuntimeError,
    CommunicationError,
    ExternalRuntimeError,
    LogonError,
    RfcError,
    rfc_error_from_fault,
)
from ml_connector.systems.sap_ecc.soap import (
    build_envelope,
    normalize_params,
    parse_fault,
    parse_response,
    split_tables_param,
)
from tests.support.soap_bodies import envelope, fault

# ----------------------------------------------------------------------------- envelope

def test_envelope_matches_sharpsaprfc_expected_body() -> None:
    body = build_envelope("Z_SSRT_DIVIDE", {"I_NUM1": 2, "I_NUM2": 0})
    expected = (b'<urn:Z_SSRT_DIVIDE xmlns:urn="urn:sap-com:document:sap:rfc:functions">'
                b"<I_NUM1>2</I_NUM1><I_NUM2>0</I_NUM2></urn:Z_SSRT_DIVIDE>")
    assert expected in body
    assert body.startswith(b'<?xml version="1.0" encoding="utf-8"?>')
    assert b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">' in body
    assert b"<soapenv:Header/><soapenv:Body>" + expected + b"</soapenv:Body></soapenv:Envelope>" in body


def test_envelope_read_table_tables_structures_and_declared_outputs() -> None:
    body = build_envelope("RFC_READ_TABLE", {
        "QUERY_TABLE": "LFA1", "DELIMITER": "|", "ROWCOUNT": 100,
        "OPTIONS": [{"TEXT": "LAND1 = 'US' AND LOEVM = ' '"}],
        "FIELDS": [{"FIELDNAME": "LIFNR"}, {"FIELDNAME": "NAME1"}],
    }, tables_wanted=["OPTIONS", "FIELDS", "DATA"])
    assert (b"<QUERY_TABLE>LFA1</QUERY_TABLE><DELIMITER>|</DELIMITER><ROWCOUNT>100</ROWCOUNT>"
            b"<OPTIONS><item><TEXT>LAND1 = &apos;US&apos; AND LOEVM = &apos; &apos;</TEXT></item></OPTIONS>"
            b"<FIELDS><item><FIELDNAME>LIFNR</FIELDNAME></item><item><FIELDNAME>NAME1</FIELDNAME></item>"
            b"</FIELDS><DATA/></urn:RFC_READ_TABLE>") in body
    assert body.count(b"<OPTIONS") == 1  # not declared twice


def test_envelope_structure_dates_escaping_and_slash_names() -> None:
    body = build_envelope("/BODS/RFC_READ_TABLE", {
        "DOCUMENTHEADER": {"BUS_ACT": "RFBU", "DOC_DATE": dt.date(2024, 10, 3),
                           "HEADER_TXT": 'A&B <x> "q"'},
        "/BIO/QI6ATEST": "1", "AMOUNT": Decimal("-800.0"), "FLAG": True, "OFF": False,
        "SKIP": None, "EMPTY": [],
    })
    text = body.decode()
    assert '<urn:_-BODS_-RFC_READ_TABLE xmlns:urn="urn:sap-com:document:sap:rfc:functions">' in text
    assert "</urn:_-BODS_-RFC_READ_TABLE>" in text
    assert ("<DOCUMENTHEADER><BUS_ACT>RFBU</BUS_ACT><DOC_DATE>20241003</DOC_DATE>"
            "<HEADER_TXT>A&amp;B &lt;x&gt; &quot;q&quot;</HEADER_TXT></DOCUMENTHEADER>") in text
    assert "<_-BIO_-QI6ATEST>1</_-BIO_-QI6ATEST>" in text
    assert "<AMOUNT>-800.0</AMOUNT><FLAG>X</FLAG><OFF></OFF>" in text
    assert "SKIP" not in text
    assert "<EMPTY/>" in text


@pytest.mark.parametrize("bad", ["A B", "A<B", "X&Y", "", "A-B"])
def test_envelope_rejects_names_that_would_inject_xml(bad: str) -> None:
    with pytest.raises(ValueError):
        build_envelope("RFC_PING", {bad: "1"})


def test_envelope_rejects_control_characters_and_datetimes() -> None:
    with pytest.raises(ValueError):
        build_envelope("X", {"A": "nul\x00"})
    with pytest.raises(TypeError):
        build_envelope("X", {"A": dt.datetime(2024, 1, 1, 12, 0)})


def test_normalize_params_and_tables_key_roundtrip() -> None:
    p = normalize_params({"D": dt.date(2024, 1, 31), "T": dt.time(13, 5, 9), "N": 5,
                          "S": {"X": True}, "L": [{"A": Decimal("1.50")}]})
    assert p == {"D": "20240131", "T": "130509", "N": "5", "S": {"X": "X"}, "L": [{"A": "1.50"}]}
    rest, tables = split_tables_param({"A": "1", "__tables__": ["DATA", "FIELDS"]})
    assert rest == {"A": "1"} and tables == ["DATA", "FIELDS"]


# ----------------------------------------------------------------------------- responses

READ_TABLE_INNER = """
   <DATA>
    <item><WA>000|SAP AG                   |S</WA></item>
    <item><WA>250|Neduca                   |T</WA></item>
   </DATA>
   <FIELDS>
    <item><FIELDNAME>MANDT</FIELDNAME><OFFSET>000000</OFFSET><LENGTH>000003</LENGTH><TYPE>C</TYPE>
      <FIELDTEXT>Client</FIELDTEXT></item>
   </FIELDS>
   <OPTIONS/>
   <ET_DATA/>
   <RETURN><TYPE>S</TYPE><ID>RW</ID><NUMBER>605</NUMBER></RETURN>
"""


@pytest.mark.parametrize("open_tag,close_tag", [
    ('<rfc:RFC_READ_TABLE.Response xmlns:rfc="urn:sap-com:document:sap:rfc:functions">',
     "</rfc:RFC_READ_TABLE.Response>"),
    ('<urn:RFC_READ_TABLE.Response xmlns:urn="urn:sap-com:document:sap:rfc:functions">',
     "</urn:RFC_READ_TABLE.Response>"),
    ("<RFC_READ_TABLE.Response>", "</RFC_READ_TABLE.Response>"),
    ('<n0:RFC_READ_TABLE.Response xmlns:n0="urn:other">', "</n0:RFC_READ_TABLE.Response>"),
])
def test_parse_response_any_prefix(open_tag: str, close_tag: str) -> None:
    body = envelope(open_tag + READ_TABLE_INNER + close_tag)
    out = parse_response("RFC_READ_TABLE", body, tables=["OPTIONS", "FIELDS", "DATA"])
    assert out["DATA"] == [{"WA": "000|SAP AG                   |S"},
                           {"WA": "250|Neduca                   |T"}]
    assert out["FIELDS"][0]["OFFSET"] == "000000" and out["FIELDS"][0]["FIELDNAME"] == "MANDT"
    assert out["OPTIONS"] == []  # declared table → empty list
    assert out["ET_DATA"] == ""  # not declared → empty scalar
    assert out["RETURN"] == {"TYPE": "S", "ID": "RW", "NUMBER": "605"}


def test_parse_response_slash_names_and_entities() -> None:
    body = envelope('<rfc:_-BODS_-RFC_READ_TABLE.Response xmlns:rfc="urn:sap-com:document:sap:rfc:functions">'
                    "<_-BODS_-X>a &amp; b</_-BODS_-X></rfc:_-BODS_-RFC_READ_TABLE.Response>")
    assert parse_response("/BODS/RFC_READ_TABLE", body) == {"/BODS/X": "a & b"}


def test_parse_response_without_response_element_is_communication_error() -> None:
    with pytest.raises(CommunicationError) as ei:
        parse_response("RFC_PING", envelope("<Other/>"))
    assert "RFC_PING.Response" in ei.value.message


def test_parse_response_fault_with_status_200_raises_typed_error() -> None:
    with pytest.raises(ABAPApplicationError):
        parse_response("RFC_PING", fault("RFC_AUTHORIZATION_FAILURE: no"))


# ----------------------------------------------------------------------------- faults

def test_fault_classic_exception_table_not_available() -> None:
    detail = ('<rfc:RFC_READ_TABLE.Exception xmlns:rfc="urn:sap-com:document:sap:rfc:functions">'
              "<Name>TABLE_NOT_AVAILABLE</Name><Message><ID>SV</ID><Number>029</Number></Message>"
              "<Attributes><V1>T008X</V1></Attributes></rfc:RFC_READ_TABLE.Exception>")
    err = parse_fault(500, fault("TABLE_NOT_AVAILABLE", detail))
    assert isinstance(err, ABAPApplicationError)
    assert err.code == 5 and err.key == "TABLE_NOT_AVAILABLE"
    assert (err.msg_class, err.msg_type, err.msg_number, err.msg_v1) == ("SV", "E", "029", "T008X")
    assert str(err) == ("5 (rc=5): key=TABLE_NOT_AVAILABLE, message=ID:SV Type:E Number:029 T008X "
                        "[MSG: class=SV, type=E, number=029, v1-4:=T008X;;;]")
    assert err.raw is not None and "TABLE_NOT_AVAILABLE" in err.raw
    assert "Envelope" not in str(err)
    assert not err.retriable


def test_fault_classic_exception_text_only() -> None:
    detail = ('<rfc:Z.Exception xmlns:rfc="urn:sap-com:document:sap:rfc:functions">DIVIDE_BY_ZERO'
              "</rfc:Z.Exception>")
    err = parse_fault(500, fault("Internal Server Error", detail))
    assert isinstance(err, ABAPApplicationError) and err.key == "DIVIDE_BY_ZERO"


def test_fault_rfc_error_message_state() -> None:
    detail = ('<rfc:Error xmlns:rfc="urn:sap-com:document:sap:soap:functions">'
              "<type>ERROR_MESSAGE_STATE</type>"
              "<message>Changes to repository objects are not permitted in this client</message></rfc:Error>")
    err = parse_fault(500, fault("Internal Server Error", detail))
    assert isinstance(err, ABAPRuntimeError)
    assert err.key == "ERROR_MESSAGE_STATE"
    assert err.message == "Changes to repository objects are not permitted in this client"
    assert err.code == 4 and not err.retriable


@pytest.mark.parametrize("rtype,retriable", [("SYSTEM_FAILURE", True), ("SAPSQL_PARSE_ERROR", False)])
def test_fault_rfc_error_runtime(rtype: str, retriable: bool) -> None:
    detail = (f'<rfc:Error xmlns:rfc="urn:sap-com:document:sap:soap:functions"><type>{rtype}</type>'
              "<message>dump</message></rfc:Error>")
    err = parse_fault(500, fault("Internal Server Error", detail))
    assert isinstance(err, ABAPRuntimeError) and err.key == rtype and err.code == 3
    assert err.retriable is retriable


def test_fault_authorization_failure() -> None:
    err = parse_fault(500, fault("RFC_AUTHORIZATION_FAILURE: User has no authorization for function module"))
    assert isinstance(err, ABAPApplicationError)
    assert err.key == "RFC_AUTHORIZATION_FAILURE"
    assert err.message == "User has no authorization for function module"


def test_fault_unknown_function() -> None:
    err = parse_fault(500, fault("FU_NOT_FOUND"))
    assert isinstance(err, ABAPApplicationError) and err.key == "FU_NOT_FOUND"


def test_fault_plain_faultstring() -> None:
    err = parse_fault(500, fault("Internal Server Error"))
    assert isinstance(err, ABAPRuntimeError) and err.key == "SOAP_FAULT" and not err.retriable


@pytest.mark.parametrize("body", [b"garbage", b"<a><b></a>", b"", b"<html><body>500 ICM</body></html>"])
def test_garbage_is_communication_error_not_lxml_exception(body: bytes) -> None:
    err = parse_fault(500, body)
    assert isinstance(err, CommunicationError)
    assert "500" in err.message
    with pytest.raises(CommunicationError):
        parse_response("RFC_PING", body)


def test_billion_laughs_is_refused() -> None:
    body = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
            b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
            + envelope("<X.Response><A>&lol3;</A></X.Response>"))
    with pytest.raises(CommunicationError) as ei:
        parse_response("X", body)
    assert "DTD" in ei.value.message


def test_external_file_entity_is_not_resolved(tmp_path: object) -> None:
    body = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/hostname">]>'
            + envelope("<X.Response><A>&xxe;</A></X.Response>"))
    with pytest.raises(CommunicationError):
        parse_response("X", body)
    err = parse_fault(500, body)
    assert isinstance(err, CommunicationError)


# ----------------------------------------------------------------------------- error taxonomy

@pytest.mark.parametrize("cls,code", [(CommunicationError, 1), (LogonError, 2), (ABAPRuntimeError, 3),
                                      (ABAPApplicationError, 5), (ExternalRuntimeError, 20)])
def test_fault_roundtrip_keeps_type_and_fields(cls: type[RfcError], code: int) -> None:
    err = cls("msg", key="K", msg_class="SV", msg_type="E", msg_number="029", msg_v1="T008X",
              uncertain=True, raw=b"<x/>")
    f = err.to_fault()
    f2 = ChannelFault.model_validate_json(f.model_dump_json())
    assert f2.type == cls.__name__ and f2.details["code"] == code
    back = rfc_error_from_fault(f2)
    assert type(back) is cls
    assert (back.key, back.message, back.msg_class, back.msg_number, back.msg_v1, back.code) == \
           ("K", "msg", "SV", "029", "T008X", code)
    assert back.uncertain and back.retriable == err.retriable
    assert str(back) == str(err)


def test_unknown_fault_type_becomes_base_error() -> None:
    back = rfc_error_from_fault(ChannelFault(type="Weird", message="m"))
    assert type(back) is RfcError and back.key == "Weird"


def test_str_without_message_class() -> None:
    err = LogonError("Name or password is incorrect (repeat logon)", key="RFC_LOGON_FAILURE")
    assert str(err) == "2 (rc=2): key=RFC_LOGON_FAILURE, message=Name or password is incorrect (repeat logon)"
