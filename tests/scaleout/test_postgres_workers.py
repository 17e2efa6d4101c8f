"""Scale-out: two worker processes share one sync through Postgres; no record is processed twice."""

from __future__ import annotations

import signal

import httpx
import psycopg
import pytest

from ml_connector.core.servers import free_port
from ml_connector.sandbox import start_sandboxes
from tests.scaleout.conftest import PG
from tests.support import in_scope_vendors, make_env, ramp_vendors, stop_all, wait_healthy, wait_until
from tests.support.scaleout import wait_workers_up

pytestmark = [pytest.mark.scaleout,
              pytest.mark.skipif(not PG, reason="MLC_TEST_PG_URL not set (make test starts Postgres)")]


def test_two_workers_share_a_sync_and_process_no_record_twice(tmp_path, pg_database):
    handles = start_sandboxes(vendors=3000)
    procs = []
    try:
        ecc, ramp = handles["sap_ecc"].state, handles["ramp"].state
        ramp.latency = 0.03  # deliveries take long enough for both workers to pick some up
        env = make_env(tmp_path, handles["sap_ecc"].url, handles["ramp"].url, database_url=pg_database,
                       options={"page_size": 250})
        base = env.serve_on_free_port()
        procs.append(env.popen("run", "--worker-id", "worker-a"))
        procs.append(env.popen("run", "--worker-id", "worker-b", "--no-server"))

        wait_healthy(base, timeout=90)
        assert httpx.get(f"{base}/health").json()["database"] == "postgresql"
        wait_workers_up(pg_database, "worker-a", "worker-b")
        run_id = httpx.post(f"{base}/api/flows/vendors_to_ramp/sync", json={"stream": "vendors"}).json()["run_ids"][0]

        def finished() -> bool:
            r = httpx.get(f"{base}/api/runs/{run_id}")
            return r.status_code == 200 and r.json()["status"] in ("succeeded", "failed")

        wait_until(finished, timeout=240, interval=0.5)
        run = httpx.get(f"{base}/api/runs/{run_id}").json()
        assert run["status"] == "succeeded", run

        want = in_scope_vendors(ecc)
        expected = {k for k, v in want.items() if v["active"]}
        got = ramp_vendors(handles["ramp"].url)
        assert sorted(v["id"] for v in got) == sorted(expected)
        with psycopg.connect(pg_database) as conn:
            # Each record was written by exactly one attempt, and confirmed once. (The weekly schedule's
            # tick may start the other streams meanwhile: only the vendors are this run's.)
            attempts = dict(conn.execute("select attempts, count(*) from mlc_outbox where stream = 'vendors' "
                                         "group by attempts").fetchall())
            # The active vendors' creates and, for those deleted in SAP before the first sync, one
            # lookup each (deactivated in Ramp if it had them: the ledger may have been lost).
            assert attempts == {1: len(want)}
            dup = conn.execute("select stream, source, count(*) from mlc_audit where event = 'record.create' "
                               "group by stream, source having count(*) > 1").fetchall()
            assert dup == []
            # The deliveries really were shared between the two workers.
            by_worker = dict(conn.execute(
                "select executor_id, count(*) from dbos.workflow_status where name = 'mlc.deliver' "
                "group by executor_id").fetchall())
        assert set(by_worker) == {"worker-a", "worker-b"}, by_worker
        # Both workers kept the calls they made for the run (core/calls.py): at least every request to Ramp's
        # vendors (the schedule's other streams call other paths).
        to_vendors = sum(sum(by.values()) for path, by in ramp.stats()["requests_by_path"].items()
                         if path.startswith("/developer/v1/accounting/vendors"))
        assert run["calls"].get("ramp", 0) >= to_vendors > 0, (run["calls"], to_vendors)
    finally:
        stop_all(procs, handles)


@pytest.mark.faults(stream="vendors", fault="SIGKILL of a Postgres worker, taken over")
def test_a_worker_killed_for_good_has_its_work_taken_over(tmp_path, pg_database):
    handles = start_sandboxes(vendors=3000)
    procs = []
    try:
        ecc, ramp = handles["sap_ecc"].state, handles["ramp"].state
        ramp.latency = 0.05
        env = make_env(tmp_path, handles["sap_ecc"].url, handles["ramp"].url, database_url=pg_database,
                       options={"page_size": 250})
        port = free_port()
        env.config.write_text(env.config.read_text().replace("  port: 8080", f"  port: {port}"))
        fast = {"MLC_HEARTBEAT_SECONDS": "0.5", "MLC_WORKER_DEAD_AFTER": "3"}
        procs.append(env.popen("run", "--worker-id", "survivor", extra_env=fast))
        victim = env.popen("run", "--worker-id", "victim", "--no-server", extra_env=fast)
        procs.append(victim)
        base = f"http://127.0.0.1:{port}"

        wait_healthy(base, timeout=90)
        wait_workers_up(pg_database, "survivor", "victim")
        run_id = httpx.post(f"{base}/api/flows/vendors_to_ramp/sync", json={"stream": "vendors"}).json()["run_ids"][0]

        def victim_busy() -> bool:
            with psycopg.connect(pg_database) as conn:
                n = conn.execute("select count(*) from dbos.workflow_status where executor_id = 'victim' "
                                 "and status = 'PENDING'").fetchone()
            return bool(n and n[0] > 0)

        wait_until(victim_busy, timeout=120, interval=0.1)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)

        def finished() -> bool:
            r = httpx.get(f"{base}/api/runs/{run_id}")
            return r.status_code == 200 and r.json()["status"] in ("succeeded", "failed")

        wait_until(finished, timeout=240, interval=0.5)
        assert httpx.get(f"{base}/api/runs/{run_id}").json()["status"] == "succeeded"
        expected = {k for k, v in in_scope_vendors(ecc).items() if v["active"]}
        assert sorted(v["id"] for v in ramp_vendors(handles["ramp"].url)) == sorted(expected)
        with psycopg.connect(pg_database) as conn:
            taken = conn.execute("select count(*) from mlc_audit where event = 'worker.taken_over'").fetchone()
            dup = conn.execute("select stream, source from mlc_audit where event = 'record.create' and outcome = 'ok' "
                               "group by stream, source having count(*) > 1").fetchall()
        assert taken and taken[0] >= 1
        assert dup == []
    finally:
        stop_all(procs, handles)


@pytest.mark.slow  # two worker processes, one stopped (SIGSTOP) past the takeover deadline, then resumed
@pytest.mark.faults(stream="vendors", fault="SIGSTOP past the takeover, SIGCONT")
def test_a_stalled_worker_that_resumes_after_the_takeover_records_nothing_twice(tmp_path, pg_database):
    """Issue 16 §4: after a SIGSTOP/SIGCONT of one worker, it and the worker that took over both
    recorded the same step's results (two `record.create ok` audit rows per vendor)."""
    handles = start_sandboxes(vendors=1500)
    procs = []
    try:
        ecc, ramp = handles["sap_ecc"].state, handles["ramp"].state
        ramp.latency = 0.3  # uploads slow enough that the stop lands while one is under way
        env = make_env(tmp_path, handles["sap_ecc"].url, handles["ramp"].url, database_url=pg_database,
                       options={"page_size": 125})  # a dozen deliveries: both workers draw some
        port = free_port()
        env.config.write_text(env.config.read_text().replace("  port: 8080", f"  port: {port}"))
        fast = {"MLC_HEARTBEAT_SECONDS": "0.5", "MLC_WORKER_DEAD_AFTER": "3"}
        procs.append(env.popen("run", "--worker-id", "survivor", extra_env=fast))
        stalled = env.popen("run", "--worker-id", "stalled", "--no-server", extra_env=fast)
        procs.append(stalled)
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, timeout=90)
        wait_workers_up(pg_database, "survivor", "stalled")
        run_id = httpx.post(f"{base}/api/flows/vendors_to_ramp/sync", json={"stream": "vendors"}).json()["run_ids"][0]

        def stalled_delivering() -> bool:
            with psycopg.connect(pg_database) as conn:
                n = conn.execute("select count(*) from dbos.workflow_status where executor_id = 'stalled' "
                                 "and status = 'PENDING' and name = 'mlc.deliver'").fetchone()
            return bool(n and n[0] > 0)

        def audit(event: str) -> int:
            with psycopg.connect(pg_database) as conn:
                n = conn.execute("select count(*) from mlc_audit where event = %s", (event,)).fetchone()
            return int(n[0]) if n else 0

        wait_until(stalled_delivering, timeout=120, interval=0.05)
        stalled.send_signal(signal.SIGSTOP)
        try:
            wait_until(lambda: audit("worker.taken_over") >= 1, timeout=120, interval=0.2)
        finally:
            stalled.send_signal(signal.SIGCONT)

        def finished() -> bool:
            r = httpx.get(f"{base}/api/runs/{run_id}")
            return r.status_code == 200 and r.json()["status"] in ("succeeded", "failed")

        wait_until(finished, timeout=240, interval=0.5)
        assert httpx.get(f"{base}/api/runs/{run_id}").json()["status"] == "succeeded"
        # The resumed worker finishes what it was doing: wait until the audit trail stops growing.
        seen = [-1]

        def quiet() -> bool:
            n = audit("record.create")
            done, seen[0] = n == seen[0], n
            return done

        wait_until(quiet, timeout=120, interval=2.0)
        expected = {k for k, v in in_scope_vendors(ecc).items() if v["active"]}
        assert sorted(v["id"] for v in ramp_vendors(handles["ramp"].url)) == sorted(expected)
        with psycopg.connect(pg_database) as conn:
            dup = conn.execute("select stream, source from mlc_audit where event = 'record.create' and outcome = 'ok' "
                               "group by stream, source having count(*) > 1").fetchall()
        assert dup == []
    finally:
        stop_all(procs, handles)
