"""A record's journey: every event the platform holds about one record, oldest first.

`journey(session, ref)` takes what an operator has in hand: a source key (a Ramp bill id), a target
id or part of one (an SAP document number, `BELNR/BUKRS/GJAHR`), or any value of an outbox payload
(an XBLNR). It finds the matching outbox entries, then every audit event of their records
(`<flow>:<source key>`: pulled and staged, parked and why, resumed, written, found by lookup,
failed), the events that name the record in their details (a webhook about it), and each entry's
current state. Knows no system: the values are matched as text.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, cast, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from ml_connector.core.models import AuditRow, OutboxRow

LIMIT = 500


def _when(v: Any) -> str:
    return v.isoformat() if hasattr(v, "isoformat") else str(v or "")


def journey(session: Session, ref: str, *, limit: int = LIMIT) -> list[dict[str, Any]]:
    ref = ref.strip()
    if not ref:
        raise ValueError("give a record id, a target document or a reference")
    rows = list(session.scalars(select(OutboxRow).where(or_(
        OutboxRow.source_key == ref, OutboxRow.target_id == ref, OutboxRow.target_id.startswith(ref + "/"),
        cast(OutboxRow.payload, String).contains(f'"{ref}"'))).order_by(OutboxRow.id).limit(limit)))
    records = sorted({(r.flow, r.source_key) for r in rows})
    sources = [f"{flow}:{key}" for flow, key in records]
    keys = sorted({key for _, key in records} | {ref})
    conds: list[ColumnElement[bool]] = [AuditRow.source.in_(sources)] if sources else []
    conds += [cast(AuditRow.detail, String).contains(f'"{k}"') for k in keys]
    conds.append(AuditRow.target.endswith(f":{ref}"))
    events = list(session.scalars(select(AuditRow).where(or_(*conds)).order_by(AuditRow.id).limit(limit)))
    out: list[dict[str, Any]] = []
    for e in events:
        out.append({"at": _when(e.at), "kind": "event", "event": e.event, "outcome": e.outcome, "flow": e.flow,
                    "stream": e.stream, "run_id": e.run_id, "source": e.source, "target": e.target,
                    "detail": dict(e.detail or {})})
    for r in rows:
        out.append({"at": _when(r.updated_at), "kind": "entry", "event": f"entry.{r.state}", "outcome": r.state,
                    "flow": r.flow, "stream": r.stream, "run_id": r.run_id, "source": f"{r.flow}:{r.source_key}",
                    "target": r.target_id, "detail": {"entry": r.id, "op": r.op, "attempts": r.attempts,
                                                      "parked_on": r.parked_on, "error": r.last_error,
                                                      "created_at": _when(r.created_at)}})
    out.sort(key=lambda x: (x["at"], 0 if x["kind"] == "event" else 1))
    return out
