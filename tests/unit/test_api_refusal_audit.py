"""Refused operator requests are audited coalesced: at most one row per (client, reason) per
window, carrying how many refusals it stands for; no token in the trail."""

from __future__ import annotations

import json
import time

from ml_connector.core.db import Database
from ml_connector.server.api_auth import RefusalAudit, create_token
from tests.support import wait_until
from tests.support.api import api_refusal_rows, guarded_app
from tests.support.clock import FakeClock


def test_a_flood_of_refusals_writes_one_row_per_client_and_reason_per_window(db: Database) -> None:
    clock = FakeClock()
    client = guarded_app(db, RefusalAudit(db, window=60.0, clock=clock, background=False))
    for _ in range(200):
        assert client.get("/api/flows").status_code == 401
    bad = "mlcat_" + "0" * 16 + "_" + "S" * 40
    for _ in range(30):
        assert client.get("/api/flows", headers={"Authorization": f"Bearer {bad}"}).status_code == 401
    rows = api_refusal_rows(db)
    assert [(r.detail["reason"], r.detail["count"]) for r in rows] == [("missing_token", 1), ("unknown_token", 1)]
    assert all(r.outcome == "failed" and r.detail["client"] == "testclient" for r in rows)

    clock.advance(59.0)
    for _ in range(5):
        assert client.get("/api/flows").status_code == 401
    assert len(api_refusal_rows(db)) == 2  # refused, every one of them, but not written
    # a token that works is not affected
    _, token = create_token(db, "ops")
    assert client.get("/api/flows", headers={"Authorization": f"Bearer {token}"}).status_code == 200

    # the window ends: the next rows carry everything counted since the last row of their key
    clock.advance(1.5)
    assert client.get("/api/flows").status_code == 401
    rows = api_refusal_rows(db)[2:]
    assert [(r.detail["reason"], r.detail["count"], r.detail["path"], r.detail["method"]) for r in rows] == [
        ("missing_token", 199 + 5, "/api/flows", "GET"), ("unknown_token", 29, "/api/flows", "GET")]
    assert all(r.detail["since"] <= time.time() for r in rows)
    # that refusal opened the next window of its key: counted, written with the next row
    assert len(api_refusal_rows(db)) == 4
    # the secret of the refused token is nowhere in the trail
    assert "S" * 40 not in json.dumps([r.detail for r in api_refusal_rows(db)])


def test_refusals_left_pending_are_flushed_when_the_window_ends(db: Database) -> None:
    clock = FakeClock()
    audit = RefusalAudit(db, window=60.0, clock=clock, background=False)
    detail = {"method": "GET", "path": "/api/runs", "token_id": None, "proxied": False}
    for _ in range(10):
        audit.refused("203.0.113.9", "missing_token", detail)
    assert audit.flush() == 0  # the window is still open
    clock.advance(60.0)
    assert audit.flush() == 1
    assert [r.detail["count"] for r in api_refusal_rows(db)] == [1, 9]
    # that row opened a new window: a refusal right after it waits for the next one
    clock.advance(1.0)
    audit.refused("203.0.113.9", "missing_token", detail)
    assert len(api_refusal_rows(db)) == 2
    clock.advance(60.0)
    assert audit.flush() == 1 and [r.detail["count"] for r in api_refusal_rows(db)] == [1, 9, 1]
    clock.advance(60.0)
    assert audit.flush() == 0  # quiet for a whole window: nothing more, and the key is forgotten
    audit.refused("203.0.113.9", "missing_token", detail)
    assert [r.detail["count"] for r in api_refusal_rows(db)] == [1, 9, 1, 1]


def test_memory_is_bounded_by_sharing_a_count_beyond_max_keys(db: Database) -> None:
    clock = FakeClock()
    audit = RefusalAudit(db, window=60.0, clock=clock, max_keys=2, background=False)
    detail = {"method": "GET", "path": "/api/runs"}
    for i in range(50):
        audit.refused(f"198.51.100.{i}", "missing_token", detail)
    assert [r.detail["client"] for r in api_refusal_rows(db)] == ["198.51.100.0", "198.51.100.1", "*"]
    clock.advance(60.0)
    assert audit.flush() == 1
    assert api_refusal_rows(db)[-1].detail == {**detail, "client": "*", "reason": "missing_token", "count": 47,
                                    "since": api_refusal_rows(db)[-1].detail["since"]}


def test_background_flush_writes_the_pending_count(db: Database) -> None:
    audit = RefusalAudit(db, window=0.2)
    detail = {"method": "GET", "path": "/api/flows"}
    for _ in range(3):
        audit.refused("192.0.2.1", "bad_secret", detail)
    wait_until(lambda: len(api_refusal_rows(db)) >= 2, timeout=10, interval=0.02)
    assert [r.detail["count"] for r in api_refusal_rows(db)] == [1, 2]
