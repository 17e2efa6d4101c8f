"""SOAP-RFC requests to the ECC sandbox as a SAP caller sends them."""

from __future__ import annotations

import httpx

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
