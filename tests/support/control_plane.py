"""An in-process control plane (AgentService behind the agents' API on a TestClient) and what agent
tests do with it: pair, sign requests, poll, run an in-process agent."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from ml_connector.agent import protocol as proto
from ml_connector.agent.config import AgentConfig
from ml_connector.agent.runner import Agent, Identity
from ml_connector.core.alerts import Alerter
from ml_connector.core.channel import ChannelResponse
from ml_connector.core.db import Database
from ml_connector.core.models import AuditRow
from ml_connector.core.vault import MasterKey, Vault
from ml_connector.server.agent_api import agent_router
from ml_connector.server.agents.models import AgentCallRow
from ml_connector.server.agents.pacing import Pacing
from ml_connector.server.agents.service import AgentIdentity, AgentService, Settings

#: Short leases and polls, no background sweep (tests sweep with a time of their choosing); every
#: refused request its own audit row (coalescing has its own tests).
FAST_SETTINGS = Settings(lease=1.0, offline_after=1.0, hold_max=2.0, db_poll=0.02, sweep_every=3600,
                         refusal_window=0)


def in_process_control_plane(db: Database, vault: Vault, settings: Settings = FAST_SETTINGS,
                              alerts: Alerter | None = None) -> SimpleNamespace:
    """db, vault, svc (AgentService), client (TestClient on the agents' API), alerts."""
    svc = AgentService(db, vault, settings, alerts=alerts)
    app = FastAPI()
    app.include_router(agent_router(SimpleNamespace(db=db, vault=vault), svc))
    return SimpleNamespace(db=db, vault=vault, svc=svc, client=TestClient(app), alerts=alerts)


def pair_agent(cp: Any, site: str = "plant1", name: str | None = None) -> tuple[str, Any]:
    """Pair a new agent key at `cp` (anything with .svc and .client); its id and private key."""
    token = cp.svc.issue_token(site, 60)
    key = proto.generate_key()
    body = {"token": token, "public_key": proto.public_key_text(key), **({"name": name} if name is not None else {})}
    r = cp.client.post("/api/agent/pair", json=body)
    assert r.status_code == 200, r.text
    return r.json()["agent_id"], key


def signed_post(cp: Any, agent_id: str, key: Any, path: str, payload: dict[str, Any], *, now: float | None = None,
                nonce: str | None = None, send_body: bytes | None = None) -> Any:
    """POST `payload` to `path` signed by the agent; `send_body`: send other bytes than were signed."""
    body = json.dumps(payload).encode()
    headers = proto.sign_headers(key, agent_id, "POST", path, body, now=now or time.time(), nonce=nonce)
    return cp.client.post(path, content=send_body if send_body is not None else body, headers=headers)


def poll(cp: Any, agent_id: str, key: Any) -> None:
    """One signed poll that does not wait for calls (the agent is seen)."""
    assert signed_post(cp, agent_id, key, "/api/agent/poll", {"hold": 0}).status_code == 200


def rejections(db: Database) -> list[str]:
    """The reasons of the audited refusals of agent requests."""
    with db.session() as s:
        return [r.detail["reason"] for r in s.scalars(select(AuditRow).where(AuditRow.event == "agent.auth.rejected")
                                                      .order_by(AuditRow.id))]


def agent_config(data_dir: Path, **allow: Any) -> AgentConfig:
    """An agent's configuration for the TestClient control plane; `allow`: its SAP allow-list."""
    return AgentConfig.model_validate({
        "control_plane": "http://testserver", "data_dir": str(data_dir),
        "poll": {"hold": "0.2s", "backoff_scale": 0.001, "max_concurrent": 2, "heartbeat": "0.2s"},
        "systems": {"sap_ecc": {"base_url": "http://sap.invalid", "client": "100", "user": "U",
                                "password_secret": "pw",
                                "allow": allow or {"functions": ["RFC_PING", "STFC_CONNECTION", "RFC_READ_TABLE"],
                                                   "tables": ["LFA1"]}}}})


def table_allow_config(functions: list[str], tables: list[str] | None = None) -> AgentConfig:
    """An agent's configuration that only carries an SAP allow-list."""
    return AgentConfig.model_validate({"systems": {"sap_ecc": {
        "base_url": "http://x", "user": "U", "password_secret": "pw",
        "allow": {"functions": functions, "tables": tables or ["LFA1", "T00*"]}}}})


class InProcessAgent:
    """An in-process agent against the TestClient control plane, with a counting fake SAP handler."""

    def __init__(self, cp: Any, tmp_path: Path, site: str = "plant1", name: str = "a") -> None:
        agent_id, key = pair_agent(cp, site)
        self.ident = Identity(agent_id=agent_id, site=site, control_plane="http://testserver",
                              control_plane_public_key=cp.svc.control_public_key(), key=key)
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.cfg = agent_config(tmp_path / name / "agent")
        self.agent = Agent(self.cfg, self.ident, vault=object(), handlers={"sap_ecc": self.handle})
        self.agent.client._http = cp.client  # the TestClient is an httpx.Client
        self.agent.client.base = ""

    def handle(self, function: str, params: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((function, params))
        return {"ECHOTEXT": params.get("REQUTEXT", ""), "n": len(self.calls)}


def agent_refusal_rows(db: Database) -> list[AuditRow]:
    """The audit rows of refused agent requests, oldest first."""
    with db.session() as s:
        rows = list(s.scalars(select(AuditRow).where(AuditRow.event == "agent.auth.rejected").order_by(AuditRow.id)))
        s.expunge_all()
        return rows


def forged_poll(cp: Any, agent_id: str) -> int:
    """A poll as `agent_id` signed by another key: the status code of the refusal."""
    body = json.dumps({"hold": 0}).encode()
    headers = proto.sign_headers(proto.generate_key(), agent_id, "POST", "/api/agent/poll", body, now=time.time())
    return int(cp.client.post("/api/agent/poll", content=body, headers=headers).status_code)


def agent_service(tmp_path: Path, pacing: Pacing | None = None, **settings: Any) -> AgentService:
    """An AgentService on its own SQLite database (no HTTP): short leases, no background sweep."""
    db = Database(f"sqlite:///{tmp_path / 'cp.sqlite'}")
    db.migrate()
    opts: dict[str, Any] = {"lease": 5.0, "offline_after": 5.0, "hold_max": 1.0, "db_poll": 0.02,
                            "sweep_every": 3600, **settings}
    return AgentService(db, Vault(db, MasterKey.generate()), Settings(**opts), pacing=pacing)


def pair_key(svc: AgentService, site: str = "plant1") -> str:
    """Pair a new agent key directly at the service; the agent's id."""
    token = svc.issue_token(site, 60)
    return str(svc.pair(token, proto.public_key_text(proto.generate_key()))["agent_id"])


def call_ids(envs: list[dict[str, Any]] | None) -> list[str]:
    """The call ids of claimed envelopes."""
    return [str(e["call"]["id"]) for e in envs or []]


def answer_calls(svc: AgentService, agent: str, ids: list[str], site: str = "plant1") -> float:
    """Store an ok result for each call id; the latest completion time."""
    for cid in ids:
        svc.store_result(AgentIdentity(agent, site), ChannelResponse(id=cid, ok=True, result={}))
    with svc.db.session() as s:
        return float(s.scalar(select(func.max(AgentCallRow.completed_at))) or 0.0)


def agent_settings(**kw: Any) -> AgentConfig:
    """An agent's configuration of just these settings."""
    return AgentConfig.model_validate(kw)
