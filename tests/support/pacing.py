"""Two agents of one site serving one SAP sandbox through paced control planes (test_agent_pacing and its
Postgres variant)."""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from ml_connector.core.channel import ChannelRequest, ChannelResponse
from ml_connector.core.db import Database
from ml_connector.server.agents.channel import RemoteAgentChannel
from ml_connector.server.agents.models import AgentCallRow, AgentRow
from tests.support.agents import AgentProc, ControlPlane
from tests.support.sandboxes import sap_faults, sap_stats, start_sandbox
from tests.support.waiting import wait_for

LIMITS = {"calls_per_second": 10, "max_concurrent": 2}
BURST = 30


def cp_connections(sap: dict[str, Any]) -> dict[str, Any]:
    """The control plane's view of the SAP system the agents serve: its budget is `LIMITS`."""
    return {"sap_ecc": {"type": "sap_ecc", "base_url": sap["base_url"], "client": sap["client"], "via": "agent",
                        "auth": {"username": sap["user"], "password_secret": "sap_ecc_password"},
                        "limits": LIMITS}}


class PacedSite:
    """A SAP sandbox, control planes (one each for the agents, or one for both) and two agents."""

    def __init__(self, tmp: Path, *, database_url: str | None = None, control_planes: int = 1,
                 env: dict[str, str] | None = None) -> None:
        self.sandbox, self.sap = start_sandbox()
        self.cps = [ControlPlane(tmp / f"cp{i}", connections=cp_connections(self.sap), database_url=database_url,
                                 env=env) for i in range(control_planes)]
        self.agents: list[AgentProc] = []
        try:
            for cp in self.cps:
                cp.start()
            self.db = Database(self.cps[0].db_url)
            for i in range(2):
                cp = self.cps[i % len(self.cps)]
                agent = AgentProc(tmp / f"agent{i}", cp.url, self.sap, aliases=("sap_free",))
                agent.setup(cp.token(), cp.url, self.sap["password"])
                agent.start()
                self.agents.append(agent)
            ids = [a.agent_id for a in self.agents]
            since = time.time()
            wait_for(lambda: self._seen_since(ids, since), what="both agents polling")
            # long enough for several calls to overlap at SAP when nothing holds them back
            sap_faults(self.sap, latency=0.05)
        except BaseException:
            self.close()
            raise

    def _seen_since(self, ids: list[str], since: float) -> bool:
        with self.db.session() as s:
            rows = s.scalars(select(AgentRow).where(AgentRow.id.in_(ids))).all()
        return len(rows) == len(ids) and all((r.last_seen_at or 0) > since for r in rows)

    def burst(self, system: str, n: int = BURST) -> tuple[list[ChannelResponse], dict[str, Any], set[str]]:
        """`n` calls queued at once; their answers, the SAP sandbox's stats, the agents that ran them."""
        httpx.post(self.sap["base_url"] + "/_sandbox/stats/reset", timeout=5).raise_for_status()
        ch = RemoteAgentChannel(self.db, "plant1")
        tag = uuid.uuid4().hex[:8]
        ids = [f"{system}-{tag}-{i:03d}" for i in range(n)]
        for cid in ids:
            assert ch.submit(ChannelRequest(id=cid, system=system, function="RFC_PING"))
        found: dict[str, ChannelResponse] = {}

        def all_answered() -> bool:
            for cid in ids:
                if cid not in found and (r := ch.result(cid)) is not None:
                    found[cid] = r
            return len(found) == n

        wait_for(all_answered, timeout=90, what=f"{n} calls to {system} answered")
        with self.db.session() as s:
            owners = {str(r.agent_id) for r in s.scalars(select(AgentCallRow).where(AgentCallRow.id.in_(ids)))}
        return [found[c] for c in ids], sap_stats(self.sap), owners

    def close(self) -> None:
        for a in self.agents:
            a.kill()
        for cp in self.cps:
            cp.kill()
        self.sandbox.send_signal(signal.SIGKILL)
        self.sandbox.wait(10)
        if hasattr(self, "db"):
            self.db.dispose()


def check_pacing(site: PacedSite) -> None:
    # Control: no budget for sap_free on the control plane; each agent keeps only its own
    # (20 calls/s, 4 at once), and together they overrun the SAP system's limits.
    results, stats, _ = site.burst("sap_free")
    assert all(r.ok for r in results), [r.fault for r in results if not r.ok]
    assert stats["calls"].get("RFC_PING") == BURST
    assert stats["peak_in_flight"] > LIMITS["max_concurrent"], stats
    assert stats["peak_per_second"] > LIMITS["calls_per_second"], stats

    # Paced: the same burst to the system with a budget, served by both agents, stays within it.
    results, stats, owners = site.burst("sap_ecc")
    assert all(r.ok for r in results), [r.fault for r in results if not r.ok]
    assert stats["calls"].get("RFC_PING") == BURST  # each call once, none lost, none failed
    assert stats["peak_in_flight"] <= LIMITS["max_concurrent"], stats
    assert stats["peak_per_second"] <= LIMITS["calls_per_second"], stats
    assert owners == {a.agent_id for a in site.agents}  # both agents took part
