"""SOAP-RFC requests to the ECC sandbox as a SAP caller sends them."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi.testclient import TestClient
from lxml import etree

from ml_connector.core.servers import ServerHandle

AUTH = ("RFC_USER", "Sandbox-1234")
RFC_NS = "urn:sap-com:document:sap:rfc:functions"
HEADERS = {"Content-Type": 'text/xml; charset="UTF-8"', "Accept": "text/xml",
           "SOAPAction": "urn:sap-com:document:sap:rfc:functions"}


def page_request(last: str, rowcount: int) -> str:
    """An RFC_READ_TABLE request for the next `rowcount` LFA1 rows after vendor `last`."""
    return ('<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            f'xmlns:urn="{RFC_NS}"><soapenv:Body><urn:RFC_READ_TABLE><QUERY_TABLE>LFA1</QUERY_TABLE>'
            f"<DELIMITER>|</DELIMITER><ROWCOUNT>{rowcount}</ROWCOUNT>"
            f"<OPTIONS><item><TEXT>LIFNR &gt; '{last}'</TEXT></item></OPTIONS>"
            "<FIELDS><item><FIELDNAME>LIFNR</FIELDNAME></item><item><FIELDNAME>NAME1</FIELDNAME></item>"
            "<item><FIELDNAME>LAND1</FIELDNAME></item><item><FIELDNAME>LOEVM</FIELDNAME></item></FIELDS>"
            "<DATA/></urn:RFC_READ_TABLE></soapenv:Body></soapenv:Envelope>")


def rfc_url(fm: str) -> str:
    return f"/sap/bc/soap/rfc?sap-client=100&services={fm}"


def lookup_raw(handle: ServerHandle, bukrs: str, xblnr: str, gjahr: str) -> bytes:
    """The raw answer of Z_MLC_DOCUMENT_BY_XBLNR."""
    body = (f'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="{RFC_NS}">'
            f"<soapenv:Body><urn:Z_MLC_DOCUMENT_BY_XBLNR><I_BUKRS>{bukrs}</I_BUKRS><I_XBLNR>{xblnr}</I_XBLNR>"
            f"<I_GJAHR>{gjahr}</I_GJAHR><ET_DOCUMENTS/></urn:Z_MLC_DOCUMENT_BY_XBLNR></soapenv:Body>"
            "</soapenv:Envelope>")
    r = httpx.post(f"{handle.url}{rfc_url('Z_MLC_DOCUMENT_BY_XBLNR')}", content=body.encode(), auth=AUTH,
                   headers=HEADERS, timeout=10)
    assert r.status_code == 200, r.text
    return r.content


def envelope(fm: str, inner: str, prefix: str = "urn") -> str:
    tag = fm.replace("/", "_-")
    return ('<?xml version="1.0" encoding="utf-8"?>'
            '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            f'xmlns:{prefix}="{RFC_NS}"><soapenv:Header/><soapenv:Body>'
            f"<{prefix}:{tag}>{inner}</{prefix}:{tag}></soapenv:Body></soapenv:Envelope>")


def read_table_body(table: str, fields: list[str] | None = None, options: list[str] | None = None,
                    delimiter: str | None = "|", no_data: str = "", rowcount: int | None = None,
                    rowskips: int | None = None,
                    declare: tuple[str, ...] = ("DATA", "FIELDS", "OPTIONS")) -> str:
    parts = [f"<QUERY_TABLE>{table}</QUERY_TABLE>"]
    if delimiter is not None:
        parts.append(f"<DELIMITER>{delimiter}</DELIMITER>")
    if no_data:
        parts.append(f"<NO_DATA>{no_data}</NO_DATA>")
    if rowcount is not None:
        parts.append(f"<ROWCOUNT>{rowcount}</ROWCOUNT>")
    if rowskips is not None:
        parts.append(f"<ROWSKIPS>{rowskips}</ROWSKIPS>")
    if options:
        esc = [o.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") for o in options]
        parts.append("<OPTIONS>" + "".join(f"<item><TEXT>{o}</TEXT></item>" for o in esc) + "</OPTIONS>")
    elif "OPTIONS" in declare:
        parts.append("<OPTIONS/>")
    if fields:
        parts.append("<FIELDS>" + "".join(f"<item><FIELDNAME>{f}</FIELDNAME></item>" for f in fields)
                     + "</FIELDS>")
    elif "FIELDS" in declare:
        parts.append("<FIELDS/>")
    if "DATA" in declare:
        parts.append("<DATA/>")
    return "".join(parts)


def xml(resp: Any) -> Any:
    return etree.fromstring(resp.content)


def local(root: Any, name: str) -> list[Any]:
    return root.xpath(f"//*[local-name()='{name}']")


def response_el(root: Any) -> Any:
    body = local(root, "Body")[0]
    return body[0]


def fields_of(root: Any) -> list[dict[str, str]]:
    fields = local(root, "FIELDS")[0]
    return [{c.tag: c.text or "" for c in item} for item in fields]


def data_of(root: Any) -> list[str]:
    data = local(root, "DATA")[0]
    return [(item.find("WA").text or "") for item in data]


def fault(resp: Any) -> dict[str, str]:
    assert resp.status_code == 500, resp.text
    root = xml(resp)
    out = {"faultstring": local(root, "faultstring")[0].text or ""}
    for name in ("Name", "ID", "Number", "V1", "type", "message", "Text"):
        els = local(root, name)
        if els:
            out[name] = els[0].text or ""
    return out


def call(c: TestClient, fm: str, inner: str, *, sap_client: str | None = "100", auth: Any = AUTH,
         prefix: str = "urn") -> Any:
    url = "/sap/bc/soap/rfc" + (f"?sap-client={sap_client}&services={fm}" if sap_client else "")
    return c.post(url, content=envelope(fm, inner, prefix).encode(), auth=auth,
                  headers={"Content-Type": 'text/xml; charset="UTF-8"',
                           "SOAPAction": "urn:sap-com:document:sap:rfc:functions"})
