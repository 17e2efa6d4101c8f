"""Durable store of received IDocs (table mlc_idocs, migration 0003)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ml_connector.core.models import Base, utcnow


class IdocRow(Base):
    """One received IDoc. Dedupe key: (SNDPRN, DOCNUM); DOCNUM is unique per sending system.
    `raw` is the IDoc's own XML (one <IDOC> re-serialized in its document), zlib-compressed."""

    __tablename__ = "mlc_idocs"
    __table_args__ = (UniqueConstraint("sndprn", "docnum", name="uq_mlc_idocs_sndprn_docnum"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    docnum: Mapped[str] = mapped_column(String(16), index=True)
    mestyp: Mapped[str] = mapped_column(String(30))
    idoctyp: Mapped[str] = mapped_column(String(30))
    cimtyp: Mapped[str] = mapped_column(String(30), default="")
    sndprt: Mapped[str] = mapped_column(String(2), default="")
    sndprn: Mapped[str] = mapped_column(String(10))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    status: Mapped[str] = mapped_column(String(20), default="received")
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    parsed: Mapped[dict[str, Any]] = mapped_column(JSON)


class IdocConflictRow(Base):
    """An IDoc re-sent under a DOCNUM already stored for its sender, with different content. SAP never
    does that for one IDoc, so it is kept here for an operator (the stored one is not replaced)."""

    __tablename__ = "mlc_idoc_conflicts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    docnum: Mapped[str] = mapped_column(String(16), index=True)
    sndprn: Mapped[str] = mapped_column(String(10))
    mestyp: Mapped[str] = mapped_column(String(30))
    idoctyp: Mapped[str] = mapped_column(String(30))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    stored_digest: Mapped[str] = mapped_column(String(64))
    new_digest: Mapped[str] = mapped_column(String(64))
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    parsed: Mapped[dict[str, Any]] = mapped_column(JSON)
