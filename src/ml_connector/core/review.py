"""Records marked for review: parked source records (a mapping or master record is missing),
for every flow. Knows no system: a flow says how its records read to a person (`Flow.summarize`).

(The engine audits each record parked for the first time as `record.parked`, with what it waits for
and why, and admits one `record.parked` alert per cause, in the page's transaction.)
- `items`: the review list (`ml-connector review`, GET /api/review): what each record is
  (document, party, amount), what it waits for and why, since when, and how to release it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from ml_connector.core import outbox
from ml_connector.core.redact import redact

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReviewItem:
    id: int
    flow: str
    stream: str
    record: str
    document: str
    party: str
    amount: str
    waits_for: str  # table:value
    table: str
    value: str
    reason: str
    since: datetime
    hint: str  # the command that releases it


def items(session: Session, flows: dict[str, Any], *, flow: str | None = None, limit: int = 500) -> list[ReviewItem]:
    """The parked records, oldest first, as their reviewer reads them. `flows`: the configured
    flows by name (their pair says how a record is summarised)."""
    from ml_connector.core.flow import Summary, load_pair

    out: list[ReviewItem] = []
    for r in outbox.parked(session, flow=flow, limit=limit):
        summary: Summary | None = None
        cfg = flows.get(r.flow)
        if cfg is not None:
            try:
                summary = load_pair(cfg.pair).summarize(r.stream, dict(r.payload or {}))
            except Exception as exc:  # a summary is a convenience: never hide the record
                log.warning("cannot summarise parked record %s of %s: %s", r.source_key, r.flow, exc)
        table, _, value = (r.parked_on or "").partition(":")
        hint = (f"ml-connector mappings set {r.flow} {table} {_quote(value)} <target value>"
                if table and value and value != "-" else "")
        out.append(ReviewItem(
            id=r.id, flow=r.flow, stream=r.stream, record=r.source_key,
            document=summary.document if summary else r.source_key,
            party=summary.party if summary else "", amount=summary.amount if summary else "",
            waits_for=r.parked_on or "", table=table, value=value,
            reason=redact(r.last_error) if r.last_error else "", since=r.created_at, hint=hint))
    return out


def _quote(value: str) -> str:
    return value if value.replace("-", "").replace("_", "").replace(".", "").isalnum() else f"'{value}'"
