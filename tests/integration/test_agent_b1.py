"""SAP Business One through the remote agent, every party a separate OS process: the Service Layer
emulator (`ml-connector sandbox`), the control plane (`python -m ml_connector.agent.serve`) and an
agent (`ml-connector agent`) whose agent.yaml serves one B1 system with a resource allow-list.
The test process plays the flow: `ChannelServiceLayerClient` over `RemoteAgentChannel`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from ml_connector.agent.channel import RemoteAgentChannel
from ml_connector.core.channel import ChannelError, ChannelRequest
from ml_connector.core.db import Database
from ml_connector.systems.sap_b1.client import ChannelServiceLayerClient
from ml_connector.systems.sap_b1.errors import B1Error
from tests.support import AgentProc, ControlPlane, World, start_sandbox

ALLOW = ["JournalEntries", "BusinessPartners:read", "ChartOfAccounts:read"]


class Env(World):
    def __init__(self, tmp: Path) -> None:
        super().__init__()
        self.sandbox, self.b1 = start_sandbox(system="sap_b1")
        self.cp = ControlPlane(tmp / "cp")
        self.cp.start()
        self.db = Database(self.cp.db_url)
        self.agent = AgentProc(tmp / "agent", self.cp.url, {"base_url": self.b1["base_url"], "client": "100",
                                                            "user": "unused"})
        cfg = yaml.safe_load(self.agent.config.read_text())
        cfg["systems"] = {"b1": {"type": "sap_b1", "base_url": self.b1["base_url"], "company_db":
                                 self.b1["company_db"], "user": self.b1["user"], "password_secret": "sap_pw",
                                 "allow": {"resources": ALLOW}}}
        self.agent.config.write_text(yaml.safe_dump(cfg), encoding="utf-8")
        self.agent.setup(self.cp.token(), self.cp.url, self.b1["password"])
        self.agent.start()
        self.agents.append(self.agent)
        self.channel = RemoteAgentChannel(self.db, "plant1", timeout=60)
        self.client = ChannelServiceLayerClient(self.channel, "b1")

    def stats(self) -> dict[str, Any]:
        return dict(httpx.get(self.b1["admin"] + "/stats", timeout=5).json())


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    e = Env(tmp_path_factory.mktemp("agent_b1"))
    try:
        yield e
    finally:
        e.close()


def _je(amount: float) -> dict[str, Any]:
    return {"ReferenceDate": "2026-03-31", "Memo": "Concur report 77",
            "JournalEntryLines": [{"AccountCode": "6020", "Debit": amount, "CostingCode": "CC02"},
                                  {"ShortName": "E00002", "Credit": amount}]}


def test_allowed_calls_are_served_through_the_agent(env: Env) -> None:
    partners = env.client.get_all("BusinessPartners", {"$select": "CardCode", "$orderby": "CardCode"})
    assert len(partners) == 55  # three pages, each one call through the agent
    assert env.stats()["by_resource"]["GET BusinessPartners"] == 3
    first = env.client.post_journal_entry_once(_je(310.0), "concur:report-77")
    again = env.client.post_journal_entry_once(_je(310.0), "concur:report-77")
    assert first.created and not again.created and again.jdt_num == first.jdt_num
    rows = httpx.get(env.b1["admin"] + "/state/JournalEntries", timeout=5).json()["JournalEntries"]
    assert [r["Reference3"] for r in rows] == ["concur:report-77"]
    # a B1 error comes back typed through the channel
    bad = _je(5.0)
    bad["JournalEntryLines"][0]["AccountCode"] = "9999"
    with pytest.raises(B1Error) as ei:
        env.client.create("JournalEntries", bad)
    assert ei.value.code == -5002 and "9999" in ei.value.message and ei.value.status == 400
    # one login served every call: the session is the agent's and persists
    assert env.stats()["logins"] == 1


def test_calls_outside_the_allow_list_are_refused_and_audited_on_both_sides(env: Env) -> None:
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


def test_b1_password_never_reaches_the_control_plane(env: Env) -> None:
    env.client.ping()
    password = env.b1["password"].encode()
    files = [p for p in env.cp.dir.rglob("*") if p.is_file()]
    assert any(p.name.startswith("ml-connector.sqlite") for p in files) and env.cp.log in files
    blob = b"".join(p.read_bytes() for p in files)
    assert b"concur:report-77" in blob  # the scan reads the call data stored there
    assert password not in blob
    agent_files = [p for p in (env.agent.dir).rglob("*") if p.is_file()]
    assert password not in b"".join(p.read_bytes() for p in agent_files)  # vault ciphertext only
