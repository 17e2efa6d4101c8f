"""The SQLite worker (`ml-connector run`) and what its database says about the runs it did."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from typing import Any

from ml_connector.core.ledger import Desired
from ml_connector.core.worker_lock import WorkerLock, lock_path
from tests.support.env import Env
from tests.support.waiting import wait_until


def worker_lock(env: Env) -> WorkerLock:
    path = lock_path(f"sqlite:///{env.workdir / 'data' / 'ml-connector.sqlite'}")
    assert path is not None
    return WorkerLock(path)


def unscheduled(env: Env) -> Env:
    """No schedules: the worker runs only what the test hands it (a tick could fire mid-test)."""
    lines = env.config.read_text().splitlines(keepends=True)
    env.config.write_text("".join(ln for ln in lines if not ln.lstrip().startswith("schedule:")))
    return env


def start_worker(env: Env) -> subprocess.Popen[str]:
    proc = env.popen("run", "--no-server")
    lock = worker_lock(env)

    def ready() -> bool:
        assert proc.poll() is None, proc.communicate()
        h = lock.holder()
        return h.pid == proc.pid and h.ready

    wait_until(ready, timeout=60, interval=0.05)
    return proc


def sqlite_db(env: Env) -> sqlite3.Connection:
    return sqlite3.connect(env.workdir / "data" / "ml-connector.sqlite")


def started_by(env: Env, run_id: str) -> list[int]:
    """The pid of every process that began run `run_id` (the run.started audit events)."""
    rows = sqlite_db(env).execute("select detail from mlc_audit where event = 'run.started' and run_id = ?",
                                  (run_id,)).fetchall()
    return [json.loads(d)["pid"] for (d,) in rows]


def dbos_workflow(env: Env, wid: str) -> tuple[str, str, str]:
    row = sqlite_db(env).execute("select status, executor_id, queue_name from workflow_status "
                                 "where workflow_uuid = ?", (wid,)).fetchone()
    assert row is not None, f"no DBOS workflow {wid}"
    return row


def run_id_of(stdout: str) -> str:
    return next(ln.split("run id:", 1)[1].strip() for ln in stdout.splitlines() if ln.startswith("run id:"))


class MapAll:
    """A stream whose mapping now succeeds for every record."""

    def map(self, ctx: Any, key: str, rec: dict[str, Any]) -> Desired:
        return Desired(key, rec)
