"""A person's work on a record that needs one: edit a field of its payload and retry, assign it to
someone, add notes. All of it lives in the audit trail (append-only, with the user), so a record's
journey tells who did what; the current assignee is the latest `record.assigned` event.

Edit-and-retry is for a cause in the data: only a failed entry (refused by the target, never written)
or a parked one (its stored source record is mapped again) may be edited, never one in doubt (it may
have reached the target). A failed entry keeps its idempotency key and content hash: the edit is a
correction of this one write, and the ledger then treats the source version as delivered, so the next
run does not overwrite the correction with the source's unchanged data. The audit event keeps the
field's value before and after (redacted like every audit detail).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ml_connector.core import audit
from ml_connector.core.db import in_chunks
from ml_connector.core.models import AuditRow, OutboxRow, utcnow
from ml_connector.core.redact import redact

EDITABLE_STATES = ("failed", "parked")
WORK_EVENTS = ("record.edited", "record.assigned", "record.note")
MAX_VALUE = 1000


class EditError(ValueError):
    """An edit that cannot be made: the message says why, in words for the operator."""


def _secret(key: str, value: Any) -> bool:
    text = json.dumps({key: value if isinstance(value, str) else str(value)})
    return redact(text) != text


def fields(payload: Any, prefix: str = "") -> Iterator[tuple[str, Any, bool]]:
    """(path, value, secret) of each scalar leaf of a payload; a path joins keys and list indexes with
    dots (`line_items.0.cost_center`); a secret one (redaction would hide it) is neither shown nor editable."""
    if isinstance(payload, dict):
        for k, v in payload.items():
            path = f"{prefix}{k}"
            if isinstance(v, dict | list):
                yield from fields(v, path + ".")
            else:
                yield path, v, _secret(str(k), v)
    elif isinstance(payload, list):
        for i, v in enumerate(payload):
            yield from fields(v, f"{prefix}{i}.")


def _coerce(old: Any, text: str) -> Any:
    """The new value in the old one's type (a number stays a number)."""
    if isinstance(old, bool):
        if text.strip().lower() not in ("true", "false"):
            raise EditError("enter true or false")
        return text.strip().lower() == "true"
    if isinstance(old, int):
        try:
            return int(text.strip())
        except ValueError:
            raise EditError(f"enter a whole number (was {old})") from None
    if isinstance(old, float):
        try:
            return float(text.strip())
        except ValueError:
            raise EditError(f"enter a number (was {old})") from None
    return text


def _set(payload: Any, path: str, text: str) -> tuple[Any, Any]:
    parts = path.split(".")
    node = payload
    for p in parts[:-1]:
        if isinstance(node, list) and p.isdigit() and int(p) < len(node):
            node = node[int(p)]
        elif isinstance(node, dict) and p in node:
            node = node[p]
        else:
            raise EditError(f"the record has no field {path!r}")
    last = parts[-1]
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        old = node[int(last)]
    elif isinstance(node, dict) and last in node:
        old = node[last]
    else:
        raise EditError(f"the record has no field {path!r}")
    if isinstance(old, dict | list):
        raise EditError(f"{path!r} is not a single value; edit one of its fields")
    if _secret(last, old):
        raise EditError(f"{path!r} holds a secret; it cannot be edited here")
    new = _coerce(old, text)
    if isinstance(node, list):
        node[int(last)] = new
    else:
        node[last] = new
    return old, new


def edit(session: Session, entry_id: int, path: str, value: str, *, user: str) -> tuple[OutboxRow, Any, Any]:
    """Set one field of a failed or parked entry's payload: (the entry, value before, value after)."""
    if len(value) > MAX_VALUE:
        raise EditError(f"the value is longer than {MAX_VALUE} characters")
    row = session.get(OutboxRow, entry_id)
    if row is None:
        raise EditError(f"no record #{entry_id}")
    if row.state not in EDITABLE_STATES:
        raise EditError(f"record #{entry_id} is {row.state}: only a failed or parked record can be edited")
    payload = json.loads(json.dumps(row.payload))
    before, after = _set(payload, path, value)
    if before == after:
        raise EditError(f"{path!r} already holds that value")
    row.payload, row.updated_at = payload, utcnow()
    audit.record(session, "record.edited", flow=row.flow, stream=row.stream, source=f"{row.flow}:{row.source_key}",
                 detail={"user": user, "outbox_id": row.id, "field": path, "before": before, "after": after,
                         "state": row.state})
    return row, before, after


def assign(session: Session, entry_ids: list[int], assignee: str, *, user: str) -> int:
    """Assign records to a person ('' = nobody); how many."""
    n = 0
    for r in _rows(session, entry_ids):
        audit.record(session, "record.assigned", flow=r.flow, stream=r.stream, source=f"{r.flow}:{r.source_key}",
                     detail={"user": user, "outbox_id": r.id, "assignee": assignee})
        n += 1
    return n


def note(session: Session, entry_id: int, text: str, *, user: str) -> bool:
    rows = _rows(session, [entry_id])
    for r in rows:
        audit.record(session, "record.note", flow=r.flow, stream=r.stream, source=f"{r.flow}:{r.source_key}",
                     detail={"user": user, "outbox_id": r.id, "note": text})
    return bool(rows)


def _rows(session: Session, ids: list[int]) -> list[OutboxRow]:
    out: list[OutboxRow] = []
    for chunk in in_chunks(sorted(set(ids))):
        out.extend(session.scalars(select(OutboxRow).where(OutboxRow.id.in_(chunk))))
    return out


@dataclass
class Work:
    """What people did on one record: its assignee and the edits, assignments and notes, oldest first."""

    assignee: str = ""
    events: list[AuditRow] | None = None


def work_of(session: Session, rows: list[OutboxRow]) -> dict[int, Work]:
    """Each entry's work, found by its record's audit source (an indexed column)."""
    wanted = {r.id for r in rows}
    out: dict[int, Work] = {r.id: Work(events=[]) for r in rows}
    sources = sorted({f"{r.flow}:{r.source_key}" for r in rows})
    for chunk in in_chunks(sources):
        for ev in session.scalars(select(AuditRow).where(AuditRow.source.in_(chunk), AuditRow.event.in_(WORK_EVENTS))
                                  .order_by(AuditRow.id)):
            eid = ev.detail.get("outbox_id") if isinstance(ev.detail, dict) else None
            if eid not in wanted:
                continue
            w = out[int(eid)]
            assert w.events is not None
            w.events.append(ev)
            if ev.event == "record.assigned":
                w.assignee = str(ev.detail.get("assignee") or "")
    return out
