"""A flow that fails repeatedly is paused (CLI against the sandboxes, SAP refusing the login): a
warning alert one run before, a `flow.paused` alert at the pause, `sync` refused and `runs` showing
PAUSED until `ml-connector resume` (audited); the condition sweep then sends `flow.paused.cleared`."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ml_connector.config import load_config
from ml_connector.core import flow_pause
from ml_connector.core.conditions import sweep
from ml_connector.core.models import FlowStateRow
from ml_connector.core.runtime import Runtime
from ml_connector.server.app import create_app
from tests.support import make_env, wait_until
from tests.support.receivers import Receiver


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_a_flow_failing_repeatedly_is_paused_until_resumed(tmp_path: Path, sandboxes: Any,
                                                           receiver: Receiver) -> None:
    env = make_env(tmp_path, sandboxes["sap_ecc"].url, sandboxes["ramp"].url, sap_password="Wrong-Password-2")
    text = env.config.read_text()
    marker = "    streams: [vendors, gl_accounts, cost_centers, company_codes, plants, departments]"
    assert marker in text
    text = text.replace(marker, marker + "\n    pause_after: 2", 1)
    env.config.write_text(text + (
        "\nalerts:\n"
        f"  webhooks:\n    - {{url: {receiver.url}/ops}}\n"
        "  events: [flow.failing, flow.paused]\n  backoff: 10ms\n"))
    first = env.cli("sync", "vendors_to_ramp", "--stream", "vendors", check=False)
    assert first.returncode != 0
    wait_until(lambda: len(receiver.requests) >= 1, timeout=10)
    warn = receiver.requests[0]["json"]
    assert warn["event"] == "flow.failing" and warn["subject"] == "vendors_to_ramp"
    assert "one more failed run pauses it" in warn["message"]

    second = env.cli("sync", "vendors_to_ramp", "--stream", "vendors", check=False)
    assert second.returncode != 0
    wait_until(lambda: len(receiver.requests) >= 2, timeout=10)
    paused = receiver.requests[1]["json"]
    assert paused["event"] == "flow.paused" and "ml-connector resume vendors_to_ramp" in paused["message"]

    refused = env.cli("sync", "vendors_to_ramp", "--stream", "vendors", check=False)
    assert refused.returncode != 0 and "flow vendors_to_ramp is paused" in refused.stderr + refused.stdout
    runs = env.cli("runs")
    assert "PAUSED flow vendors_to_ramp" in runs.stdout and "ml-connector resume vendors_to_ramp" in runs.stdout
    db = sqlite3.connect(tmp_path / "data" / "ml-connector.sqlite")
    assert db.execute("select count(*) from mlc_runs").fetchone()[0] == 2  # the refused sync started nothing

    out = env.cli("resume", "vendors_to_ramp")
    assert "resumed" in out.stdout
    assert "PAUSED" not in env.cli("runs").stdout
    [(detail,)] = db.execute("select detail from mlc_audit where event = 'flow.resumed'").fetchall()
    assert json.loads(detail)["by"]
    # The condition cleared: the sweep (the console's watcher runs it) sends the resolve message, once.
    rt = Runtime(load_config(env.config), env.config)
    try:
        assert rt.alerts is not None
        [cleared] = sweep(rt, rt.alerts, time.time())
        assert sweep(rt, rt.alerts, time.time()) == []
    finally:
        rt.close()
    assert cleared.event == "flow.paused.cleared" and cleared.subject == "vendors_to_ramp"
    wait_until(lambda: len(receiver.requests) >= 3, timeout=10)
    assert receiver.requests[2]["json"]["event"] == "flow.paused.cleared"
    # Failed runs count again from the resume: one more failure warns, it does not pause.
    assert env.cli("sync", "vendors_to_ramp", "--stream", "vendors", check=False).returncode != 0
    # (The warning itself is held back by the throttle: one per flow per 15 min, as every alert.)
    held = [json.loads(d) for (d,) in db.execute("select detail from mlc_audit where event = 'alert.suppressed'")]
    assert [h["alert_event"] for h in held] == ["flow.failing"]
    assert "PAUSED" not in env.cli("runs").stdout


def test_the_api_refuses_to_start_a_paused_flow(tmp_path: Path) -> None:
    env = make_env(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9", set_secrets=False)
    rt = Runtime(load_config(env.config), env.config)
    try:
        with rt.db.session() as s:
            s.add(FlowStateRow(flow="bills_to_sap", paused=True, paused_at=0.0, reason="3 failed runs in a row"))
        with TestClient(create_app(rt)) as client:
            r = client.post("/api/flows/bills_to_sap/sync", json={})
            assert r.status_code == 409
            assert "flow bills_to_sap is paused (3 failed runs in a row)" in r.json()["detail"]
            assert "ml-connector resume bills_to_sap" in r.json()["detail"]
        assert flow_pause.resume(rt, "bills_to_sap", by="tester") and not flow_pause.resume(rt, "bills_to_sap")
    finally:
        rt.db.dispose()
