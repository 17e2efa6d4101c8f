"""SOAP bodies as bytes, for the envelope parser tests."""

from __future__ import annotations

ENV = "http://schemas.xmlsoap.org/soap/envelope/"


def envelope(inner: str) -> bytes:
    return (f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{ENV}"><SOAP-ENV:Body>{inner}'
            f"</SOAP-ENV:Body></SOAP-ENV:Envelope>").encode()


def fault(faultstring: str, detail: str = "") -> bytes:
    d = f"<detail>{detail}</detail>" if detail else ""
    return envelope(f"<SOAP-ENV:Fault><faultcode>SOAP-ENV:Client</faultcode>"
                    f"<faultstring>{faultstring}</faultstring>{d}</SOAP-ENV:Fault>")
