"""The outbox: every write to a target is stored, with a deterministic key, before the call.

States: pending → in_flight → posted | failed | uncertain | parked | waiting.
An entry left in_flight by a crash, or marked uncertain after a timeout, is
resolved by looking the record up in the target before anything is re-sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Text, and_, bindparam, func, insert, or_, select, type_coerce, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from ml_connector.core import bulk
from ml_connector.core.db import in_chunks, one_of
from ml_connector.core.models import OutboxRow, RunRow, utcnow

#: `resolved`: an operator closed a failed or parked entry without a retry (the console's inbox, audited).
#: `approval` / `approved` / `rejected`: held for a person's approval (core/approval.py).
#: `waiting`: written (its target id kept) but a follow-up of the write could not be done for a passing
#: reason (no token to report it back to the source): the next run of the stream delivers it again.
STATES = ("pending", "in_flight", "posted", "failed", "uncertain", "parked", "superseded", "resolved",
          "approval", "approved", "rejected", "waiting")
OPEN_STATES = ("pending", "in_flight", "uncertain")


def idempotency_key(flow: str, stream: str, source_key: str, content_hash: str, op: str) -> str:
    """Same source record, same content, same operation → same key, across retries and workers."""
    return f"{flow}:{stream}:{source_key}:{op}:{content_hash[:16]}"


@dataclass
class Entry:
    id: int
    source_key: str
    op: str
    payload: dict[str, Any]
    content_hash: str
    target_id: str | None
    state: str
    attempts: int
    idempotency_key: str


def _entry(r: OutboxRow) -> Entry:
    return Entry(r.id, r.source_key, r.op, dict(r.payload), r.content_hash, r.target_id, r.state,
                 r.attempts, r.idempotency_key)


# The columns of an Entry, selected as plain rows: a batch's entries without ORM objects
# (identity map, state tracking), which cost more per entry than reading them.
_ENTRY_COLS = (OutboxRow.id, OutboxRow.source_key, OutboxRow.op, OutboxRow.payload, OutboxRow.content_hash,
               OutboxRow.target_id, OutboxRow.state, OutboxRow.attempts, OutboxRow.idempotency_key)


def _entries(rows: Iterable[Any]) -> list[Entry]:
    return [Entry(i, key, op, dict(payload), h, target, state, attempts, ikey)
            for i, key, op, payload, h, target, state, attempts, ikey in rows]


# SQLite: the payload's JSON text, decoded here (`_json_value`) rather than by the column type.
_ENTRY_COLS_TEXT = (*_ENTRY_COLS[:3], type_coerce(OutboxRow.payload, Text), *_ENTRY_COLS[4:])
# json.loads' own scanner (the default decoder's options)
_SCAN: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _json_value(text: str) -> Any:
    """`json.loads(text)` (what the JSON column type does on SQLite) without its per-call set-up
    (a decoder method, whitespace regexes), which cost more than decoding a record's few fields.
    json.loads itself decodes what the scanner does not take whole (whitespace around the value)
    and raises its own errors."""
    try:
        value, end = _SCAN(text, 0)
    except StopIteration:
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


def _entries_text(rows: Iterable[Any], column: Any) -> list[Entry]:
    """`_entries` of rows holding the payload's stored text: a text decoded here; anything else (a
    NULL, a number) by the column type's own processor."""
    return [Entry(i, key, op, dict(_json_value(payload) if type(payload) is str else column(payload)), h, target,
                  state, attempts, ikey)
            for i, key, op, payload, h, target, state, attempts, ikey in rows]


def add(session: Session, *, flow: str, stream: str, run_id: str, batch: int,
        rows: Iterable[dict[str, Any]]) -> int:
    """Insert entries; an entry whose key already exists (a replayed page) is left as it is."""
    items = list(rows)
    if not items:
        return 0
    keys = [r["idempotency_key"] for r in items]
    existing: set[str] = set()
    adopt: list[int] = []
    # Plain column selects on the session's connection (no ORM result machinery), each with all the
    # values in one parameter (`one_of`); pending ORM changes are flushed first, as `execute` would.
    session.flush()
    conn = session.connection()
    dialect = conn.dialect.name
    for key, eid, state, erun in conn.execute(
            select(OutboxRow.idempotency_key, OutboxRow.id, OutboxRow.state, OutboxRow.run_id).where(
                one_of(dialect, OutboxRow.idempotency_key, keys))).all():
        existing.add(key)
        # An open entry of an earlier, interrupted run joins this batch so that
        # it is delivered (or resolved) now instead of being orphaned.
        if state in OPEN_STATES and erun != run_id:
            adopt.append(eid)
    # The other entries of the same records, in one query:
    # - an older write left in doubt (in flight at a crash, or uncertain) may have reached the
    #   target: it joins this batch too, where delivery resolves it by lookup before the newer
    #   content is written (and supersedes it), instead of staying in flight out of sight;
    # - older open or failed writes for other content are superseded by this newer change (the
    #   target will get the newest state).
    own = set(keys)
    sources = list(dict.fromkeys(r["source_key"] for r in items))
    superseded: list[int] = []
    for eid, ikey, state in conn.execute(select(OutboxRow.id, OutboxRow.idempotency_key, OutboxRow.state).where(
            OutboxRow.flow == flow, OutboxRow.stream == stream, one_of(dialect, OutboxRow.source_key, sources),
            OutboxRow.state.in_(_OTHER_STATES))).all():
        if ikey in own:
            continue
        (adopt if state in ("in_flight", "uncertain") else superseded).append(eid)
    # (Core updates: the page's session holds no outbox entities to keep in step.)
    t = bulk.table(OutboxRow)
    if adopt:
        conn.execute(update(t).where(one_of(dialect, t.c.id, adopt)).values(
            run_id=run_id, batch=batch, updated_at=utcnow()))
    now = utcnow()
    if superseded:
        conn.execute(update(t).where(one_of(dialect, t.c.id, superseded)).values(state="superseded", updated_at=now))
    # One executemany with the same columns for every row (a parked row sets parked_on and state),
    # given column by column.
    new = [r for r in items if r["idempotency_key"] not in existing] if existing else items
    columns = {
        "idempotency_key": [r["idempotency_key"] for r in new], "source_key": [r["source_key"] for r in new],
        "op": [r["op"] for r in new], "payload": [r["payload"] for r in new],
        "content_hash": [r["content_hash"] for r in new], "target_id": [r.get("target_id") for r in new],
        "state": [r.get("state", "pending") for r in new], "attempts": [r.get("attempts", 0) for r in new],
        "parked_on": [r.get("parked_on") for r in new], "last_error": [r.get("last_error") for r in new]}
    extra = set().union(*items) - _ADD_KEYS
    if extra:
        raise ValueError(f"outbox rows have unknown keys {sorted(extra)}")
    if new:
        bulk.session_executemany_columns(session, insert(t).values(
            flow=flow, stream=stream, run_id=run_id, batch=batch, created_at=now, updated_at=now), columns)
    return len(new) + len(adopt)


_OTHER_STATES = ("in_flight", "uncertain", "pending", "failed", "parked", "approval", "approved", "waiting")
_ADD_KEYS = {"idempotency_key", "source_key", "op", "payload", "content_hash", "target_id", "state", "attempts",
             "parked_on", "last_error"}


def batch_entries(session: Session, run_id: str, batch: int,
                  states: Sequence[str] = OPEN_STATES) -> list[Entry]:
    session.flush()  # executed on the connection (no ORM result machinery): pending changes first
    conn = session.connection()
    dialect = conn.dialect
    sqlite = dialect.name == "sqlite"
    rows = conn.execute(select(*(_ENTRY_COLS_TEXT if sqlite else _ENTRY_COLS)).where(
        OutboxRow.run_id == run_id, OutboxRow.batch == batch, OutboxRow.state.in_(states))
        .order_by(OutboxRow.id)).all()
    if not sqlite:
        return _entries(rows)
    process = OutboxRow.payload.type.dialect_impl(dialect).result_processor(dialect, None)
    return _entries_text(rows, process or (lambda v: v))


def entries_by_id(session: Session, ids: Sequence[int]) -> list[Entry]:
    rows: dict[int, OutboxRow] = {}
    for chunk in in_chunks(sorted(set(ids))):
        rows.update((r.id, r) for r in session.scalars(select(OutboxRow).where(OutboxRow.id.in_(chunk))))
    return [_entry(rows[i]) for i in sorted(rows)]


def set_state(session: Session, ids: Sequence[int], state: str, *, error: str | None = None,
              bump_attempts: bool = False, parked_on: str | None = None) -> None:
    if not ids:
        return
    values: dict[str, Any] = {"state": state, "updated_at": utcnow()}
    if error is not None:
        values["last_error"] = error[:4000]
    if bump_attempts:
        values["attempts"] = OutboxRow.attempts + 1
    if parked_on is not None:
        values["parked_on"] = parked_on
    for chunk in in_chunks(ids):
        session.execute(update(OutboxRow).where(OutboxRow.id.in_(chunk)).values(**values))


def set_op(session: Session, ids: Sequence[int], op: str, *, target_id: str | None = None) -> None:
    """Change what entries do: an adopted record (op `adopt`), or a correction of a found record."""
    values: dict[str, Any] = {"op": op, "updated_at": utcnow()}
    if target_id is not None:
        values["target_id"] = target_id
    for chunk in in_chunks(list(ids)):
        session.execute(update(OutboxRow).where(OutboxRow.id.in_(chunk)).values(**values))


def mark_posted(session: Session, entry_id: int, target_id: str | None) -> None:
    session.execute(update(OutboxRow).where(OutboxRow.id == entry_id).values(
        state="posted", target_id=target_id, last_error=None, updated_at=utcnow()))


def mark_posted_many(session: Session, items: list[tuple[int, str | None]]) -> None:
    """Bulk `mark_posted`: (entry id, target id) pairs in one executemany UPDATE."""
    if items:
        t = bulk.table(OutboxRow)
        bulk.session_executemany(session, update(t).where(t.c.id == bindparam("b_id")).values(
            state="posted", target_id=bindparam("b_target"), last_error=None, updated_at=utcnow()),
            [{"b_id": i, "b_target": target} for i, target in items])


def post_fenced(session: Session, items: Sequence[tuple[int, int, str | None]]) -> bool:
    """`fence` and `mark_posted_many` at once for (entry id, generation, target id) triples, in one
    UPDATE per entry instead of a fence and an update: True when every entry was still open at its
    generation (the common case) and is now posted. Otherwise nothing is changed (a savepoint is
    rolled back) and False: the caller fences them (`fence`) and records them one by one.

    SQLite only, where the driver counts the rows an executemany changed and a write transaction
    holds the database (nothing changes between this and the rest of the caller's recording);
    False on other databases."""
    if not items or session.get_bind().dialect.name != "sqlite":
        return False
    t = bulk.table(OutboxRow)
    stmt = update(t).where(t.c.id == bindparam("b_id"), t.c.attempts == bindparam("b_gen"),
                           or_(*(t.c.state == s for s in OPEN_STATES))).values(
        state="posted", target_id=bindparam("b_target"), last_error=None, updated_at=utcnow())
    savepoint = session.begin_nested()
    ids, gens, targets = zip(*items, strict=True)
    changed = bulk.session_executemany_columns(session, stmt, {"b_id": ids, "b_gen": gens, "b_target": targets})
    if changed == len(set(ids)):
        savepoint.commit()
        return True
    savepoint.rollback()
    return False


def counts(session: Session, *, run_id: str | None = None, flow: str | None = None) -> dict[str, int]:
    q = select(OutboxRow.state, func.count()).group_by(OutboxRow.state)
    if run_id:
        q = q.where(OutboxRow.run_id == run_id)
    if flow:
        q = q.where(OutboxRow.flow == flow)
    return {s: int(n) for s, n in session.execute(q)}


def failures(session: Session, *, flow: str | None = None, states: Sequence[str] = ("failed", "uncertain"),
             limit: int = 500, stale_in_flight: bool = True) -> list[OutboxRow]:
    """Entries waiting for an operator; with `stale_in_flight`, also writes still in flight after
    their run ended (in doubt: `replay` resolves them by lookup), so nothing stays out of sight."""
    cond: ColumnElement[bool] = OutboxRow.state.in_(states)
    if stale_in_flight:
        ended = select(RunRow.run_id).where(RunRow.status.in_(RunRow.ENDED))
        cond = or_(cond, and_(OutboxRow.state == "in_flight", OutboxRow.run_id.in_(ended)))
    q = select(OutboxRow).where(cond).order_by(OutboxRow.id)
    if flow:
        q = q.where(OutboxRow.flow == flow)
    return list(session.scalars(q.limit(limit)))


def parked(session: Session, *, flow: str | None = None, limit: int = 500) -> list[OutboxRow]:
    return failures(session, flow=flow, states=("parked",), limit=limit, stale_in_flight=False)


def _by_generation(items: Iterable[tuple[int, int]]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for eid, gen in items:
        out.setdefault(gen, []).append(eid)
    return out


def claim(db: Any, entries: Sequence[Entry]) -> set[int]:
    """Begin one attempt on each entry, committed BEFORE the call, fenced: an entry is claimed only
    while it is still open at the generation (attempt count) this delivery read it at.

    A worker taken over while it was stalled still holds its old view of a batch; the worker that
    took over has claimed (attempts + 1) or settled those entries since. The stale worker gets
    nothing back for them here and must not write them. Returns the ids claimed (in flight now,
    one attempt counted)."""
    got: set[int] = set()
    now = utcnow()
    t = bulk.table(OutboxRow)
    with db.session() as s:
        conn = s.connection()  # a new session: no pending ORM changes
        for gen, ids in _by_generation((e.id, e.attempts) for e in entries).items():
            got.update(conn.execute(
                update(t).where(one_of(conn.dialect.name, t.c.id, ids), t.c.attempts == gen,
                                t.c.state.in_(OPEN_STATES))
                .values(state="in_flight", attempts=gen + 1, updated_at=now).returning(t.c.id)).scalars().all())
    return got


def fence(session: Session, items: Iterable[tuple[int, int]]) -> set[int]:
    """Which results of (entry id, generation) this delivery may record, in `session`'s transaction:
    those whose entry is still open at that generation. The rows are locked (Postgres) or the
    database is (SQLite) until the transaction ends, so of two writers recording the same entry,
    the second sees it settled and records nothing: a result is recorded once, and a writer whose
    work was taken over (a newer attempt began) is refused."""
    got: set[int] = set()
    now = utcnow()
    t = bulk.table(OutboxRow)
    session.flush()  # executed on the connection: pending ORM changes first
    conn = session.connection()
    for gen, ids in _by_generation(items).items():
        got.update(conn.execute(
            update(t).where(one_of(conn.dialect.name, t.c.id, sorted(set(ids))), t.c.attempts == gen,
                            t.c.state.in_(OPEN_STATES))
            .values(updated_at=now).returning(t.c.id)).scalars().all())
    return got


def begin_attempt(db: Any, ids: Sequence[int]) -> None:
    """Mark entries in_flight, committed BEFORE the call: a crash leaves a trace to resolve."""
    with db.session() as s:
        set_state(s, list(ids), "in_flight", bump_attempts=True)
