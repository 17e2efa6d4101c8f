"""`audit.record_many` stores what `audit.record` would for each event (digests, redacted detail)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from ml_connector.core import audit
from ml_connector.core.db import Database
from ml_connector.core.models import AuditRow, utcnow
from ml_connector.core.redact import redact


def _events() -> list[dict[str, Any]]:
    now = utcnow()
    events: list[dict[str, Any]] = []
    for i in range(12):
        e: dict[str, Any] = {"event": "record.create", "flow": "f", "stream": "s", "run_id": "r", "at": now,
                             "source": f"f:{i}", "target": f"t:{i}" if i % 2 else None,
                             "request": {"name": f"V {i}", "id": f"{i:04d}", "code": str(i)},
                             "response": {"ramp_id": f"x{i}", "id": f"{i:04d}", "is_active": True, "n": 1.5},
                             "detail": {"key": f"k{i}"}}
        if i % 3 == 0:
            del e["request"]
        if i == 4:
            e["response"] = ["a", {"b": None, "a": "é"}]
        events.append(e)
    return events


def _stored(db: Database, events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    with db.session() as s:
        audit.record_many(s, events)
    with db.session() as s:
        return [(r.event, r.outcome, r.source, r.target, r.request_digest, r.response_digest, r.detail, r.at)
                for r in s.scalars(select(AuditRow).order_by(AuditRow.id))]


def _expected(e: dict[str, Any]) -> tuple[Any, ...]:
    return (e["event"], e.get("outcome", "ok"), e.get("source"), e.get("target"), audit.digest(e.get("request")),
            audit.digest(e.get("response")), json.loads(redact(json.dumps(e.get("detail") or {}, default=str))))


def test_page_of_dict_bodies_is_stored_with_each_events_digests_and_detail(db: Database) -> None:
    events = _events()
    got = _stored(db, events)
    assert [g[:7] for g in got] == [_expected(e) for e in events]
    assert len({g[7] for g in got}) == 1


def test_mixed_bodies_times_and_secrets_are_stored_as_one_by_one(db: Database) -> None:
    events = _events()
    events[1]["request"] = "a text body"
    events[2]["response"] = b"raw bytes"
    events[5]["detail"] = {"password": "hunter22", "n": 1}
    events[6]["detail"] = None
    events[7]["at"] = events[7]["at"] + timedelta(seconds=5)
    del events[8]["at"]
    events[9]["outcome"] = "failed"
    got = _stored(db, events)
    assert [g[:7] for g in got] == [_expected(e) for e in events]
    assert "hunter22" not in json.dumps([g[6] for g in got])
    assert got[7][7] - got[0][7] == timedelta(seconds=5)
