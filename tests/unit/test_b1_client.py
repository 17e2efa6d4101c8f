"""SAP Business One Service Layer client: cookie parsing, the four error shapes, paths and the
allow-list, next-link resolution and paging over a scripted sequence of answers."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from ml_connector.core.channel import ChannelRequest, ChannelResponse, InProcessChannel
from ml_connector.systems.sap_b1.allow import check_resource
from ml_connector.systems.sap_b1.client import (
    ChannelServiceLayerClient,
    ServiceLayerApi,
    SlResponse,
    channel_function,
    encode_query,
    make_handler,
    parse_set_cookies,
    resource_of,
    service_root_of,
)
from ml_connector.systems.sap_b1.errors import (
    B1CommunicationError,
    B1Error,
    B1NotFound,
    B1RequestError,
    B1SessionError,
    error_from_fault,
    parse_error,
)
from ml_connector.systems.sap_b1.sandbox.odata import ODataError, apply_query, parse_filter
from tests.support.b1 import ScriptedServiceLayer, request_params


def test_set_cookie_parsed_leniently() -> None:
    # Exactly as the manual shows them: B1SESSION has no Path and a trailing ';'.
    h = httpx.Headers([("Set-Cookie", "B1SESSION=PTRzIjYK-weN6-1Lx1-ZG0J-3ARxfjcU0Shy;HttpOnly;"),
                       ("Set-Cookie", "ROUTEID=.node1; path=/b1s")])
    assert parse_set_cookies(h) == {"B1SESSION": "PTRzIjYK-weN6-1Lx1-ZG0J-3ARxfjcU0Shy", "ROUTEID": ".node1"}
    h = httpx.Headers([("set-cookie", ' B1SESSION = "abc" ; Path=/ ; Secure'), ("Set-Cookie", "garbage"),
                       ("Set-Cookie", "ROUTEID=;")])
    assert parse_set_cookies(h) == {"B1SESSION": "abc", "ROUTEID": ""}


@pytest.mark.parametrize("body, code, message", [
    ('{"error":{"code":-10,"message":{"lang":"en-us","value":"1320000140 - Business partner code"}}}', -10,
     "1320000140 - Business partner code"),
    ('{"error":{"code":"-2039","message":"Another user or another operation modified data"}}', -2039,
     "Another user or another operation modified data"),
    ('{"error":{"code":"-5002","message":{"lang":"en-us","value":"Unbalanced"}}}', -5002, "Unbalanced"),
    ('{"error":{"code":-1000,"message":"invalid $crossjoin"}}', -1000, "invalid $crossjoin"),
    ('{"error":{"code":"E1","message":"text","innererror":{"context":null,"trace":null}}}', "E1", "text"),
])
def test_error_shapes(body: str, code: int | str, message: str) -> None:
    err = parse_error(400, body.encode())
    assert type(err) is B1Error and err.code == code and err.message == message and err.status == 400


def test_error_classes() -> None:
    s = parse_error(401, b'{"error":{"code":301,"message":{"lang":"en-us","value":"Invalid session or session '
                         b'already timeout."}}}')
    assert isinstance(s, B1SessionError) and s.code == 301 and s.lang == "en-us"
    assert isinstance(parse_error(400, b'{"error":{"code":"301","message":"x"}}'), B1SessionError)
    assert isinstance(parse_error(404, b'{"error":{"code":-2028,"message":"No matching records"}}'), B1NotFound)
    gw = parse_error(502, b"<html><body>Proxy Error</body></html>", uncertain=True)
    assert isinstance(gw, B1CommunicationError) and gw.uncertain and "Proxy Error" in gw.message
    assert isinstance(parse_error(500, b""), B1CommunicationError)
    assert str(parse_error(400, b'{"error":{"code":-5,"message":"m"}}')) == "m (HTTP 400, code -5)"


def test_error_round_trips_through_a_fault() -> None:
    err = B1CommunicationError("lost", status=504, uncertain=True)
    back = error_from_fault(err.to_fault())
    assert type(back) is B1CommunicationError and back.uncertain and back.status == 504
    e2 = error_from_fault(parse_error(400, b'{"error":{"code":-5002,"message":"u"}}').to_fault())
    assert type(e2) is B1Error and e2.code == -5002


def test_paths_and_resources() -> None:
    assert resource_of("JournalEntries") == "JournalEntries"
    assert resource_of("JournalEntries(5)/Cancel") == "JournalEntries"
    assert resource_of("BusinessPartners('C1')?$select=CardCode") == "BusinessPartners"
    assert resource_of("$batch") == "$batch"
    for bad in ("/b1s/v1/Users", "http://evil/b1s/v1/JournalEntries", "../v2/Users", "JournalEntries/../Users",
                "", "Journal Entries"):
        with pytest.raises(B1RequestError):
            resource_of(bad)
    assert channel_function("get", "ChartOfAccounts?$top=1") == "GET ChartOfAccounts"
    assert encode_query({"$filter": "Reference3 eq 'a b'", "$top": 5}) == "$filter=Reference3%20eq%20'a%20b'&$top=5"
    assert service_root_of("https://h:50000") == "https://h:50000/b1s/v1"
    assert service_root_of("https://h:50000/b1s/v2/") == "https://h:50000/b1s/v2"


def test_allow_list_resources_and_methods() -> None:
    allow = ["JournalEntries", "BusinessPartners:read", "Chart*:read"]

    def check(method: str, path: str, **kw: Any) -> Any:
        return check_resource("b1", channel_function(method, path), request_params(method, path, **kw), allow)

    assert check("GET", "JournalEntries") is None
    assert check("POST", "JournalEntries") is None
    assert check("POST", "JournalEntries(3)/Cancel") is None
    assert check("GET", "BusinessPartners('V1')") is None
    assert check("GET", "ChartOfAccounts") is None
    f = check("POST", "BusinessPartners")
    assert f is not None and f.type == "NotAllowed" and f.key == "BusinessPartners" and "write" in f.message
    f = check("GET", "Users")
    assert f is not None and f.key == "Users"
    f = check("GET", "journalentries")  # SL paths are case-sensitive, and so is the list
    assert f is not None and f.key == "journalentries"
    f = check("GET", "JournalEntries", headers={"Cookie": "B1SESSION=x"})
    assert f is not None and "Cookie" in f.message
    # Login/Logout are the agent's own (never a call), whatever the list says
    f = check_resource("b1", "POST Login", request_params("POST", "Login"), ["*"])
    assert f is not None and f.type == "NotAllowed" and "Login" in f.message
    # the label must match the request (the audit trail shows the label)
    f = check_resource("b1", "GET JournalEntries", request_params("GET", "Users"), ["JournalEntries"])
    assert f is not None and "does not match" in f.message


def test_pages_follow_v1_and_v2_links_resolved_against_the_root() -> None:
    api = ScriptedServiceLayer({
        "Orders": {"odata.metadata": "m", "value": [{"odata.etag": "x", "DocEntry": 1}],
                   "odata.nextLink": "/b1s/v1/Orders?$filter=DocTotal%20gt%205&$skip=1"},
        "Orders?$filter=DocTotal%20gt%205&$skip=1": {"value": [{"DocEntry": 2}],
                                                     "odata.nextLink": "Orders?$filter=DocTotal%20gt%205&$skip=2"},
        "Orders?$filter=DocTotal%20gt%205&$skip=2": {"value": [{"DocEntry": 3}]},
    })
    rows = api.get_all("Orders", {"$filter": "DocTotal gt 5"}, page_size=1)
    assert rows == [{"DocEntry": 1}, {"DocEntry": 2}, {"DocEntry": 3}]
    # the first request carries the options, the next ones only the opaque link; the size header each time
    assert api.asked[0] == ("Orders", {"$filter": "DocTotal gt 5"}, {"B1S-PageSize": "1"})
    assert [a[1] for a in api.asked[1:]] == [None, None]
    v2 = ScriptedServiceLayer({"Items": {"value": [{"k": 1}], "@odata.nextLink": "Items?$skip=20"},
                    "Items?$skip=20": {"value": [{"k": 2}]}}, root="/b1s/v2")
    assert v2.get_all("Items") == [{"k": 1}, {"k": 2}] and v2.asked[0][2] is None


def test_pages_refuse_links_outside_the_root_and_loops() -> None:
    api = ScriptedServiceLayer({"Orders": {"value": [], "odata.nextLink": "https://elsewhere/b1s/v1/Orders?$skip=1"}})
    with pytest.raises(B1Error, match="outside the service root"):
        api.get_all("Orders")
    loop = ScriptedServiceLayer({"A": {"value": [1], "odata.nextLink": "A?$skip=1"},
                      "A?$skip=1": {"value": [2], "odata.nextLink": "A?$skip=1"}})
    with pytest.raises(B1Error, match="repeated"):
        loop.get_all("A")
    with pytest.raises(B1Error, match="no 'value'"):
        ScriptedServiceLayer({"A": {"error": "x"}}).get_all("A")


def test_channel_client_and_handler_are_inverse() -> None:
    inner = ScriptedServiceLayer({"ChartOfAccounts?$skip=1": {"value": [{"Code": "2"}]},
                       "ChartOfAccounts": {"value": [{"Code": "1"}], "odata.nextLink": "ChartOfAccounts?$skip=1"}})
    ch = InProcessChannel()
    ch.register("b1", make_handler(inner))
    client = ChannelServiceLayerClient(ch, "b1")
    assert client.get_all("ChartOfAccounts", {"$top": 2}) == [{"Code": "1"}, {"Code": "2"}]
    assert inner.asked[0][1] == {"$top": "2"}
    # a v2 system behind the agent: its absolute-path links reach the caller root-relative
    v2 = ScriptedServiceLayer({"Items": {"value": [{"k": 1}], "@odata.nextLink": "/b1s/v2/Items?$skip=1"},
                    "Items?$skip=1": {"value": [{"k": 2}]}}, root="/b1s/v2")
    ch.register("v2", make_handler(v2))
    assert ChannelServiceLayerClient(ch, "v2").get_all("Items") == [{"k": 1}, {"k": 2}]

    class Failing(ServiceLayerApi):
        def request(self, method: str, path: str, **kw: Any) -> SlResponse:
            raise parse_error(400, b'{"error":{"code":-5002,"message":{"lang":"en-us","value":"Unbalanced"}}}')

    ch.register("bad", make_handler(Failing()))
    with pytest.raises(B1Error) as ei:
        ChannelServiceLayerClient(ch, "bad").create("JournalEntries", {})
    assert ei.value.code == -5002 and ei.value.message == "Unbalanced"
    # a handler refuses a call whose label does not match its request
    resp = ch.call(ChannelRequest(system="b1", function="GET Other", params=request_params("GET", "ChartOfAccounts")))
    assert isinstance(resp, ChannelResponse) and not resp.ok and resp.fault is not None
    assert resp.fault.type == "B1RequestError"


def test_sandbox_filter_subset() -> None:
    rows = [{"Code": "6100", "Name": "Office", "N": 1, "D": "2026-03-31"},
            {"Code": "6110", "Name": "Soft'ware", "N": 2, "D": "2026-04-01"},
            {"Code": "7000", "Name": "Dep", "N": 3, "D": None}]
    fields = {"Code", "Name", "N", "D"}

    def codes(f: str) -> list[str]:
        return [r["Code"] for r in rows if parse_filter(f, fields)(r)]

    assert codes("startswith(Code,'61') and N ge 2") == ["6110"]
    assert codes("Name eq 'Soft''ware' or (N lt 2 and not (Code eq '7000'))") == ["6100", "6110"]
    assert codes("D le '20260331000000'") == ["6100"]  # the manual's date literal, time ignored
    assert codes("D ne null") == ["6100", "6110"]
    for bad in ("Nope eq 1", "Code like 'x'", "Code eq", "(Code eq '1'"):
        with pytest.raises(ODataError):
            parse_filter(bad, fields)
    out, total = apply_query(rows, {"$orderby": "N desc"}, fields)
    assert [r["N"] for r in out] == [3, 2, 1] and total == 3


def test_agent_yaml_b1_system_needs_company_db(tmp_path: Any) -> None:
    from ml_connector.agent.config import AgentConfigError, load_agent_config

    p = tmp_path / "agent.yaml"
    p.write_text("control_plane: https://cp.example.com\nsystems:\n  b1:\n    type: sap_b1\n"
                 "    base_url: https://b1:50000\n    user: manager\n    password_secret: b1_pw\n"
                 "    allow: {resources: [JournalEntries]}\n", encoding="utf-8")
    with pytest.raises(AgentConfigError) as ei:
        load_agent_config(p)
    assert "systems.b1" in str(ei.value) and "company_db" in str(ei.value)
    p.write_text(p.read_text().replace("    user:", "    company_db: SBODEMOUS\n    user:"), encoding="utf-8")
    assert load_agent_config(p).systems["b1"].company_db == "SBODEMOUS"


def test_direct_client_waits_out_a_429_and_never_resends_a_post_that_may_have_arrived() -> None:
    from ml_connector.systems.sap_b1.client import ServiceLayerClient

    seen: list[str] = []
    script = {"GET": [httpx.Response(429, headers={"Retry-After": "0"}), httpx.Response(200, json={"value": []})],
              "POST": [httpx.Response(503, text="busy")]}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/Login"):
            return httpx.Response(200, json={"SessionTimeout": 30},
                                  headers={"Set-Cookie": "B1SESSION=s1; HttpOnly;"})
        seen.append(request.method)
        queue = script[request.method]
        return queue.pop(0) if len(queue) > 1 else queue[0]

    c = ServiceLayerClient("https://b1:50000", "SBODEMOUS", "manager", "pw-b1-unit", retry_base=0,
                           transport=httpx.MockTransport(handler))
    assert c.get_all("ChartOfAccounts") == []
    assert seen == ["GET", "GET"] and c.transport.stats.throttled == 1
    with pytest.raises(B1CommunicationError) as ei:
        c.create("Items", {"ItemCode": "A"})
    assert seen[2:] == ["POST"] and ei.value.status == 503  # 503 on a write: not sent again


def test_the_checks_reading_actions_are_safe_to_run_again_through_the_agent_writes_are_not() -> None:
    from ml_connector.systems.sap_b1 import ENTRY

    assert ENTRY.agent is not None
    for function in ("GET ChartOfAccounts", "POST CompanyService_GetPeriods", "POST CompanyService_GetFinancePeriods",
                     "POST SBOBobService_GetCurrencyRate"):
        assert ENTRY.agent.idempotent(function), function
    for function in ("POST JournalEntries", "PATCH JournalEntries", "POST SBOBobService_SetCurrencyRate"):
        assert not ENTRY.agent.idempotent(function), function
