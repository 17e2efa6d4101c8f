"""The ECC sandbox as a real HTTP server (uvicorn in a thread), driven like an independent client."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from lxml import etree

from ml_connector.core.ratelimit import reset_budgets
from ml_connector.core.servers import ServerHandle, serve_in_thread
from ml_connector.systems.sap_ecc.posting import (
    ACC_TABLES,
    build_acc_document,
    document_xblnr,
    split_obj_key,
)
from ml_connector.systems.sap_ecc.sandbox.app import EccSandbox, create_app
from tests.support.ecc_posting import fi_client, live_documents, lookup_poster, simple_invoice
from tests.support.ecc_soap import AUTH, HEADERS, RFC_NS, lookup_raw, page_request, rfc_url

pytestmark = pytest.mark.smoke  # `make test-fast` runs it (this system's or flow's loopback smoke)

# The request exactly as SharpSapRfc (SoapRfcWebClient.cs) writes it: urn prefix, unqualified
# parameters, every TABLES parameter declared, reference §1.1.
SHARP_REQUEST = """<?xml version="1.0" encoding="utf-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
                  xmlns:urn="urn:sap-com:document:sap:rfc:functions">
  <soapenv:Header/>
  <soapenv:Body>
    <urn:RFC_READ_TABLE>
      <QUERY_TABLE>LFA1</QUERY_TABLE>
      <DELIMITER>|</DELIMITER>
      <ROWCOUNT>100</ROWCOUNT>
      <ROWSKIPS>0</ROWSKIPS>
      <OPTIONS>
        <item><TEXT>LAND1 = 'US' AND LOEVM = ' '</TEXT></item>
      </OPTIONS>
      <FIELDS>
        <item><FIELDNAME>LIFNR</FIELDNAME></item>
        <item><FIELDNAME>NAME1</FIELDNAME></item>
      </FIELDS>
      <DATA/>
    </urn:RFC_READ_TABLE>
  </soapenv:Body>
</soapenv:Envelope>"""


PING = ('<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        f'xmlns:urn="{RFC_NS}"><soapenv:Body><urn:RFC_PING/></soapenv:Body></soapenv:Envelope>')


@pytest.fixture(scope="module")
def sandbox() -> EccSandbox:
    return EccSandbox(vendors=50000)


@pytest.fixture(scope="module")
def server(sandbox: EccSandbox) -> Iterator[ServerHandle]:
    handle = serve_in_thread(create_app(sandbox), name="ecc-sandbox")
    yield handle
    handle.stop()


@pytest.fixture
def http(server: ServerHandle, sandbox: EccSandbox) -> Iterator[httpx.Client]:
    sandbox.faults.reset()
    with httpx.Client(base_url=server.url, auth=AUTH, headers=HEADERS, timeout=30) as c:
        yield c
    sandbox.faults.reset()


def test_sharpsaprfc_request_works_unchanged(http: httpx.Client, sandbox: EccSandbox) -> None:
    r = http.post(rfc_url("RFC_READ_TABLE"), content=SHARP_REQUEST.encode())
    assert r.status_code == 200, r.text
    root = etree.fromstring(r.content)
    resp = root.xpath("//*[local-name()='RFC_READ_TABLE.Response']")[0]
    assert etree.QName(resp).namespace == RFC_NS
    # SharpSapRfc matches the prefixed tag name 'urn:RFC_READ_TABLE.Response': the default echoes it
    assert resp.prefix == "urn"
    assert [c.tag for c in resp] == ["DATA", "FIELDS", "OPTIONS"]
    fields = [{c.tag: c.text for c in item} for item in resp.find("FIELDS")]
    assert [(f["FIELDNAME"], f["OFFSET"], f["LENGTH"]) for f in fields] == [
        ("LIFNR", "000000", "000010"), ("NAME1", "000011", "000035")]
    rows = [item.find("WA").text for item in resp.find("DATA")]
    assert len(rows) == 100
    expected = {r["LIFNR"]: r["NAME1"] for r in sandbox.data.rows("LFA1")
                if r["LAND1"] == "US" and not r.get("LOEVM")}
    for wa in rows:
        assert expected[wa[:10]] == wa[11:46].rstrip()
    assert resp.find("OPTIONS")[0].find("TEXT").text == "LAND1 = 'US' AND LOEVM = ' '"
    assert r.headers["sap-server"] == "true" and "SAP_SESSIONID_ECD_100=" in r.headers["set-cookie"]


def test_session_cookie_logs_on_without_basic(server: ServerHandle) -> None:
    with httpx.Client(base_url=server.url, headers=HEADERS) as c:
        assert c.post(rfc_url("RFC_PING"), content=PING).status_code == 401
        r = c.post(rfc_url("RFC_PING"), content=PING, auth=AUTH)
        assert r.status_code == 200
        assert c.post(rfc_url("RFC_PING"), content=PING).status_code == 200  # cookie jar


def test_key_range_extraction_of_50000_vendors_is_fast(http: httpx.Client) -> None:
    start = time.perf_counter()
    seen: set[str] = set()
    last, calls = "", 0
    while True:
        r = http.post(rfc_url("RFC_READ_TABLE"), content=page_request(last, 10000).encode())
        assert r.status_code == 200
        calls += 1
        keys = re.findall(rb"<WA>(\d{10})\|", r.content)
        if not keys:
            break
        seen.update(keys)
        last = max(keys).decode()
    elapsed = time.perf_counter() - start
    assert len(seen) == 50000 and calls == 6
    assert elapsed < 8.0, f"50k extraction took {elapsed:.1f}s"


def test_drop_closes_the_connection_without_a_response(http: httpx.Client, server: ServerHandle,
                                                       sandbox: EccSandbox) -> None:
    r = http.post("/_sandbox/faults", json={"fail_next": 1, "fail_kind": "drop"})
    assert r.status_code == 200 and r.json()["fail_next"] == 1
    # Closed without an answer: the client sees the end of the stream, or a reset when the close
    # came while the request was still in the server's receive buffer (timing; both are a drop).
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        http.post(rfc_url("RFC_PING"), content=PING)
    assert http.post(rfc_url("RFC_PING"), content=PING).status_code == 200
    stats = http.get("/_sandbox/stats").json()
    assert stats["faults_injected"]["drop"] == 1


def test_system_failure_over_http(http: httpx.Client) -> None:
    http.post("/_sandbox/faults", json={"fail_next": 1, "fail_kind": "system_failure"})
    r = http.post(rfc_url("RFC_PING"), content=PING)
    assert r.status_code == 500
    root = etree.fromstring(r.content)
    err = root.xpath("//*[local-name()='Error']")[0]
    assert etree.QName(err).namespace == "urn:sap-com:document:sap:soap:functions"
    assert err.find("type").text == "SYSTEM_FAILURE"


def test_max_concurrent_rejects_calls_above_the_cap(http: httpx.Client, server: ServerHandle,
                                                    sandbox: EccSandbox) -> None:
    http.post("/_sandbox/stats/reset")
    http.post("/_sandbox/faults", json={"latency": 0.4, "max_concurrent": 2})
    statuses: list[int] = []
    bodies: list[bytes] = []
    lock = threading.Lock()

    def one() -> None:
        with httpx.Client(base_url=server.url, auth=AUTH, headers=HEADERS, timeout=30) as c:
            r = c.post(rfc_url("RFC_PING"), content=PING)
        with lock:
            statuses.append(r.status_code)
            bodies.append(r.content)

    threads = [threading.Thread(target=one) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200, 200, 500, 500, 500]
    assert all(b"SYSTEM_FAILURE" in b for s, b in zip(statuses, bodies, strict=True) if s == 500)
    stats = http.get("/_sandbox/stats").json()
    assert stats["peak_in_flight"] >= 3 and stats["rejected_concurrency"] == 3
    assert stats["calls"]["RFC_PING"] == 2 and stats["in_flight"] == 0


def test_latency_switch(http: httpx.Client) -> None:
    http.post("/_sandbox/faults", json={"latency": 0.3})
    start = time.perf_counter()
    assert http.post(rfc_url("RFC_PING"), content=PING).status_code == 200
    assert time.perf_counter() - start >= 0.3
    assert http.post("/_sandbox/faults", json={"nope": 1}).status_code == 400


def test_vendor_admin_endpoints_write_change_documents(http: httpx.Client, sandbox: EccSandbox) -> None:
    r = http.post("/_sandbox/vendors/100042", json={"NAME1": "Renamed & Co | KG"})
    assert r.status_code == 200, r.text
    changenr = r.json()["changenr"]
    assert changenr and int(changenr) > 0
    r = http.post("/_sandbox/vendors/0000100042/delete-flag")
    assert r.status_code == 200 and int(r.json()["changenr"]) == int(changenr) + 1
    assert http.post("/_sandbox/vendors/9999999", json={"NAME1": "x"}).status_code == 404
    body = ('<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            f'xmlns:urn="{RFC_NS}"><soapenv:Body><urn:RFC_READ_TABLE><QUERY_TABLE>CDPOS</QUERY_TABLE>'
            "<DELIMITER>|</DELIMITER><OPTIONS><item><TEXT>OBJECTCLAS = 'KRED' AND OBJECTID = '0000100042'"
            "</TEXT></item></OPTIONS><FIELDS><item><FIELDNAME>CHANGENR</FIELDNAME></item>"
            "<item><FIELDNAME>FNAME</FIELDNAME></item><item><FIELDNAME>VALUE_NEW</FIELDNAME></item></FIELDS>"
            "<DATA/></urn:RFC_READ_TABLE></soapenv:Body></soapenv:Envelope>")
    r = http.post(rfc_url("RFC_READ_TABLE"), content=body.encode())
    assert r.status_code == 200, r.text
    root = etree.fromstring(r.content)
    rows = sorted(wa.text for wa in root.xpath("//*[local-name()='WA']"))
    assert rows == [f"{changenr}|NAME1                         |Renamed & Co | KG",
                    f"{int(changenr) + 1:010d}|LOEVM                         |X"]
    r = http.post("/_sandbox/vendors", json={"NAME1": "Created Over HTTP", "LAND1": "DE", "bukrs": ["2000"]})
    assert r.status_code == 201 and sandbox.data.get("LFB1", (r.json()["lifnr"], "2000")) is not None


def test_config_endpoint_and_wsdl(http: httpx.Client, sandbox: EccSandbox) -> None:
    assert http.get("/_sandbox/config").json()["sid"] == "ECD"
    r = http.get("/sap/bc/soap/wsdl?sap-client=100&services=RFC_READ_TABLE")
    assert r.status_code == 200
    root = etree.fromstring(r.content)
    names = root.xpath("//*[local-name()='element']/@name")
    assert "RFC_READ_TABLE" in names and "RFC_READ_TABLE.Response" in names
    assert http.get("/sap/bc/soap/wsdl?sap-client=100&services=Z_NOPE").status_code == 404


# ---------------------------------------------------------------------------------------------
# [U] switches seen by the real client: date_output and stateful_sessions (reference §1.1, §7)

CLIENT = "100"


@pytest.fixture(scope="module")
def fi_server() -> Iterator[tuple[EccSandbox, ServerHandle]]:
    state = EccSandbox(vendors=300, seed=11)
    handle = serve_in_thread(create_app(state), name="ecc-switches")
    yield state, handle
    handle.stop()


@pytest.fixture
def fi_sandbox(fi_server: tuple[EccSandbox, ServerHandle]) -> Iterator[EccSandbox]:
    state, _ = fi_server
    saved = {"date_output": state.config.date_output, "stateful_sessions": state.config.stateful_sessions}
    reset_budgets()
    yield state
    state.set_config(**saved)
    state.faults.reset()
    state.fi.faults.update(reset=True)


def test_date_output_iso_and_internal_give_identical_client_results(
        fi_server: tuple[EccSandbox, ServerHandle], fi_sandbox: EccSandbox) -> None:
    _, handle = fi_server
    state = fi_sandbox
    doc = simple_invoice(state, f"date-switch-{time.time_ns()}")
    paid = next(r for r in state.data.rows("BSAK", CLIENT) if r["BLART"] == "KR")
    seen: dict[str, Any] = {}
    for variant in ("iso", "internal"):
        state.set_config(date_output=variant)
        poster = lookup_poster(fi_client(handle))
        res = poster.post(doc)  # first variant posts, the second finds it (lookup returns BUDAT)
        assert res.already_posted == (variant == "internal")
        raw = lookup_raw(handle, "1000", document_xblnr(doc), "2025")
        budat = etree.fromstring(raw).xpath("//*[local-name()='BUDAT']")[0].text
        assert budat == ("2025-03-05" if variant == "iso" else "20250305")  # the switch is on the wire
        refs = poster.find_documents("1000", document_xblnr(doc), "2025")
        assert [r.budat for r in refs] == ["20250305"]  # the client normalises ISO back to internal
        block = poster.set_payment_block(res.bukrs, res.belnr, res.gjahr, "A")
        status = poster.payment_status(res.bukrs, res.belnr, res.gjahr)
        poster.remove_payment_block(res.bukrs, res.belnr, res.gjahr)
        seen[variant] = ((res.belnr, res.bukrs, res.gjahr, res.xblnr, res.obj_key), refs, block, status,
                         poster.payment_status(paid["BUKRS"], paid["BELNR"], paid["GJAHR"]))
    assert seen["iso"] == seen["internal"]
    assert seen["iso"][3].status == "open" and seen["iso"][3].payment_block == "A"
    assert seen["iso"][4].status == "paid" and len(seen["iso"][4].clearing_date) == 8
    assert len(live_documents(state, doc)) == 1


def test_stateless_default_commit_in_a_later_request_commits_nothing(
        fi_server: tuple[EccSandbox, ServerHandle], fi_sandbox: EccSandbox) -> None:
    _, handle = fi_server
    assert fi_sandbox.config.stateful_sessions is False
    client = fi_client(handle)
    doc = simple_invoice(fi_sandbox, f"stateless-{time.time_ns()}")
    out = client.call("BAPI_ACC_DOCUMENT_POST", build_acc_document(doc), tables=ACC_TABLES)
    assert out["OBJ_KEY"] != "$" and any(c.name.startswith("SAP_SESSIONID") for c in client.cookies.jar)
    client.call("BAPI_TRANSACTION_COMMIT", {"WAIT": "X"})  # same cookie jar, but a new session
    belnr, bukrs, gjahr = split_obj_key(out["OBJ_KEY"])
    assert fi_sandbox.data.get("BKPF", (bukrs, belnr, gjahr), CLIENT) is None
    assert live_documents(fi_sandbox, doc) == [] and fi_sandbox.open_update_tasks() == 0


def test_stateful_sessions_commit_in_a_later_request_of_the_same_session(
        fi_server: tuple[EccSandbox, ServerHandle], fi_sandbox: EccSandbox) -> None:
    _, handle = fi_server
    fi_sandbox.set_config(stateful_sessions=True)
    a, b = fi_client(handle), fi_client(handle)
    doc = simple_invoice(fi_sandbox, f"stateful-{time.time_ns()}")
    out = a.call("BAPI_ACC_DOCUMENT_POST", build_acc_document(doc), tables=ACC_TABLES)
    belnr, bukrs, gjahr = split_obj_key(out["OBJ_KEY"])
    assert fi_sandbox.open_update_tasks() == 1
    b.call("BAPI_TRANSACTION_COMMIT", {"WAIT": "X"})  # another session: commits nothing of a's LUW
    assert fi_sandbox.data.get("BKPF", (bukrs, belnr, gjahr), CLIENT) is None
    commit = a.call("BAPI_TRANSACTION_COMMIT", {"WAIT": "X"})  # a's session cookie: same LUW
    assert commit["RETURN"]["TYPE"] == ""
    assert fi_sandbox.data.get("BKPF", (bukrs, belnr, gjahr), CLIENT) is not None
    assert [r["BELNR"] for r in live_documents(fi_sandbox, doc)] == [belnr]
    assert fi_sandbox.open_update_tasks() == 0
    # rollback in a later request of the session discards the open LUW
    doc2 = simple_invoice(fi_sandbox, f"stateful-rb-{time.time_ns()}")
    a.call("BAPI_ACC_DOCUMENT_POST", build_acc_document(doc2), tables=ACC_TABLES)
    a.call("BAPI_TRANSACTION_ROLLBACK")
    a.call("BAPI_TRANSACTION_COMMIT", {"WAIT": "X"})
    assert live_documents(fi_sandbox, doc2) == []
    # switching back to stateless ends the open LUWs uncommitted
    a.call("BAPI_ACC_DOCUMENT_POST", build_acc_document(doc2), tables=ACC_TABLES)
    fi_sandbox.set_config(stateful_sessions=False)
    assert fi_sandbox.open_update_tasks() == 0
    a.call("BAPI_TRANSACTION_COMMIT", {"WAIT": "X"})
    assert live_documents(fi_sandbox, doc2) == []


@pytest.mark.parametrize("stateful", [False, True])
def test_wrapper_posts_exactly_once_with_and_without_stateful_sessions(
        fi_server: tuple[EccSandbox, ServerHandle], fi_sandbox: EccSandbox, stateful: bool) -> None:
    _, handle = fi_server
    fi_sandbox.set_config(stateful_sessions=stateful)
    before = fi_sandbox.stats.calls.copy()
    poster = lookup_poster(fi_client(handle))
    doc = simple_invoice(fi_sandbox, f"once-{stateful}-{time.time_ns()}")
    res = poster.post(doc)
    assert not res.already_posted
    again = poster.post(doc)
    assert again.already_posted and again.belnr == res.belnr
    # an uncertain outcome (SYSTEM_FAILURE after COMMIT WORK) is resolved by lookup, not reposted
    doc2 = simple_invoice(fi_sandbox, f"once-uncertain-{stateful}-{time.time_ns()}")
    fi_sandbox.fi.faults.update(fail_after_commit=1, fail_after_commit_mode="system_failure")
    assert poster.post(doc2).recovered
    calls = fi_sandbox.stats.calls
    assert calls["Z_MLC_ACC_DOCUMENT_POST"] - before["Z_MLC_ACC_DOCUMENT_POST"] == 2  # one per document
    assert calls["BAPI_ACC_DOCUMENT_POST"] == before["BAPI_ACC_DOCUMENT_POST"]
    assert calls["BAPI_TRANSACTION_COMMIT"] == before["BAPI_TRANSACTION_COMMIT"]
    assert len(live_documents(fi_sandbox, doc)) == 1 and len(live_documents(fi_sandbox, doc2)) == 1
    assert fi_sandbox.open_update_tasks() == 0
