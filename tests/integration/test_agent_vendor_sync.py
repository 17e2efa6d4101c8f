"""The vendor flow end to end through the remote agent: `ml-connector run` as the control
plane (DBOS, agent API), `ml-connector agent` as a separate process, SAP reachable only by it."""

from __future__ import annotations

import sqlite3

import httpx
import pytest
import yaml

from ml_connector.core.servers import free_port
from ml_connector.sandbox import start_sandboxes
from tests.support import (
    CP_ENV,
    AgentProc,
    in_scope_vendors,
    make_env,
    ramp_vendors,
    stop_all,
    wait_healthy,
    wait_until,
)

# Separate OS processes (SAP sandbox, control plane, agents): `make test`, not `make test-fast`.
pytestmark = pytest.mark.slow


def test_vendor_sync_through_the_remote_agent(tmp_path):
    handles = start_sandboxes(vendors=300)
    procs = []
    agent = None
    sap_password = "Agent-Only-Pw-7731"
    try:
        ecc = handles["sap_ecc"].state
        ecc.add_user("RFC_USER", sap_password, {"100"})
        (tmp_path / "cp").mkdir()
        env = make_env(tmp_path / "cp", handles["sap_ecc"].url, handles["ramp"].url, set_secrets=False)
        cfg = yaml.safe_load(env.config.read_text())
        port = free_port()
        cfg["server"]["port"] = port
        cfg["engine"]["agent"] = "remote"
        cfg["engine"]["agent_site"] = "plant1"
        # No schedules: only the run this test starts calls SAP, so its count of calls can be compared with
        # the calls the control plane handed the agent.
        for flow in cfg["flows"].values():
            flow.pop("schedule", None)
        env.config.write_text(yaml.safe_dump(cfg, sort_keys=False))
        # The control plane holds the Ramp secret only; the SAP password lives on the agent.
        env.cli("secrets", "set", "ramp_client_secret", "--stdin", input_="ramp_demo_secret")
        cp = env.popen("run", extra_env=CP_ENV)
        procs.append(cp)
        base = f"http://127.0.0.1:{port}"

        wait_healthy(base, timeout=90)
        token = env.cli("agents", "issue-token", "--site", "plant1", "--ttl", "5m",
                        extra_env=CP_ENV).stdout.strip().splitlines()[-1]
        agent = AgentProc(tmp_path / "agent", base, {"base_url": handles["sap_ecc"].url, "client": "100",
                                                     "user": "RFC_USER"})
        acfg = yaml.safe_load(agent.config.read_text())
        acfg["systems"]["sap_ecc"]["allow"]["tables"] = ["LFA1", "LFB1", "CDHDR"]
        agent.config.write_text(yaml.safe_dump(acfg))
        agent.setup(token, base, sap_password)
        agent.start()

        run_id = httpx.post(f"{base}/api/flows/vendors_to_ramp/sync", json={"stream": "vendors"}).json()["run_ids"][0]

        def finished() -> bool:
            r = httpx.get(f"{base}/api/runs/{run_id}")
            return r.status_code == 200 and r.json()["status"] in ("succeeded", "failed")

        wait_until(finished, timeout=180, interval=0.5)
        assert httpx.get(f"{base}/api/runs/{run_id}").json()["status"] == "succeeded"
        want = {k for k, v in in_scope_vendors(ecc).items() if v["active"]}
        assert sorted(v["id"] for v in ramp_vendors(handles["ramp"].url)) == sorted(want)
        # Every SAP call went through the agent, which saw and executed them.
        executed = [e for e in agent.audit() if e["event"] == "call.executed"]
        assert {e["function"] for e in executed} >= {"RFC_SYSTEM_INFO", "RFC_READ_TABLE"}
        # The run counts each call it handed the agent once, by the agent's system (core/calls.py), and its
        # Ramp calls.
        made = httpx.get(f"{base}/api/runs/{run_id}").json()["calls"]
        agents = httpx.get(f"{base}/api/agents").json()
        assert [(a["id"], a["state"]) for a in agents] == [(agent.agent_id, "online")]
        # The SAP password never reached the control plane.
        dbfile = tmp_path / "cp" / "data" / "ml-connector.sqlite"
        raw = b"".join(f.read_bytes() for f in dbfile.parent.iterdir() if f.name.startswith(dbfile.name))
        assert sap_password.encode() not in raw
        db = sqlite3.connect(dbfile)
        assert db.execute("select count(*) from mlc_secrets where name like '%sap%'").fetchone() == (0,)
        handed = db.execute("select count(*) from mlc_agent_calls").fetchone()[0]
        assert handed >= len(executed) > 0
        assert made == {"sap_ecc": handed, "ramp": made.get("ramp", 0)} and made["ramp"] > 0
    finally:
        if agent is not None:
            agent.kill()
        stop_all(procs, handles)
