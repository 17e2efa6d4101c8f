"""Procore webhooks into the control plane over loopback: the emulator delivers (real HTTP) to
`ml-connector run`, the event is stored once, the affected stream's run starts; a wrong
Authorization header is refused with 401 (and the emulator keeps retrying that hook)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess

import httpx
import pytest

from ml_connector.sandbox import start_sandboxes
from tests.support.procore import (
    WEBHOOK_PATH,
    add_hook,
    enable_webhooks,
    hook_deliveries,
    procore_admin,
    procore_client,
    procore_env,
)
from tests.support.waiting import wait_for, wait_healthy

pytestmark = pytest.mark.smoke  # `make test-fast` runs it (this system's or flow's loopback smoke)

AUTH = "Bearer hook-5f2c9a71e0"


def test_webhook_is_verified_stored_once_and_starts_the_stream(tmp_path):
    handles = start_sandboxes(systems=("sap_ecc", "procore"), vendors=50)
    procore_admin(handles, "/_sandbox/limits", {"spike": 100000, "hourly": 100000})
    procore_admin(handles, "/_sandbox/webhooks", {"backoff_base": 0.2, "backoff_cap": 0.5})
    env = procore_env(tmp_path, handles)
    enable_webhooks(env, AUTH)
    base = env.serve_on_free_port()
    proc = env.popen("run")
    client = procore_client(handles["procore"])
    try:
        wait_healthy(base, timeout=60)
        url = base + WEBHOOK_PATH
        good = add_hook(client, url, AUTH, ("Company Vendors",))
        bad = add_hook(client, url, "Bearer wrong-header", ("Company Vendors",))
        client.sync_vendors([{"origin_id": "WH-1", "name": "Webhook Test Supply"}])

        delivered = wait_for(lambda: [d for d in hook_deliveries(client, good) if d["outcome"] == "ok"],
                             what="the event delivered to the control plane")
        assert len(delivered) == 1 and delivered[0]["response_status"] == 200
        event = delivered[0]["event"]
        assert event["resource_name"] == "Company Vendors"
        # The hook with another header is refused, and Procore keeps retrying it.
        refused = wait_for(lambda: [d for d in hook_deliveries(client, bad) if d["outcome"] == "retried"][1:],
                           what="the wrongly authorized hook retried")
        assert {d["response_status"] for d in refused} == {401}
        assert httpx.post(url, json=event, timeout=10).status_code == 401  # no header at all

        # The affected stream (vendors) was started with the engine's deterministic run id.
        def vendors_run() -> list[dict[str, str]]:
            runs = httpx.get(f"{base}/api/runs", timeout=10).json()
            return [r for r in runs if r["stream"] == "vendors"]
        runs = wait_for(vendors_run, what="a vendors run started by the webhook")
        # A redelivery of the same event (Procore delivers at least once) is acknowledged, not stored again.
        again = httpx.post(url, json=event, headers={"Authorization": AUTH}, timeout=10)
        assert again.status_code == 200 and again.json() == {"ulid": event["ulid"], "duplicate": True}
        assert httpx.post(url, content=b"{not json", headers={"Authorization": AUTH}, timeout=10).status_code == 400
        # The drift report's JSON API: nothing was synced, so every mapped PO is missing from Procore.
        report = httpx.get(f"{base}/api/procore/drift/ecc_to_procore", timeout=120).json()
        missing = [d for d in report["drift"] if d["kind"] == "commitment"]
        assert report["in_sync"] is False and len(missing) == report["compared"]["commitment"] > 20
        assert {d["what"] for d in missing} == {"missing"}
        assert httpx.get(f"{base}/api/procore/drift/nope", timeout=10).status_code == 404
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
        for h in handles.values():
            h.stop()
    db = sqlite3.connect(env.config.parent / "data" / "ml-connector.sqlite")
    # (The vendors run's own writes come back as more events: each stored once too.)
    stored = db.execute("select event_key, resource_name, run_ids from mlc_procore_webhook_events "
                        "where event_key = ?", (event["ulid"],)).fetchall()
    assert [(k, r) for k, r, _ in stored] == [(event["ulid"], "Company Vendors")]  # once, despite the redelivery
    # No run had ended before: the engine's deterministic id of the first vendors run, which /api/runs lists.
    assert json.loads(stored[0][2]) == ["sync:ecc_to_procore:vendors:incremental:g1"]
    assert "sync:ecc_to_procore:vendors:incremental:g1" in {r["run_id"] for r in runs}
