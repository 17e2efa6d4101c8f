"""The operator's commands end to end, in subprocesses against the sandbox: init, secrets list and
rotate-key, and replay through the HTTP API."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess

import httpx

from ml_connector.sandbox import start_sandboxes
from tests.support import CLI, ROOT, SAP_PASSWORD, in_scope_vendors, make_env, ramp_vendors, wait_healthy
from tests.support.databases import secret_blobs


def test_init_writes_a_config_that_loads_and_refuses_to_overwrite(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), COLUMNS="250")
    env.pop("MLC_MASTER_KEY", None)
    cfg = tmp_path / "ml-connector.yaml"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CLI, *args, "-c", str(cfg)], capture_output=True, text=True, timeout=120,
                              env=env, cwd=tmp_path)

    first = run("init", "--sap-url", "http://127.0.0.1:18010", "--ramp-url", "http://127.0.0.1:18020")
    assert first.returncode == 0, first.stderr
    text = cfg.read_text()
    assert "http://127.0.0.1:18010" in text and "http://127.0.0.1:18020" in text
    assert "#" in text  # commented for the operator
    # The file it wrote is a valid configuration: secrets can be stored against it.
    stored = subprocess.run([*CLI, "secrets", "set", "sap_ecc_password", "--stdin", "-c", str(cfg)],
                            input="s3cret-value-1", capture_output=True, text=True, timeout=120,
                            env=env, cwd=tmp_path)
    assert stored.returncode == 0, stored.stderr
    key = tmp_path / "data" / "master.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    again = run("init")
    assert again.returncode == 1 and "--force" in again.stderr
    assert cfg.read_text() == text  # untouched
    forced = run("init", "--force")
    assert forced.returncode == 0 and "127.0.0.1:8010" in cfg.read_text()


def test_secrets_list_shows_names_only_and_rotate_key_keeps_them_usable(tmp_path):
    handles = start_sandboxes(vendors=30)
    try:
        env = make_env(tmp_path, handles["sap_ecc"].url, handles["ramp"].url)
        listed = env.cli("secrets", "list").stdout
        assert "sap_ecc_password" in listed and "ramp_client_secret" in listed
        assert SAP_PASSWORD not in listed and "ramp_demo_secret" not in listed
        key_file = tmp_path / "data" / "master.key"
        old_key = key_file.read_bytes()
        db = tmp_path / "data" / "ml-connector.sqlite"
        before = secret_blobs(db)

        rotated = env.cli("secrets", "rotate-key").stdout
        assert "re-encrypted" in rotated
        assert key_file.read_bytes() != old_key
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        after = secret_blobs(db)
        assert set(after) == set(before) and all(after[n] != before[n] for n in before)
        for blob in after.values():
            assert SAP_PASSWORD.encode() not in blob and b"ramp_demo_secret" not in blob
        # Under the new key the secrets still decrypt: both systems answer a ping.
        out = env.cli("ping").stdout
        assert out.count("ok") >= 2
        # The old key file is gone: nothing on disk can decrypt the new ciphertexts but the new key.
        assert not list((tmp_path / "data").glob("master.key.old-*"))
    finally:
        for h in handles.values():
            h.stop()


def test_failures_are_replayed_through_the_http_api(tmp_path):

    handles = start_sandboxes(vendors=40)
    try:
        ramp = handles["ramp"].state
        ramp.fail_next(10**6, "reject", path="/developer/v1/accounting/vendors", method="POST")  # every upload refused
        env = make_env(tmp_path, handles["sap_ecc"].url, handles["ramp"].url)
        assert env.cli("sync", "vendors_to_ramp", "--stream", "vendors", check=False).returncode == 3
        expected = sum(v["active"] for v in in_scope_vendors(handles["sap_ecc"].state).values())
        runs = json.loads(env.cli("runs", "--json").stdout)
        assert [(r["run_id"].split(":")[2], r["counts"]["failed"]) for r in runs] == [("vendors", expected)]
        assert f"{expected}" in env.cli("runs", extra_env={"COLUMNS": "250"}).stdout  # the table's failed column
        base = env.serve_on_free_port()
        proc = env.popen("run")
        try:
            wait_healthy(base, timeout=60)
            failures = httpx.get(f"{base}/api/failures").json()
            assert len(failures) == expected
            ids = [f["id"] for f in failures]
            # Replaying one selected record touches that record only.
            ramp.apply({"clear_faults": True})  # the cause is fixed
            one = httpx.post(f"{base}/api/replay", json={"ids": ids[:1]}, timeout=120).json()
            assert one["replayed"] == 1
            assert len(httpx.get(f"{base}/api/failures").json()) == expected - 1
            assert len(ramp_vendors(handles["ramp"].url)) == 1
            rest = httpx.post(f"{base}/api/replay", json={}, timeout=120).json()
            assert rest["replayed"] == expected - 1
            assert httpx.get(f"{base}/api/failures").json() == []
            names = sorted(v["id"] for v in ramp_vendors(handles["ramp"].url))
            assert len(names) == len(set(names)) == expected  # each written once
            assert httpx.post(f"{base}/api/replay", json={}).json()["replayed"] == 0
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
    finally:
        for h in handles.values():
            h.stop()


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_failed_sync_prints_one_clean_error_line_and_the_traceback_only_at_debug(tmp_path):
    sap, ramp = f"http://127.0.0.1:{_closed_port()}", f"http://127.0.0.1:{_closed_port()}"
    (tmp_path / "down").mkdir()
    (tmp_path / "nosecret").mkdir()
    # SAP unreachable
    env = make_env(tmp_path / "down", sap, ramp)
    out = env.cli("sync", "vendors_to_ramp", check=False, timeout=300)
    assert out.returncode == 1
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error: run sync:vendors_to_ramp:vendors") and "Connection refused" in lines[0]
    assert "Traceback" not in out.stdout + out.stderr
    # a secret missing from the vault
    env = make_env(tmp_path / "nosecret", sap, ramp, set_secrets=False)
    out = env.cli("sync", "vendors_to_ramp", check=False, timeout=300)
    assert out.returncode != 0
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "sap_ecc_password" in lines[0], out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    # the traceback is still available at debug level
    out = env.cli("sync", "vendors_to_ramp", check=False, timeout=300, extra_env={"MLC_DBOS_LOG_LEVEL": "DEBUG"})
    assert "Exception encountered in background workflow" in out.stderr and "Traceback" in out.stderr
