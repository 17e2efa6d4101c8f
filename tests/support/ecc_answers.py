"""What SAP answers a SOAP-RFC client (a scripted transport in place of the server), for the client tests."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx

from ml_connector.systems.sap_ecc.client import (
    SoapRfcClient,
)

ENV = "http://schemas.xmlsoap.org/soap/envelope/"
PASSWORD = "S3cr3t-pw!"


def ok(fm: str, inner: str = "") -> httpx.Response:
    body = (f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{ENV}"><SOAP-ENV:Body>'
            f'<rfc:{fm}.Response xmlns:rfc="urn:sap-com:document:sap:rfc:functions">{inner}'
            f"</rfc:{fm}.Response></SOAP-ENV:Body></SOAP-ENV:Envelope>")
    return httpx.Response(200, content=body.encode(), headers={"content-type": "text/xml"})


def fault(faultstring: str, detail: str = "") -> httpx.Response:
    body = (f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{ENV}"><SOAP-ENV:Body><SOAP-ENV:Fault>'
            f"<faultcode>SOAP-ENV:Client</faultcode><faultstring>{faultstring}</faultstring>"
            f"<detail>{detail}</detail></SOAP-ENV:Fault></SOAP-ENV:Body></SOAP-ENV:Envelope>")
    return httpx.Response(500, content=body.encode())


SYSTEM_FAILURE = ('<rfc:Error xmlns:rfc="urn:sap-com:document:sap:soap:functions"><type>SYSTEM_FAILURE</type>'
                  "<message>work process restarted</message></rfc:Error>")


class Recorder:
    def __init__(self, script: list[Callable[[httpx.Request], httpx.Response] | httpx.Response]) -> None:
        self.script = script
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.script[min(len(self.requests) - 1, len(self.script) - 1)]
        return step(request) if callable(step) else step


def make(script: list, **kw: object) -> tuple[SoapRfcClient, Recorder, list[float]]:
    rec = Recorder(script)
    sleeps: list[float] = []
    opts: dict = {"transport": httpx.MockTransport(rec), "sleep": sleeps.append}
    opts.update(kw)
    client = SoapRfcClient(f"http://sap-{uuid.uuid4().hex[:8]}:8000/", "100", "RFC_USER", PASSWORD,
                           **opts)
    return client, rec, sleeps


def raise_(exc: Exception) -> Callable[[httpx.Request], httpx.Response]:
    def f(request: httpx.Request) -> httpx.Response:
        raise exc
    return f
