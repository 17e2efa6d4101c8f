"""`Database.share_writer_lock`: another engine's writes on the same SQLite file (DBOS's system
database) queue on the process's writer lock, from their first write statement to the end of their
transaction, whichever way it ends."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event

from ml_connector.core.db import Database


def _other_engine(path: Path) -> Engine:
    """An engine configured as DBOS configures its SQLite system database: the driver begins a
    transaction itself before the first write statement (isolation level IMMEDIATE)."""
    eng = create_engine(f"sqlite:///{path}", connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(eng, "connect")
    def immediate(dbapi_conn: Any, _rec: Any) -> None:
        dbapi_conn.isolation_level = "IMMEDIATE"

    return eng


def _free_elsewhere(db: Database) -> bool:
    """Whether another thread could take the writer lock now (an RLock is re-entrant in its owner)."""
    writer = db._writer
    assert writer is not None
    got: list[bool] = []

    def probe() -> None:
        ok = writer.acquire(blocking=False)
        if ok:
            writer.release()
        got.append(ok)

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    return got[0]


@pytest.fixture()
def shared(tmp_path: Path) -> tuple[Database, Engine]:
    path = tmp_path / "shared.db"
    db = Database(f"sqlite:///{path}")
    other = _other_engine(path)
    with other.connect() as c:
        c.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    assert db.share_writer_lock(other)
    return db, other


def test_a_write_holds_the_lock_until_its_commit_or_rollback(shared: tuple[Database, Engine]) -> None:
    db, other = shared
    with other.connect() as c:
        c.exec_driver_sql("SELECT count(*) FROM t").scalar()
        assert _free_elsewhere(db)  # a read takes no lock
        c.exec_driver_sql("INSERT INTO t VALUES (1)")
        assert not _free_elsewhere(db)  # held from the first write statement
        c.commit()
        assert _free_elsewhere(db)
        c.exec_driver_sql("UPDATE t SET x = 2")
        assert not _free_elsewhere(db)
        c.rollback()
        assert _free_elsewhere(db)
    with pytest.raises(ZeroDivisionError), other.begin() as c:
        c.exec_driver_sql("DELETE FROM t")
        raise ZeroDivisionError  # the transaction is rolled back, the lock released
    assert _free_elsewhere(db)
    with other.connect() as c:
        c.exec_driver_sql("INSERT INTO t VALUES (3)")
    # closed without a commit: the pool's reset rolls it back, and releases
    assert _free_elsewhere(db)
    with other.connect() as c:
        assert c.exec_driver_sql("SELECT x FROM t ORDER BY x").scalars().all() == [1]


def test_a_write_waits_for_a_session_of_the_process(shared: tuple[Database, Engine]) -> None:
    db, other = shared
    order: list[str] = []
    in_session = threading.Event()
    release = threading.Event()

    def session_holder() -> None:
        with db.session():
            in_session.set()
            release.wait(5)
            order.append("session ends")

    def writer() -> None:
        in_session.wait(5)
        with other.begin() as c:
            c.exec_driver_sql("INSERT INTO t VALUES (4)")
            order.append("other writes")

    a = threading.Thread(target=session_holder)
    b = threading.Thread(target=writer)
    a.start()
    b.start()
    in_session.wait(5)
    b.join(0.3)
    assert b.is_alive() and order == []  # queued on the lock, not in SQLite's busy handler
    release.set()
    a.join(5)
    b.join(5)
    assert order == ["session ends", "other writes"]
    assert _free_elsewhere(db)


def test_not_shared_with_another_dialect(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    assert not db.share_writer_lock(create_engine("postgresql+psycopg://u@127.0.0.1:1/x"))
