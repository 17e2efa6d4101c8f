"""Scale-out: agents served by several control-plane processes share one Postgres queue of agent calls.

Each control-plane process has its own connection pool, so concurrent claims really race in Postgres
(FOR UPDATE SKIP LOCKED); each call must go to exactly one agent, and a lease sweep racing an
agent's result must never overwrite that result.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select

from ml_connector.core.channel import ChannelRequest, ChannelResponse
from ml_connector.server.agents.channel import RemoteAgentChannel
from ml_connector.server.agents.models import AgentCallRow
from ml_connector.server.agents.service import AgentIdentity
from tests.scaleout.conftest import PG
from tests.support.control_plane import pair_key
from tests.support.scaleout import control_planes, dispose_all, store_when, sweep_when

pytestmark = [pytest.mark.scaleout,
              pytest.mark.skipif(not PG, reason="MLC_TEST_PG_URL not set (make test starts Postgres)")]

SITE = "plant1"


def test_concurrent_claims_from_several_control_planes_go_to_exactly_one_agent(pg_database: str) -> None:
    services = control_planes(pg_database, 4, lease=120)
    try:
        agents = [pair_key(services[i % len(services)]) for i in range(6)]
        ch = RemoteAgentChannel(services[0].db, SITE)
        total = 600
        for i in range(total):
            ch.submit(ChannelRequest(id=f"c{i:04d}", system="sap_ecc", function="RFC_READ_TABLE",
                                     params={"QUERY_TABLE": "LFA1", "n": i}))
        executed: list[tuple[str, str]] = []
        lock = threading.Lock()
        start = threading.Barrier(len(agents))

        def work(i: int, agent_id: str) -> None:
            svc = services[i % len(services)]
            ident = AgentIdentity(agent_id, SITE)
            start.wait()
            idle = 0
            while idle < 3:
                envs = svc.claim(ident, 7) or []
                if not envs:
                    idle += 1
                    time.sleep(0.02)
                    continue
                idle = 0
                for env in envs:
                    call = env["call"]
                    with lock:
                        executed.append((call["id"], agent_id))
                    out = svc.store_result(ident, ChannelResponse(id=call["id"], ok=True,
                                                                  result={"by": agent_id}))
                    assert out == {"stored": True, "duplicate": False}

        threads = [threading.Thread(target=work, args=(i, a)) for i, a in enumerate(agents)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads)

        runs = Counter(cid for cid, _ in executed)
        assert len(runs) == total and set(runs.values()) == {1}  # every call once, none twice
        assert len({a for _, a in executed}) >= 2  # the queue really was shared
        by_call = dict(executed)
        with services[0].db.session() as s:
            rows = s.scalars(select(AgentCallRow).where(AgentCallRow.site == SITE)).all()
            assert {r.state for r in rows} == {"done"} and {r.attempts for r in rows} == {1}
            for r in rows:  # the stored result is the one from the agent that claimed the call
                assert r.agent_id == by_call[r.id]
                assert ChannelResponse.model_validate_json(r.response).result == {"by": r.agent_id}
    finally:
        dispose_all(services)


def test_lease_sweep_racing_a_result_never_overwrites_it(pg_database: str) -> None:
    cp_a, cp_b = control_planes(pg_database, 2, lease=0.05)
    try:
        agent_id = pair_key(cp_a)
        ident = AgentIdentity(agent_id, SITE)
        ch = RemoteAgentChannel(cp_a.db, SITE)
        outcomes: list[tuple[str, dict[str, Any]]] = []
        for i in range(40):
            # postings are not idempotent: an expired lease turns them into an uncertain AGENT_LOST answer
            ch.submit(ChannelRequest(id=f"p{i:03d}", system="sap_ecc", function="BAPI_ACC_DOCUMENT_POST",
                                     params={"n": i}))
            envs = cp_a.claim(ident, 1) or []
            assert [e["call"]["id"] for e in envs] == [f"p{i:03d}"]
            time.sleep(0.06)  # the lease has lapsed: the sweep and the late result now race
            go = threading.Barrier(2)
            result: dict[str, Any] = {}
            cid = f"p{i:03d}"
            ts = [threading.Thread(target=store_when, args=(go, cp_a, ident, cid, result)),
                  threading.Thread(target=sweep_when, args=(go, cp_b))]
            for t in ts:
                t.start()
            for t in ts:
                t.join(30)
            outcomes.append((f"p{i:03d}", result))

        with cp_a.db.session() as s:
            rows = {r.id: r for r in s.scalars(select(AgentCallRow).where(AgentCallRow.site == SITE))}
        for cid, out in outcomes:
            final = ChannelResponse.model_validate_json(rows[cid].response)
            assert rows[cid].state == "done"
            if out["stored"]:  # the agent was told its result is stored: it must be the answer kept
                assert final.ok and final.result == {"doc": cid}, (cid, final)
            else:  # the sweep got there first: the answer is uncertain, to be resolved by lookup
                assert final.fault is not None and final.fault.key == "AGENT_LOST", (cid, final)
    finally:
        dispose_all([cp_a, cp_b])


def test_a_dead_agents_calls_are_taken_over_by_another(pg_database: str) -> None:
    cp_a, cp_b = control_planes(pg_database, 2, lease=0.5)
    try:
        dead, alive = pair_key(cp_a), pair_key(cp_b)
        ch = RemoteAgentChannel(cp_a.db, SITE)
        for i in range(20):
            ch.submit(ChannelRequest(id=f"r{i:02d}", system="sap_ecc", function="RFC_PING"))
        held = cp_a.claim(AgentIdentity(dead, SITE), 8) or []
        assert len(held) == 8
        got = [e["call"]["id"] for e in cp_b.claim(AgentIdentity(alive, SITE), 50) or []]
        assert len(got) == 12 and not {e["call"]["id"] for e in held} & set(got)
        for cid in got:  # the live agent answers its calls; the dead one never will
            cp_b.store_result(AgentIdentity(alive, SITE), ChannelResponse(id=cid, ok=True, result={}))
        time.sleep(0.6)
        counts = cp_b.sweep()
        assert counts["requeued"] == 8
        again = [e["call"]["id"] for e in cp_b.claim(AgentIdentity(alive, SITE), 50) or []]
        assert sorted(again) == sorted(e["call"]["id"] for e in held)
    finally:
        dispose_all([cp_a, cp_b])


def test_lost_poll_answers_released_on_postgres_while_other_control_planes_claim(pg_database: str) -> None:
    """Agent A lost the answers carrying its calls; its next poll (on another control plane) reports
    holding none of them. They go back to the queue while agent B claims on a third control plane:
    every call ends up with exactly one agent, the held one stays with A."""
    services = control_planes(pg_database, 3, lease=120)
    try:
        a, b = pair_key(services[0]), pair_key(services[0])
        ch = RemoteAgentChannel(services[0].db, SITE)
        for i in range(40):
            ch.submit(ChannelRequest(id=f"c{i:02d}", system="sap_ecc", function="BAPI_ACC_DOCUMENT_POST"))
        lost = [e["call"]["id"] for e in services[0].claim(AgentIdentity(a, SITE), 20, "a-process") or []]
        assert len(lost) == 20
        held = lost[:1]  # A did receive one of them (say it ran it): that one is not released
        got_b: list[str] = []

        def claim_b() -> None:
            for _ in range(30):
                got_b.extend(e["call"]["id"] for e in services[2].claim(AgentIdentity(b, SITE), 3) or [])

        t = threading.Thread(target=claim_b)
        t.start()
        released = services[1].release_unheld(AgentIdentity(a, SITE), held, "a-process")
        t.join()
        got_b.extend(e["call"]["id"] for e in services[2].claim(AgentIdentity(b, SITE), 100) or [])
        assert released == 19
        assert sorted(got_b) == sorted(set(f"c{i:02d}" for i in range(40)) - set(held))
        with services[0].db.session() as s:
            owner = {r.id: r.agent_id for r in s.scalars(select(AgentCallRow))}
        assert owner[held[0]] == a and all(owner[c] == b for c in got_b)
    finally:
        dispose_all(services)
