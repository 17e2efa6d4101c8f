"""SAP Business One through the remote agent, every party a separate OS process: the Service Layer
emulator (`ml-connector sandbox`), the control plane (`python -m ml_connector.server.agents.serve`) and an
agent (`ml-connector agent`) whose agent.yaml serves one B1 system with a resource allow-list.
The test process plays the flow: `ChannelServiceLayerClient` over `RemoteAgentChannel`."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from ml_connector.core.channel import ChannelError, ChannelRequest
from ml_connector.systems.sap_b1.errors import B1Error
from tests.support.agent_worlds import B1AgentWorld
from tests.support.b1 import concur_journal_entry

# Separate OS processes (SAP sandbox, control plane, agents): `make test`, not `make test-fast`.
pytestmark = pytest.mark.slow

ALLOW = ["JournalEntries", "BusinessPartners:read", "ChartOfAccounts:read"]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[B1AgentWorld]:
    e = B1AgentWorld(tmp_path_factory.mktemp("agent_b1"), ALLOW)
    try:
        yield e
    finally:
        e.close()


def test_allowed_calls_are_served_through_the_agent(env: B1AgentWorld) -> None:
    partners = env.client.get_all("BusinessPartners", {"$select": "CardCode", "$orderby": "CardCode"})
    assert len(partners) == 62  # four pages (20 + 20 + 20 + 2), each one call through the agent
    assert env.stats()["by_resource"]["GET BusinessPartners"] == 4
    first = env.client.post_journal_entry_once(concur_journal_entry(310.0), "concur:report-77")
    again = env.client.post_journal_entry_once(concur_journal_entry(310.0), "concur:report-77")
    assert first.created and not again.created and again.jdt_num == first.jdt_num
    rows = httpx.get(env.b1["admin"] + "/state/JournalEntries", timeout=5).json()["JournalEntries"]
    assert [r["Reference3"] for r in rows] == ["concur:report-77"]
    # a B1 error comes back typed through the channel
    bad = concur_journal_entry(5.0)
    bad["JournalEntryLines"][0]["AccountCode"] = "9999"
    with pytest.raises(B1Error) as ei:
        env.client.create("JournalEntries", bad)
    assert ei.value.code == -5002 and "9999" in ei.value.message and ei.value.status == 400
    # one login served every call: the session is the agent's and persists
    assert env.stats()["logins"] == 1


def test_calls_outside_the_allow_list_are_refused_and_audited_on_both_sides(env: B1AgentWorld) -> None:
    before = env.stats()
    with pytest.raises(ChannelError) as ei:
        env.client.create("BusinessPartners", {"CardCode": "V77777", "CardName": "x", "CardType": "S"})
    assert ei.value.fault.type == "NotAllowed" and ei.value.fault.key == "BusinessPartners"
    with pytest.raises(ChannelError) as ei:
        env.client.get_all("Projects")
    assert ei.value.fault.type == "NotAllowed" and ei.value.fault.key == "Projects"
    # a forged request the client would not build: Login through the channel
    r = env.channel.call(ChannelRequest(system="b1", function="POST Login", params={
        "method": "POST", "path": "Login", "query": {}, "body": {"UserName": "manager"}, "headers": {}}))
    assert not r.ok and r.fault is not None and r.fault.type == "NotAllowed"
    after = env.stats()
    assert after["requests"] == before["requests"]  # nothing reached B1
    assert {"POST BusinessPartners", "GET Projects"}.isdisjoint(after["by_resource"])
    refused_cp = {a.detail["key"] for a in env.audit("agent.call.refused")}
    assert {"BusinessPartners", "Projects", "POST Login"} <= refused_cp
    refused_agent = {e["key"] for e in env.agent.audit() if e["event"] == "call.refused"}
    assert {"BusinessPartners", "Projects", "POST Login"} <= refused_agent


def test_b1_password_never_reaches_the_control_plane(env: B1AgentWorld) -> None:
    env.client.ping()
    password = env.b1["password"].encode()
    files = [p for p in env.cp.dir.rglob("*") if p.is_file()]
    assert any(p.name.startswith("ml-connector.sqlite") for p in files) and env.cp.log in files
    blob = b"".join(p.read_bytes() for p in files)
    assert b"concur:report-77" in blob  # the scan reads the call data stored there
    assert password not in blob
    agent_files = [p for p in (env.agent.dir).rglob("*") if p.is_file()]
    assert password not in b"".join(p.read_bytes() for p in agent_files)  # vault ciphertext only
