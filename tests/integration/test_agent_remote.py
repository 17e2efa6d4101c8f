"""The remote agent end to end, every party a separate OS process:
SAP sandbox (`ml-connector sandbox`), control plane (`python -m ml_connector.server.agents.serve`),
agents (`ml-connector agent`). The test process plays the flow worker: it queues calls in
the control plane's database through `RemoteAgentChannel`.
"""

from __future__ import annotations

import concurrent.futures as cf
import time
import uuid
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from ml_connector.core.channel import ChannelRequest
from ml_connector.server.agents.models import AgentCallRow
from ml_connector.server.console import queries as console_queries
from ml_connector.systems.sap_ecc.client import ChannelRfcCaller
from ml_connector.systems.sap_ecc.posting import DocumentPoster, GLLine, VendorInvoice, document_xblnr
from ml_connector.systems.sap_ecc.table_reader import TableReader
from tests.support import (
    AgentProc,
    sap_faults,
    sap_stats,
    wait_for,
)
from tests.support.agent_worlds import RemoteWorld, listed_agents

# Separate OS processes (SAP sandbox, control plane, agents): `make test`, not `make test-fast`.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RemoteWorld]:
    e = RemoteWorld(tmp_path_factory.mktemp("agent"))
    try:
        yield e
    finally:
        e.close()


def test_pairing_round_trip_and_allow_list(env: RemoteWorld) -> None:
    r = env.reads.call(ChannelRequest(system="sap_ecc", function="RFC_PING"))
    assert r.ok, r
    r = env.reads.call(ChannelRequest(system="sap_ecc", function="STFC_CONNECTION", params={"REQUTEXT": "hello"}))
    assert r.ok and r.result is not None and r.result["ECHOTEXT"] == "hello"
    r = env.reads.call(ChannelRequest(system="sap_ecc", function="RFC_READ_TABLE",
                                      params={"QUERY_TABLE": "LFA1", "DELIMITER": "|", "ROWCOUNT": "3",
                                              "FIELDS": [{"FIELDNAME": "LIFNR"}, {"FIELDNAME": "NAME1"}],
                                              "__tables__": ["DATA", "FIELDS"]}))
    assert r.ok and r.result is not None and len(r.result["DATA"]) == 3
    # outside the allow-list: refused with a typed fault, audited on both sides, never reaches SAP
    before = sap_stats(env.sap)["requests"]
    r = env.reads.call(ChannelRequest(system="sap_ecc", function="RFC_READ_TABLE", params={"QUERY_TABLE": "USR02"}))
    assert not r.ok and r.fault is not None and r.fault.type == "NotAllowed" and r.fault.key == "USR02"
    r = env.reads.call(ChannelRequest(system="sap_ecc", function="SUSR_USER_CHANGE", params={}))
    assert r.fault is not None and r.fault.type == "NotAllowed"
    assert sap_stats(env.sap)["requests"] == before
    assert {a.detail["key"] for a in env.audit("agent.call.refused")} == {"USR02", "SUSR_USER_CHANGE"}
    assert {e["key"] for e in env.agent.audit() if e["event"] == "call.refused"} == {"USR02", "SUSR_USER_CHANGE"}
    # the agent told the control plane what it serves, for the console's agents page
    [reported] = [a for a in env.audit("agent.allow_list") if a.source == env.agent.agent_id][-1:]
    served = reported.detail["systems"]["sap_ecc"]
    assert {"RFC_PING", "Z_MLC_ACC_DOCUMENT_POST"} <= set(served["functions"]) and "LFA1" in served["tables"]
    with env.db.read() as s:
        [shown] = [a for a in console_queries.agents(s) if a["id"] == env.agent.agent_id]
    assert shown["allow"]["systems"]["sap_ecc"]["functions"] == served["functions"]
    listing = env.cp.cli("agents", "list", "--json")
    assert env.agent.agent_id in listing and '"online"' in listing
    assert (env.agent.dir / "data" / "agent.key").stat().st_mode & 0o777 == 0o600


def test_kill_agent_mid_call_no_duplicate_and_no_lost_call(env: RemoteWorld) -> None:
    sap_faults(env.sap, latency=1.5)
    try:
        before = env.executed("STFC_CONNECTION")
        with cf.ThreadPoolExecutor(2) as pool:
            fut = pool.submit(env.posting.call, ChannelRequest(system="sap_ecc", function="STFC_CONNECTION",
                                                               params={"REQUTEXT": "post-1"}))
            wait_for(lambda: sap_stats(env.sap)["in_flight"] >= 1, what="the call to reach SAP")
            env.agent.kill()  # SIGKILL while SAP is executing it
            # a call queued while the agent is down waits (is not failed, not lost)
            fut2 = pool.submit(env.reads.call, ChannelRequest(system="sap_ecc", function="RFC_PING"))
            time.sleep(1.0)
            assert not fut2.done()
            env.agent.start()
            r = fut.result(90)
            assert not r.ok and r.fault is not None and r.fault.key == "AGENT_INTERRUPTED"
            assert r.fault.details["uncertain"] is True
            assert fut2.result(90).ok
        wait_for(lambda: sap_stats(env.sap)["in_flight"] == 0, what="SAP idle")
        # SAP saw it at most once (the sandbox drops a request whose client died while it waited);
        # the restarted agent answered it from its local store and never sent it again
        assert env.executed("STFC_CONNECTION") in (before, before + 1)
        audit = env.agent.audit()
        assert [e["call_id"] for e in audit if e["event"] == "call.interrupted"] == [r.id]
        assert r.id not in [e["call_id"] for e in audit if e["event"] == "call.executed"]
    finally:
        sap_faults(env.sap, latency=0)

    # killed after SAP answered and the result was stored locally, before it was posted:
    # the restarted agent re-sends the stored result instead of executing again
    env.agent.kill()
    env.agent.start(env={"MLC_AGENT_TEST_CRASH_AFTER_STORE": "STFC_CONNECTION"})
    before = env.executed("STFC_CONNECTION")
    with cf.ThreadPoolExecutor(1) as pool:
        fut = pool.submit(env.posting.call, ChannelRequest(system="sap_ecc", function="STFC_CONNECTION",
                                                           params={"REQUTEXT": "post-2"}))
        assert env.agent.proc is not None
        assert env.agent.proc.wait(60) == 9  # the crash hook fired
        assert not fut.done()
        env.agent.start()
        r = fut.result(90)
    assert r.ok and r.result is not None and r.result["ECHOTEXT"] == "post-2"
    assert env.executed("STFC_CONNECTION") == before + 1


def test_kill_agent_mid_posting_gives_one_document_resolved_by_lookup(env: RemoteWorld) -> None:
    """A real FI posting through the agent: SAP commits, the agent is killed before it can answer,
    and the restarted agent reports the call interrupted. The poster resolves the outcome by the
    BKPF lookup (XBLNR) and never posts again: one document."""
    caller = ChannelRfcCaller(env.posting, "sap_ecc")
    lfb1 = TableReader(caller).read("LFB1", ["LIFNR", "BUKRS", "SPERR", "LOEVM"], key_fields=("LIFNR", "BUKRS"),
                                    where="BUKRS = '1000'", page_size=50)
    vendor = next(r["LIFNR"] for page in lfb1 for r in page.rows if not r["SPERR"].strip() and not r["LOEVM"].strip())
    doc = VendorInvoice(source_id=f"ramp-bill-{uuid.uuid4()}", company_code="1000", vendor=vendor.lstrip("0"),
                        currency="USD", doc_date=date(2025, 3, 3), posting_date=date(2025, 3, 5),
                        header_text="Ramp bill", lines=(GLLine("620000", Decimal("600.00"), cost_center="1300",
                                                               text="SaaS licences"),))
    poster = DocumentPoster(caller, settle_seconds=0.2)
    before = env.executed("Z_MLC_ACC_DOCUMENT_POST")
    httpx.post(env.sap["base_url"] + "/_sandbox/fi/faults",
               json={"fail_after_commit": 1, "hang_seconds": 3}).raise_for_status()
    try:
        with cf.ThreadPoolExecutor(1) as pool:
            fut = pool.submit(poster.post, doc)
            wait_for(lambda: env.executed("Z_MLC_ACC_DOCUMENT_POST") > before
                     and sap_stats(env.sap)["in_flight"] >= 1, what="the posting to be inside SAP")
            env.agent.kill()  # SIGKILL after COMMIT WORK, before SAP answered
            env.agent.start()
            result = fut.result(120)
    finally:
        httpx.post(env.sap["base_url"] + "/_sandbox/fi/faults", json={"reset": True})
    docs = httpx.get(env.sap["base_url"] + "/_sandbox/fi/documents",
                     params={"bukrs": "1000", "xblnr": document_xblnr(doc)}).json()
    live = [d for d in docs if not d.get("STBLG")]
    assert [d["BELNR"] for d in live] == [result.belnr]  # exactly one document
    assert result.recovered and poster.stats["recovered"] == 1
    assert env.executed("Z_MLC_ACC_DOCUMENT_POST") == before + 1  # never posted a second time
    assert any(e["event"] == "call.interrupted" and e.get("function") == "Z_MLC_ACC_DOCUMENT_POST"
               for e in env.agent.audit())


def test_kill_control_plane_mid_poll_agent_reconnects(env: RemoteWorld) -> None:
    assert env.reads.call(ChannelRequest(system="sap_ecc", function="RFC_PING")).ok
    env.cp.kill()  # the agent is inside a long poll
    time.sleep(1.0)
    with cf.ThreadPoolExecutor(1) as pool:
        fut = pool.submit(env.reads.call, ChannelRequest(system="sap_ecc", function="STFC_CONNECTION",
                                                         params={"REQUTEXT": "after-restart"}))
        time.sleep(0.5)
        env.cp.start()
        r = fut.result(90)
    assert r.ok and r.result is not None and r.result["ECHOTEXT"] == "after-restart"
    wait_for(lambda: "reconnected" in env.agent.log.read_text(), what="the reconnect log line")
    assert "control plane error" in env.agent.log.read_text()


def test_two_agents_each_call_once_and_takeover(env: RemoteWorld, tmp_path: Path) -> None:
    second = AgentProc(tmp_path / "agent2", env.cp.url, env.sap)
    second.setup(env.cp.token(), env.cp.url, env.sap["password"])
    second.start()
    env.agents.append(second)
    wait_for(lambda: any(a["id"] == second.agent_id and a["seconds_since_seen"] is not None
                         and a["seconds_since_seen"] < 2 for a in listed_agents(env)), what="agent 2 online")
    before = env.executed("STFC_CONNECTION")
    n = 24
    with cf.ThreadPoolExecutor(n) as pool:
        reqs = [ChannelRequest(system="sap_ecc", function="STFC_CONNECTION", params={"REQUTEXT": f"m{i}"})
                for i in range(n)]
        results = list(pool.map(env.posting.call, reqs))
    assert all(r.ok for r in results)
    assert [r.result["ECHOTEXT"] for r in results if r.result] == [f"m{i}" for i in range(n)]
    assert env.executed("STFC_CONNECTION") == before + n  # no call ran twice
    with env.db.session() as s:
        owners = {r.agent_id for r in s.scalars(select(AgentCallRow).where(AgentCallRow.id.in_([q.id for q in reqs])))}
    assert owners <= {env.agent.agent_id, second.agent_id}
    # kill one: the other carries on
    alerts_before = len(env.audit("agent.offline"))
    env.agent.kill()
    results = [env.reads.call(ChannelRequest(system="sap_ecc", function="RFC_PING")) for _ in range(5)]
    assert all(r.ok for r in results)
    with env.db.session() as s:
        assert {s.get(AgentCallRow, r.id).agent_id for r in results} == {second.agent_id}  # type: ignore[union-attr]
    # the dead one is reported offline with an alert; its state shows in the list
    wait_for(lambda: len(env.audit("agent.offline")) > alerts_before, timeout=45, what="agent.offline alert")
    wait_for(lambda: any(a["id"] == env.agent.agent_id and a["state"] == "offline" for a in listed_agents(env)),
             timeout=45, what="the dead agent listed offline")


def test_revocation_on_next_poll(env: RemoteWorld) -> None:
    second = env.agents[-1]
    assert second.proc is not None and second.proc.poll() is None
    env.cp.cli("agents", "revoke", second.agent_id)
    code = second.proc.wait(15)
    assert code == 3
    text = second.log.read_text()
    assert "revoked" in text and second.agent_id in text
    assert env.audit("agent.revoked")


def test_password_never_reaches_the_control_plane(env: RemoteWorld) -> None:
    password = env.sap["password"].encode()
    files = [p for p in (env.cp.dir).rglob("*") if p.is_file()]
    assert any(p.name.startswith("ml-connector.sqlite") for p in files)
    blob = b"".join(p.read_bytes() for p in files)
    assert env.agent.agent_id.encode() in blob  # the scan does read the data
    assert password not in blob
    # on the agent it is encrypted at rest too (only the vault ciphertext is stored)
    agent_blob = b"".join(p.read_bytes() for p in (env.agent.dir / "data").rglob("*") if p.is_file())
    assert password not in agent_blob


