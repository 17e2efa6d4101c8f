"""The worlds of the remote-agent test modules: SAP sandbox, control plane and agent processes, built
once per module (World tears them down)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import yaml

from ml_connector.core.channel import ChannelResponse
from ml_connector.core.db import Database
from ml_connector.core.models import AuditRow
from ml_connector.server.agents.channel import RemoteAgentChannel
from ml_connector.server.agents.models import AgentCallRow
from ml_connector.systems.sap_b1.client import ChannelServiceLayerClient
from tests.support.agents import AgentProc, ControlPlane, DropProxy, World
from tests.support.sandboxes import start_sandbox


class LeaseWorld(World):
    """A control plane with a short lease behind a lossy relay (DropProxy), one agent; STFC_CONNECTION
    posted as a non-idempotent call."""

    def __init__(self, tmp: Path, lease: float) -> None:
        super().__init__()
        self.sandbox, self.sap = start_sandbox()
        self.cp = ControlPlane(tmp / "cp", env={"MLC_AGENT_LEASE": str(lease), "MLC_AGENT_SWEEP": "0.2"})
        self.cp.start()
        self.db = Database(self.cp.db_url)
        self.proxy = DropProxy(self.cp.url)
        self.agent = AgentProc(tmp / "agent", self.proxy.url, self.sap)
        self.agent.setup(self.cp.token(), self.proxy.url, self.sap["password"])
        self.agent.start()
        self.agents.append(self.agent)
        # STFC_CONNECTION stands in for a posting: not idempotent, so a lapsed lease means AGENT_LOST.
        self.posting = RemoteAgentChannel(self.db, "plant1", timeout=60, idempotent=lambda f: False)

    def row(self, call_id: str) -> AgentCallRow:
        with self.db.session() as s:
            row = s.get(AgentCallRow, call_id)
            assert row is not None
            return row

    def call_audit(self, event: str, call_id: str) -> list[AuditRow]:
        return [a for a in self.audit(event) if (a.detail or {}).get("call_id") == call_id]

    def agent_executed(self, call_id: str) -> bool:
        return any(e["event"] == "call.executed" and e["call_id"] == call_id for e in self.agent.audit())


class RemoteWorld(World):
    """A control plane, one agent allowed the posting BAPI; a posting (non-idempotent) and a read channel."""

    def __init__(self, tmp: Path) -> None:
        super().__init__()
        self.sandbox, self.sap = start_sandbox()
        self.cp = ControlPlane(tmp / "cp")
        self.cp.start()
        self.db = Database(self.cp.db_url)
        self.agent = AgentProc(tmp / "agent1", self.cp.url, self.sap, extra_functions=["Z_MLC_ACC_DOCUMENT_POST"])
        self.agent.setup(self.cp.token(), self.cp.url, self.sap["password"])
        self.agent.start()
        self.agents.append(self.agent)
        # A posting-like call: the control plane treats STFC_CONNECTION as non-idempotent here.
        self.posting = RemoteAgentChannel(self.db, "plant1", timeout=90, idempotent=lambda f: False)
        self.reads = RemoteAgentChannel(self.db, "plant1", timeout=90)


class B1AgentWorld(World):
    """A control plane, one agent in front of the SAP Business One sandbox (allowed `allow` resources);
    a Service Layer client over the agent channel."""

    def __init__(self, tmp: Path, allow: list[str]) -> None:
        super().__init__()
        self.sandbox, self.b1 = start_sandbox(system="sap_b1")
        # The emulated cost of a login (seconds) is not what these tests look at.
        httpx.post(self.b1["admin"] + "/config", json={"login_seconds": 0}, timeout=5).raise_for_status()
        self.cp = ControlPlane(tmp / "cp")
        self.cp.start()
        self.db = Database(self.cp.db_url)
        self.agent = AgentProc(tmp / "agent", self.cp.url, {"base_url": self.b1["base_url"], "client": "100",
                                                            "user": "unused"})
        cfg = yaml.safe_load(self.agent.config.read_text())
        cfg["systems"] = {"b1": {"type": "sap_b1", "base_url": self.b1["base_url"], "company_db":
                                 self.b1["company_db"], "user": self.b1["user"], "password_secret": "sap_pw",
                                 "allow": {"resources": allow}}}
        self.agent.config.write_text(yaml.safe_dump(cfg), encoding="utf-8")
        self.agent.setup(self.cp.token(), self.cp.url, self.b1["password"])
        self.agent.start()
        self.agents.append(self.agent)
        self.channel = RemoteAgentChannel(self.db, "plant1", timeout=60)
        self.client = ChannelServiceLayerClient(self.channel, "b1")

    def stats(self) -> dict[str, Any]:
        return dict(httpx.get(self.b1["admin"] + "/stats", timeout=5).json())


class RobustWorld(World):
    """A control plane with the production lease behind a lossy relay, one agent allowed the table
    readers; channels that time out before the lease could rescue a lost call."""

    def __init__(self, tmp: Path, lease: float) -> None:
        super().__init__()
        self.tmp = tmp
        self.sandbox, self.sap = start_sandbox()
        self.cp = ControlPlane(tmp / "cp", env={"MLC_AGENT_LEASE": str(int(lease))})
        self.cp.start()
        self.db = Database(self.cp.db_url)
        self.proxy = DropProxy(self.cp.url)
        self.agent = AgentProc(tmp / "agent", self.proxy.url, self.sap,
                               extra_functions=["RFC_*", "Z_*", "/BODS/*", "BBP_RFC_READ_TABLE",
                                                "TABLE_ENTRIES_GET_VIA_RFC"])
        self.agent.setup(self.cp.token(), self.proxy.url, self.sap["password"])
        self.agent.start()
        self.agents.append(self.agent)
        # Deliberately shorter than the lease: only a prompt re-delivery can answer in time.
        self.posting = RemoteAgentChannel(self.db, "plant1", timeout=lease / 2, idempotent=lambda f: False)
        self.reads = RemoteAgentChannel(self.db, "plant1", timeout=lease / 2)


def check_ran_once(env: LeaseWorld, call_id: str, result: ChannelResponse, text: str, before: int) -> None:
    assert result.ok and result.result is not None and result.result["ECHOTEXT"] == text, result
    assert env.executed() == before + 1  # SAP saw it once
    assert [e["call_id"] for e in env.agent.audit() if e["event"] == "call.executed"].count(call_id) == 1
    assert len(env.call_audit("agent.call.done", call_id)) == 1  # stored once
    assert env.call_audit("agent.call.lost", call_id) == []


def listed_agents(env: RemoteWorld) -> list[dict[str, Any]]:
    import httpx

    return list(httpx.get(env.cp.url + "/api/agents", timeout=5).json())
