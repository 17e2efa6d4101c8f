"""Refused agent requests are audited coalesced (core/refusals.py, as the operators' API does):
at most one `agent.auth.rejected` row per (client, agent id, reason) per window, with a count,
written through the real agent endpoints."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ml_connector.agent import protocol as proto
from ml_connector.core.db import Database
from ml_connector.core.vault import MasterKey, Vault
from ml_connector.server.agent_api import agent_router
from ml_connector.server.agents.service import AgentService, Settings
from tests.support.clock import FakeClock
from tests.support.control_plane import agent_refusal_rows, forged_poll


@pytest.fixture()
def cp(tmp_path: Path) -> Iterator[Any]:
    db = Database(f"sqlite:///{tmp_path / 'cp.sqlite'}")
    db.migrate()
    vault = Vault(db, MasterKey.generate())
    svc = AgentService(db, vault, Settings(sweep_every=3600, refusal_window=60.0))
    clock = FakeClock()
    svc.refusals.clock = clock
    svc.refusals.background = False  # the window's end is driven by the test's clock and flush()
    app = FastAPI()
    app.include_router(agent_router(SimpleNamespace(db=db, vault=vault), svc))
    client = TestClient(app)
    yield SimpleNamespace(db=db, svc=svc, client=client, clock=clock)
    svc.stop()
    client.close()
    db.dispose()


def test_a_flood_of_refused_agent_requests_is_one_row_per_key_and_window_with_its_count(cp: Any) -> None:
    token = cp.svc.issue_token("plant1", 60)
    key = proto.generate_key()
    r = cp.client.post("/api/agent/pair", json={"token": token, "public_key": proto.public_key_text(key)})
    agent_id = r.json()["agent_id"]
    for _ in range(40):
        assert forged_poll(cp, agent_id) == 401  # bad_signature, every one refused
    for _ in range(10):
        assert forged_poll(cp, "agt_nobody") == 401  # unknown_agent: another key
    for _ in range(5):
        assert cp.client.post("/api/agent/poll", json={}).status_code == 401  # missing_headers
    rows = agent_refusal_rows(cp.db)
    assert [(r.source, r.detail["reason"], r.detail["count"]) for r in rows] == [
        (agent_id, "bad_signature", 1), ("agt_nobody", "unknown_agent", 1), (None, "missing_headers", 1)]
    assert all(r.outcome == "rejected" and r.detail["client"] == "testclient"
               and r.detail["path"] == "/api/agent/poll" for r in rows)

    cp.clock.advance(59.0)
    assert forged_poll(cp, agent_id) == 401
    # window still open: counted, not written
    assert cp.svc.refusals.flush() == 0 and len(agent_refusal_rows(cp.db)) == 3

    cp.clock.advance(1.0)  # the window ends: the pending counts are written, one row per key
    assert cp.svc.refusals.flush() == 3
    later = agent_refusal_rows(cp.db)[3:]
    assert sorted((r.source or "", r.detail["reason"], r.detail["count"]) for r in later) == [
        ("", "missing_headers", 4), (agent_id, "bad_signature", 40), ("agt_nobody", "unknown_agent", 9)]
    assert all(r.detail["since"] <= time.time() and "message" in r.detail for r in later)


def test_one_peer_varying_agent_ids_costs_a_bounded_number_of_rows(cp: Any) -> None:
    """An unauthenticated caller choosing a new agent id (or forwarded address) per request must
    not open a coalescing key, and an audit row, per request."""
    for i in range(1500):
        assert forged_poll(cp, f"agt_{i:016x}") == 401
    rows = agent_refusal_rows(cp.db)
    assert len(rows) <= 10, len(rows)
    assert sum(int(r.detail["count"]) for r in rows) + sum(
        e.pending for e in cp.svc.refusals._keys.values()) == 1500  # every refusal still counted
