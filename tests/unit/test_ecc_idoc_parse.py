"""XML IDoc parsing, validation, building and the message helpers (idoc.py)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml_connector.systems.sap_ecc.idoc import (
    Idoc,
    IdocParseError,
    IdocPolicy,
    IdocTooLarge,
    IdocValidationError,
    PartnerProfile,
    Segment,
    build_idoc_xml,
    debmas_customer,
    delivery_document,
    orders_document,
    parse_idoc_xml,
    sap_name,
    validate_all,
    validate_control,
    xml_name,
)
from tests.support.idocs import control, debmas_idoc, xmlish

# Re-derived (shortened) from a real SAP-generated ORDERS05 with an extension
# (jbanahan/Sync-session-ACSG-542-01-2020F:spec/fixtures/files/ll_sap_order.xml): same control record
# layout, namespaced root and extension segment, two items instead of three.
ORDERS05 = b"""<?xml version="1.0" encoding="UTF-8" ?>
<_-LUMBERL_-3PL_ORDERS05_EXT>
  <IDOC BEGIN="1">
    <EDI_DC40 SEGMENT="1">
      <TABNAM>EDI_DC40</TABNAM><MANDT>100</MANDT><DOCNUM>0000000064132944</DOCNUM><DOCREL>701</DOCREL>
      <STATUS>30</STATUS><DIRECT>1</DIRECT><OUTMOD>4</OUTMOD><IDOCTYP>ORDERS05</IDOCTYP>
      <MESTYP>/LUMBERL/VFI_ORDERS</MESTYP><SNDPOR>SAPEQ2</SNDPOR><SNDPRT>LS</SNDPRT><SNDPRN>EQ2CLNT100</SNDPRN>
      <RCVPOR>PIQCLNT001</RCVPOR><RCVPRT>LS</RCVPRT><RCVPFC>LS</RCVPFC><RCVPRN>VFIDEV</RCVPRN>
      <CREDAT>20141217</CREDAT><CRETIM>143321</CRETIM><SERIAL>20141217143320</SERIAL>
    </EDI_DC40>
    <E1EDK01 SEGMENT="1"><CURCY>USD</CURCY><HWAER>USD</HWAER><WKURS>1.00000</WKURS><ZTERM>NT00</ZTERM>
      <BSART>ZMSP</BSART><BELNR>4700000325</BELNR><RECIPNT_NO>0000100131</RECIPNT_NO></E1EDK01>
    <E1EDK14 SEGMENT="1"><QUALF>014</QUALF><ORGID>1000</ORGID></E1EDK14>
    <E1EDK14 SEGMENT="1"><QUALF>013</QUALF><ORGID>ZMSP</ORGID></E1EDK14>
    <E1EDK03 SEGMENT="1"><IDDAT>012</IDDAT><DATUM>20140805</DATUM></E1EDK03>
    <E1EDKA1 SEGMENT="1"><PARVW>AG</PARVW><PARTN>1000</PARTN><BNAME>Purchasing Grp 100</BNAME></E1EDKA1>
    <E1EDKA1 SEGMENT="1"><PARVW>LF</PARVW><PARTN>0000100131</PARTN></E1EDKA1>
    <E1EDP01 SEGMENT="1">
      <POSEX>00001</POSEX><ACTION>001</ACTION><MENGE>5602.800</MENGE><MENEE>UOM</MENEE><VPREI>1.85</VPREI>
      <NETWR>10365.18</NETWR><WERKS>9444</WERKS>
      <E1EDP20 SEGMENT="1"><WMENG>5602.800</WMENG><EDATU>20141103</EDATU>
        <_-LUMBERL_-PO_SHIP_WINDOW SEGMENT="1"><VN_SHIPBEGIN>20160601</VN_SHIPBEGIN></_-LUMBERL_-PO_SHIP_WINDOW>
      </E1EDP20>
      <E1EDPA1 SEGMENT="1"><PARVW>WE</PARVW><LIFNR>9444</LIFNR><NAME1>LOS ANGELES CA 9444</NAME1></E1EDPA1>
      <E1EDP19 SEGMENT="1"><QUALF>001</QUALF><IDTNR>000000000010001547</IDTNR>
        <KTEXT>SCH ENG Bamboo QC 9/16x5&quot; Strand Nat</KTEXT></E1EDP19>
    </E1EDP01>
    <E1EDP01 SEGMENT="1">
      <POSEX>00002</POSEX><MENGE>8168.400</MENGE><MENEE>UOM</MENEE><NETWR>14866.49</NETWR><WERKS>9444</WERKS>
      <E1EDP19 SEGMENT="1"><QUALF>001</QUALF><IDTNR>000000000010003151</IDTNR></E1EDP19>
    </E1EDP01>
    <E1EDS01 SEGMENT="1"><SUMID>002</SUMID><SUMME>25231.67</SUMME><SUNIT>USD</SUNIT></E1EDS01>
  </IDOC>
</_-LUMBERL_-3PL_ORDERS05_EXT>
"""

LUMBER = IdocPolicy(direct="1", partners=[PartnerProfile("LS", "EQ2CLNT100")],
                    extra_mestypes=frozenset({"/LUMBERL/VFI_ORDERS"}))


def test_real_orders05_parses_with_hierarchy_and_escaped_names() -> None:
    [idoc] = parse_idoc_xml(ORDERS05)
    assert idoc.root == "/LUMBERL/3PL_ORDERS05_EXT"
    assert idoc.docnum == "0000000064132944" and idoc.mestyp == "/LUMBERL/VFI_ORDERS"
    assert idoc.control["SERIAL"] == "20141217143320"
    ext = idoc.find("/LUMBERL/PO_SHIP_WINDOW")
    assert ext is not None and ext.get("VN_SHIPBEGIN") == "20160601"
    p20 = idoc.top("E1EDP01")[0].child("E1EDP20")
    assert p20 is not None and p20.children[0] is ext
    validate_control(idoc, LUMBER)
    order = orders_document(idoc)
    assert order.belnr == "4700000325" and order.currency == "USD" and order.doc_type == "ZMSP"
    assert order.doc_date == "20140805" and order.org == {"014": "1000", "013": "ZMSP"}
    assert [p["PARVW"] for p in order.partners] == ["AG", "LF"]
    assert [i.posex for i in order.items] == ["00001", "00002"]
    assert order.items[0].material == "000000000010001547"
    assert order.items[0].description == 'SCH ENG Bamboo QC 9/16x5" Strand Nat'
    assert order.items[0].partners[0]["NAME1"] == "LOS ANGELES CA 9444"
    assert order.total == "25231.67"


def test_build_and_parse_round_trip_several_idocs_and_escaping() -> None:
    a = debmas_idoc(docnum="1")
    b = Idoc(control(mestyp="DESADV", idoctyp="DELVRY07", docnum="2"), [Segment("E1EDL20", {"VBELN": "80000001"}, [
        Segment("E1EDL24", {"POSNR": "000010", "MATNR": "M-1", "LFIMG": "3.000", "VGBEL": "0000004711",
                            "VGPOS": "000010"}),
        Segment("E1ADRM1", {"PARTNER_Q": "WE", "PARTNER_ID": "0000200001"}),
        Segment("/ACME/E1EXT", {"/ACME/FLAG": "X"})])])
    body = build_idoc_xml([a, b])
    assert b"_-ACME_-E1EXT" in body and b"<_-ACME_-FLAG>X</_-ACME_-FLAG>" in body
    assert body.count(b'<IDOC BEGIN="1">') == 2
    parsed = parse_idoc_xml(body)
    assert [i.docnum for i in parsed] == ["0000000000000001", "0000000000000002"]
    assert parsed[1].find("/ACME/E1EXT") is not None
    validate_all(parsed, IdocPolicy(partners=[PartnerProfile("LS", "ECDCLNT100")]))
    cust = debmas_customer(parsed[0])
    assert (cust.kunnr, cust.name1, cust.msgfn, cust.credit_limit) == ("0000200001", "Acme", "005", "50000.00")
    assert cust.partners == [{"VKORG": "1000", "VTWEG": "10", "SPART": "00", "PARVW": "RE", "KUNN2": "0000200002"}]
    dl = delivery_document(parsed[1])
    assert dl.vbeln == "80000001" and dl.items[0].vgbel == "0000004711" and dl.partners[0]["PARTNER_ID"]


def test_names_escape() -> None:
    assert xml_name("/BIO/QI6ATEST_RFC") == "_-BIO_-QI6ATEST_RFC"
    assert sap_name("_-LUMBERL_-3PL_ORDERS05_EXT") == "/LUMBERL/3PL_ORDERS05_EXT"


def test_make_control_fields() -> None:
    c = control(docnum="42")
    assert c["DOCNUM"] == "0000000000000042" and c["DIRECT"] == "1" and c["STATUS"] == "30"
    assert len(c["CREDAT"]) == 8 and len(c["CRETIM"]) == 6 and len(c["SERIAL"]) == 14


@pytest.mark.parametrize(("change", "field"), [
    ({"TABNAM": "EDI_DC"}, "EDI_DC40-TABNAM"),
    ({"DIRECT": "2"}, "EDI_DC40-DIRECT"),
    ({"DOCNUM": "123"}, "EDI_DC40-DOCNUM"),
    ({"DOCNUM": "00000000000000AB"}, "EDI_DC40-DOCNUM"),
    ({"MESTYP": "ZFOO"}, "EDI_DC40-MESTYP"),
    ({"IDOCTYP": "ZFOO01"}, "EDI_DC40-IDOCTYP"),
    ({"SNDPRN": "OTHER"}, "EDI_DC40-SNDPRN"),
    ({"SNDPRT": "KU"}, "EDI_DC40-SNDPRN"),
    ({"SNDPRN": "A" * 11}, "EDI_DC40-SNDPRN"),
])
def test_control_validation_names_the_field(change: dict[str, str], field: str) -> None:
    idoc = debmas_idoc()
    idoc.control.update(change)
    policy = IdocPolicy(partners=[PartnerProfile("LS", "ECDCLNT100")])
    with pytest.raises(IdocValidationError) as exc:
        validate_all([debmas_idoc(docnum="9"), idoc], policy)
    assert str(exc.value).startswith(field + ":")
    assert "(IDOC #2)" in str(exc.value)
    assert exc.value.segment == "EDI_DC40" and exc.value.index == 2


def test_partner_profile_limits_message_types() -> None:
    policy = IdocPolicy(partners=[PartnerProfile("LS", "ECDCLNT100", frozenset({"ORDERS"}))])
    with pytest.raises(IdocValidationError, match="EDI_DC40-MESTYP: partner LS/ECDCLNT100"):
        validate_control(debmas_idoc(), policy)


def test_missing_control_record_and_no_idoc() -> None:
    with pytest.raises(IdocValidationError, match="EDI_DC40"):
        parse_idoc_xml(b"<DEBMAS07><IDOC BEGIN='1'><E1KNA1M SEGMENT='1'><KUNNR>1</KUNNR></E1KNA1M></IDOC></DEBMAS07>")
    with pytest.raises(IdocValidationError, match="IDOC"):
        parse_idoc_xml(b"<DEBMAS07><FOO/></DEBMAS07>")
    with pytest.raises(IdocValidationError, match="E1KNA1M"):
        debmas_customer(Idoc(control(), []))


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<DEBMAS07><IDOC BEGIN="1"><EDI_DC40 SEGMENT="1"><TABNAM>&lol4;</TABNAM></EDI_DC40></IDOC></DEBMAS07>"""


def test_billion_laughs_and_external_entities_are_refused(tmp_path: object) -> None:
    with pytest.raises(IdocParseError, match="forbidden XML construct"):
        parse_idoc_xml(BILLION_LAUGHS)
    xxe = (b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
           b"<DEBMAS07><IDOC BEGIN=\"1\"><EDI_DC40 SEGMENT=\"1\"><TABNAM>&x;</TABNAM></EDI_DC40></IDOC></DEBMAS07>")
    with pytest.raises(IdocParseError, match="forbidden XML construct") as exc:
        parse_idoc_xml(xxe)
    assert "root:" not in str(exc.value)
    ext_dtd = b'<?xml version="1.0"?><!DOCTYPE d SYSTEM "http://127.0.0.1:9/x.dtd"><DEBMAS07/>'
    with pytest.raises(IdocParseError):
        parse_idoc_xml(ext_dtd)


def test_limits() -> None:
    with pytest.raises(IdocTooLarge):
        parse_idoc_xml(b"<a>" + b"x" * 2000 + b"</a>", max_bytes=1000)
    deep = b"<a>" * 100 + b"</a>" * 100
    with pytest.raises(IdocParseError, match="nesting deeper"):
        parse_idoc_xml(deep, max_depth=48)
    with pytest.raises(IdocParseError, match="more than 10 XML elements"):
        parse_idoc_xml(b"<r>" + b"<b/>" * 20 + b"</r>", max_elements=10)
    with pytest.raises(IdocParseError, match="empty"):
        parse_idoc_xml(b"  ")


def test_truncated_real_idoc_at_every_cut_is_a_clear_error() -> None:
    for cut in range(0, len(ORDERS05) - 40, 37):
        with pytest.raises((IdocParseError, IdocValidationError)):
            parse_idoc_xml(ORDERS05[:cut])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_random_bytes_never_crash(data: bytes) -> None:
    with contextlib.suppress(IdocParseError, IdocValidationError):
        parse_idoc_xml(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(xmlish())
def test_structured_garbage_never_crashes(data: bytes) -> None:
    try:
        idocs = parse_idoc_xml(data)
    except (IdocParseError, IdocValidationError):
        return
    for idoc in idocs:
        try:
            validate_control(idoc, IdocPolicy())
        except IdocValidationError as exc:
            assert str(exc).startswith("EDI_DC40-")
