"""Append-only audit events (the database refuses updates and deletes)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from ml_connector.core.models import AuditRow


def digest(data: bytes | str | dict[str, Any] | list[Any] | None) -> str | None:
    """SHA-256 of a request or response: the trail proves what moved without storing it."""
    if data is None:
        return None
    if isinstance(data, dict | list):
        data = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def record(
    session: Session,
    event: str,
    *,
    outcome: str = "ok",
    flow: str | None = None,
    stream: str | None = None,
    run_id: str | None = None,
    source: str | None = None,
    target: str | None = None,
    request: Any = None,
    response: Any = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Add one event inside the caller's transaction (so it commits with the change it describes)."""
    from ml_connector.core.redact import redact

    safe_detail = json.loads(redact(json.dumps(detail or {}, default=str)))
    session.add(
        AuditRow(
            event=event,
            outcome=outcome,
            flow=flow,
            stream=stream,
            run_id=run_id,
            source=source,
            target=target,
            request_digest=digest(request),
            response_digest=digest(response),
            detail=safe_detail,
        )
    )


def record_many(session: Session, rows: list[dict[str, Any]]) -> None:
    """Bulk variant for per-record events of one page (one INSERT … VALUES batch)."""
    from ml_connector.core.redact import redact

    objs = []
    for r in rows:
        r = dict(r)
        r["request_digest"] = digest(r.pop("request", None))
        r["response_digest"] = digest(r.pop("response", None))
        r["detail"] = json.loads(redact(json.dumps(r.get("detail") or {}, default=str)))
        objs.append(r)
    if objs:
        session.execute(insert(AuditRow), objs)


def events(session: Session, *, run_id: str | None = None, source: str | None = None,
           limit: int = 1000) -> list[AuditRow]:
    q = select(AuditRow).order_by(AuditRow.id)
    if run_id:
        q = q.where(AuditRow.run_id == run_id)
    if source:
        q = q.where(AuditRow.source == source)
    return list(session.scalars(q.limit(limit)))
