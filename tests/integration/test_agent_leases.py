"""Leases of calls whose result waits on the agent, every party a separate OS process (SAP
sandbox, control plane, agent) with an HTTP relay between agent and control plane.

* Result posts refused for longer than the lease while heartbeats get through: the finished
  call's lease is renewed (it is held), so a posting-like call is not answered AGENT_LOST; its
  result is stored once delivery works again.
* The control plane stopped for longer than the lease while the agent holds a finished result:
  after the restart the result is accepted, exactly once, and SAP saw the call once.
"""

from __future__ import annotations

import concurrent.futures as cf
import time
from collections.abc import Iterator

import pytest

from ml_connector.core.channel import ChannelRequest
from tests.support import (
    sap_faults,
    sap_stats,
    wait_for,
)
from tests.support.agent_worlds import LeaseWorld, check_ran_once

# Separate OS processes (SAP sandbox, control plane, agents): `make test`, not `make test-fast`.
pytestmark = pytest.mark.slow

LEASE = 3.0


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LeaseWorld]:
    e = LeaseWorld(tmp_path_factory.mktemp("agent-leases"), LEASE)
    try:
        yield e
    finally:
        e.close()


def test_undelivered_result_keeps_its_lease(env: LeaseWorld) -> None:
    before = env.executed()
    req = ChannelRequest(system="sap_ecc", function="STFC_CONNECTION", params={"REQUTEXT": "held-1"})
    env.proxy.refuse_results = True
    try:
        with cf.ThreadPoolExecutor(1) as pool:
            fut = pool.submit(env.posting.call, req)
            wait_for(lambda: env.agent_executed(req.id) and env.proxy.refused_results > 0,
                     what="the call to run and its result to be refused")
            claimed_at = env.row(req.id).claimed_at
            assert claimed_at is not None
            # Past the first lease and a sweep: only the heartbeat of the finished call can keep it.
            wait_for(lambda: time.time() > claimed_at + LEASE + 1.0, what="the first lease to pass")
            row = env.row(req.id)
            assert row.state == "claimed", (row.state, row.response)
            assert row.lease_expires_at is not None and row.lease_expires_at > claimed_at + LEASE
            assert not fut.done()
            env.proxy.refuse_results = False
            result = fut.result(60)
    finally:
        env.proxy.refuse_results = False
    check_ran_once(env, req.id, result, "held-1", before)


def test_result_held_across_a_control_plane_outage_longer_than_the_lease(env: LeaseWorld) -> None:
    before = env.executed()
    req = ChannelRequest(system="sap_ecc", function="STFC_CONNECTION", params={"REQUTEXT": "outage-1"})
    sap_faults(env.sap, latency=1.0)
    try:
        with cf.ThreadPoolExecutor(1) as pool:
            fut = pool.submit(env.posting.call, req)
            wait_for(lambda: sap_stats(env.sap)["in_flight"] >= 1, what="the call to reach SAP")
            env.cp.kill()  # the agent finishes the call with no control plane to tell
            wait_for(lambda: env.agent_executed(req.id), what="the agent to finish the call")
            lease_end = env.row(req.id).lease_expires_at  # the database is a file: readable meanwhile
            assert lease_end is not None
            wait_for(lambda: time.time() > lease_end + 0.5, what="the lease to run out while down")
            env.cp.start()
            result = fut.result(60)
    finally:
        sap_faults(env.sap, latency=0)
    check_ran_once(env, req.id, result, "outage-1", before)
    assert env.call_audit("agent.result.late", req.id) == []  # in time: its lease restarted with the control plane
