"""Operators' alerts over real HTTP: a loopback receiver records what the control plane posts when an
agent goes offline / comes back (AgentService driven with a fake clock, as in test_agent_protocol) and
when a sync run fails (the CLI in a subprocess against the sandboxes)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from ml_connector.agent import protocol as proto
from ml_connector.core.alerts import Alerter, AlertSettings, Webhook
from ml_connector.core.channel import ChannelRequest
from ml_connector.core.db import Database
from ml_connector.core.models import AlertOutboxRow
from ml_connector.core.vault import MasterKey, Vault
from ml_connector.server.agents.channel import RemoteAgentChannel
from tests.support import BIN, ControlPlane, free_port, make_env, wait_until
from tests.support.control_plane import in_process_control_plane, pair_agent, poll
from tests.support.databases import alert_outbox, audit_dump, audit_rows
from tests.support.receivers import Receiver, alerter_for

SANDBOX_VENDORS = 50  # the `sandboxes` fixture (tests/integration/conftest.py)

TOKEN = "alert-Tok3n-s3cr3t-value"
SLACK_PATH = "/services/T0001/B0002/sl4ckS3cretPathPart"


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture()
def cp(tmp_path: Path, receiver: Receiver) -> Iterator[Any]:
    db = Database(f"sqlite:///{tmp_path / 'cp.sqlite'}")
    db.migrate()
    vault = Vault(db, MasterKey.generate())
    vault.set("alert_token", TOKEN)
    c = in_process_control_plane(db, vault, alerts=alerter_for(db, vault, receiver))
    yield c
    c.svc.stop()
    c.alerts.close(5)
    c.client.close()
    db.dispose()


def test_offline_and_online_alert_once_each_with_payload_and_secret_header(cp: Any, receiver: Receiver,
                                                                           caplog: Any) -> None:
    agent_id, key = pair_agent(cp, name="sap-host-agent")
    poll(cp, agent_id, key)
    t0 = time.time()
    RemoteAgentChannel(cp.db, "plant1").submit(ChannelRequest(id="c1", system="sap_ecc", function="RFC_PING"))
    assert cp.svc.sweep(now=t0 + 600)["offline"] == 1
    assert cp.svc.sweep(now=t0 + 605)["offline"] == 0  # already offline: no second alert
    assert cp.alerts.flush(10)
    assert len(receiver.requests) == 1
    req = receiver.requests[0]
    assert req["path"] == "/hook" and req["headers"]["x-alert-token"] == TOKEN
    p = req["json"]
    assert p["event"] == "agent.offline" and p["agent_id"] == agent_id and p["subject"] == agent_id
    assert p["site"] == "plant1" and p["agent_name"] == "sap-host-agent"
    assert p["timestamp"] == t0 + 600 and p["time"].endswith("Z")
    assert p["details"]["queued_for_site"] == 1
    assert "is offline" in p["message"] and "10 min" in p["message"] and "1 call(s)" in p["message"]

    poll(cp, agent_id, key)  # back (at the real clock: ~600 s before the fake sweep time)
    poll(cp, agent_id, key)
    assert cp.alerts.flush(10)
    assert [r["json"]["event"] for r in receiver.requests] == ["agent.offline", "agent.online"]
    online = receiver.requests[1]["json"]
    assert online["agent_id"] == agent_id and "back online after" in online["message"]
    assert online["details"]["offline_seconds"] >= 0

    sent = audit_rows(cp.db, "alert.sent")
    assert [e.detail["alert_event"] for e in sent] == ["agent.offline", "agent.online"]
    assert {e.target for e in sent} == {"127.0.0.1"} and all(e.detail["attempts"] == 1 for e in sent)
    assert TOKEN not in audit_dump(cp.db) and TOKEN not in caplog.text


def test_a_flapping_agent_alerts_once_per_interval(cp: Any, receiver: Receiver) -> None:
    agent_id, key = pair_agent(cp, name="sap-host-agent")
    t0 = time.time()
    for i in range(3):  # offline and back three times within the interval (15 min)
        poll(cp, agent_id, key)
        assert cp.svc.sweep(now=t0 + 10 + 60 * i)["offline"] == 1
    poll(cp, agent_id, key)
    assert cp.alerts.flush(10)
    assert [r["json"]["event"] for r in receiver.requests] == ["agent.offline", "agent.online"]
    suppressed = audit_rows(cp.db, "alert.suppressed")
    assert sorted(e.detail["alert_event"] for e in suppressed) == ["agent.offline"] * 2 + ["agent.online"] * 2
    # After the interval the next transition alerts again and says how many were held back.
    assert cp.svc.sweep(now=t0 + 10 + 901)["offline"] == 1
    assert cp.alerts.flush(10)
    last = receiver.requests[-1]["json"]
    assert len(receiver.requests) == 3 and last["event"] == "agent.offline" and last["suppressed"] == 2
    assert "2 more since the last alert" in last["message"]


def test_receiver_down_is_retried_then_audited_failed_and_never_blocks_the_sweep(cp: Any, receiver: Receiver,
                                                                                caplog: Any) -> None:
    agent_id, key = pair_agent(cp, name="sap-host-agent")
    poll(cp, agent_id, key)
    receiver.status = 500
    receiver.gate.clear()  # the receiver hangs until we let it answer
    counts = cp.svc.sweep(now=time.time() + 600)
    # The sweep has returned while the receiver still holds the first delivery.
    assert counts["offline"] == 1
    assert receiver.entered.wait(10) and not receiver.requests
    assert audit_rows(cp.db, "agent.offline") and not audit_rows(cp.db, "alert.failed")
    receiver.gate.set()
    assert cp.alerts.flush(10)
    assert len(receiver.requests) == 3  # attempts
    failed = audit_rows(cp.db, "alert.failed")
    assert len(failed) == 1 and not audit_rows(cp.db, "alert.sent")
    d = failed[0].detail
    assert failed[0].outcome == "failed" and failed[0].target == "127.0.0.1" and d["host"] == "127.0.0.1"
    assert d["attempts"] == 3 and d["status"] == 500 and d["error"] == "HTTP 500"
    assert d["alert_event"] == "agent.offline"
    assert TOKEN not in audit_dump(cp.db) and TOKEN not in caplog.text
    assert "could not be delivered to 127.0.0.1 after 3 attempt(s)" in caplog.text

    # Nobody listening at all: a connection error, retried, audited with the error type only.
    receiver.handle.stop()
    poll(cp, agent_id, key)
    assert cp.alerts.flush(10)
    failed = audit_rows(cp.db, "alert.failed")
    assert [f.detail["alert_event"] for f in failed] == ["agent.offline", "agent.online"]
    assert failed[1].detail["error"] == "ConnectError" and failed[1].detail["attempts"] == 3


def test_slack_format_url_from_the_vault_and_missing_secret(tmp_path: Path, receiver: Receiver, caplog: Any) -> None:
    db = Database(f"sqlite:///{tmp_path / 'cp.sqlite'}")
    db.migrate()
    vault = Vault(db, MasterKey.generate())
    vault.set("slack_url", receiver.url + SLACK_PATH)
    hooks = [Webhook(url_secret="slack_url", format="slack"),
             Webhook(url=f"{receiver.url}/hook", header_name="X-Alert-Token", header_secret="not_set")]
    alerts = Alerter(db, vault, hooks, settings=AlertSettings(backoff=0.01))
    c = in_process_control_plane(db, vault, alerts=alerts)
    try:
        agent_id, key = pair_agent(c, name="")
        poll(c, agent_id, key)
        c.svc.sweep(now=time.time() + 600)
        assert alerts.flush(10)
        assert len(receiver.requests) == 1  # the second hook's header secret is missing: not sent at all
        slack = receiver.requests[0]
        assert slack["path"] == SLACK_PATH and list(slack["json"]) == ["text"]
        assert slack["json"]["text"].startswith("[ml-connector] Agent ") and agent_id in slack["json"]["text"]
        sent, failed = audit_rows(db, "alert.sent"), audit_rows(db, "alert.failed")
        assert len(sent) == 1 and sent[0].detail["format"] == "slack" and sent[0].target == "127.0.0.1"
        assert len(failed) == 1 and failed[0].detail["attempts"] == 0
        assert "'not_set' is not in the vault" in failed[0].detail["error"]
        assert "sl4ckS3cretPathPart" not in audit_dump(db) and "sl4ckS3cretPathPart" not in caplog.text
    finally:
        c.svc.stop()
        alerts.close(5)
        c.client.close()
        db.dispose()


PG = os.environ.get("MLC_TEST_PG_URL")


@pytest.mark.scaleout
@pytest.mark.skipif(not PG, reason="needs MLC_TEST_PG_URL (scripts/postgres.sh start)")
def test_two_control_planes_on_postgres_alert_a_transition_once(receiver: Receiver) -> None:
    import psycopg

    assert PG
    name = f"mlc_alerts_{uuid.uuid4().hex[:8]}"
    admin = PG.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG.rsplit("/", 1)[0] + "/" + name
    planes: list[Any] = []
    try:
        key = MasterKey.generate()
        for _ in range(2):  # two processes' worth: own engine (pool), vault, alerter, service
            db = Database(url)
            db.migrate()
            vault = Vault(db, key)
            planes.append(in_process_control_plane(db, vault, alerts=alerter_for(db, vault, receiver)))
        planes[0].vault.set("alert_token", TOKEN)
        for p in planes:  # both delivery loops run and claim from the one outbox
            p.alerts.start()
        agents = [pair_agent(planes[0], name=f"a{i}") for i in range(3)]
        for agent_id, k in agents:
            poll(planes[0], agent_id, k)
        now = time.time() + 600
        start = threading.Barrier(2)
        counts: list[int] = []

        def sweep(plane: Any) -> None:
            start.wait()
            counts.append(plane.svc.sweep(now=now)["offline"])

        threads = [threading.Thread(target=sweep, args=(p,)) for p in planes]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sum(counts) == 3
        # They come back, through one plane or the other: one online alert each.
        for i, (agent_id, k) in enumerate(agents):
            poll(planes[i % 2], agent_id, k)
        for p in planes:
            assert p.alerts.flush(10)
        events = sorted((r["json"]["event"], r["json"]["agent_id"]) for r in receiver.requests)
        assert events == sorted([("agent.offline", a) for a, _ in agents] + [("agent.online", a) for a, _ in agents])
        # The same transition again on the other plane within the interval: held back there too.
        assert planes[1].svc.sweep(now=now + 10)["offline"] == 3
        for p in planes:
            assert p.alerts.flush(10)
        assert len(receiver.requests) == 6
        assert len(audit_rows(planes[0].db, "alert.suppressed")) == 3
        # No stored alert was sent twice (each row claimed by one loop; ids as receivers see them).
        ids = [r["headers"]["x-alert-id"] for r in receiver.requests]
        assert sorted(ids) == sorted(r["json"]["alert_id"] for r in receiver.requests) and len(set(ids)) == 6
        rows = alert_outbox(planes[0].db)
        assert sorted(o.alert_id for o in rows) == sorted(ids)
        assert all(o.state == "sent" and o.attempts == 1 for o in rows)
        assert len(audit_rows(planes[0].db, "alert.sent")) == 6
    finally:
        for p in planes:
            p.svc.stop()
            p.alerts.close(5)
            p.client.close()
            p.db.dispose()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_failed_sync_run_alerts(tmp_path: Path, sandboxes: Any, receiver: Receiver) -> None:
    env = make_env(tmp_path, sandboxes["sap_ecc"].url, sandboxes["ramp"].url, sap_password="Wrong-Password-1")
    text = env.config.read_text()
    env.config.write_text(text + (
        "\nalerts:\n"
        f"  webhooks:\n    - {{url: {receiver.url}/ops,\n"
        "       secret_header: {name: X-Alert-Token, value_secret: alert_token}}\n"
        "  events: [run.failed]\n  backoff: 10ms\n"))
    env.cli("secrets", "set", "alert_token", "--stdin", input_=TOKEN)
    failed = env.cli("sync", "vendors_to_ramp", "--stream", "vendors", check=False)
    assert failed.returncode != 0
    # The CLI delivers queued alerts before it exits.
    wait_until(lambda: len(receiver.requests) >= 1, timeout=10)
    assert len(receiver.requests) == 1
    req = receiver.requests[0]
    p = req["json"]
    assert req["path"] == "/ops" and req["headers"]["x-alert-token"] == TOKEN
    assert p["event"] == "run.failed" and p["flow"] == "vendors_to_ramp" and p["stream"] == "vendors"
    db = sqlite3.connect(tmp_path / "data" / "ml-connector.sqlite")
    run_id = db.execute("select run_id from mlc_runs where stream = 'vendors'").fetchone()[0]
    assert p["run_id"] == run_id and p["subject"] == "vendors_to_ramp/vendors"
    assert "failed" in p["message"] and ("RFC_LOGON_FAILURE" in p["message"] or "incorrect" in p["message"])
    assert "Wrong-Password-1" not in json.dumps(p)
    sent = db.execute("select target, detail from mlc_audit where event = 'alert.sent'").fetchall()
    assert len(sent) == 1 and sent[0][0] == "127.0.0.1" and json.loads(sent[0][1])["alert_event"] == "run.failed"
    dump = "\n".join(str(r) for r in db.execute("select * from mlc_audit"))
    assert TOKEN not in dump and "Wrong-Password-1" not in dump
    assert TOKEN not in failed.stdout + failed.stderr


@pytest.mark.slow  # a control-plane process SIGKILLed between backed-off attempts and restarted
def test_an_alert_pending_when_the_control_plane_is_killed_is_delivered_once_after_restart(tmp_path: Path) -> None:
    """SIGKILL of a control plane whose offline alert could not reach the (down) receiver yet: the
    alert is a stored row, and the restarted process delivers it once the receiver is back."""
    port = free_port()  # the receiver's address; nobody listens there until it "comes back"
    cp = ControlPlane(tmp_path / "cp")
    cp.config.write_text(cp.config.read_text(encoding="utf-8") + (
        "alerts:\n"
        f"  webhooks:\n    - {{url: 'http://127.0.0.1:{port}/hook',\n"
        "       secret_header: {name: X-Alert-Token, value_secret: alert_token}}\n"
        "  events: [agent.offline]\n  attempts: 10\n  backoff: 2s\n  timeout: 2s\n"), encoding="utf-8")
    (tmp_path / "cp" / "data").mkdir(parents=True, exist_ok=True)
    out = subprocess.run([str(BIN), "secrets", "set", "alert_token", "--stdin", "-c", str(cp.config)],
                         input=TOKEN, capture_output=True, text=True, timeout=60, env={**os.environ, **cp.env})
    assert out.returncode == 0, out.stderr
    receiver: Receiver | None = None
    cp.start()
    db = Database(cp.db_url)
    try:
        with httpx.Client(base_url=cp.url, timeout=10) as client:
            plane = SimpleNamespace(client=client, svc=None)
            token = cp.token()
            key = proto.generate_key()
            r = client.post("/api/agent/pair", json={"token": token, "public_key": proto.public_key_text(key),
                                                     "name": "dies-quietly"})
            assert r.status_code == 200, r.text
            agent_id = r.json()["agent_id"]
            poll(plane, agent_id, key)
        # It stops polling: the sweep marks it offline and stores the alert; the first send is
        # refused (nobody listens). Kill between two attempts (the row not claimed).
        wait_until(lambda: any(o.attempts == 1 and o.claimed_until is None for o in alert_outbox(db)), timeout=30)
        cp.kill()
        [row] = alert_outbox(db)
        assert row.state == "pending" and row.event == "agent.offline" and row.subject == agent_id
        assert row.last_error == "ConnectError" and TOKEN not in row.alert and str(port) not in row.alert
        assert not audit_rows(db, "alert.sent") and not audit_rows(db, "alert.failed")

        receiver = Receiver(port=port)  # back
        cp.start()  # a new process: nothing in memory, only the row
        wait_until(lambda: alert_outbox(db)[0].state == "sent", timeout=30)
        assert len(receiver.requests) == 1
        req = receiver.requests[0]
        p = req["json"]
        assert p["event"] == "agent.offline" and p["agent_id"] == agent_id and p["alert_id"] == row.alert_id
        assert req["headers"]["x-alert-id"] == row.alert_id and req["headers"]["x-alert-token"] == TOKEN
        [sent] = audit_rows(db, "alert.sent")
        # One refused send before the kill, one that arrived: the kill itself consumed no attempt.
        assert sent.detail["attempts"] == 2 and sent.detail["alert_id"] == row.alert_id
        assert len(audit_rows(db, "agent.offline")) == 1 and TOKEN not in audit_dump(db)
    finally:
        cp.kill()
        db.dispose()
        if receiver is not None:
            receiver.handle.stop()


def test_delivered_alert_rows_are_purged_after_the_retention_pending_ones_never(cp: Any) -> None:
    now = time.time()
    day = 86400.0
    rows = {"old-sent": ("sent", now - 40 * day), "old-failed": ("failed", now - 31 * day),
            "new-sent": ("sent", now - 1 * day), "old-pending": ("pending", None)}
    with cp.db.session() as s:
        for rid, (state, done) in rows.items():
            s.add(AlertOutboxRow(id=rid, alert_id=rid, hook=0, event="agent.offline", subject="a", alert="{}",
                                 state=state, attempts=1, next_attempt_at=now + 3600, created_at=now - 41 * day,
                                 done_at=done))
    assert cp.alerts.purge(now) == 2
    with cp.db.session() as s:
        left = set(s.scalars(select(AlertOutboxRow.id)))
    assert left == {"new-sent", "old-pending"}
