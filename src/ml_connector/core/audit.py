"""Append-only audit events (the database refuses updates and deletes)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from itertools import repeat
from operator import itemgetter, methodcaller
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from ml_connector.core import bulk, jsontext
from ml_connector.core.models import AuditRow, utcnow

# json.dumps(data, sort_keys=True, separators=(",", ":"), default=str), without building an
# encoder per call (two digests per record written).
_CANONICAL = jsontext.encoder(sort_keys=True, separators=(",", ":"), default=str)
# json.dumps(detail, default=str): one per record written.
_DETAIL = jsontext.encoder(default=str)
# The same over lists of values (a page's events).
_CANONICAL_MANY = jsontext.encoder_many(sort_keys=True, separators=(",", ":"), default=str)
_DETAIL_MANY = jsontext.encoder_many(default=str)


def digest(data: bytes | str | dict[str, Any] | list[Any] | None) -> str | None:
    """SHA-256 of a request or response: the trail proves what moved without storing it."""
    if data is None:
        return None
    if isinstance(data, dict | list):
        data = _CANONICAL(data)
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
    """Bulk variant for per-record events of one page (one executemany).

    The details are redacted as one text when nothing in them needs it (the common case):
    `redact` of the NUL-joined texts changes nothing exactly when it changes none of them (JSON
    text holds no NUL, and a match across two texts would change the joined text)."""
    from ml_connector.core.redact import redact

    if not rows:
        return
    n = len(rows)
    # Column by column, in loops that run in C (a Python loop per row and per column cost more
    # than SQLite's insert of the row).
    details = list(map(dict.get, rows, repeat("detail")))
    if not all(details):
        details = [d or {} for d in details]
    texts = _DETAIL_MANY(details)
    joined = "\x00".join(texts)
    if redact(joined) != joined:
        texts = [redact(t) for t in texts]
    requests = list(map(dict.get, rows, repeat("request")))
    responses = list(map(dict.get, rows, repeat("response")))
    ats = list(map(dict.get, rows, repeat("at")))
    sqlite = session.get_bind().dialect.name == "sqlite"
    now = utcnow()
    if not all(ats):
        ats = [a or now for a in ats]
    columns: dict[str, list[Any]] = {
        "event": list(map(_EVENT, rows)),
        "outcome": list(map(dict.get, rows, repeat("outcome"), repeat("ok"))),
        **{k: list(map(dict.get, rows, repeat(k))) for k in ("flow", "stream", "run_id", "source", "target")},
        "request_digest": _digests(requests), "response_digest": _digests(responses),
        # SQLite stores JSON as this very text; other dialects bind the value through their JSON type.
        "detail": texts if sqlite else list(map(json.loads, texts)),
        "at": ats,
    }
    # A value the same for every row (one time: a target's answer; the run's flow, stream and id;
    # most often the event and outcome) is bound once by the statement, not converted and sent per
    # row. Only these few columns: each choice among them is one more statement `bulk` keeps compiled.
    same = {k: v[0] for k in _SAME_CANDIDATES if (v := columns[k])[0] is not None and v.count(v[0]) == n}
    for k in same:
        del columns[k]
    stmt = insert(bulk.table(AuditRow)).values(same) if same else insert(bulk.table(AuditRow))
    objs = list(map(dict, map(zip, repeat(tuple(columns)), zip(*columns.values(), strict=True))))
    bulk.session_executemany(session, stmt, objs, ready=("detail",) if sqlite else ())


_EVENT = itemgetter("event")
_SAME_CANDIDATES = ("at", "flow", "stream", "run_id", "event", "outcome")
_CONTAINERS = {dict, list}
_NONE_OR_CONTAINERS = {dict, list, type(None)}
_HEX = methodcaller("hexdigest")


def _digests(values: list[Any]) -> list[str | None]:
    """`[digest(v) for v in values]`, in loops that run in C where the values are dicts, lists or None."""
    types = set(map(type, values))
    if types <= _CONTAINERS:
        return list(map(_HEX, map(hashlib.sha256, map(str.encode, _CANONICAL_MANY(values)))))
    if types <= _NONE_OR_CONTAINERS:
        at = [i for i, v in enumerate(values) if v is not None]
        out: list[str | None] = [None] * len(values)
        for i, d in zip(at, _digests([values[i] for i in at]), strict=True):
            out[i] = d
        return out
    return list(map(digest, values))


def events(session: Session, *, run_id: str | None = None, source: str | None = None,
           limit: int = 1000) -> list[AuditRow]:
    q = select(AuditRow).order_by(AuditRow.id)
    if run_id:
        q = q.where(AuditRow.run_id == run_id)
    if source:
        q = q.where(AuditRow.source == source)
    return list(session.scalars(q.limit(limit)))


def hook_for(rt: Any, target: str) -> Callable[[str, str, dict[str, Any]], None] | None:
    """An audit hook for a client's events about `target` (e.g. token issued, refreshed, failed: never a
    token value), or None where the runtime has no database (a bare client)."""
    db = getattr(rt, "db", None)
    if db is None:
        return None

    def hook(event: str, outcome: str, detail: dict[str, Any]) -> None:
        with db.session() as s:
            record(s, event, outcome=outcome, target=target, detail=detail)

    return hook
