"""The Service Layer client against the Service Layer emulator, over real HTTP on loopback:
login and cookies, wrong-case paths, paging, session expiry and the sliding timeout, JournalEntries
(posting once, balance and master-data errors, v1 and v2 error shapes), fault injection."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from ml_connector.core.tokens import MemoryTokenStore
from ml_connector.sandbox import SandboxHandle, start_sandboxes
from ml_connector.systems.sap_b1.client import ServiceLayerClient
from ml_connector.systems.sap_b1.errors import (
    B1CommunicationError,
    B1Error,
    B1LoginError,
    B1NotFound,
    B1SessionError,
)
from ml_connector.systems.sap_b1.sandbox.state import B1Sandbox
from ml_connector.systems.sap_b1.sessions import TokenSessionStore
from tests.support.b1 import b1_faults, b1_stats, je, login_body
from tests.support.clock import FakeClock

pytestmark = pytest.mark.smoke  # `make test-fast` runs it (this system's or flow's loopback smoke)


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def sandbox(clock: FakeClock) -> Iterator[SandboxHandle]:
    state = B1Sandbox(clock=clock)
    state.set_config(login_seconds=0)  # the emulated cost of a login is not what these tests look at
    h = start_sandboxes(systems=("sap_b1",), states={"sap_b1": state})["sap_b1"]
    try:
        yield h
    finally:
        h.stop()


@pytest.fixture()
def b1(sandbox: SandboxHandle, clock: FakeClock) -> Iterator[ServiceLayerClient]:
    httpx.post(sandbox.info["admin"] + "/faults", json={"clear_faults": True, "expire_sessions": True})
    httpx.post(sandbox.info["admin"] + "/config", json={"page_size": 20, "next_link_style": "absolute"})
    i = sandbox.info
    c = ServiceLayerClient(i["base_url"], i["company_db"], i["user"], i["password"], retry_base=0, clock=clock,
                           timeout=10)
    try:
        yield c
    finally:
        c.close()


def test_login_wire_format_and_case_sensitive_path(sandbox: SandboxHandle) -> None:
    root = sandbox.info["service_root"]
    r = httpx.post(root + "/Login", json=login_body(sandbox))
    assert r.status_code == 200
    cookies = r.headers.get_list("set-cookie")
    sid = r.json()["SessionId"]
    assert cookies == [f"B1SESSION={sid};HttpOnly;", "ROUTEID=.node1; path=/b1s"]
    assert r.json()["SessionTimeout"] == 30 and r.json()["Version"] == "1000110"
    assert r.json()["odata.metadata"].endswith("/b1s/v1/$metadata#B1Sessions/@Element")
    v2 = httpx.post(sandbox.info["base_url"] + "/b1s/v2/Login", json=login_body(sandbox)).json()
    assert "@odata.context" in v2 and "odata.metadata" not in v2
    # wrong case: 401 with the exact 301 body, even with a valid session
    both = {"Cookie": f"B1SESSION={sid}; ROUTEID=.node1"}
    r = httpx.post(root + "/login", json=login_body(sandbox), headers=both)
    assert r.status_code == 401
    assert r.json() == {"error": {"code": 301, "message": {"lang": "en-us",
                                                           "value": "Invalid session or session already timeout."}}}
    # a single node takes B1SESSION alone; behind the load balancer both cookies are needed
    assert httpx.get(root + "/ChartOfAccounts", headers=both).status_code == 200
    assert httpx.get(root + "/ChartOfAccounts", headers={"Cookie": f"B1SESSION={sid}"}).status_code == 200
    httpx.post(sandbox.info["admin"] + "/config", json={"load_balanced": True}).raise_for_status()
    try:
        assert httpx.get(root + "/ChartOfAccounts", headers=both).status_code == 200
        assert httpx.get(root + "/ChartOfAccounts", headers={"Cookie": f"B1SESSION={sid}"}).status_code == 401
    finally:
        httpx.post(sandbox.info["admin"] + "/config", json={"load_balanced": False}).raise_for_status()
    # v2 answers the v4 error shape
    r = httpx.get(sandbox.info["base_url"] + "/b1s/v2/ChartOfAccounts")
    assert r.status_code == 401 and r.json() == {"error": {"code": "301", "message":
                                                           "Invalid session or session already timeout."}}
    assert httpx.post(root + "/Logout", headers=both).status_code == 204
    assert httpx.get(root + "/ChartOfAccounts", headers=both).status_code == 401


def test_client_logs_in_once_and_a_wrong_case_path_is_a_session_error(sandbox: SandboxHandle,
                                                                      b1: ServiceLayerClient) -> None:
    before = b1_stats(sandbox)
    assert b1.get_entity("ChartOfAccounts", "6100")["Name"] == "Office Supplies"
    assert b1.get_entity("BusinessPartners", "V00001", select="CardCode,CardType") == {
        "CardCode": "V00001", "CardType": "cSupplier"}
    with pytest.raises(B1NotFound) as nf:
        b1.get_entity("BusinessPartners", "NOPE")
    assert nf.value.code == -2028
    assert b1_stats(sandbox)["logins"] - before["logins"] == 1
    with pytest.raises(B1SessionError, match="even after a new login"):
        b1.request("POST", "login", body={})


def test_bad_credentials(sandbox: SandboxHandle) -> None:
    c = ServiceLayerClient(sandbox.info["base_url"], sandbox.info["company_db"], "manager", "wrong-pw-9731",
                           retry_base=0)
    with pytest.raises(B1LoginError) as ei:
        c.ping()
    assert ei.value.status == 401 and "wrong-pw-9731" not in str(ei.value) and "manager" in str(ei.value)
    c.close()


def test_paging_default_page_size_header_and_prefer(sandbox: SandboxHandle, b1: ServiceLayerClient) -> None:
    before = b1_stats(sandbox)["by_resource"].get("GET BusinessPartners", 0)
    rows = b1.get_all("BusinessPartners", {"$select": "CardCode,CardName", "$orderby": "CardCode"})
    assert len(rows) == 62 and [r["CardCode"] for r in rows] == sorted(r["CardCode"] for r in rows)
    assert set(rows[0]) == {"CardCode", "CardName"}
    assert b1_stats(sandbox)["by_resource"]["GET BusinessPartners"] - before == 4  # 20 + 20 + 20 + 2
    pages = list(b1.pages("BusinessPartners", {"$filter": "CardType eq 'cSupplier'"}, page_size=7))
    assert [len(p) for p in pages] == [7, 7, 7, 7, 7, 7, 5]  # 30 vendors, 10 employees, 7 of the Concur seed
    top = b1.get_all("BusinessPartners", {"$top": 25, "$orderby": "CardCode desc"})
    assert len(top) == 25 and top[0]["CardCode"] == "V20007"
    httpx.post(sandbox.info["admin"] + "/config", json={"next_link_style": "relative"})
    assert [r["CardCode"] for r in b1.get_all("BusinessPartners", {"$orderby": "CardCode"})] == \
        [r["CardCode"] for r in rows]
    # the raw wire: Prefer odata.maxpagesize=0 turns paging off; nextLink keeps the options
    r = b1._http.get(b1.root + "/BusinessPartners", headers={"Prefer": "odata.maxpagesize=0"})
    assert len(r.json()["value"]) == 62 and r.headers["Preference-Applied"] == "odata.maxpagesize=0"
    r = b1._http.get(b1.root + "/BusinessPartners?$filter=CardType%20eq%20'cCustomer'&$inlinecount=allpages",
                     headers={"B1S-PageSize": "10"})
    body = r.json()
    assert body["odata.count"] == 15 and len(body["value"]) == 10
    assert body["odata.nextLink"] == ("BusinessPartners?$filter=CardType%20eq%20'cCustomer'"
                                      "&$inlinecount=allpages&$skip=10")


def test_session_expiry_relogin_and_sliding_timeout(sandbox: SandboxHandle, b1: ServiceLayerClient,
                                                    clock: FakeClock) -> None:
    b1.ping()
    s0 = b1_stats(sandbox)
    # sliding: 20 idle minutes twice (40 in all, more than SessionTimeout 30) keep the session
    for _ in range(2):
        clock.advance(20 * 60)
        b1.ping()
    s1 = b1_stats(sandbox)
    assert s1["logins"] == s0["logins"] and s1["unauthorized"] == s0["unauthorized"]
    # idle longer than the timeout less the margin: a new login first, no 401 spent
    clock.advance(29.5 * 60)
    b1.ping()
    s2 = b1_stats(sandbox)
    assert s2["logins"] == s1["logins"] + 1 and s2["unauthorized"] == s1["unauthorized"]
    # the server forgot the session (restart, timeout): 401, one login, the request replayed
    b1_faults(sandbox, expire_sessions=True)
    rows = b1.get_all("ChartOfAccounts", {"$top": 3})
    s3 = b1_stats(sandbox)
    assert len(rows) == 3 and s3["logins"] == s2["logins"] + 1 and s3["unauthorized"] == s2["unauthorized"] + 1
    # a write replayed after a 401 is posted once (the 401 means it was not executed)
    b1_faults(sandbox, expire_sessions=True)
    n = len(sandbox.state.rows("JournalEntries"))
    created = b1.create("JournalEntries", je())
    assert created.status == 201 and len(sandbox.state.rows("JournalEntries")) == n + 1
    # logout ends it on the server; the client logs in again when used
    b1.logout()
    s4 = b1_stats(sandbox)
    assert s4["sessions"] == 0 and s4["logouts"] == s3["logouts"] + 1  # the expiry left only this one
    b1.ping()
    assert b1_stats(sandbox)["logins"] == s4["logins"] + 1


def test_session_kept_in_the_store_is_reused_by_the_next_client_until_its_timeout_nears(
        sandbox: SandboxHandle, b1: ServiceLayerClient, clock: FakeClock) -> None:
    i = sandbox.info
    store = TokenSessionStore(MemoryTokenStore(), "sap_b1", b1.root, i["company_db"], i["user"])

    def client() -> ServiceLayerClient:  # one per run/process, sharing the store
        return ServiceLayerClient(i["base_url"], i["company_db"], i["user"], i["password"], retry_base=0,
                                  clock=clock, timeout=10, sessions=store)

    s0 = b1_stats(sandbox)
    for _ in range(3):
        c = client()
        c.ping()
        c.close()  # kept, not logged out
    s1 = b1_stats(sandbox)
    assert s1["logins"] == s0["logins"] + 1 and s1["unauthorized"] == s0["unauthorized"]
    assert s1["logouts"] == s0["logouts"]
    kept = store.load()
    assert kept is not None and set(kept.cookies) >= {"B1SESSION"}
    # idle for 29.5 of its 30 minutes (stored last use and the server's clock agree): not reused,
    # a new login first, no 401 spent
    store.save(replace(kept, last_used=kept.last_used - 29.5 * 60))
    clock.advance(29.5 * 60)
    c = client()
    c.ping()
    c.close()
    s2 = b1_stats(sandbox)
    assert s2["logins"] == s1["logins"] + 1 and s2["unauthorized"] == s1["unauthorized"]
    renewed = store.load()
    assert renewed is not None and renewed.cookies != kept.cookies
    # the server forgot it (restart): 401 code 301, one login, the request replayed once, the new one kept
    b1_faults(sandbox, expire_sessions=True)
    c = client()
    assert len(c.get_all("ChartOfAccounts", {"$top": 2})) == 2
    c.close()
    s3 = b1_stats(sandbox)
    assert s3["logins"] == s2["logins"] + 1 and s3["unauthorized"] == s2["unauthorized"] + 1
    last = store.load()
    assert last is not None and last.cookies != renewed.cookies


def test_journal_entries_create_validate_and_post_once(sandbox: SandboxHandle, b1: ServiceLayerClient) -> None:
    r = b1.create("JournalEntries", je(Reference2="x"[:0]))
    assert r.status == 201 and isinstance(r.body["JdtNum"], int) and r.body["Number"] >= 1
    assert r.headers["Location"].endswith(f"/JournalEntries({r.body['JdtNum']})")
    lines = r.body["JournalEntryLines"]
    assert lines[1]["AccountCode"] == "2000" and lines[0]["CostingCode"] == "CC01"
    nc = b1.create("JournalEntries", je(), return_no_content=True)
    assert nc.status == 204 and nc.body is None and nc.headers["Preference-Applied"] == "return-no-content"
    assert b1.get_entity("JournalEntries", int(nc.headers["Location"].rsplit("(", 1)[1][:-1]))["Memo"] == \
        "Concur report"
    b1.update("JournalEntries", r.body["JdtNum"], {"Memo": "changed"})
    assert b1.get_entity("JournalEntries", r.body["JdtNum"], select="Memo") == {"Memo": "changed"}
    bad = je()
    bad["JournalEntryLines"][1]["Credit"] = 100
    with pytest.raises(B1Error) as ei:
        b1.create("JournalEntries", bad)
    assert ei.value.status == 400 and ei.value.code == -5002 and "Unbalanced" in ei.value.message
    for field, value, text in (("AccountCode", "9999", "AccountCode"), ("CostingCode", "DEPT1", "CostingCode"),
                               ("ProjectCode", "P999", "ProjectCode")):
        with pytest.raises(B1Error, match=text) as ei:
            b1.create("JournalEntries", je(**{field: value}))
        assert ei.value.code == -5002 and value in ei.value.message
    with pytest.raises(B1Error) as ei:
        b1.request("DELETE", f"JournalEntries({r.body['JdtNum']})")
    assert ei.value.code == -5006
    with pytest.raises(B1Error) as ei:
        b1.create("BusinessPartners", {"CardCode": "V00001", "CardName": "dup", "CardType": "S"})
    assert ei.value.code == -10 and "already assigned" in ei.value.message
    created = b1.create("BusinessPartners", {"CardCode": "V09999", "CardName": "New", "CardType": "S"})
    assert created.body["CardType"] == "cSupplier"

    first = b1.post_journal_entry_once(je(), "concur:rpt-1")
    again = b1.post_journal_entry_once(je(), "concur:rpt-1")
    assert first.created and not again.created and again.jdt_num == first.jdt_num
    assert [e for e in sandbox.state.rows("JournalEntries") if e["Reference3"] == "concur:rpt-1"] != []
    assert len([e for e in sandbox.state.rows("JournalEntries") if e["Reference3"] == "concur:rpt-1"]) == 1


def test_v2_errors_parse_as_typed_errors(sandbox: SandboxHandle) -> None:
    i = sandbox.info
    c = ServiceLayerClient(i["base_url"] + "/b1s/v2", i["company_db"], i["user"], i["password"], retry_base=0)
    try:
        with pytest.raises(B1Error) as ei:
            c.create("JournalEntries", je(amount=1, AccountCode="9999"))
        assert ei.value.code == -5002 and ei.value.lang is None and "9999" in ei.value.message
        assert len(c.get_all("BusinessPartners")) >= 55  # @odata.nextLink followed
    finally:
        c.close()


@pytest.mark.parametrize("kind", ["drop", "http_502", "http_504"])
def test_answer_lost_after_commit_is_resolved_by_lookup(sandbox: SandboxHandle, b1: ServiceLayerClient,
                                                        kind: str) -> None:
    b1.ping()
    ext = f"concur:lost-{kind}"
    b1_faults(sandbox, after_commit_next=1, after_commit_kind=kind)
    posting = b1.post_journal_entry_once(je(), ext)
    assert not posting.created  # found by its external id after the lost answer
    assert len([e for e in sandbox.state.rows("JournalEntries") if e["Reference3"] == ext]) == 1
    assert b1_stats(sandbox)["faults_injected"][f"after_commit_{kind}"] >= 1


def test_uncertain_write_not_committed_stays_uncertain(sandbox: SandboxHandle, b1: ServiceLayerClient) -> None:
    b1.ping()
    n = len(sandbox.state.rows("JournalEntries"))
    b1_faults(sandbox, fail_next=1, fail_kind="http_502", fail_resource="POST JournalEntries")
    with pytest.raises(B1CommunicationError) as ei:
        b1.create("JournalEntries", je())
    assert ei.value.uncertain and ei.value.status == 502 and len(sandbox.state.rows("JournalEntries")) == n
    # posting once: the lookup after the gateway error finds nothing, so the error stays uncertain
    # (for a later lookup) and nothing is re-posted blindly
    b1_faults(sandbox, fail_next=1, fail_kind="drop", fail_resource="POST JournalEntries")
    before = b1_stats(sandbox)["by_resource"]
    with pytest.raises(B1CommunicationError) as ei:
        b1.post_journal_entry_once(je(), "concur:not-committed")
    after = b1_stats(sandbox)["by_resource"]
    assert ei.value.uncertain and len(sandbox.state.rows("JournalEntries")) == n
    assert after["GET JournalEntries"] - before["GET JournalEntries"] == 2  # before, and after the drop
    assert after.get("POST JournalEntries", 0) == before.get("POST JournalEntries", 0)  # dropped before counting
    # a dropped lookup is a read: retried; the post then goes through
    b1_faults(sandbox, fail_next=1, fail_kind="drop", fail_resource="GET JournalEntries")
    assert b1.post_journal_entry_once(je(), "concur:after-drop").created


def test_reads_retry_5xx_and_drops_then_give_up(sandbox: SandboxHandle, b1: ServiceLayerClient) -> None:
    b1.ping()
    b1_faults(sandbox, fail_next=2, fail_kind="http_503")
    assert len(b1.get_all("Projects")) == 3
    b1_faults(sandbox, fail_next=1, fail_kind="drop")
    assert len(b1.get_all("Dimensions")) == 2
    b1_faults(sandbox, fail_next=2, fail_kind="http_500")
    assert len(b1.get_all("ProfitCenters")) == 6
    b1_faults(sandbox, fail_next=3, fail_kind="http_502")
    with pytest.raises(B1CommunicationError) as ei:
        b1.get_all("Projects")
    assert ei.value.status == 502 and not ei.value.uncertain
    s = b1_stats(sandbox)["faults_injected"]
    assert s["http_503"] >= 2 and s["drop"] >= 1 and s["http_502"] >= 3


@pytest.mark.parametrize("via", ["direct", "agent"])
def test_configured_connection_and_ping(sandbox: SandboxHandle, tmp_path: Path, via: str) -> None:
    from ml_connector.config import parse_config
    from ml_connector.core.runtime import Runtime
    from ml_connector.systems.sap_b1.client import ChannelServiceLayerClient

    i = sandbox.info
    text = (f"engine: {{data_dir: {tmp_path / 'data'}}}\n"
            "connections:\n"
            "  b1:\n"
            "    type: sap_b1\n"
            f"    base_url: {i['base_url']}\n"
            f"    company_db: {i['company_db']}\n"
            f"    via: {via}\n"
            "    page_size: 25\n"
            f"    auth: {{username: {i['user']}, password_secret: b1_password}}\n")
    rt = Runtime(parse_config(text, config_dir=tmp_path), tmp_path / "ml-connector.yaml")
    try:
        rt.vault.set("b1_password", i["password"])
        ok, detail = rt.ping_connection("b1")
        assert ok, detail
        assert detail.startswith(f"logged in to {i['company_db']}; GET ChartOfAccounts in ")
        conn = rt.connection("b1")
        assert isinstance(conn, ServiceLayerClient if via == "direct" else ChannelServiceLayerClient)
        assert len(conn.get_all("BusinessPartners")) >= 55
        rt.vault.set("b1_password", "not-the-password")
        rt._connections.clear()
        ok, detail = rt.ping_connection("b1")
        assert not ok and "B1LoginError" in detail and "not-the-password" not in detail
    finally:
        rt.close()


def test_configuration_errors_name_the_field(tmp_path: Path) -> None:
    from ml_connector.config import ConfigError, parse_config

    with pytest.raises(ConfigError) as ei:
        parse_config("connections:\n  b1:\n    type: sap_b1\n    base_url: https://b1:50000\n"
                     "    auth: {username: manager, password_secret: b1_password}\n", config_dir=tmp_path)
    assert "connections.b1.company_db" in str(ei.value)


def test_threads_sharing_a_client_log_in_once_after_expiry(sandbox: SandboxHandle, b1: ServiceLayerClient) -> None:
    import concurrent.futures as cf

    b1.ping()
    b1_faults(sandbox, expire_sessions=True)
    before = b1_stats(sandbox)["logins"]
    with cf.ThreadPoolExecutor(6) as pool:
        sizes = list(pool.map(lambda _: len(b1.get_all("ChartOfAccounts")), range(12)))
    assert sizes == [26] * 12
    assert b1_stats(sandbox)["logins"] == before + 1  # the others waited for that login, then used it
