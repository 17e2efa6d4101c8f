"""Approval before posting: a flow's records wait for a person before they are written.

A flow opts in with `approval: {streams: [...], company_codes: [...]}` (config.ApprovalConfig): a
change of such a stream, in one of those company codes (the target's `scope` of the payload; every
record when none are listed, and a record whose scope cannot be told waits too), is staged in the
outbox as `approval` instead of `pending`. Its delivery asks the target's own verdict
(`Target.check`, writing nothing) and keeps it in the audit trail (`approval.checked`); the queue
shows the exact document the target will receive (`Target.document`) with that verdict.

- approve: `approval` → `approved` (one transaction, only entries still waiting: approving twice
  approves once), then the engine's replay delivers them through the outbox (exactly once, the
  target's lookup first);
- reject: `approval` → `rejected`, with a note; never written. The same content staged again keeps
  that entry (its key exists), so a rejected record comes back only when its source changes;
- resend: ask the target's verdict again (after a fix in the target, e.g. an opened period).

Every action is audited with its user.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ml_connector.core import audit, calls, jsonlog
from ml_connector.core.db import in_chunks
from ml_connector.core.flow import RunContext, Stream, Target, Verdict
from ml_connector.core.models import AuditRow, OutboxRow, utcnow
from ml_connector.core.redact import redact

log = logging.getLogger(__name__)

WAITING = "approval"
APPROVED = "approved"
REJECTED = "rejected"
CHECKED = "approval.checked"


def flow_config(rt: Any, flow: str) -> Any:
    """The configured flow (None for a runtime without a configuration, e.g. a test's)."""
    flows = getattr(getattr(rt, "config", None), "flows", None)
    return flows.get(flow) if flows is not None else None


def applies(cfg: Any, stream: str, target: Target, payload: dict[str, Any]) -> bool:
    """Whether a change of `stream` (of the flow configured by `cfg`) with `payload` waits for approval."""
    rule = getattr(cfg, "approval", None)
    if rule is None or (rule.streams and stream not in rule.streams):
        return False
    if not rule.company_codes:
        return True
    try:
        scope = target.scope(payload)
    except Exception:  # a payload the target cannot read: a person looks at it first
        scope = None
    return scope is None or scope in rule.company_codes


def hold(cfg: Any, stream: Stream, rows: list[dict[str, Any]]) -> None:
    """Stage the outbox rows (dicts for `outbox.add`) that wait for approval in state `approval`."""
    if getattr(cfg, "approval", None) is None:
        return
    for r in rows:
        if r.get("state", "pending") == "pending" and r["op"] != "deactivate" \
                and applies(cfg, stream.name, stream.target, r["payload"]):
            r["state"] = WAITING


def verdict_of(ctx: RunContext, target: Target, payload: dict[str, Any]) -> Verdict | None:
    """The target's verdict on `payload`; a check that could not be made says so (not accepted)."""
    try:
        return target.check(ctx, payload)
    except Exception as exc:
        return Verdict(False, [f"The check could not be made: {redact(f'{type(exc).__name__}: {exc}')[:500]}"])


def check_entries(ctx: RunContext, stream: Stream, ids: list[int], *, user: str | None = None) -> int:
    """Ask the target's verdict on the waiting entries `ids` and keep it in the audit trail; the
    number checked (0 when the target offers no check)."""
    db = ctx.runtime.db
    with db.read() as s:
        rows = [(r.id, r.source_key, dict(r.payload)) for chunk in in_chunks(sorted(set(ids)))
                for r in s.scalars(select(OutboxRow).where(OutboxRow.id.in_(chunk), OutboxRow.state == WAITING))]
    done = 0
    for eid, key, payload in rows:  # one call each, outside any transaction (the target may be slow)
        with jsonlog.correlate(flow=ctx.flow, stream=ctx.stream, record=f"{ctx.flow}:{key}"):
            v = verdict_of(ctx, stream.target, payload)
        if v is None:
            continue
        done += 1
        with db.session() as s:
            audit.record(s, CHECKED, outcome="ok" if v.ok else "failed", flow=ctx.flow, stream=ctx.stream,
                         run_id=ctx.run_id, source=f"{ctx.flow}:{key}", request=stream.target.document(payload),
                         detail={"outbox_id": eid, "accepted": v.ok, "messages": v.messages[:50],
                                 "checked_by": v.checked_by, **({"user": user} if user else {})})
    return done


def waiting_ids(s: Session, run_id: str, batch: int) -> list[int]:
    return list(s.scalars(select(OutboxRow.id).where(OutboxRow.run_id == run_id, OutboxRow.batch == batch,
                                                     OutboxRow.state == WAITING)))


@dataclass
class Item:
    """One record in the approval queue."""

    id: int
    flow: str
    stream: str
    record: str
    op: str
    state: str
    since: Any
    document: dict[str, Any]
    #: The target's latest verdict: None when not asked yet (or the target offers no check).
    accepted: bool | None
    messages: list[str]
    checked_by: str
    checked_at: Any


def queue(rt: Any, *, flow: str | None = None, ids: list[int] | None = None, limit: int = 500) -> list[Item]:
    """Records waiting for approval, and approved ones not yet delivered, oldest first."""
    items: list[Item] = []
    with rt.db.read() as s:
        q = select(OutboxRow).where(OutboxRow.state.in_((WAITING, APPROVED))).order_by(OutboxRow.id).limit(limit)
        if flow:
            q = q.where(OutboxRow.flow == flow)
        if ids is not None:
            q = q.where(OutboxRow.id.in_(ids[:1000]))
        rows = list(s.scalars(q))
        verdicts = latest_verdicts(s, rows)
    for r in rows:
        try:
            target = rt.flow(r.flow).stream(r.stream).target
            document = target.document(dict(r.payload))
        except Exception as exc:  # a flow no longer configured, a payload that cannot become a document
            document = {"error": f"{type(exc).__name__}: {exc}"}
        v = verdicts.get(r.id)
        items.append(Item(r.id, r.flow, r.stream, r.source_key, r.op, r.state, r.created_at, document,
                          None if v is None else bool(v.detail.get("accepted")),
                          list(v.detail.get("messages") or []) if v else [],
                          str(v.detail.get("checked_by") or "") if v else "", v.at if v else None))
    return items


def latest_verdicts(s: Session, rows: list[OutboxRow]) -> dict[int, AuditRow]:
    """The latest `approval.checked` event of each outbox entry of `rows` (found by their records'
    audit source, an indexed column)."""
    wanted = {r.id for r in rows}
    out: dict[int, AuditRow] = {}
    sources = sorted({f"{r.flow}:{r.source_key}" for r in rows})
    for chunk in in_chunks(sources):
        for ev in s.scalars(select(AuditRow).where(AuditRow.source.in_(chunk), AuditRow.event == CHECKED)
                            .order_by(AuditRow.id)):
            eid = ev.detail.get("outbox_id") if isinstance(ev.detail, dict) else None
            if eid in wanted:
                out[int(eid)] = ev
    return out


def _move(rt: Any, ids: list[int], to: str, event: str, user: str, note: str | None = None) -> list[int]:
    """Entries of `ids` still waiting, moved to `to` in one transaction, each audited; their ids."""
    moved: list[int] = []
    with rt.db.session() as s:
        for chunk in in_chunks(sorted(set(ids))):
            values: dict[str, Any] = {"state": to, "updated_at": utcnow()}
            if note is not None:
                values["last_error"] = f"rejected by {user}: {note}"[:4000]
            moved.extend(s.scalars(update(OutboxRow).where(OutboxRow.id.in_(chunk), OutboxRow.state == WAITING)
                                   .values(**values).returning(OutboxRow.id)
                                   .execution_options(synchronize_session=False)))
        for r in s.scalars(select(OutboxRow).where(OutboxRow.id.in_(moved))):
            audit.record(s, event, flow=r.flow, stream=r.stream, source=f"{r.flow}:{r.source_key}",
                         outcome="ok" if to == APPROVED else "skipped",
                         detail={"user": user, "outbox_id": r.id, **({"note": note} if note is not None else {})})
    return sorted(moved)


def approve(rt: Any, ids: list[int], user: str) -> tuple[list[int], dict[str, int]]:
    """Approve the waiting entries of `ids` and deliver them (with approved ones not yet delivered):
    (the ids approved now, the delivery's tally). Raises RuntimeError when the delivery could not run
    (the entries stay approved; approving again sends them)."""
    from ml_connector.core import engine

    moved = _move(rt, ids, APPROVED, "approval.approved", user)
    with rt.db.read() as s:
        send = list(s.scalars(select(OutboxRow.id).where(OutboxRow.id.in_(sorted(set(ids))[:5000]),
                                                         OutboxRow.state == APPROVED)))
    return moved, (engine.replay(send) if send else {})


def reject(rt: Any, ids: list[int], user: str, note: str) -> list[int]:
    """Reject the waiting entries of `ids` with `note`: never written (audited)."""
    return _move(rt, ids, REJECTED, "approval.rejected", user, note)


def recheck(rt: Any, ids: list[int], user: str) -> int:
    """Ask the target's verdict again on the waiting entries of `ids` (audited as `approval.checked`
    with the user): how many were checked."""
    groups: dict[tuple[str, str, str], list[int]] = {}
    with rt.db.read() as s:
        for chunk in in_chunks(sorted(set(ids))):
            for r in s.scalars(select(OutboxRow).where(OutboxRow.id.in_(chunk), OutboxRow.state == WAITING)):
                groups.setdefault((r.flow, r.stream, r.run_id), []).append(r.id)
    done = 0
    for (flow, stream, run_id), grp in groups.items():
        f = rt.flow(flow)
        st = f.stream(stream)
        ctx = RunContext(rt, flow, stream, run_id, "approval", dict(getattr(f.cfg, "options", {}) or {}))
        done += calls.on_behalf(rt.db, run_id, flow, stream, "recheck", check_entries, ctx, st, grp, user=user)
    return done


def waiting_count(s: Session, flow: str) -> int:
    from sqlalchemy import func

    return int(s.scalar(select(func.count()).select_from(OutboxRow).where(
        OutboxRow.flow == flow, OutboxRow.state.in_((WAITING, APPROVED)))) or 0)
