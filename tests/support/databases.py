"""Databases for tests: a migrated SQLite file, the audit rows a test checks."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from ml_connector.core.db import Database
from ml_connector.core.models import AuditRow


def sqlite_database(path: Path) -> Database:
    """A migrated SQLite database in the file `path`."""
    db = Database(f"sqlite:///{path}")
    db.migrate()
    return db


def audit_rows(db: Database, event: str) -> list[AuditRow]:
    """The audit rows of `event`, oldest first (detached: usable after the session)."""
    with db.session() as s:
        rows = list(s.scalars(select(AuditRow).where(AuditRow.event == event).order_by(AuditRow.id)))
        s.expunge_all()
        return rows
