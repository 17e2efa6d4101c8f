"""Gateway OData v2 client (odata.py) against scripted transports: CSRF, errors, paging."""

from __future__ import annotations

import json

import httpx
import pytest

from ml_connector.systems.sap_ecc.errors import CommunicationError, LogonError
from ml_connector.systems.sap_ecc.odata import (
    CsrfError,
    GatewayError,
    GatewayNotFound,
    ODataClient,
    parse_gateway_error,
)
from tests.support.odata import ROOT, client

GW_ERROR = {"error": {"code": "ZMLC/003", "message": {"lang": "en", "value": "Name too long"},
                      "innererror": {"application": {"component_id": "", "service_namespace": "/SAP/",
                                                     "service_id": "ZMLC_VENDOR_SRV", "service_version": "0001"},
                                     "transactionid": "137FEBC5E74C0000E006A274FA73370B",
                                     "timestamp": "20260608235304.6383550",
                                     "errordetails": [{"code": "ZMLC/003", "message": "Name too long",
                                                       "propertyref": "Name1", "severity": "error",
                                                       "target": "Name1"}]}}}


def test_csrf_fetch_then_refetch_and_retry_once_on_403_required() -> None:
    seen: list[tuple[str, str | None, str | None]] = []
    tokens = iter(["T1", "T2"])
    valid = {"T2"}

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append((req.method, req.headers.get("x-csrf-token"), req.headers.get("cookie")))
        assert req.url.params["sap-client"] == "100"
        if req.method == "GET":
            return httpx.Response(200, json={"d": {"EntitySets": []}},
                                  headers={"x-csrf-token": next(tokens),
                                           "set-cookie": "SAP_SESSIONID_X_100=s1; path=/"})
        if req.headers.get("x-csrf-token") not in valid:
            return httpx.Response(403, text="CSRF token validation failed",
                                  headers={"x-csrf-token": "Required"})
        assert json.loads(req.content) == {"Name1": "N"}
        return httpx.Response(204)

    c = client(handler)
    c.update("VendorSet('1')", {"Name1": "N"})
    assert [s[0] for s in seen] == ["GET", "MERGE", "GET", "MERGE"]
    assert seen[0][1] == "Fetch" and seen[1][1] == "T1" and seen[3][1] == "T2"
    assert seen[1][2] == "SAP_SESSIONID_X_100=s1"  # cookies kept and sent
    assert c.csrf_fetches == 2
    # token reused for the next call: no new fetch
    c.update("VendorSet('1')", {"Name1": "N"})
    assert c.csrf_fetches == 2 and seen[-1][0] == "MERGE"


def test_csrf_stays_403_no_infinite_loop() -> None:
    calls: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(req.method)
        if req.method == "GET":
            return httpx.Response(200, json={"d": {}}, headers={"x-csrf-token": "T"})
        return httpx.Response(403, text="CSRF token validation failed", headers={"x-csrf-token": "Required"})

    with pytest.raises(CsrfError) as exc:
        client(handler).create("VendorSet", {"Name1": "x"})
    assert calls == ["GET", "POST", "GET", "POST"] and exc.value.status == 403


def test_403_without_required_header_is_not_retried() -> None:
    calls: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(req.method)
        if req.method == "GET":
            return httpx.Response(200, json={"d": {}}, headers={"x-csrf-token": "T"})
        return httpx.Response(403, json={"error": {"code": "/IWFND/CM_CONSUMER/101", "message": {"value": "No auth"}}})

    with pytest.raises(GatewayError, match="No auth") as exc:
        client(handler).delete("VendorSet('1')")
    assert not isinstance(exc.value, CsrfError) and calls == ["GET", "DELETE"]


def test_gateway_error_json_is_parsed() -> None:
    err = parse_gateway_error(400, json.dumps(GW_ERROR))
    assert (err.code, err.message, err.lang) == ("ZMLC/003", "Name too long", "en")
    assert err.transactionid == "137FEBC5E74C0000E006A274FA73370B" and err.service_id == "ZMLC_VENDOR_SRV"
    assert err.details[0].propertyref == "Name1" and err.details[0].target == "Name1"
    assert "fields: Name1" in str(err) and "ZMLC/003" in str(err)
    nf = parse_gateway_error(404, '{"error":{"code":"/IWFND/MED/170","message":{"lang":"en","value":"No service"}}}')
    assert isinstance(nf, GatewayNotFound) and nf.code == "/IWFND/MED/170"
    xml = parse_gateway_error(500, '<error><code>X/1</code><message xml:lang="en">Boom</message></error>')
    assert (xml.code, xml.message) == ("X/1", "Boom")
    plain = parse_gateway_error(502, "")
    assert plain.message == "HTTP 502"

    def handler(req: httpx.Request) -> httpx.Response:
        if req.method == "GET":
            return httpx.Response(200, json={"d": {}}, headers={"x-csrf-token": "T"})
        return httpx.Response(400, json=GW_ERROR)

    with pytest.raises(GatewayError) as exc:
        client(handler).update("VendorSet('1')", {"Name1": "x" * 99})
    assert exc.value.details[0].propertyref == "Name1"


def test_paging_follows_next_and_stops() -> None:
    pages = {
        None: {"d": {"results": [{"Lifnr": "1"}, {"Lifnr": "2"}], "__next": f"http://sap{ROOT}VendorSet?$skiptoken=2"}},
        "2": {"d": {"results": [{"Lifnr": "3"}]}},
    }

    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=pages[req.url.params.get("$skiptoken")])

    assert [v["Lifnr"] for v in client(handler).query("VendorSet", filter="Land1 eq 'DE'")] == ["1", "2", "3"]

    def looping(req: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"d": {"results": [], "__next": f"http://sap{ROOT}VendorSet?x=1"}})

    c = client(looping)
    c.max_pages = 5
    with pytest.raises(GatewayError, match="more than 5 pages"):
        list(c.query("VendorSet"))


def test_logon_and_transport_errors() -> None:
    with pytest.raises(LogonError):
        client(lambda req: httpx.Response(401, text="<html>Logon failed</html>")).get_entity("VendorSet('1')")

    def boom(req: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=req)

    c = client(lambda req: httpx.Response(200, json={"d": {}}, headers={"x-csrf-token": "T"}))
    c.fetch_token()
    c._http._transport = httpx.MockTransport(boom)  # type: ignore[attr-defined]
    with pytest.raises(CommunicationError) as exc:
        c.update("VendorSet('1')", {"Name1": "x"})
    assert exc.value.uncertain is True


def test_merge_tunnelled_through_post() -> None:
    seen: list[tuple[str, str | None]] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append((req.method, req.headers.get("x-http-method")))
        if req.method == "GET":
            return httpx.Response(200, json={"d": {}}, headers={"x-csrf-token": "T"})
        return httpx.Response(204)

    c = ODataClient("http://sap", ROOT, "100", "U", "P", merge_method="X-HTTP-Method",
                    transport=httpx.MockTransport(handler))
    c.update("VendorSet('1')", {"Name1": "x"})
    assert seen[-1] == ("POST", "MERGE")


def test_reads_retried_with_backoff_modifications_never_resent() -> None:
    calls: list[str] = []
    timeouts = iter([True, True])

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(req.method)
        if req.method == "GET" and next(timeouts, False):
            raise httpx.ReadTimeout("timed out", request=req)
        if req.method == "GET":
            return httpx.Response(200, json={"d": {"Lifnr": "1"}}, headers={"x-csrf-token": "T"})
        raise httpx.ReadTimeout("timed out", request=req)

    sleeps: list[float] = []
    c = ODataClient("http://sap", ROOT, "100", "U", "P", transport=httpx.MockTransport(handler),
                    sleep=sleeps.append)
    assert c.get_entity("VendorSet('1')") == {"Lifnr": "1"}
    assert calls == ["GET", "GET", "GET"] and len(sleeps) == 2
    calls.clear()
    with pytest.raises(CommunicationError) as exc:
        c.update("VendorSet('1')", {"Name1": "N"})
    assert exc.value.uncertain and calls == ["GET", "MERGE"]  # token fetch, then one MERGE only


def test_gateway_shares_the_soap_clients_budget() -> None:
    from ml_connector.core.ratelimit import reset_budgets
    from ml_connector.systems.sap_ecc.client import SoapRfcClient

    reset_budgets()
    t = httpx.MockTransport(lambda r: httpx.Response(200, json={"d": {}}))
    soap = SoapRfcClient("http://sap:8000", "100", "U", "P", transport=t, calls_per_second=12, max_concurrency=3)
    gw = ODataClient("http://sap:8000/", ROOT, "100", "U", "P", transport=t, calls_per_second=12,
                     max_concurrency=3)
    assert gw.policy._limiter is soap.policy._limiter and gw.policy._cap is soap.policy._cap
