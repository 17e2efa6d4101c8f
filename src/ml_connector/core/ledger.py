"""Records ledger and cursors.

The ledger remembers, per (flow, stream, source key), what the target holds
(target id and a hash of the content written). A record whose desired content
hashes the same as the ledger causes no write. Cursors are saved in the same
transaction as the ledger/outbox rows of the page they cover.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from ml_connector.core import bulk, jsontext
from ml_connector.core.db import in_chunks, one_of
from ml_connector.core.models import CursorRow, RecordRow, utcnow

# json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str),
# without building an encoder per record.
_CANONICAL = jsontext.encoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def content_hash(payload: dict[str, Any]) -> str:
    """Stable hash of the content a target should hold (key order and whitespace do not matter)."""
    canon = _CANONICAL(payload)
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


@dataclass
class Desired:
    """What the target should hold for one source record."""

    source_key: str
    payload: dict[str, Any]
    active: bool = True


@dataclass
class Parked:
    """A record that cannot be mapped yet; `waits_for` names the missing mapping key
    (`mapping.waits_for(table, value)`). `payload` must be the SOURCE record: when the
    mapping appears, the stream's `map()` is called on it again and the write resumes."""

    source_key: str
    waits_for: str
    payload: dict[str, Any] = field(default_factory=dict)
    #: why, in words for the person reviewing it (kept with the parked entry: `ml-connector review`)
    reason: str = ""


@dataclass
class Change:
    source_key: str
    op: str  # create | update | deactivate | reactivate
    payload: dict[str, Any]
    content_hash: str
    target_id: str | None


def plan_changes(session: Session, flow: str, stream: str, desired: Iterable[Desired]) -> tuple[list[Change], int]:
    """Compare desired states with the ledger; return the writes needed and the unchanged count."""
    items = list(desired)
    if not items:
        return [], 0
    known = _known(session, flow, stream, [d.source_key for d in items])
    changes: list[Change] = []
    unchanged = 0
    canonical, sha256 = _CANONICAL, hashlib.sha256  # `content_hash`, inline (a page's worth of records)
    for d in items:
        h = sha256(canonical({**d.payload, "__active": d.active}).encode("utf-8")).hexdigest()
        rec = known.get(d.source_key)
        if rec is None:
            # Unknown to the ledger (first run, or the ledger was lost): a record deleted at the
            # source may still be active in the target, so it is looked up and deactivated there
            # (the ledger then remembers it, found or not).
            changes.append(Change(d.source_key, "create" if d.active else "deactivate", d.payload, h, None))
        elif rec[0] == h:
            unchanged += 1
        elif d.active and not rec[1]:
            changes.append(Change(d.source_key, "create", d.payload, h, None))  # never was in the target
        elif not d.active:
            changes.append(Change(d.source_key, "deactivate", d.payload, h, rec[1]))
        elif not rec[2]:
            changes.append(Change(d.source_key, "reactivate", d.payload, h, rec[1]))
        else:
            changes.append(Change(d.source_key, "update", d.payload, h, rec[1]))
    return changes, unchanged


def _known(session: Session, flow: str, stream: str, keys: list[str]) -> dict[str, tuple[str, str | None, bool]]:
    """(content hash, target id, active) of the ledger rows of `keys`: three columns, no ORM objects
    (the per-page comparison reads a page's worth of rows; building entities cost more than the query)."""
    known: dict[str, tuple[str, str | None, bool]] = {}
    session.flush()  # executed on the connection (no ORM result machinery): pending changes first
    conn = session.connection()
    rows = conn.execute(
        select(RecordRow.source_key, RecordRow.content_hash, RecordRow.target_id, RecordRow.active).where(
            RecordRow.flow == flow, RecordRow.stream == stream,
            one_of(conn.dialect.name, RecordRow.source_key, keys))).all()
    for key, h, target_id, active in rows:
        known[key] = (h, target_id, bool(active))
    return known


def target_ids(session: Session, flow: str, stream: str, keys: Iterable[str]) -> dict[str, str]:
    """The target ids the ledger holds for `keys` (keys without one are absent): one query per chunk."""
    out: dict[str, str] = {}
    for chunk in in_chunks(sorted(keys)):
        rows = session.execute(select(RecordRow.source_key, RecordRow.target_id).where(
            RecordRow.flow == flow, RecordRow.stream == stream, RecordRow.source_key.in_(chunk),
            RecordRow.target_id.is_not(None)))
        out.update((k, t) for k, t in rows if t)
    return out


def confirm(session: Session, flow: str, stream: str, source_key: str, target_id: str | None,
            content_hash_: str, active: bool) -> None:
    """Record in the ledger that the target now holds this content (after a confirmed write)."""
    rec = session.get(RecordRow, (flow, stream, source_key))
    now = utcnow()
    if rec is None:
        session.add(RecordRow(flow=flow, stream=stream, source_key=source_key, target_id=target_id,
                              content_hash=content_hash_, seen_hash=content_hash_, active=active,
                              last_synced_at=now))
    else:
        rec.target_id = target_id or rec.target_id
        rec.content_hash = content_hash_
        rec.seen_hash = content_hash_
        rec.active = active
        rec.last_synced_at = now


def confirm_many(session: Session, flow: str, stream: str,
                 items: list[tuple[str, str | None, str, bool]]) -> None:
    """Bulk `confirm`: (source key, target id, content hash, active) per record, in one upsert.

    A known record keeps its target id when the write reported none (as `confirm` does)."""
    if not items:
        return
    now = utcnow()
    keys, target_ids_, hashes, active = zip(*items, strict=True)
    # What every row shares is bound once (not converted per row); the rest column by column.
    bulk.session_executemany_columns(session, _upsert(session, {"flow": flow, "stream": stream,
                                                                "last_synced_at": now, "updated_at": now}),
                                     {"source_key": keys, "target_id": target_ids_, "content_hash": hashes,
                                      "seen_hash": hashes, "active": active})


def _upsert(session: Session, common: dict[str, Any]) -> Any:
    """INSERT … ON CONFLICT (flow, stream, source_key) DO UPDATE of the ledger (SQLite ≥ 3.24, Postgres);
    `common`: the values every row has."""
    table = bulk.table(RecordRow)
    dialect = session.get_bind().dialect.name
    ins: Any = (pg_insert if dialect == "postgresql" else sqlite_insert)(table).values(**common)
    ex = ins.excluded
    keep_target = case((or_(ex.target_id.is_(None), ex.target_id == ""), table.c.target_id), else_=ex.target_id)
    return ins.on_conflict_do_update(
        index_elements=[table.c.flow, table.c.stream, table.c.source_key],
        set_={"target_id": keep_target, "content_hash": ex.content_hash, "seen_hash": ex.seen_hash,
              "active": ex.active, "last_synced_at": ex.last_synced_at, "updated_at": ex.updated_at})


def lookup(session: Session, flow: str, stream: str, keys: list[str]) -> dict[str, RecordRow]:
    out: dict[str, RecordRow] = {}
    for chunk in in_chunks(keys):
        # flow = ? AND stream = ? AND source_key IN (…): a primary-key range per value (a row-value
        # IN list was not planned as one on SQLite, and cost a scan of the ledger per chunk).
        rows = session.scalars(select(RecordRow).where(
            RecordRow.flow == flow, RecordRow.stream == stream, RecordRow.source_key.in_(chunk)))
        out.update({r.source_key: r for r in rows})
    return out


def count(session: Session, flow: str, stream: str) -> int:
    from sqlalchemy import func

    return int(session.scalar(select(func.count()).select_from(RecordRow).where(
        RecordRow.flow == flow, RecordRow.stream == stream)) or 0)


def load_cursor(session: Session, flow: str, stream: str) -> dict[str, Any]:
    row = session.get(CursorRow, (flow, stream))
    return dict(row.value) if row is not None else {}


def save_cursor(session: Session, flow: str, stream: str, value: dict[str, Any]) -> None:
    row = session.get(CursorRow, (flow, stream))
    if row is None:
        session.add(CursorRow(flow=flow, stream=stream, value=value))
    else:
        row.value = value
