"""SQLite: one process per database runs DBOS (the worker, holding the lock next to the
database file); CLI commands started beside `ml-connector run` hand their work to it.

Real processes throughout: `run` and the CLI as subprocesses, the sandboxes as HTTP servers
on loopback, the lock a real `flock` released by the kernel when its holder is SIGKILLed.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from ml_connector.core.worker_lock import lock_path
from ml_connector.sandbox import start_sandboxes
from tests.support import in_scope_vendors, make_env, ramp_vendors, stop, summary, wait_until
from tests.support.workers import (
    dbos_workflow,
    run_id_of,
    sqlite_db,
    start_worker,
    started_by,
    unscheduled,
    worker_lock,
)

SANDBOX_VENDORS = 300  # the `sandboxes` fixture (tests/integration/conftest.py)

FLOW = "vendors_to_ramp"


@pytest.mark.parametrize("sandboxes", [40], indirect=True)  # 40 vendors (the conftest fixture)
def test_cli_hands_sync_and_replay_to_the_running_worker(tmp_path: Path, sandboxes: dict[str, Any]) -> None:
    ecc, ramp = sandboxes["sap_ecc"].state, sandboxes["ramp"].state
    env = unscheduled(make_env(tmp_path, sandboxes["sap_ecc"].url, sandboxes["ramp"].url))
    # One company code: fewer records, as each rejected upload costs the sync several requests.
    text = env.config.read_text()
    env.config.write_text(text.replace('company_codes: ["1000", "2000", "3000"]', 'company_codes: ["1000"]'))
    in_scope = in_scope_vendors(ecc, ("1000",))
    expected = sum(v["active"] for v in in_scope.values())
    worker = start_worker(env)
    try:
        # A second worker on the same database is refused at once, naming who holds it.
        second = env.cli("run", "--no-server", check=False, timeout=60)
        assert second.returncode == 1
        msg = " ".join(second.stderr.split())  # rich wraps long lines
        assert f"pid {worker.pid}" in msg and "ml-connector run" in msg
        assert str(worker_lock(env).path) in msg
        assert str(tmp_path / "data") in msg

        # Every upload is rejected first: the sync (run by the worker) ends with failures,
        # and the CLI still shows the summary of the worker's run.
        ramp.fail_next(10**6, "reject", path="/developer/v1/accounting/vendors", method="POST")  # every upload refused
        cli = env.popen("sync", FLOW, "--stream", "vendors")
        out, errs = cli.communicate(timeout=180)
        assert cli.returncode == 3, out + errs
        assert f"a worker (pid {worker.pid}) is running on this database" in " ".join(errs.split())
        counts = summary(out)
        assert counts["read"] == len(in_scope) and counts["failed"] == expected > 0
        run_id = run_id_of(out)
        assert started_by(env, run_id) == [worker.pid]  # begun once, by the worker, not by the CLI
        assert dbos_workflow(env, run_id) == ("SUCCESS", "local", "mlc-sync")

        # Replay from the CLI: also done by the worker; each record written once.
        ramp.apply({"clear_faults": True})  # the cause is fixed
        rep = env.cli("replay", "--all")
        assert f"replayed {expected} record(s)" in rep.stdout
        assert f"a worker (pid {worker.pid})" in " ".join(rep.stderr.split())
        replays = sqlite_db(env).execute("select status, queue_name from workflow_status "
                                   "where workflow_uuid like 'replay:%'").fetchall()
        assert replays == [("SUCCESS", "mlc-replay")]
        assert worker.poll() is None
    finally:
        stop(worker)
    vendors = ramp_vendors(sandboxes["ramp"].url)
    ids = [v["id"] for v in vendors]
    assert len(ids) == len(set(ids)) == expected
    per_key = sqlite_db(env).execute("select source, count(*) from mlc_audit where event = 'record.create' "
                               "and outcome = 'ok' and stream = 'vendors' group by source").fetchall()
    assert len(per_key) == expected and {n for _, n in per_key} == {1}


def test_client_mode_launches_no_executor_and_reports_progress(tmp_path, sandboxes):
    from ml_connector.config import load_config
    from ml_connector.core import engine
    from ml_connector.core.runtime import Runtime

    env = unscheduled(make_env(tmp_path, sandboxes["sap_ecc"].url, sandboxes["ramp"].url,
                                options={"page_size": 100}))
    expected = sum(v["active"] for v in in_scope_vendors(sandboxes["sap_ecc"].state).values())
    worker = start_worker(env)
    rt = Runtime(load_config(env.config), env.config)
    try:
        assert engine.connect(rt, role="sync") == f"worker:{worker.pid}"
        assert engine._launched is False and engine._CLIENT is not None
        seen: list[dict[str, object]] = []
        run_id = engine.start_sync(FLOW, "vendors")
        counts = engine.wait(run_id, on_progress=seen.append, poll=0.05)
        assert counts["created"] == expected and counts["failed"] == 0
        assert seen and seen[-1]["written"] == expected and seen[-1]["status"] == "succeeded"
        assert engine._launched is False  # still only a client after the whole run
        assert started_by(env, run_id) == [worker.pid]
    finally:
        engine.shutdown()
        rt.close()
        stop(worker)


@pytest.mark.slow  # a worker process SIGKILLed mid-run, the CLI taking over, a second worker
@pytest.mark.faults(stream="vendors", fault="SIGKILL of the SQLite worker")
def test_sigkilled_worker_releases_the_lock_and_a_waiting_cli_takes_over(tmp_path):
    handles = start_sandboxes(vendors=600)
    try:
        ecc, ramp = handles["sap_ecc"].state, handles["ramp"].state
        env = unscheduled(make_env(tmp_path, handles["sap_ecc"].url, handles["ramp"].url,
                                    options={"page_size": 50}))
        expected = sum(v["active"] for v in in_scope_vendors(ecc).values())
        worker = start_worker(env)
        ramp.latency = 0.2  # slow writes, so that the kill lands mid-run
        cli = env.popen("sync", FLOW, "--stream", "vendors")
        wait_until(lambda: len(ramp.vendors.by_id) > 0, timeout=120)
        worker.send_signal(signal.SIGKILL)
        worker.wait(30)
        partial = len(ramp.vendors.by_id)
        assert partial < expected, "the kill should land mid-run"
        ramp.latency = 0.0
        # The CLI was following the worker's run; it takes the freed lock and finishes the run.
        out, errs = cli.communicate(timeout=180)
        assert cli.returncode == 0, out + errs
        assert "has stopped: this process runs the remaining work" in errs
        run_id = run_id_of(out)
        assert dbos_workflow(env, run_id)[0] == "SUCCESS"
        assert started_by(env, run_id) == [worker.pid]  # begun by the worker, resumed, not restarted
        ids = [v["id"] for v in ramp_vendors(handles["ramp"].url)]
        assert len(ids) == len(set(ids)) == expected
        assert worker_lock(env).holder().pid == cli.pid

        # The lock went with that process too: another worker can start.
        lock = worker_lock(env)
        assert lock.try_acquire("test")
        lock.release()
        again = start_worker(env)
        stop(again)
    finally:
        for h in handles.values():
            h.stop()


def test_lock_file_sits_next_to_the_database(tmp_path):
    assert lock_path(f"sqlite:///{tmp_path}/data/x.sqlite") == Path(tmp_path, "data", "x.sqlite.worker.lock")
    assert lock_path("sqlite:///:memory:") is None
    assert lock_path("postgresql://u@h:5432/db") is None
