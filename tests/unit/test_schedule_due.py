"""Issue 16 item 16: after a restart a schedule catches up only what is due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ml_connector.config import Schedule
from ml_connector.core import engine
from ml_connector.core.db import Database
from ml_connector.core.models import RunRow

NOW = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Any:
    d = Database(f"sqlite:///{tmp_path}/due.db")
    d.migrate()
    yield d
    d.dispose()


def run(db: Database, flow: str, stream: str, started: datetime, status: str = "succeeded") -> None:
    with db.session() as s:
        s.add(RunRow(run_id=f"sync:{flow}:{stream}:{started.isoformat()}", flow=flow, stream=stream,
                     mode="incremental", status=status, counts={}, started_at=started))


def test_interval_streams_due_only_when_an_interval_has_passed(db: Database) -> None:
    hour = 3600.0
    run(db, "f", "recent", NOW - timedelta(minutes=5))
    run(db, "f", "old", NOW - timedelta(hours=1, seconds=1))
    run(db, "f", "old", NOW - timedelta(days=3))  # only the latest run counts
    run(db, "f", "failed_recently", NOW - timedelta(minutes=1), status="failed")
    run(db, "other", "never", NOW - timedelta(minutes=1))  # another flow's run does not count
    with db.session() as s:
        due = engine.due_streams(s, "f", ["recent", "old", "failed_recently", "never"], hour, NOW.timestamp())
    assert due == ["old", "never"]


def test_cron_catches_up_a_missed_time_once(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    enqueued: list[tuple[str, str, str]] = []
    monkeypatch.setattr(engine, "_enqueue_scheduled", lambda f, st, w: enqueued.append((f, st, w)))
    # Weekly on Monday 06:00 Berlin; NOW is Monday 2026-12-07 12:00 UTC, so the latest time is 05:00 UTC today.
    sched = Schedule(cron="0 6 * * 1", timezone="Europe/Berlin")
    flows = {"weekly": SimpleNamespace(schedule=sched, streams=["missed", "done", "never"])}
    rt = SimpleNamespace(config=SimpleNamespace(flows=flows), db=db)
    run(db, "weekly", "missed", NOW - timedelta(days=7, hours=7))   # last Monday's run; today's was missed
    run(db, "weekly", "done", NOW - timedelta(hours=6, minutes=59))  # ran at today's time
    started = engine.catch_up_cron(rt, NOW)  # type: ignore[arg-type]
    assert enqueued == [("weekly", "missed", "20261207T050000Z")]
    assert started == ["weekly:missed:20261207T050000Z"]
