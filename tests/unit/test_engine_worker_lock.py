"""The SQLite worker lock, and the parked/replay paths' bounded IN lists, on real files and databases."""

from __future__ import annotations

import os
import sqlite3
from types import SimpleNamespace

import pytest
from sqlalchemy import event, select

from ml_connector.core import engine, outbox
from ml_connector.core.db import IN_CHUNK, Database
from ml_connector.core.flow import RunContext
from ml_connector.core.models import OutboxRow
from ml_connector.core.worker_lock import WorkerBusy, WorkerLock, lock_path
from tests.support.workers import MapAll


def test_second_holder_is_refused_and_told_who_holds_the_lock(tmp_path):
    path = lock_path(f"sqlite:///{tmp_path}/data/ml-connector.sqlite")
    assert path is not None
    first, second = WorkerLock(path), WorkerLock(path)
    assert first.try_acquire("run")
    # flock conflicts between open files even within one process: a real second holder
    assert not second.try_acquire("sync")
    held = second.holder()
    assert (held.pid, held.role, held.ready) == (os.getpid(), "run", False)
    first.mark_ready()
    assert second.holder().ready
    msg = str(WorkerBusy(path, held))
    assert f"pid {os.getpid()}" in msg and str(path) in msg and str(tmp_path / "data") in msg
    first.release()
    assert second.try_acquire("sync")
    assert second.holder().role == "sync"
    second.release()


@pytest.fixture()
def small_limit_db(tmp_path):
    """SQLite with at most 1200 bound variables per statement (the default build allows 32766):
    an IN list of all 1300 ids fails, chunked ones (two chunks at most per statement) pass."""
    db = Database(f"sqlite:///{tmp_path}/t.sqlite")
    event.listen(db.engine, "connect",
                 lambda conn, _rec: conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 1200))
    db.migrate()
    yield db
    db.dispose()


def test_parked_and_replay_paths_keep_in_lists_bounded(small_limit_db):
    db = small_limit_db
    n = 1300
    rows = [{"idempotency_key": f"park{i}", "source_key": str(i), "op": "create", "payload": {"id": str(i)},
             "content_hash": "h", "target_id": None, "state": "parked", "parked_on": "entities:x"}
            for i in range(n)]
    with db.session() as s:
        outbox.add(s, flow="f", stream="bills", run_id="r0", batch=1, rows=rows)
        ids = list(s.scalars(select(OutboxRow.id)))
    assert len(ids) == n
    statements: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda _c, _cur, stmt, *_: statements.append(stmt))
    with db.session() as s:
        assert len(engine._outbox_rows(s, ids + ids[:5], OutboxRow.state == "parked")) == n
    ctx = RunContext(SimpleNamespace(db=db), "f", "bills", "r1", "incremental")  # type: ignore[arg-type]
    tally: dict[str, int] = {}
    engine._remap_parked(ctx, MapAll(), ids, tally)  # type: ignore[arg-type]
    with db.session() as s:
        engine._adopt_resumed(s, ids, "r1")
    with db.session() as s:
        got = {(r.state, r.run_id, r.batch) for r in s.scalars(select(OutboxRow))}
    assert got == {("pending", "r1", 0)}
    # every IN list was cut to the chunk size, so their SQL has a handful of shapes
    assert max(st.count("?") for st in statements) <= IN_CHUNK + 8
