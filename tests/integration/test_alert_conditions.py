"""Alerts for what needs a person (issue 15): records parked too long and stale streams, once when the
condition starts and once when it clears, to a webhook and by email through a real SMTP server
(aiosmtpd on loopback, STARTTLS with a test CA, login from the vault)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import update

from ml_connector.config import example_config, load_config
from ml_connector.core.conditions import sweep
from ml_connector.core.models import OutboxRow, RunRow
from ml_connector.core.runtime import Runtime
from tests.support.console import stage_records
from tests.support.databases import audit_dump, audit_rows
from tests.support.receivers import Receiver
from tests.support.smtp import SmtpServer

SMTP_PASSWORD = "Smtp-Relay-Pass-5"
DAY = 86400.0


@dataclass
class AlertWorld:
    rt: Runtime
    smtp: SmtpServer
    hook: Receiver


@pytest.fixture()
def world(tmp_path: Path) -> Iterator[AlertWorld]:
    smtp, hook = SmtpServer(tmp_path, "alerts@example.com", SMTP_PASSWORD), Receiver()
    cfg = tmp_path / "ml-connector.yaml"
    cfg.write_text(example_config("http://127.0.0.1:9", "http://127.0.0.1:9") + f"""
alerts:
  webhooks: [{{url: "{hook.url}/hook"}}]
  email: {{host: 127.0.0.1, port: {smtp.port}, username: alerts@example.com, password_secret: smtp_password,
          ca_file: "{smtp.ca}", sender: ml-connector@example.com, to: [finance-ops@example.com]}}
  events: [records.failed, records.parked, stream.stale]
  parked_after: 1d
  backoff: 0.01
""", encoding="utf-8")
    rt = Runtime(load_config(cfg), cfg)
    rt.vault.set("smtp_password", SMTP_PASSWORD)
    try:
        yield AlertWorld(rt, smtp, hook)
    finally:
        rt.close()
        smtp.stop()
        hook.close()


def test_parked_and_stale_alert_once_then_resolve_by_webhook_and_email(world: AlertWorld) -> None:
    rt, now = world.rt, time.time()
    stage_records(rt)  # one record parked on bills_to_sap
    with rt.db.session() as s:
        s.execute(update(OutboxRow).where(OutboxRow.state == "parked").values(
            updated_at=datetime.fromtimestamp(now - 2 * DAY, UTC)))
        old = datetime.fromtimestamp(now - 20 * DAY, UTC)
        # vendors_to_ramp runs every 7 days: its last success 20 days ago is staler than 2 periods
        s.add(RunRow(run_id="r-old", flow="vendors_to_ramp", stream="vendors", mode="incremental",
                     status="succeeded", counts={}, started_at=old, finished_at=old))
    assert rt.alerts is not None
    opened = sweep(rt, rt.alerts, now)
    assert sorted(a.event for a in opened) == ["records.failed", "records.parked", "stream.stale"]
    assert sweep(rt, rt.alerts, now + 60) == []  # still open: no second alert
    assert rt.alerts.flush(30)
    bodies = sorted(r["json"]["message"] for r in world.hook.requests)
    assert bodies[0].startswith("[ml-connector] 1 record(s) of bills_to_sap have waited for a mapping")
    assert bodies[1].startswith("[ml-connector] 2 record(s) of vendors_to_ramp failed and wait for a replay")
    assert bodies[2].startswith("[ml-connector] vendors_to_ramp / vendors has not synced successfully for 20 d")
    subjects = sorted(str(m["Subject"]) for m in world.smtp.messages)
    assert len(subjects) == 3  # the same alerts by email (the subject is cut at 200 characters)
    assert all(body.startswith(subject) and len(subject) <= 200 for subject, body in zip(subjects, bodies, strict=True))
    assert all(m["To"] == "finance-ops@example.com" and m["X-Alert-Id"] for m in world.smtp.messages)
    assert world.smtp.logins == ["alerts@example.com"] * 3  # logged in, after STARTTLS (required by the server)

    # Two causes go away: the parked record is posted, the stream syncs. Each is resolved once; the failed
    # records still wait.
    with rt.db.session() as s:
        s.execute(update(OutboxRow).where(OutboxRow.state == "parked").values(state="posted"))
        s.add(RunRow(run_id="r-new", flow="vendors_to_ramp", stream="vendors", mode="incremental",
                     status="succeeded", counts={}, started_at=datetime.fromtimestamp(now, UTC),
                     finished_at=datetime.fromtimestamp(now, UTC)))
    cleared = sweep(rt, rt.alerts, now + 120)
    assert sorted(a.event for a in cleared) == ["records.parked.cleared", "stream.stale.cleared"]
    assert sweep(rt, rt.alerts, now + 180) == []
    assert rt.alerts.flush(30)
    assert len(world.hook.requests) == len(world.smtp.messages) == 5
    assert "resolved: records.parked for bills_to_sap" in world.hook.requests[-1]["json"]["message"] + \
        world.hook.requests[-2]["json"]["message"]
    sent = audit_rows(rt.db, "alert.sent")
    assert sorted(r.detail["format"] for r in sent) == ["email"] * 5 + ["json"] * 5
    assert SMTP_PASSWORD not in audit_dump(rt.db)


def test_refused_smtp_login_fails_without_retry_and_without_the_password(world: AlertWorld) -> None:
    rt, now = world.rt, time.time()
    rt.vault.set("smtp_password", "Wrong-Smtp-Pass-1")
    stage_records(rt)
    with rt.db.session() as s:
        s.execute(update(OutboxRow).where(OutboxRow.state == "parked").values(
            updated_at=datetime.fromtimestamp(now - 2 * DAY, UTC)))
    assert rt.alerts is not None
    assert sorted(a.event for a in sweep(rt, rt.alerts, now)) == ["records.failed", "records.parked"]
    assert rt.alerts.flush(30)
    failed = audit_rows(rt.db, "alert.failed")
    assert len(failed) == 2
    assert all(f.detail["format"] == "email" and f.detail["attempts"] == 1 for f in failed)
    assert all(f.detail["error"].startswith("SMTP login refused (535") for f in failed)
    assert not world.smtp.messages and len(world.hook.requests) == 2  # the webhook still got them
    assert "Wrong-Smtp-Pass-1" not in audit_dump(rt.db)

