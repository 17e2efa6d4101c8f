"""The SAP ECC → Ramp vendor flow end to end: the CLI in a subprocess, the emulators
as real HTTP servers on loopback, SQLite by default."""

from __future__ import annotations

import os
import signal
import sqlite3
import time

import httpx
import pytest

from ml_connector.sandbox import start_sandboxes
from tests.support import (
    assert_ramp_matches_sap,
    in_scope_vendors,
    make_env,
    ramp_vendors,
    summary,
    wait_healthy,
    wait_until,
)

SANDBOX_VENDORS = 600  # the `sandboxes` fixture (tests/integration/conftest.py)


def test_full_then_incremental_sync(tmp_path, sandboxes):
    ecc = sandboxes["sap_ecc"].state
    env = make_env(tmp_path, sandboxes["sap_ecc"].url, sandboxes["ramp"].url)
    first = summary(env.cli("sync", "vendors_to_ramp", "--stream", "vendors").stdout)
    want = in_scope_vendors(ecc)
    assert first["read"] == len(want)
    assert first["created"] == sum(v["active"] for v in want.values()) > 0
    assert first["failed"] == 0
    assert_ramp_matches_sap(ecc, sandboxes["ramp"].url)

    # Nothing changed: zero writes, also on a full re-read.
    again = summary(env.cli("sync", "vendors_to_ramp", "--stream", "vendors").stdout)
    assert again["created"] == again["updated"] == again["deactivated"] == 0
    full = summary(env.cli("sync", "vendors_to_ramp", "--stream", "vendors", "--full").stdout)
    assert full["read"] == len(want)
    assert full["created"] == full["updated"] == full["deactivated"] == 0

    # Change a name, flag one vendor for deletion: the incremental sync reads the
    # change documents and writes exactly these two.
    active = sorted(k for k, v in want.items() if v["active"])
    renamed, deleted = active[3], active[7]
    ecc.data.update_vendor(renamed, NAME1="Renamed Supplier GmbH")
    ecc.data.flag_vendor_for_deletion(deleted)
    inc = summary(env.cli("sync", "vendors_to_ramp", "--stream", "vendors").stdout)
    assert (inc["updated"], inc["deactivated"], inc["created"]) == (1, 1, 0)
    assert_ramp_matches_sap(ecc, sandboxes["ramp"].url)

    # The dry run shows what would be written and writes nothing.
    ecc.data.update_vendor(renamed, NAME1="Dry Run Name")
    before = ramp_vendors(sandboxes["ramp"].url)
    dry = env.cli("sync", "vendors_to_ramp", "--stream", "vendors", "--dry-run").stdout
    assert "Dry Run Name" in dry and "update" in dry
    assert ramp_vendors(sandboxes["ramp"].url) == before


@pytest.mark.slow  # 4,000 vendors written slowly, a SIGKILL and a restart
@pytest.mark.faults(stream="vendors", fault="SIGKILL mid-batch, restart")
def test_sigkill_mid_sync_then_restart_completes_without_duplicates(tmp_path):
    handles = start_sandboxes(vendors=4000)
    try:
        ecc, ramp = handles["sap_ecc"].state, handles["ramp"].state
        ramp.latency = 0.15  # slow writes so that the kill lands mid-sync
        env = make_env(tmp_path, handles["sap_ecc"].url, handles["ramp"].url, options={"page_size": 1000})
        proc = env.popen("sync", "vendors_to_ramp", "--stream", "vendors")
        wait_until(lambda: len(ramp.vendors.by_id) > 0, timeout=120)
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        partial = len(ramp.vendors.by_id)
        want = in_scope_vendors(ecc)
        expected = sum(v["active"] for v in want.values())
        assert 0 < partial < expected, "the kill should land mid-sync"
        ramp.latency = 0.0
        env.cli("sync", "vendors_to_ramp", "--stream", "vendors")
        assert_ramp_matches_sap(ecc, handles["ramp"].url)
        # Every record was confirmed exactly once in the audit trail.
        db = sqlite3.connect(tmp_path / "data" / "ml-connector.sqlite")
        per_key = db.execute("select source, count(*) from mlc_audit where event = 'record.create' "
                             "and outcome = 'ok' and stream = 'vendors' group by source").fetchall()
        assert len(per_key) == expected
        assert {n for _, n in per_key} == {1}
        states = {(op, st): n for op, st, n in db.execute(
            "select op, state, count(*) from mlc_outbox where stream = 'vendors' group by op, state")}
        # Besides the creates, the vendors deleted before the first sync were looked up once, to be
        # deactivated if Ramp had them (issue 16 §1).
        assert states == {("create", "posted"): expected, ("deactivate", "posted"): len(want) - expected}
    finally:
        for h in handles.values():
            h.stop()


def test_token_expiring_mid_sync(tmp_path, sandboxes):
    ramp = sandboxes["ramp"].state
    ramp.token_lifetime = 1.0  # every token dies after a second; the sync spans several
    ramp.latency = 0.05
    env = make_env(tmp_path, sandboxes["sap_ecc"].url, sandboxes["ramp"].url, options={"page_size": 100})
    out = summary(env.cli("sync", "vendors_to_ramp", "--stream", "vendors").stdout)
    assert out["failed"] == 0
    assert ramp.tokens_issued >= 2
    assert_ramp_matches_sap(sandboxes["sap_ecc"].state, sandboxes["ramp"].url)


@pytest.mark.slow  # six 429s waited out with the client's real backoff (~20 s)
def test_429_storm_makes_the_sync_wait_not_fail(tmp_path, sandboxes):
    ramp = sandboxes["ramp"].state
    ramp.fail_next(6, "429", path="/developer/v1/accounting/vendors")
    env = make_env(tmp_path, sandboxes["sap_ecc"].url, sandboxes["ramp"].url, options={"page_size": 100})
    out = summary(env.cli("sync", "vendors_to_ramp", "--stream", "vendors").stdout)
    assert out["failed"] == 0
    assert ramp.sent_429 + ramp.faults_injected >= 6
    assert_ramp_matches_sap(sandboxes["sap_ecc"].state, sandboxes["ramp"].url)


def test_uncertain_upload_is_resolved_by_lookup_not_reposted(tmp_path, sandboxes):
    ramp = sandboxes["ramp"].state
    # The upload is applied, then the connection drops: the client cannot know.
    ramp.fail_next(1, "timeout_after_commit", path="/developer/v1/accounting/vendors", method="POST")
    env = make_env(tmp_path, sandboxes["sap_ecc"].url, sandboxes["ramp"].url, options={"page_size": 200})
    out = summary(env.cli("sync", "vendors_to_ramp", "--stream", "vendors").stdout)
    assert out["failed"] == 0
    assert_ramp_matches_sap(sandboxes["sap_ecc"].state, sandboxes["ramp"].url)


def test_bad_configuration_file_gives_a_clear_error(tmp_path, sandboxes):
    env = make_env(tmp_path, sandboxes["sap_ecc"].url, sandboxes["ramp"].url, set_secrets=False)
    text = env.config.read_text().replace("schedule: {interval: 7d}", "schedule: {interval: 7 days}")
    env.config.write_text(text)
    proc = env.cli("sync", "vendors_to_ramp", "--stream", "vendors", check=False)
    assert proc.returncode == 2
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "7 days" in ln)
    assert f"ml-connector.yaml:{line}:" in proc.stderr
    assert "flows.vendors_to_ramp.schedule.interval" in proc.stderr
    assert "30s" in proc.stderr  # says what is expected
    assert "configuration error" in proc.stderr and "[red]" not in proc.stderr


def test_unknown_flow_and_missing_secret_are_named(tmp_path, sandboxes):
    env = make_env(tmp_path, sandboxes["sap_ecc"].url, sandboxes["ramp"].url, set_secrets=False)
    proc = env.cli("sync", "no_such_flow", check=False)
    assert proc.returncode != 0 and "no_such_flow" in proc.stderr
    proc = env.cli("ping", check=False)
    assert proc.returncode == 1
    assert "sap_ecc_password" in proc.stdout + proc.stderr


def test_ping_reaches_both_systems(tmp_path, sandboxes):
    env = make_env(tmp_path, sandboxes["sap_ecc"].url, sandboxes["ramp"].url)
    out = env.cli("ping").stdout
    assert "RFC_PING" in out and "ECD" in out
    assert out.count("ok") >= 2


def test_secrets_never_appear_in_logs_errors_audit_db_or_api(tmp_path):
    sap_pw, ramp_secret = "Zq-SAP-pw-93817-x", "Rs-ramp-secret-55123-y"
    handles = start_sandboxes(vendors=300)
    try:
        ecc, ramp = handles["sap_ecc"].state, handles["ramp"].state
        ecc.add_user("RFC_USER", sap_pw, {"100"})
        ramp.client_secret = ramp_secret
        env = make_env(tmp_path, handles["sap_ecc"].url, handles["ramp"].url, sap_password=sap_pw,
                       ramp_secret=ramp_secret)
        debug = {"MLC_LOG_LEVEL": "DEBUG", "MLC_DBOS_LOG_LEVEL": "DEBUG"}
        outputs = []
        # A run with failures in it, so that error paths are exercised too.
        ramp.fail_next(2, "500", path="/developer/v1/accounting/vendors", method="GET")
        p = env.cli("sync", "vendors_to_ramp", "--stream", "vendors", extra_env=debug, check=False)
        outputs += [p.stdout, p.stderr]
        ramp.expire_tokens_now()
        p = env.cli("sync", "vendors_to_ramp", "--stream", "vendors", "--full", extra_env=debug, check=False)
        outputs += [p.stdout, p.stderr]
        # A wrong SAP password: the error must not echo the configured one.
        ecc.add_user("RFC_USER", "changed-on-the-server", {"100"})
        p = env.cli("ping", extra_env=debug, check=False)
        outputs += [p.stdout, p.stderr]
        p = env.cli("failures", "--json", check=False)
        outputs += [p.stdout, p.stderr]
        tokens = list(ramp.tokens)
        assert tokens, "the runs should have fetched Ramp tokens"
        # The HTTP API's answers (runs with their errors, failures) carry no secret either.
        from fastapi.testclient import TestClient

        from ml_connector.config import load_config
        from ml_connector.core.runtime import Runtime
        from ml_connector.server.app import create_app

        rt = Runtime(load_config(env.config), env.config)
        try:
            api = TestClient(create_app(rt))
            for path in ("/api/runs", "/api/failures", "/api/flows", "/health", "/openapi.json"):
                resp = api.get(path)
                assert resp.status_code == 200, path
                outputs.append(resp.text)
        finally:
            rt.close()
        blobs = "\n".join(outputs)
        dbfiles = [f for f in (tmp_path / "data").iterdir() if f.name.startswith("ml-connector.sqlite")]
        raw = b"".join(f.read_bytes() for f in dbfiles)
        for secret in [sap_pw, ramp_secret, *tokens]:
            assert secret not in blobs, "secret in CLI output or logs"
            assert secret.encode() not in raw, "secret stored in clear in the database"
        db = sqlite3.connect(tmp_path / "data" / "ml-connector.sqlite")
        audit = "\n".join(str(r) for r in db.execute("select * from mlc_audit"))
        assert audit and all(s not in audit for s in [sap_pw, ramp_secret, *tokens])
    finally:
        for h in handles.values():
            h.stop()


def test_http_api_health_runs_and_openapi(tmp_path, sandboxes):
    from ml_connector.core.servers import free_port

    env = make_env(tmp_path, sandboxes["sap_ecc"].url, sandboxes["ramp"].url)
    port = free_port()
    text = env.config.read_text().replace("  port: 8080", f"  port: {port}")
    env.config.write_text(text)
    proc = env.popen("run")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, timeout=60)
        spec = httpx.get(f"{base}/openapi.json").json()
        assert {"/health", "/api/flows", "/api/runs", "/api/failures", "/api/replay"} <= set(spec["paths"])
        assert httpx.get(f"{base}/api/flows").json()[0]["name"] == "vendors_to_ramp"
        started = httpx.post(f"{base}/api/flows/vendors_to_ramp/sync", json={"stream": "vendors"}).json()["run_ids"]

        def finished() -> bool:
            r = httpx.get(f"{base}/api/runs/{started[0]}")
            return r.status_code == 200 and r.json()["status"] in ("succeeded", "failed")

        wait_until(finished, timeout=120, interval=0.3)
        run = httpx.get(f"{base}/api/runs/{started[0]}").json()
        assert run["status"] == "succeeded" and run["counts"]["created"] > 0
        assert httpx.get(f"{base}/api/failures").json() == []
        assert httpx.post(f"{base}/api/flows/nope/sync", json={}).status_code == 404
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except Exception:
            os.kill(proc.pid, signal.SIGKILL)


@pytest.mark.slow  # `ml-connector run` in its own process through two 10-second schedule windows
def test_scheduled_incremental_runs_fire_once_per_window(tmp_path, sandboxes):
    from ml_connector.core.servers import free_port

    env = make_env(tmp_path, sandboxes["sap_ecc"].url, sandboxes["ramp"].url)
    port = free_port()
    text = env.config.read_text().replace("  port: 8080", f"  port: {port}")
    env.config.write_text(text.replace("schedule: {interval: 7d}", "schedule: {interval: 10s}"))
    proc = env.popen("run")
    base = f"http://127.0.0.1:{port}"
    try:
        def two_runs() -> bool:
            try:
                runs = httpx.get(f"{base}/api/runs", timeout=2).json()
            except httpx.HTTPError:
                return False
            return len([r for r in runs if r["status"] == "succeeded" and r["stream"] == "vendors"]) >= 2

        wait_until(two_runs, timeout=90, interval=0.5)
        runs = [r for r in httpx.get(f"{base}/api/runs").json() if r["stream"] == "vendors"]
        ids = [r["run_id"] for r in runs]
        assert all(i.startswith("sync:vendors_to_ramp:vendors:incremental:") for i in ids)
        assert len(ids) == len(set(ids))  # one run per window, never two
        # The first scheduled run did the initial full load; later ones found nothing to write.
        first = min(runs, key=lambda r: r["started_at"])
        assert first["counts"]["created"] == sum(v["active"] for v in in_scope_vendors(
            sandboxes["sap_ecc"].state).values())
        assert all(r["counts"]["created"] == 0 for r in runs if r is not first and r["status"] == "succeeded")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except Exception:
            os.kill(proc.pid, signal.SIGKILL)


def test_rejected_records_are_listed_and_replayed(tmp_path):
    handles = start_sandboxes(vendors=40)
    try:
        ramp = handles["ramp"].state
        ramp.fail_next(10**6, "reject", path="/developer/v1/accounting/vendors", method="POST")  # every upload refused
        env = make_env(tmp_path, handles["sap_ecc"].url, handles["ramp"].url)
        proc = env.cli("sync", "vendors_to_ramp", "--stream", "vendors", check=False)
        assert proc.returncode == 3, proc.stdout + proc.stderr
        out = summary(proc.stdout)
        expected = sum(v["active"] for v in in_scope_vendors(handles["sap_ecc"].state).values())
        assert out["failed"] == expected and out["created"] == 0
        import json

        failures = json.loads(env.cli("failures", "--json").stdout)
        assert len(failures) == expected
        assert all("DEVELOPER_7001" in f["error"] and "Invalid input" in f["error"] for f in failures)
        # The cause is fixed on the Ramp side; replay writes each record once.
        ramp.apply({"clear_faults": True})  # the cause is fixed
        replayed = env.cli("replay", "--all").stdout
        assert f"replayed {expected} record(s)" in replayed
        assert json.loads(env.cli("failures", "--json").stdout) == []
        assert_ramp_matches_sap(handles["sap_ecc"].state, handles["ramp"].url)
        again = summary(env.cli("sync", "vendors_to_ramp", "--stream", "vendors").stdout)
        assert again["created"] == again["failed"] == 0
    finally:
        for h in handles.values():
            h.stop()


def test_a_ramp_that_refuses_code_on_upload_gets_id_and_name_only(tmp_path, sandboxes):
    """Ramp publishes the upload item as {id, name}: if it refuses `code`, the sync adapts, loses nothing."""
    ramp = sandboxes["ramp"].state
    ramp.accept_code_on_vendor_upload = False
    env = make_env(tmp_path, sandboxes["sap_ecc"].url, sandboxes["ramp"].url)
    proc = env.cli("sync", "vendors_to_ramp", "--stream", "vendors")
    out = summary(proc.stdout)
    want = in_scope_vendors(sandboxes["sap_ecc"].state)
    assert out["failed"] == 0 and out["created"] == sum(v["active"] for v in want.values())
    assert "refused the field `code`" in proc.stderr  # said once, in the log
    assert proc.stderr.count("refused the field `code`") == 1
    assert_ramp_matches_sap(sandboxes["sap_ecc"].state, sandboxes["ramp"].url)
    assert all(v["code"] is None for v in ramp_vendors(sandboxes["ramp"].url))
    again = summary(env.cli("sync", "vendors_to_ramp", "--stream", "vendors").stdout)
    assert again["created"] == again["updated"] == again["failed"] == 0


def test_vendor_sync_reads_through_the_probed_wide_module(tmp_path, sandboxes):
    """With /BODS/RFC_READ_TABLE installed, the flow probes once and reads every table through it."""
    ecc = sandboxes["sap_ecc"].state
    ecc.set_config(installed_modules=["/BODS/RFC_READ_TABLE"])
    ecc.stats.calls.clear()
    env = make_env(tmp_path, sandboxes["sap_ecc"].url, sandboxes["ramp"].url)
    first = summary(env.cli("sync", "vendors_to_ramp", "--stream", "vendors").stdout)
    want = in_scope_vendors(ecc)
    assert first["read"] == len(want) and first["failed"] == 0
    assert_ramp_matches_sap(ecc, sandboxes["ramp"].url)
    calls = dict(ecc.stats.calls)
    assert calls.get("/BODS/RFC_READ_TABLE", 0) > 1, calls
    assert calls.get("RFC_READ_TABLE", 0) == 0 and calls.get("BBP_RFC_READ_TABLE", 0) == 0, calls


def test_a_failed_run_is_recorded_and_the_next_sync_starts_afresh(tmp_path, sandboxes):
    env = make_env(tmp_path, sandboxes["sap_ecc"].url, sandboxes["ramp"].url, sap_password="Wrong-Password-1")
    failed = env.cli("sync", "vendors_to_ramp", "--stream", "vendors", check=False)
    assert failed.returncode != 0
    db = sqlite3.connect(tmp_path / "data" / "ml-connector.sqlite")
    rows = db.execute("select run_id, status, error from mlc_runs where stream = 'vendors'").fetchall()
    assert len(rows) == 1 and rows[0][1] == "failed", rows
    assert "RFC_LOGON_FAILURE" in rows[0][2] or "incorrect" in rows[0][2]
    assert "Wrong-Password-1" not in rows[0][2]
    # the cause is fixed: the next sync is a new run, not the failed one re-attached
    env.cli("secrets", "set", "sap_ecc_password", "--stdin", input_="Sandbox-1234")
    ok = env.cli("sync", "vendors_to_ramp", "--stream", "vendors")
    assert summary(ok.stdout)["created"] > 0
    rows = db.execute("select run_id, status from mlc_runs where stream = 'vendors' order by started_at").fetchall()
    assert [r[1] for r in rows] == ["failed", "succeeded"] and rows[0][0] != rows[1][0]
    assert_ramp_matches_sap(sandboxes["sap_ecc"].state, sandboxes["ramp"].url)
