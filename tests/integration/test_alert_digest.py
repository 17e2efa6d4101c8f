"""The daily digest of an email channel (issue 15): with `digest: true` the channel gets no message per
alert; at `digest_at` (UTC) the alerts stored before it go out as one message, through a real SMTP server
on loopback (aiosmtpd, STARTTLS with a test CA), while the webhook beside it gets each alert at once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import update

from ml_connector.config import example_config, load_config
from ml_connector.core.alerts import digest_boundary
from ml_connector.core.conditions import sweep
from ml_connector.core.models import OutboxRow
from ml_connector.core.runtime import Runtime
from tests.support.console import stage_records
from tests.support.databases import alert_outbox, audit_dump
from tests.support.receivers import Receiver
from tests.support.smtp import SmtpServer

SMTP_PASSWORD = "Smtp-Digest-Pass-3"
DAY = 86400.0


@pytest.fixture()
def digest_world(tmp_path: Path) -> Iterator[tuple[Runtime, SmtpServer, Receiver]]:
    smtp, hook = SmtpServer(tmp_path, "alerts@example.com", SMTP_PASSWORD), Receiver()
    cfg = tmp_path / "ml-connector.yaml"
    cfg.write_text(example_config("http://127.0.0.1:9", "http://127.0.0.1:9") + f"""
alerts:
  webhooks: [{{url: "{hook.url}/hook"}}]
  email: {{host: 127.0.0.1, port: {smtp.port}, username: alerts@example.com, password_secret: smtp_password,
          ca_file: "{smtp.ca}", sender: ml-connector@example.com, to: [finance-ops@example.com],
          digest: true, digest_at: "07:00"}}
  events: [records.failed, records.parked]
  parked_after: 1d
  backoff: 0.01
""", encoding="utf-8")
    rt = Runtime(load_config(cfg), cfg)
    rt.vault.set("smtp_password", SMTP_PASSWORD)
    try:
        yield rt, smtp, hook
    finally:
        rt.close()
        smtp.stop()
        hook.close()


def test_a_digest_channel_gets_the_days_alerts_in_one_message(
        digest_world: tuple[Runtime, SmtpServer, Receiver]) -> None:
    rt, smtp, hook = digest_world
    now = time.time()
    stage_records(rt)  # one record parked on bills_to_sap, two failed on vendors_to_ramp
    with rt.db.session() as s:
        s.execute(update(OutboxRow).where(OutboxRow.state == "parked").values(
            updated_at=datetime.fromtimestamp(now - 2 * DAY, UTC)))
    assert rt.alerts is not None
    assert sorted(a.event for a in sweep(rt, rt.alerts, now)) == ["records.failed", "records.parked"]
    assert rt.alerts.flush(30)
    assert len(hook.requests) == 2 and not smtp.messages  # the webhook at once; the email waits
    assert sorted(o.state for o in alert_outbox(rt.db)) == ["digest", "digest", "sent", "sent"]

    today = digest_boundary(now, "07:00")
    assert rt.alerts.fold_digests(today + 60) == 0  # stored after today's digest time: tomorrow's digest
    tomorrow = today + DAY + 60
    assert rt.alerts.fold_digests(tomorrow) == 1
    assert rt.alerts.fold_digests(tomorrow) == 0  # folded once
    assert rt.alerts.flush(30)
    [m] = smtp.messages
    until = datetime.fromtimestamp(today + DAY, UTC).strftime("%Y-%m-%d 07:00")
    assert m["Subject"] == f"[ml-connector] Daily digest: 2 alert(s) until {until} UTC"
    assert m["To"] == "finance-ops@example.com"
    body = m.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert "records.parked: [ml-connector] 1 record(s) of bills_to_sap have waited" in body
    assert "records.failed: [ml-connector] 2 record(s) of vendors_to_ramp failed" in body
    assert sorted(o.state for o in alert_outbox(rt.db)) == ["digested", "digested", "sent", "sent", "sent"]
    assert len(hook.requests) == 2  # the digest is the email channel's only
    assert SMTP_PASSWORD not in audit_dump(rt.db)
