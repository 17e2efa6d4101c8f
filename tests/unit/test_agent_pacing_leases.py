"""The control plane paces SAP calls over all agents of a site; leases cover calls whose result
is waiting on the agent; late results are accepted while no other agent has the call."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from ml_connector.agent import protocol as proto
from ml_connector.config import load_config
from ml_connector.core.channel import ChannelRequest, ChannelResponse
from ml_connector.server.agent_api import agent_router
from ml_connector.server.agents.channel import RemoteAgentChannel
from ml_connector.server.agents.models import AgentCallRow
from ml_connector.server.agents.pacing import Pacing, SystemBudget
from ml_connector.server.agents.service import AgentIdentity, AgentService, AuthError
from tests.support.control_plane import agent_service, answer_calls, call_ids, pair_key
from tests.support.databases import audit_rows

SITE = "plant1"


@pytest.fixture()
def svc(tmp_path: Path) -> Any:
    s = agent_service(tmp_path, Pacing([SystemBudget(site=SITE, key="sap|100", systems=frozenset({"sap_ecc"}),
                                                calls_per_second=10, max_concurrent=2)]))
    yield s
    s.stop()
    s.db.dispose()


def test_budgets_come_from_the_agent_routed_sap_connections(tmp_path: Path) -> None:
    def conn(url: str, client: str, via: str, cps: Any, conc: int) -> dict[str, Any]:
        return {"type": "sap_ecc", "base_url": url, "client": client, "via": via,
                "auth": {"username": "RFC", "password_secret": "pw"},
                "limits": {"calls_per_second": cps, "max_concurrent": conc}}

    cfg_file = tmp_path / "ml-connector.yaml"
    cfg_file.write_text(yaml.safe_dump({
        "engine": {"agent": "remote", "agent_site": "plant-9"},
        "connections": {
            "ecc": conn("http://sap:8000/", "100", "agent", 12.5, 6),
            "ecc_fi": conn("http://sap:8000", "100", "agent", 30, 3),   # same SAP system and client
            "ecc_200": conn("http://sap:8000", "200", "agent", 40, 8),  # another client: its own budget
            "ecc_direct": conn("http://other:8000", "100", "direct", 10, 1),
            "b1": {"type": "sap_b1", "base_url": "https://b1:50000", "company_db": "SBO",
                   "auth": {"username": "manager", "password_secret": "b1"}}}}), encoding="utf-8")
    budgets = sorted(Pacing.from_config(load_config(cfg_file)).for_site("plant-9"), key=lambda b: b.key)
    # Business One: one budget per company database (provider.yaml rate_limit without `limits`)
    assert [(b.systems, b.calls_per_second, b.max_concurrent) for b in budgets] == [
        (frozenset({"ecc", "ecc_fi"}), 12, 3), (frozenset({"ecc_200"}), 40, 8), (frozenset({"b1"}), 25, 8)]
    assert Pacing.from_config(load_config(cfg_file)).for_site("plant1") == []


def test_claims_respect_the_concurrency_cap_over_all_agents(svc: AgentService) -> None:
    a1, a2 = pair_key(svc), pair_key(svc)
    ch = RemoteAgentChannel(svc.db, SITE)
    for i in range(6):
        ch.submit(ChannelRequest(id=f"s{i}", system="sap_ecc", function="RFC_PING"))
    for i in range(3):
        ch.submit(ChannelRequest(id=f"b{i}", system="b1", function="GET Items"))  # no budget: not paced
    first = call_ids(svc.claim(AgentIdentity(a1, SITE), 5))
    # two SAP calls (its cap), and the unpaced calls are not stuck behind the queued SAP calls
    assert first == ["s0", "s1", "b0", "b1", "b2"]
    assert call_ids(svc.claim(AgentIdentity(a2, SITE), 5)) == []  # the cap counts a1's calls too
    answer_calls(svc, a1, ["s0"])
    assert call_ids(svc.claim(AgentIdentity(a2, SITE), 5)) == ["s2"]
    with svc.db.session() as s:
        queued = s.scalars(select(AgentCallRow.id).where(AgentCallRow.state == "queued")).all()
    assert sorted(queued) == ["s3", "s4", "s5"]  # over budget: still queued, not failed


def test_claims_respect_calls_per_second_until_a_second_after_each_result(svc: AgentService) -> None:
    a1, a2 = pair_key(svc), pair_key(svc)
    ch = RemoteAgentChannel(svc.db, SITE)
    for i in range(14):
        ch.submit(ChannelRequest(id=f"s{i:02d}", system="sap_ecc", function="RFC_PING"))
    handed: list[str] = []
    last = 0.0
    for turn in range(5):  # 10 calls, two at a time (the cap), answered at once
        agent = (a1, a2)[turn % 2]
        got = call_ids(svc.claim(AgentIdentity(agent, SITE), 4))
        assert len(got) == 2
        handed += got
        last = answer_calls(svc, agent, got)
    # Results 10 ms apart (set here, so that the windows below do not depend on how fast this ran).
    t0 = last
    with svc.db.session() as s:
        for i, cid in enumerate(handed):
            row = s.get(AgentCallRow, cid)
            assert row is not None
            row.completed_at = t0 + i * 0.01
    # nothing in flight, but 10 calls answered within the last second: the budget is spent
    assert call_ids(svc.claim(AgentIdentity(a1, SITE), 4, now=t0 + 0.5)) == []
    assert call_ids(svc.claim(AgentIdentity(a1, SITE), 4, now=t0 + 0.995)) == []
    # one second after the first result it counts no more: exactly one call may go
    assert call_ids(svc.claim(AgentIdentity(a2, SITE), 4, now=t0 + 1.005)) == ["s10"]
    # a second after the last result the window is empty; s10 in flight leaves one for the cap
    assert call_ids(svc.claim(AgentIdentity(a1, SITE), 4, now=t0 + 0.09 + 1.005)) == ["s11"]
    assert handed == [f"s{i:02d}" for i in range(10)]


def test_no_pacing_without_a_budget(tmp_path: Path) -> None:
    svc = agent_service(tmp_path)
    try:
        agent = pair_key(svc)
        ch = RemoteAgentChannel(svc.db, SITE)
        for i in range(20):
            ch.submit(ChannelRequest(id=f"s{i:02d}", system="sap_ecc", function="RFC_PING"))
        assert len(call_ids(svc.claim(AgentIdentity(agent, SITE), 20))) == 20
    finally:
        svc.db.dispose()


# --------------------------------------------------------------------------- leases


def test_heartbeat_renews_calls_whose_result_waits_on_the_agent(svc: AgentService) -> None:
    app = FastAPI()
    app.include_router(agent_router(SimpleNamespace(db=svc.db, vault=svc.vault), svc))
    client = TestClient(app)
    key = proto.generate_key()
    agent = str(svc.pair(svc.issue_token(SITE, 60), proto.public_key_text(key))["agent_id"])
    RemoteAgentChannel(svc.db, SITE, idempotent=lambda f: False).submit(
        ChannelRequest(id="post1", system="sap_ecc", function="BAPI_ACC_DOCUMENT_POST"))
    assert call_ids(svc.claim(AgentIdentity(agent, SITE), 1)) == ["post1"]
    with svc.db.session() as s:
        row = s.get(AgentCallRow, "post1")
        assert row is not None
        row.lease_expires_at = time.time() + 0.5
    body = json.dumps({"busy": [], "held": ["post1"]}).encode()
    headers = proto.sign_headers(key, agent, "POST", "/api/agent/heartbeat", body, now=time.time())
    r = client.post("/api/agent/heartbeat", content=body, headers=headers)
    assert r.status_code == 200 and r.json()["extended"] == 1
    with svc.db.session() as s:
        row = s.get(AgentCallRow, "post1")
        assert row is not None and row.lease_expires_at is not None
        assert row.lease_expires_at > time.time() + 4  # a fresh lease (5 s)
    assert svc.sweep(now=time.time() + 2)["lost"] == 0
    client.close()


def test_late_result_of_a_requeued_call_is_accepted_until_another_agent_claims_it(svc: AgentService) -> None:
    a1, a2 = pair_key(svc), pair_key(svc)
    ch = RemoteAgentChannel(svc.db, SITE)
    ch.submit(ChannelRequest(id="r1", system="sap_ecc", function="RFC_READ_TABLE"))
    ch.submit(ChannelRequest(id="r2", system="sap_ecc", function="RFC_READ_TABLE"))
    assert call_ids(svc.claim(AgentIdentity(a1, SITE), 2)) == ["r1", "r2"]
    assert svc.sweep(now=time.time() + 10)["requeued"] == 2
    # r1: nobody claimed it again, the agent it was handed to delivers: accepted, once
    late = ChannelResponse(id="r1", ok=True, result={"DATA": [1]})
    with pytest.raises(AuthError):  # an agent it was never handed to still may not answer it
        svc.store_result(AgentIdentity(a2, SITE), late)
    assert svc.store_result(AgentIdentity(a1, SITE), late) == {"stored": True, "duplicate": False}
    assert svc.store_result(AgentIdentity(a1, SITE), late)["duplicate"] is True
    got = ch.result("r1")
    assert got is not None and got.result == {"DATA": [1]}
    assert [e.detail["reason"] for e in audit_rows(svc.db, "agent.result.late")] == ["requeued after lease expiry"]
    # r2: claimed by another agent meanwhile; the first agent's result is refused
    assert call_ids(svc.claim(AgentIdentity(a2, SITE), 2)) == ["r2"]
    with pytest.raises(AuthError) as exc:
        svc.store_result(AgentIdentity(a1, SITE), ChannelResponse(id="r2", ok=True, result={}))
    assert exc.value.code == "not_claimant"


def test_late_real_result_replaces_agent_lost_once(svc: AgentService) -> None:
    a1, a2 = pair_key(svc), pair_key(svc)
    ch = RemoteAgentChannel(svc.db, SITE, idempotent=lambda f: False)
    ch.submit(ChannelRequest(id="p1", system="sap_ecc", function="BAPI_ACC_DOCUMENT_POST"))
    assert call_ids(svc.claim(AgentIdentity(a1, SITE), 1)) == ["p1"]
    assert svc.sweep(now=time.time() + 10)["lost"] == 1
    lost = ch.result("p1")
    assert lost is not None and lost.fault is not None and lost.fault.key == "AGENT_LOST"
    # another agent cannot overwrite it
    assert svc.store_result(AgentIdentity(a2, SITE), ChannelResponse(id="p1", ok=True, result={"X": 1}))[
        "duplicate"] is True
    real = ChannelResponse(id="p1", ok=True, result={"OBJ_KEY": "1900000001 1000 2025"})
    assert svc.store_result(AgentIdentity(a1, SITE), real) == {"stored": True, "duplicate": False}
    assert svc.store_result(AgentIdentity(a1, SITE), real)["duplicate"] is True
    got = ch.result("p1")
    assert got is not None and got.ok and got.result == {"OBJ_KEY": "1900000001 1000 2025"}
    late = audit_rows(svc.db, "agent.result.late")
    assert [(e.source, e.outcome) for e in late] == [(a2, "ignored"), (a1, "accepted")]
    assert len(audit_rows(svc.db, "agent.call.done")) == 1


def test_leases_restart_with_the_control_plane(tmp_path: Path) -> None:
    svc = agent_service(tmp_path, lease=2.0, offline_after=7.0)
    try:
        agent = pair_key(svc)
        RemoteAgentChannel(svc.db, SITE, idempotent=lambda f: False).submit(
            ChannelRequest(id="p1", system="sap_ecc", function="BAPI_ACC_DOCUMENT_POST"))
        t0 = time.time()
        assert call_ids(svc.claim(AgentIdentity(agent, SITE), 1, now=t0 - 100)) == ["p1"]  # lease long gone
        # the control plane was down: at start its leases run again, for max(lease, offline_after)
        assert svc.restart_leases(now=t0) == 1
        assert svc.sweep(now=t0 + 6.9)["lost"] == 0
        assert svc.sweep(now=t0 + 7.1)["lost"] == 1
    finally:
        svc.db.dispose()
