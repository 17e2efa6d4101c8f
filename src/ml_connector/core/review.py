"""Records marked for review: parked source records (a mapping or master record is missing),
for every flow. Knows no system: a flow says how its records read to a person (`Flow.summarize`).

- `note_parked`: inside the page's transaction, the records parked for the first time are
  audited one by one (`record.parked`) and one alert per flow/stream is admitted (event
  `record.parked`, throttled like every alert); the caller dispatches it after the commit.
- `items`: the review list (`ml-connector review`, GET /api/review): what each record is
  (document, party, amount), what it waits for and why, since when, and how to release it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ml_connector.core import audit, outbox
from ml_connector.core.alerts import Alert
from ml_connector.core.models import OutboxRow
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


def note_parked(session: Session, alerts: Any, flow: str, stream: str, run_id: str, batch: int) -> Alert | None:
    """Audit the records this page parked for the first time; admit one alert for them."""
    new = list(session.execute(select(OutboxRow.source_key, OutboxRow.parked_on, OutboxRow.last_error).where(
        OutboxRow.flow == flow, OutboxRow.stream == stream, OutboxRow.run_id == run_id,
        OutboxRow.batch == batch, OutboxRow.state == "parked")))
    if not new:
        return None
    audit.record_many(session, [{"event": "record.parked", "outcome": "parked", "flow": flow, "stream": stream,
                                 "run_id": run_id, "source": f"{flow}:{key}",
                                 "detail": {"waits_for": waits, "reason": why or ""}}
                                for key, waits, why in new])
    if alerts is None or not alerts.wants("record.parked"):
        return None
    waits = sorted({w or "" for _, w, _ in new})
    shown = ", ".join(waits[:5]) + (f" and {len(waits) - 5} more" if len(waits) > 5 else "")
    alert = Alert(event="record.parked", subject=f"{flow}/{stream}", flow=flow, stream=stream, run_id=run_id,
                  details={"records": len(new), "waits_for": waits[:50]},
                  message=f"{len(new)} record(s) of flow {flow} (stream {stream}) marked for review, waiting "
                          f"for {shown}: `ml-connector review --flow {flow}` lists them; setting the mapping "
                          f"(or adding the master record) posts them")
    return alert if alerts.admit(session, alert) else None


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
