"""SoapRfcClient over httpx.MockTransport: wire shape, sessions, errors, retries, budgets."""

from __future__ import annotations

import base64
import threading
import time

import httpx
import pytest

from ml_connector.core.channel import ChannelError, InProcessChannel
from ml_connector.core.ratelimit import reset_budgets
from ml_connector.systems.sap_ecc.call_policy import SEND_JITTER_GUARD, is_idempotent_default
from ml_connector.systems.sap_ecc.client import (
    ChannelRfcCaller,
    RfcCaller,
    SoapRfcClient,
    make_handler,
)
from ml_connector.systems.sap_ecc.errors import (
    ABAPApplicationError,
    ABAPRuntimeError,
    CommunicationError,
    LogonError,
)
from ml_connector.systems.sap_ecc.table_reader import TableReader
from tests.support.ecc_answers import PASSWORD, SYSTEM_FAILURE, fault, make, ok, raise_


@pytest.fixture(autouse=True)
def _fresh_budgets() -> None:
    reset_budgets()


# ----------------------------------------------------------------------------- wire shape

def test_request_shape_and_result() -> None:
    inner = "<ECHOTEXT>hi &amp; bye</ECHOTEXT><RESPTEXT>SAP R/3</RESPTEXT>"
    client, rec, _ = make([ok("STFC_CONNECTION", inner)], language="EN")
    out = client.call("STFC_CONNECTION", {"REQUTEXT": "hi & bye"})
    assert out == {"ECHOTEXT": "hi & bye", "RESPTEXT": "SAP R/3"}
    req = rec.requests[0]
    assert req.method == "POST" and req.url.path == "/sap/bc/soap/rfc"
    assert req.url.params["sap-client"] == "100" and req.url.params["sap-language"] == "EN"
    assert req.headers["content-type"] == 'text/xml; charset="UTF-8"'
    assert req.headers["accept"] == "text/xml"
    assert req.headers["soapaction"] == "urn:sap-com:document:sap:rfc:functions"
    basic = base64.b64encode(f"RFC_USER:{PASSWORD}".encode()).decode()
    assert req.headers["authorization"] == "Basic " + basic
    assert b"<REQUTEXT>hi &amp; bye</REQUTEXT>" in req.content


def test_tables_declared_and_returned_empty() -> None:
    inner = "<DATA/><FIELDS><item><FIELDNAME>MANDT</FIELDNAME></item></FIELDS><OPTIONS/>"
    client, rec, _ = make([ok("RFC_READ_TABLE", inner)])
    out = client.call("RFC_READ_TABLE", {"QUERY_TABLE": "T000", "NO_DATA": "X"},
                      tables=["OPTIONS", "FIELDS", "DATA"])
    assert out["DATA"] == [] and out["OPTIONS"] == [] and out["FIELDS"] == [{"FIELDNAME": "MANDT"}]
    assert b"<OPTIONS/><FIELDS/><DATA/>" in rec.requests[0].content


def test_cookie_jar_is_kept_across_calls() -> None:
    def first(request: httpx.Request) -> httpx.Response:
        r = ok("RFC_PING")
        r.headers["set-cookie"] = "SAP_SESSIONID_ECD_100=abc%3d; path=/"
        return r

    client, rec, _ = make([first, ok("RFC_PING")])
    client.call("RFC_PING")
    client.call("RFC_PING")
    assert "SAP_SESSIONID_ECD_100=abc%3d" in rec.requests[1].headers.get("cookie", "")
    # the security session logs the second call on instead of the credentials; sap-client always sent
    assert "authorization" in rec.requests[0].headers and "authorization" not in rec.requests[1].headers
    assert rec.requests[1].url.params["sap-client"] == "100"
    assert client.logons == 1


def _with_session(token: str) -> httpx.Response:
    r = ok("RFC_PING")
    r.headers["set-cookie"] = f"SAP_SESSIONID_ECD_100={token}; path=/"
    return r


def test_refused_session_logs_on_again_once() -> None:
    unauthorized = httpx.Response(401, headers={"www-authenticate": 'Basic realm="x"'}, text="Logon Error")
    client, rec, _ = make([lambda r: _with_session("one"), lambda r: unauthorized,
                           lambda r: _with_session("two"), ok("RFC_PING")])
    for _ in range(3):
        client.call("RFC_PING")
    # logon, session refused (401) -> one Basic logon that succeeds, then the new session
    assert ["authorization" in r.headers for r in rec.requests] == [True, False, True, False]
    assert "SAP_SESSIONID_ECD_100=one" in rec.requests[1].headers["cookie"]
    assert "SAP_SESSIONID_ECD_100=two" in rec.requests[3].headers["cookie"]
    assert client.logons == 2


def test_refused_session_and_refused_logon_is_a_logon_error() -> None:
    unauthorized = httpx.Response(401, headers={"www-authenticate": 'Basic realm="x"'}, text="Logon Error")
    client, rec, _ = make([lambda r: _with_session("one"), lambda r: unauthorized, lambda r: unauthorized])
    client.call("RFC_PING")
    with pytest.raises(LogonError):
        client.call("RFC_PING")
    assert len(rec.requests) == 3 and client.logons == 2


def test_sessions_are_never_shared_across_users_clients_or_passwords() -> None:
    from ml_connector.systems.sap_ecc.client import SessionCache

    cache = SessionCache(idle_seconds=60)
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _with_session(f"t{len(seen)}")

    def client(user: str, sap_client: str = "100", password: str = PASSWORD) -> SoapRfcClient:
        return SoapRfcClient("http://sap-shared:8000", sap_client, user, password, sessions=cache,
                             transport=httpx.MockTransport(answer), sleep=lambda s: None)

    a, a2, b, other_client, wrong = (client("ALICE"), client("alice"), client("BOB"), client("ALICE", "200"),
                                     client("ALICE", password="not-the-password"))
    for c in (a, a2, b, other_client, wrong):
        c.call("RFC_PING")
    # ALICE's second client (user names are case-insensitive in SAP) reuses her session; nobody else does
    assert [c.logons for c in (a, a2, b, other_client, wrong)] == [1, 0, 1, 1, 1]
    assert "cookie" not in seen[2].headers and "cookie" not in seen[3].headers


def test_idle_session_is_not_sent() -> None:
    from ml_connector.systems.sap_ecc.client import SessionCache

    now = [0.0]
    cache = SessionCache(idle_seconds=10, clock=lambda: now[0])
    client, rec, _ = make([lambda r: _with_session("one"), ok("RFC_PING"), lambda r: _with_session("two")],
                          sessions=cache)
    client.call("RFC_PING")
    now[0] = 9.0
    client.call("RFC_PING")  # idle 9 s: the session is used (and its idle time restarts)
    now[0] = 19.5
    client.call("RFC_PING")  # idle 10.5 s: SAP would have ended it; log on without trying it
    assert ["authorization" in r.headers for r in rec.requests] == [True, False, True]
    assert client.logons == 2


def test_ping_and_system_info() -> None:
    client, _, _ = make([ok("RFC_PING"), ok("RFC_SYSTEM_INFO",
                                            "<RFCSI_EXPORT><RFCSYSID>ECD</RFCSYSID><RFCSAPRL>731</RFCSAPRL>"
                                            "</RFCSI_EXPORT>")])
    assert isinstance(client.ping(), float)
    assert client.system_info() == {"RFCSYSID": "ECD", "RFCSAPRL": "731"}


def test_repr_hides_password() -> None:
    client, _, _ = make([ok("RFC_PING")])
    assert PASSWORD not in repr(client) and "RFC_USER" in repr(client)


# ----------------------------------------------------------------------------- errors

def test_401_is_logon_error_with_realm_not_retried() -> None:
    realm = 'Basic realm="SAP NetWeaver Application Server [ECD/100]"'
    resp = httpx.Response(401, headers={"www-authenticate": realm},
                          content=b"<html><title>Logon Error Message</title></html>")
    client, rec, sleeps = make([resp])
    with pytest.raises(LogonError) as ei:
        client.call("RFC_READ_TABLE", {"QUERY_TABLE": "T000"})
    err = ei.value
    assert err.key == "RFC_LOGON_FAILURE" and err.code == 2
    assert "[ECD/100]" in str(err) and "100" in err.message
    assert PASSWORD not in str(err) and PASSWORD not in repr(err) and "Basic " not in str(err)
    assert PASSWORD not in err.to_fault().model_dump_json()
    assert len(rec.requests) == 1 and sleeps == []


def test_classic_exception_not_retried() -> None:
    detail = ('<rfc:RFC_READ_TABLE.Exception xmlns:rfc="urn:sap-com:document:sap:rfc:functions">'
              "<Name>TABLE_NOT_AVAILABLE</Name><Message><ID>SV</ID><Number>029</Number></Message>"
              "<Attributes><V1>T008X</V1></Attributes></rfc:RFC_READ_TABLE.Exception>")
    client, rec, sleeps = make([fault("TABLE_NOT_AVAILABLE", detail)])
    with pytest.raises(ABAPApplicationError) as ei:
        client.call("RFC_READ_TABLE", {"QUERY_TABLE": "T008X"})
    assert ei.value.key == "TABLE_NOT_AVAILABLE" and ei.value.msg_v1 == "T008X"
    assert len(rec.requests) == 1 and sleeps == []


def test_404_and_garbage() -> None:
    client, rec, _ = make([httpx.Response(404, content=b"not found")])
    with pytest.raises(CommunicationError) as ei:
        client.call("RFC_PING")
    assert ei.value.key == "SERVICE_NOT_FOUND" and len(rec.requests) == 1
    client, rec, _ = make([httpx.Response(200, content=b"<<<not xml")], max_attempts=2)
    with pytest.raises(CommunicationError) as ei:
        client.call("BAPI_ACC_DOCUMENT_POST", {})
    assert ei.value.uncertain and len(rec.requests) == 1  # 200 = executed; do not repeat a posting


# ----------------------------------------------------------------------------- retries

def test_system_failure_retried_with_full_jitter_backoff() -> None:
    client, rec, sleeps = make([fault("Internal Server Error", SYSTEM_FAILURE),
                                fault("Internal Server Error", SYSTEM_FAILURE), ok("RFC_READ_TABLE")],
                               backoff_base=0.5, backoff_max=30.0)
    assert client.call("RFC_READ_TABLE", {"QUERY_TABLE": "T000"}) == {}
    assert len(rec.requests) == 3 and len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[1] <= 1.0


def test_attempts_are_bounded_and_backoff_capped() -> None:
    client, rec, sleeps = make([fault("x", SYSTEM_FAILURE)], backoff_base=10.0, backoff_max=15.0,
                               max_attempts=6)
    with pytest.raises(ABAPRuntimeError) as ei:
        client.call("RFC_READ_TABLE", {})
    assert ei.value.key == "SYSTEM_FAILURE"
    assert len(rec.requests) == 6 and len(sleeps) == 5
    assert all(0 <= s <= 15.0 for s in sleeps)


def test_backoff_defaults_come_from_provider_facts() -> None:
    client, _, _ = make([ok("RFC_PING")])
    assert (client.backoff_base, client.backoff_max, client.max_attempts) == (0.5, 30.0, 6)


def test_connect_error_retried_even_for_postings() -> None:
    client, rec, sleeps = make([raise_(httpx.ConnectError("refused")), ok("BAPI_ACC_DOCUMENT_POST",
                                                                          "<OBJ_KEY>010000000814102024</OBJ_KEY>")])
    out = client.call("BAPI_ACC_DOCUMENT_POST", {"DOCUMENTHEADER": {"REF_DOC_NO": "X1"}})
    assert out["OBJ_KEY"] == "010000000814102024" and len(rec.requests) == 2 and len(sleeps) == 1


@pytest.mark.parametrize("exc", [httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("peer closed")])
def test_uncertain_failure_not_retried_for_non_idempotent(exc: Exception) -> None:
    client, rec, sleeps = make([raise_(exc), ok("BAPI_ACC_DOCUMENT_POST")])
    with pytest.raises(CommunicationError) as ei:
        client.call("BAPI_ACC_DOCUMENT_POST", {"DOCUMENTHEADER": {"REF_DOC_NO": "X1"}})
    assert ei.value.uncertain is True
    assert ei.value.to_fault().details["uncertain"] is True
    assert len(rec.requests) == 1 and sleeps == []


@pytest.mark.parametrize("exc", [httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("peer closed")])
def test_uncertain_failure_retried_for_idempotent(exc: Exception) -> None:
    client, rec, sleeps = make([raise_(exc), ok("RFC_READ_TABLE")])
    assert client.call("RFC_READ_TABLE", {}) == {}
    assert len(rec.requests) == 2 and len(sleeps) == 1


def test_system_failure_of_posting_is_uncertain_not_retried() -> None:
    client, rec, _ = make([fault("x", SYSTEM_FAILURE), ok("Z_POST_AND_COMMIT")])
    with pytest.raises(ABAPRuntimeError) as ei:
        client.call("Z_POST_AND_COMMIT", {})
    assert ei.value.uncertain and len(rec.requests) == 1


def test_custom_idempotent_functions() -> None:
    client, rec, _ = make([raise_(httpx.ReadTimeout("slow")), ok("Z_READ_VENDORS")],
                          idempotent_functions=["Z_READ_VENDORS"])
    assert client.call("Z_READ_VENDORS") == {}
    assert len(rec.requests) == 2


def test_default_idempotency_rules() -> None:
    for fm in ("RFC_READ_TABLE", "BBP_RFC_READ_TABLE", "/BODS/RFC_READ_TABLE", "RFC_PING", "RFC_SYSTEM_INFO",
               "STFC_CONNECTION", "RFC_READ_TEXT", "BAPI_VENDOR_GETDETAIL", "BAPI_COMPANYCODE_GETLIST"):
        assert is_idempotent_default(fm), fm
    for fm in ("BAPI_ACC_DOCUMENT_POST", "BAPI_TRANSACTION_COMMIT", "Z_POST_AND_COMMIT",
               "BAPI_INCOMINGINVOICE_CREATE"):
        assert not is_idempotent_default(fm), fm


# ----------------------------------------------------------------------------- budgets

@pytest.mark.parametrize("cps", [0, 9, 51, 1000])
def test_calls_per_second_range_validated(cps: int) -> None:
    with pytest.raises(ValueError, match="between 10 and 50"):
        make([ok("RFC_PING")], calls_per_second=cps)


def test_budget_shared_per_system_and_client() -> None:
    t = httpx.MockTransport(lambda r: ok("RFC_PING"))
    a = SoapRfcClient("http://sap:8000", "100", "A", "x", transport=t, calls_per_second=12)
    b = SoapRfcClient("http://sap:8000/", 100, "B", "y", transport=t, calls_per_second=12)
    c = SoapRfcClient("http://sap:8000", "200", "A", "x", transport=t, calls_per_second=12)
    assert a.policy._limiter is b.policy._limiter and a.policy._cap is b.policy._cap
    assert a.policy._limiter is not c.policy._limiter
    assert a.policy._limiter.limit == 12 and a.policy._limiter.period == 1.0 + SEND_JITTER_GUARD


def test_rate_limit_paces_calls() -> None:
    client, rec, _ = make([ok("RFC_PING")], calls_per_second=10)
    start = time.monotonic()
    for _ in range(12):
        client.call("RFC_PING")
    assert time.monotonic() - start >= 0.9  # the 11th call waits for the 1 s window
    assert len(rec.requests) == 12


def test_concurrency_cap_limits_calls_in_flight() -> None:
    lock = threading.Lock()
    state = {"now": 0, "max": 0}

    def slow(request: httpx.Request) -> httpx.Response:
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.05)
        with lock:
            state["now"] -= 1
        return ok("RFC_PING")

    client, _, _ = make([slow], max_concurrency=2, calls_per_second=50)
    threads = [threading.Thread(target=client.call, args=("RFC_PING",)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert state["max"] == 2


# ----------------------------------------------------------------------------- agent channel

def test_channel_caller_roundtrip_and_typed_faults() -> None:
    detail = ('<rfc:RFC_READ_TABLE.Exception xmlns:rfc="urn:sap-com:document:sap:rfc:functions">'
              "<Name>TABLE_NOT_AVAILABLE</Name><Message><ID>SV</ID><Number>029</Number></Message>"
              "<Attributes><V1>T008X</V1></Attributes></rfc:RFC_READ_TABLE.Exception>")

    def handler(request: httpx.Request) -> httpx.Response:
        if b"T008X" in request.content:
            return fault("TABLE_NOT_AVAILABLE", detail)
        assert b"<BUDAT>20241003</BUDAT>" in request.content
        assert b"<DATA/>" in request.content
        return ok("RFC_READ_TABLE", "<DATA/><FIELDS/>")

    client, _, _ = make([handler])
    channel = InProcessChannel()
    channel.register("ecc", make_handler(client))
    caller: RfcCaller = ChannelRfcCaller(channel, "ecc")
    import datetime as dt
    assert caller.call("RFC_READ_TABLE", {"QUERY_TABLE": "BKPF", "BUDAT": dt.date(2024, 10, 3)},
                       tables=["DATA", "FIELDS"]) == {"DATA": [], "FIELDS": []}
    with pytest.raises(ABAPApplicationError) as ei:
        caller.call("RFC_READ_TABLE", {"QUERY_TABLE": "T008X"})
    assert str(ei.value) == ("5 (rc=5): key=TABLE_NOT_AVAILABLE, message=ID:SV Type:E Number:029 T008X "
                             "[MSG: class=SV, type=E, number=029, v1-4:=T008X;;;]")
    with pytest.raises(ChannelError):
        ChannelRfcCaller(channel, "nope").call("RFC_PING")


def test_table_reader_over_channel_and_soap() -> None:
    """End to end without a server: TableReader → channel → client → MockTransport."""
    fields = ("<FIELDS><item><FIELDNAME>LIFNR</FIELDNAME><OFFSET>000000</OFFSET><LENGTH>000010</LENGTH>"
              "<TYPE>C</TYPE><FIELDTEXT>Vendor</FIELDTEXT></item></FIELDS>")

    def handler(request: httpx.Request) -> httpx.Response:
        if b"<NO_DATA>X</NO_DATA>" in request.content:
            return ok("RFC_READ_TABLE", fields + "<DATA/>")
        return ok("RFC_READ_TABLE", fields + "<DATA><item><WA>0000000001</WA></item>"
                  "<item><WA>0000000002</WA></item></DATA>")

    client, _, _ = make([handler])
    channel = InProcessChannel()
    channel.register("ecc", make_handler(client))
    reader = TableReader(ChannelRfcCaller(channel, "ecc"))
    pages = list(reader.read("LFA1", ["LIFNR"], key_fields=["LIFNR"], page_size=10))
    assert [r["LIFNR"] for p in pages for r in p.rows] == ["0000000001", "0000000002"]
