"""Databases for tests: a migrated SQLite file, the audit rows a test checks."""

from __future__ import annotations

import atexit
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

from sqlalchemy import select

from ml_connector.core.db import Database
from ml_connector.core.models import AlertOutboxRow, AuditRow, OutboxRow

_TEMPLATE: dict[int, Path] = {}


def _template() -> Path:
    """A SQLite file migrated once per process (an xdist worker each): copying it costs a
    millisecond where running the migrations costs about fifty."""
    pid = os.getpid()
    if pid not in _TEMPLATE:
        path = Path(tempfile.mkdtemp(prefix="mlc-db-template-")) / "template.sqlite"
        db = Database(f"sqlite:///{path}")
        try:
            db.migrate()
        finally:
            db.dispose()  # checkpoints the WAL: the one file holds the whole database
        atexit.register(shutil.rmtree, path.parent, True)
        _TEMPLATE[pid] = path
    return _TEMPLATE[pid]


def sqlite_database(path: Path) -> Database:
    """A migrated SQLite database in the file `path` (a copy of the process's migrated template)."""
    shutil.copyfile(_template(), path)
    db = Database(f"sqlite:///{path}")
    db.migrate()  # at head already: a version check
    return db


def audit_rows(db: Database, event: str) -> list[AuditRow]:
    """The audit rows of `event`, oldest first (detached: usable after the session)."""
    with db.session() as s:
        rows = list(s.scalars(select(AuditRow).where(AuditRow.event == event).order_by(AuditRow.id)))
        s.expunge_all()
        return rows


def outbox_rows(db: Database, flow: str, stream: str) -> list[OutboxRow]:
    """The outbox entries of a flow's stream, oldest first (detached)."""
    with db.read() as s:
        rows = list(s.scalars(select(OutboxRow).where(OutboxRow.flow == flow, OutboxRow.stream == stream)
                              .order_by(OutboxRow.id)))
        s.expunge_all()
        return rows


def audit_dump(db: Database) -> str:
    """Every audit row as text (to check that no secret is in the trail)."""
    with db.engine.connect() as c:
        return "\n".join(str(r) for r in c.exec_driver_sql("SELECT * FROM mlc_audit"))


def alert_outbox(db: Database) -> list[AlertOutboxRow]:
    """The alert outbox, oldest first (detached)."""
    with db.read() as s:
        rows = list(s.scalars(select(AlertOutboxRow).order_by(AlertOutboxRow.created_at)))
        s.expunge_all()
        return rows


def secret_blobs(db) -> dict[str, bytes]:
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        table = next(t for t in tables if "secret" in t)
        cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
        blob_col = next(c for c in cols if c in ("ciphertext", "value", "blob", "data", "sealed"))
        return {n: bytes(b) if not isinstance(b, str) else b.encode()
                for n, b in conn.execute(f"SELECT name, {blob_col} FROM {table}")}
