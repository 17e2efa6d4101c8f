"""Scale-out tests on Postgres: several control planes' services on one database, an agent site woken by
notifications, API-driven syncs, grant timing of shared budgets."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import httpx
import psycopg

from ml_connector.core.channel import ChannelRequest, ChannelResponse
from ml_connector.core.db import Database
from ml_connector.core.pgnotify import APP_NAME
from ml_connector.core.vault import MasterKey, Vault
from ml_connector.server.agents import wakeups
from ml_connector.server.agents.channel import RemoteAgentChannel
from ml_connector.server.agents.service import AgentIdentity, AgentService, Settings
from tests.support.agents import AgentProc, ControlPlane
from tests.support.sandboxes import start_sandbox
from tests.support.waiting import wait_until


def control_planes(url: str, n: int, lease: float) -> list[AgentService]:
    """`n` control-plane processes' worth of services: separate engines (pools) on one database."""
    key = MasterKey.generate()
    out = []
    for _ in range(n):
        db = Database(url)
        db.migrate()
        out.append(AgentService(db, Vault(db, key), Settings(lease=lease, offline_after=60, sweep_every=3600)))
    return out


def dispose_all(services: list[AgentService]) -> None:
    for svc in services:
        svc.stop()
        svc.db.dispose()


def store_when(go: threading.Barrier, svc: AgentService, ident: AgentIdentity, cid: str,
                out: dict[str, Any]) -> None:
    go.wait()
    out.update(svc.store_result(ident, ChannelResponse(id=cid, ok=True, result={"doc": cid})))


def sweep_when(go: threading.Barrier, svc: AgentService) -> None:
    go.wait()
    svc.sweep()


class NotifySite:
    """A SAP sandbox, a control plane on Postgres with the production fallback timer, one agent."""

    def __init__(self, tmp: Path, database_url: str) -> None:
        self.url = database_url
        self.sandbox, self.sap = start_sandbox()
        # The production fallback timer (the harness default is shorter): notifications, not
        # timers, are what this test is about.
        self.cp = ControlPlane(tmp / "cp", database_url=database_url, env={"MLC_AGENT_DB_POLL": "0.25",
                                                                          "MLC_AGENT_HOLD_MAX": "20"})
        self.agent = AgentProc(tmp / "agent", self.cp.url, self.sap, hold="20s")
        self.db: Database | None = None
        try:
            self.cp.start()
            self.agent.setup(self.cp.token(), self.cp.url, self.sap["password"])
            self.agent.start()
            self.db = Database(database_url)
            self.channel = RemoteAgentChannel(self.db, "plant1", timeout=60)
        except BaseException:
            self.close()
            raise

    def dispatch(self) -> dict[str, Any]:
        return dict(httpx.get(self.cp.url + "/api/agents/dispatch", timeout=5).json())

    def call(self, cid: str) -> ChannelResponse:
        return self.channel.call(ChannelRequest(id=cid, system="sap_ecc", function="RFC_PING"))

    def terminate_listeners(self) -> int:
        with psycopg.connect(self.url, autocommit=True) as conn:
            rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE datname = current_database() AND application_name LIKE %s",
                                [APP_NAME + "%"]).fetchall()
        return len(rows)

    def close(self) -> None:
        self.agent.kill()
        self.cp.kill()
        self.sandbox.send_signal(signal.SIGKILL)
        self.sandbox.wait(10)
        if self.db is not None:
            listener = wakeups.listener(self.db)
            if listener is not None:
                listener.stop()
            self.db.dispose()


def results_received(site: NotifySite) -> set[str]:
    assert site.db is not None
    listener = wakeups.listener(site.db)
    assert listener is not None
    return {payload for channel, payload in listener.recent() if channel == wakeups.RESULT_CHANNEL}


VENDORS = "/developer/v1/accounting/vendors"


def sync_over_api(base: str) -> dict[str, Any]:
    run_id = httpx.post(f"{base}/api/flows/vendors_to_ramp/sync", json={"stream": "vendors"}).json()["run_ids"][0]

    def finished() -> bool:
        r = httpx.get(f"{base}/api/runs/{run_id}")
        return r.status_code == 200 and r.json()["status"] in ("succeeded", "failed")

    wait_until(finished, timeout=240, interval=0.3)
    run: dict[str, Any] = httpx.get(f"{base}/api/runs/{run_id}").json()
    assert run["status"] == "succeeded", run
    return run


def vendor_patches(stats: dict[str, Any]) -> int:
    return sum(n for path, by in stats["requests_by_path"].items() if path.startswith(VENDORS + "/")
               for status, n in by.items() if status == "200")


def grant_times(url: str, budget: str) -> list[float]:
    """Grant instants (until - period is constant per budget, so `until` orders them alike)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT extract(epoch FROM until) FROM grant_log WHERE budget = %s ORDER BY until",
                            (budget,)).fetchall()
    return [float(r[0]) for r in rows]


def busiest_window(stamps: list[float], period: float) -> int:
    """The most grants in any rolling window of `period` seconds (half-open, as the limiter counts)."""
    best, j = 0, 0
    for i, t in enumerate(stamps):
        while stamps[j] <= t - period:
            j += 1
        best = max(best, i - j + 1)
    return best


def wait_workers_up(pg_url: str, *ids: str, timeout: float = 90) -> None:
    """Wait until every worker in `ids` has registered its heartbeat (it is launched, its queues
    polling): a sync started before that may be run by the others alone."""
    def up() -> bool:
        with psycopg.connect(pg_url) as conn:
            have = {r[0] for r in conn.execute("select id from mlc_workers").fetchall()}
        return set(ids) <= have

    wait_until(up, timeout=timeout, interval=0.2, what=f"workers {', '.join(ids)} registered")
