"""Remote agent robustness, every party a separate OS process (sandbox, control plane, agent),
with an HTTP relay between agent and control plane that can lose answers in transit:

* a poll answer lost after the claim committed: the call is handed out again at once, runs
  exactly once at SAP, and is not left to the lease (which would answer AGENT_LOST);
* the table allow-list for every table-reading module, refused and audited on both sides;
* an agent unknown to the control plane stops with exit code 4;
* `ml-connector ping` through the remote agent with no agent online times out, naming the site.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import delete, select

from ml_connector.config import example_config
from ml_connector.core.channel import ChannelRequest, ChannelResponse
from ml_connector.core.db import Database
from ml_connector.server.agents.models import AgentCallRow, AgentRow
from tests.support import (
    BIN,
    AgentProc,
    sap_stats,
)
from tests.support.agent_worlds import RobustWorld

# Separate OS processes (SAP sandbox, control plane, agents): `make test`, not `make test-fast`.
pytestmark = pytest.mark.slow

LEASE = 60.0  # the production default: a call left to its lease would take a minute


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RobustWorld]:
    e = RobustWorld(tmp_path_factory.mktemp("agent-robust"), LEASE)
    try:
        yield e
    finally:
        e.close()


def test_lost_poll_answer_is_handed_out_again_and_runs_once(env: RobustWorld) -> None:
    assert env.reads.call(ChannelRequest(system="sap_ecc", function="RFC_PING")).ok  # agent is polling
    before = env.executed("STFC_CONNECTION")
    env.proxy.drop_poll_answers(1)
    req = ChannelRequest(system="sap_ecc", function="STFC_CONNECTION", params={"REQUTEXT": "lost-once"})
    r = env.posting.call(req)  # non-idempotent: a lease expiry would answer an uncertain AGENT_LOST
    assert env.proxy.dropped == [[req.id]]  # the control plane did hand it out, and that answer was lost
    assert r.ok and r.result is not None and r.result["ECHOTEXT"] == "lost-once", r
    assert env.executed("STFC_CONNECTION") == before + 1  # exactly once at SAP
    released = [a for a in env.audit("agent.call.released") if a.detail["call_id"] == req.id]
    assert [a.source for a in released] == [env.agent.agent_id]
    with env.db.session() as s:
        row = s.get(AgentCallRow, req.id)
        assert row is not None and row.attempts == 2 and row.agent_id == env.agent.agent_id
    assert not [a for a in env.audit("agent.call.lost") if a.detail["call_id"] == req.id]
    executed = [e for e in env.agent.audit() if e["event"] == "call.executed" and e["call_id"] == req.id]
    assert len(executed) == 1


@pytest.mark.parametrize(("function", "params", "key"), [
    # known table readers let in by a wildcard (RFC_*, /BODS/*) or by name: the table is checked
    ("RFC_GET_TABLE_ENTRIES", {"TABLE_NAME": "USR02"}, "USR02"),
    ("RFC_READ_TABLE2", {"QUERY_TABLE": "USR02"}, "USR02"),
    ("/BODS/RFC_READ_TABLE2", {"QUERY_TABLE": "USR02"}, "USR02"),
    ("BBP_RFC_READ_TABLE", {"QUERY_TABLE": "USR02"}, "USR02"),
    ("TABLE_ENTRIES_GET_VIA_RFC", {"TABNAME": "USR02"}, "USR02"),
    ("RFC_GET_TABLE_ENTRIES", {"MAX_ENTRIES": 5}, "TABLE_NAME"),  # names no table at all
    # unknown generic readers let in only by a wildcard (Z_*, RFC_*): refused outright
    ("Z_READ_ANY_TABLE", {"I_TAB": "LFA1"}, "Z_READ_ANY_TABLE"),
    ("Z_MLC_DUMP", {"TABNAME": "LFA1"}, "Z_MLC_DUMP"),
    ("RFC_GET_TABLE_DATA", {}, "RFC_GET_TABLE_DATA"),
])
def test_table_readers_refused_and_audited_on_both_sides(env: RobustWorld, function: str, params: dict[str, Any],
                                                         key: str) -> None:
    before = sap_stats(env.sap)["requests"]
    req = ChannelRequest(system="sap_ecc", function=function, params=params)
    r = env.reads.call(req)
    assert not r.ok and r.fault is not None and r.fault.type == "NotAllowed" and r.fault.key == key, r
    assert sap_stats(env.sap)["requests"] == before  # never reached SAP
    cp_side = [a for a in env.audit("agent.call.refused") if a.detail["call_id"] == req.id]
    assert [(a.source, a.detail["function"], a.detail["key"]) for a in cp_side] == [
        (env.agent.agent_id, function, key)]
    agent_side = [e for e in env.agent.audit() if e["event"] == "call.refused" and e["call_id"] == req.id]
    assert [(e["function"], e["key"]) for e in agent_side] == [(function, key)]
    assert "USR02" not in key or "USR02" in agent_side[0]["message"]


def test_allowed_tables_and_ordinary_wildcard_modules_still_pass(env: RobustWorld) -> None:
    before = sap_stats(env.sap)["requests"]
    r = env.reads.call(ChannelRequest(system="sap_ecc", function="BBP_RFC_READ_TABLE",
                                      params={"QUERY_TABLE": "LFA1", "DELIMITER": "|", "ROWCOUNT": "2",
                                              "FIELDS": [{"FIELDNAME": "LIFNR"}],
                                              "__tables__": ["DATA", "FIELDS"]}))
    # reaches SAP (the sandbox has it not installed: FU_NOT_FOUND, not a refusal by the agent)
    assert r.fault is None or r.fault.type != "NotAllowed", r
    assert sap_stats(env.sap)["requests"] == before + 1  # the agent did pass it on
    before = env.executed("RFC_SYSTEM_INFO")
    assert env.reads.call(ChannelRequest(system="sap_ecc", function="RFC_SYSTEM_INFO")).ok  # via RFC_* too
    assert env.executed("RFC_SYSTEM_INFO") == before + 1


def test_agent_unknown_to_the_control_plane_exits_4(env: RobustWorld, tmp_path: Path) -> None:
    other = AgentProc(tmp_path / "forgotten", env.cp.url, env.sap)
    other.setup(env.cp.token(), env.cp.url, env.sap["password"])
    with env.db.session() as s:  # as if the control plane's database had been reset
        s.execute(delete(AgentRow).where(AgentRow.id == other.agent_id))
    other.start()
    assert other.proc is not None
    assert other.proc.wait(30) == 4
    text = " ".join(other.log.read_text().split())  # rich wraps the message at the console width
    assert f"agent {other.agent_id} is not known to the control plane (unknown_agent)" in text
    assert "pair again" in text
    assert any(e["event"] == "agent.stopped" and e["reason"] == "unknown_agent" for e in other.audit())
    rejected = [a for a in env.audit("agent.auth.rejected") if a.source == other.agent_id]
    assert rejected and {a.detail["reason"] for a in rejected} == {"unknown_agent"}


def test_ping_without_an_agent_online_times_out_naming_the_site(env: RobustWorld, tmp_path: Path) -> None:
    cfg = tmp_path / "ml-connector.yaml"
    text = example_config(env.sap["base_url"], "http://127.0.0.1:9")
    text = text.replace("  executor_id: null\n", "  executor_id: null\n  agent: remote\n  agent_site: plant-9\n", 1)
    data = yaml.safe_load(text)
    data["connections"] = {k: v for k, v in data["connections"].items() if v["type"] == "sap_ecc"}
    data["flows"] = {}
    cfg.write_text(yaml.safe_dump(data), encoding="utf-8")
    out = subprocess.run([str(BIN), "ping", "-c", str(cfg), "--timeout", "2s"], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "COLUMNS": "400"})
    assert out.returncode == 1, out.stdout + out.stderr
    assert "no agent of site 'plant-9' is online" in out.stdout, out.stdout
    assert "not executed" in out.stdout
    db = Database(f"sqlite:///{tmp_path / 'data' / 'ml-connector.sqlite'}")
    try:
        with db.session() as s:
            rows = list(s.scalars(select(AgentCallRow).where(AgentCallRow.site == "plant-9")))
        assert [r.function for r in rows] == ["RFC_PING"] and rows[0].state == "done"
        resp = ChannelResponse.model_validate_json(rows[0].response or "")
        assert resp.fault is not None and resp.fault.key == "AGENT_UNAVAILABLE"
        assert resp.fault.details["uncertain"] is False  # withdrawn while queued: certain, not run
    finally:
        db.dispose()

