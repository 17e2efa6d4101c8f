"""What the console pages show, read from the platform's generic tables (flows, runs, ledger,
outbox, audit, agents): no page knows a system or a flow by name."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select

from ml_connector.core import approval, outbox, record_work
from ml_connector.core.models import AuditRow, OutboxRow, RecordRow, RunRow
from ml_connector.core.redact import redact
from ml_connector.server.console.catalogue import Cause, classify

log = logging.getLogger(__name__)

FAILED_STATES = ("failed", "uncertain")


def _aware(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def next_run(schedule: Any, last_started: datetime | None, now: datetime) -> datetime | None:
    """When a stream's schedule starts it next (None: no schedule)."""
    if schedule is None:
        return None
    if schedule.cron:
        from croniter import croniter

        return _aware(croniter(schedule.cron, now).get_next(datetime))
    if last_started is None:
        return now
    return max(now, last_started + timedelta(seconds=float(schedule.seconds)))


@dataclass
class StreamView:
    name: str
    last_run: RunRow | None
    next_run: datetime | None
    #: No successful run for longer than its freshness target (stale_factor times the schedule's period).
    stale: bool = False


@dataclass
class FlowView:
    name: str
    source: str
    target: str
    schedule: str | None
    streams: list[StreamView]
    moved: int
    failed: int
    parked: int
    pending: int
    in_ledger: int


@dataclass
class Attention:
    """Something that needs a person, with where to go."""

    what: str
    href: str
    severity: str = "warning"  # error | warning


def schedule_text(cfg: Any) -> str | None:
    sched = getattr(cfg, "schedule", None)
    if sched is None:
        return None
    return f"cron {sched.cron}" if sched.cron else f"every {int(sched.seconds)} s"


def overview(rt: Any) -> tuple[list[FlowView], list[Attention]]:
    from ml_connector.core.conditions import schedule_period

    now = datetime.now(UTC)
    alerts_cfg = getattr(rt.config, "alerts", None)
    stale_factor = float(getattr(alerts_cfg, "stale_factor", 2.0)) if alerts_cfg is not None else 2.0
    flows: list[FlowView] = []
    attention: list[Attention] = []
    with rt.db.read() as s:
        for name, cfg in rt.config.flows.items():
            counts = outbox.counts(s, flow=name)
            streams = []
            for stream in cfg.streams:
                last = s.scalars(select(RunRow).where(RunRow.flow == name, RunRow.stream == stream)
                                 .order_by(RunRow.started_at.desc()).limit(1)).first()
                sv = StreamView(stream, last, next_run(getattr(cfg, "schedule", None),
                                                       _aware(last.started_at) if last else None, now))
                period = schedule_period(getattr(cfg, "schedule", None), now)
                if period:
                    ok = s.scalar(select(func.max(RunRow.finished_at)).where(
                        RunRow.flow == name, RunRow.stream == stream, RunRow.status == "succeeded"))
                    sv.stale = ok is not None and (now - ok.replace(tzinfo=ok.tzinfo or UTC)).total_seconds() \
                        > period * stale_factor
                    if sv.stale:
                        attention.append(Attention(f"{name} / {stream} is stale: no successful run since "
                                                   f"{str(ok)[:16]}", f"runs?flow={name}"))
                streams.append(sv)
                if last is not None and last.status == "failed":
                    attention.append(Attention(f"The last run of {name} / {stream} failed: "
                                               f"{redact(last.error or '')[:200]}", f"runs/{last.run_id}", "error"))
            in_ledger = int(s.scalar(select(func.count()).select_from(RecordRow).where(RecordRow.flow == name)) or 0)
            failed = failed_count(s, name)
            view = FlowView(name, cfg.source, cfg.target, schedule_text(cfg), streams, counts.get("posted", 0),
                            failed, counts.get("parked", 0), counts.get("pending", 0) + counts.get("in_flight", 0),
                            in_ledger)
            flows.append(view)
            if failed:
                attention.append(Attention(f"{failed} record(s) of {name} failed", f"inbox?flow={name}", "error"))
            if view.parked:
                attention.append(Attention(f"{view.parked} record(s) of {name} wait for a mapping",
                                           f"inbox?flow={name}"))
            waiting = approval.waiting_count(s, name)
            if waiting:
                attention.append(Attention(f"{waiting} record(s) of {name} wait for approval",
                                           f"approvals?flow={name}"))
        for agent in agents(s):
            if agent["state"] == "offline":
                attention.append(Attention(f"Agent {agent['name'] or agent['id']} ({agent['site']}) is offline",
                                           "agents", "error"))
    attention.sort(key=lambda a: a.severity != "error")
    return flows, attention


def failed_count(s: Any, flow: str) -> int:
    """What the inbox lists as failed (outbox.failures): failed, uncertain, and in flight after the run ended."""
    ended = select(RunRow.run_id).where(RunRow.status.in_(RunRow.ENDED))
    return int(s.scalar(select(func.count()).select_from(OutboxRow).where(
        OutboxRow.flow == flow,
        or_(OutboxRow.state.in_(FAILED_STATES), and_(OutboxRow.state == "in_flight", OutboxRow.run_id.in_(ended)))))
        or 0)


def runs(rt: Any, flow: str | None = None, limit: int = 100) -> list[RunRow]:
    with rt.db.read() as s:
        q = select(RunRow).order_by(RunRow.started_at.desc()).limit(limit)
        if flow:
            q = q.where(RunRow.flow == flow)
        return list(s.scalars(q))


def run_detail(rt: Any, run_id: str) -> tuple[RunRow | None, list[AuditRow], dict[str, int]]:
    with rt.db.read() as s:
        row = s.get(RunRow, run_id)
        if row is None:
            return None, [], {}
        events = list(s.scalars(select(AuditRow).where(AuditRow.run_id == run_id).order_by(AuditRow.id).limit(500)))
        return row, events, outbox.counts(s, run_id=run_id)


def run_calls(rt: Any, run_id: str) -> dict[str, int]:
    """The calls a run made itself, per system (its `run.calls` events, core/calls.py)."""
    return _calls(rt, run_id)[0]


def run_replay_calls(rt: Any, run_id: str) -> dict[str, int]:
    """The calls made since by replays and re-checks of the run's records, per system (core/calls.py)."""
    return _calls(rt, run_id)[1]


def _calls(rt: Any, run_id: str) -> tuple[dict[str, int], dict[str, int]]:
    from ml_connector.core import calls

    with rt.db.read() as s:
        return calls.of_runs(s, [run_id], rt.config.connections).get(run_id, ({}, {}))


def duration(row: RunRow) -> str:
    if row.finished_at is None:
        return "running"
    secs = (_aware(row.finished_at) - _aware(row.started_at)).total_seconds()  # type: ignore[operator]
    return f"{secs:.1f} s"


@dataclass
class Journey:
    query: str
    records: list[tuple[str, str, str]] = field(default_factory=list)  # (flow, stream, source key)
    ledger: list[RecordRow] = field(default_factory=list)
    writes: list[OutboxRow] = field(default_factory=list)
    events: list[AuditRow] = field(default_factory=list)
    similar: list[tuple[str, str, str]] = field(default_factory=list)


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def journey(rt: Any, query: str) -> Journey:
    """Everything about the records an id names: a source key, a target id or an idempotency key of any
    flow (a bill id, a document number, a vendor number ...), events in the order they happened."""
    q = query.strip()
    j = Journey(q)
    if not q:
        return j
    with rt.db.read() as s:
        keys: set[tuple[str, str, str]] = set()
        for r in s.execute(select(OutboxRow.flow, OutboxRow.stream, OutboxRow.source_key).where(
                or_(OutboxRow.source_key == q, OutboxRow.target_id == q, OutboxRow.idempotency_key == q)).limit(50)):
            keys.add((r[0], r[1], r[2]))
        for r in s.execute(select(RecordRow.flow, RecordRow.stream, RecordRow.source_key).where(
                or_(RecordRow.source_key == q, RecordRow.target_id == q)).limit(50)):
            keys.add((r[0], r[1], r[2]))
        if not keys and len(q) >= 3:
            j.similar = sorted({(r[0], r[1], r[2]) for r in s.execute(
                select(OutboxRow.flow, OutboxRow.stream, OutboxRow.source_key).where(
                    or_(OutboxRow.source_key.like(_like(q), escape="\\"),
                        OutboxRow.target_id.like(_like(q), escape="\\"))).limit(20))})
        j.records = sorted(keys)
        for flow, stream, key in j.records:
            rec = s.get(RecordRow, (flow, stream, key))
            if rec is not None:
                j.ledger.append(rec)
            j.writes.extend(s.scalars(select(OutboxRow).where(
                OutboxRow.flow == flow, OutboxRow.stream == stream, OutboxRow.source_key == key)
                .order_by(OutboxRow.id)))
        sources = {f"{flow}:{key}" for flow, _, key in j.records}
        targets = {w.target_id for w in j.writes if w.target_id} | {r.target_id for r in j.ledger if r.target_id}
        conds = []
        if sources:
            conds.append(AuditRow.source.in_(sorted(sources)))
        if targets:
            conds.append(AuditRow.target.in_(sorted(targets)))
            conds.extend(AuditRow.target.like("%:" + t.replace("%", "\\%").replace("_", "\\_"), escape="\\")
                         for t in sorted(targets)[:20])
        if conds:
            j.events = list(s.scalars(select(AuditRow).where(or_(*conds)).order_by(AuditRow.at, AuditRow.id)
                                      .limit(1000)))
    return j


@dataclass
class InboxGroup:
    cause: Cause
    rows: list[OutboxRow]
    #: outbox id → the person it is assigned to (core/record_work.py)
    assignees: dict[int, str] = field(default_factory=dict)


def inbox(rt: Any, flow: str | None = None) -> list[InboxGroup]:
    """Failed, uncertain, stale in-flight and parked records, grouped by what blocks them."""
    with rt.db.read() as s:
        rows = outbox.failures(s, flow=flow, limit=2000) + outbox.parked(s, flow=flow, limit=2000)
        work = record_work.work_of(s, rows)
    groups: dict[str, InboxGroup] = {}
    for r in rows:
        cause = classify(r.state, r.parked_on, r.last_error)
        key = f"{cause.key}|{r.flow}" if cause.mapping else cause.key
        g = groups.setdefault(key, InboxGroup(cause, []))
        g.rows.append(r)
        if work[r.id].assignee:
            g.assignees[r.id] = work[r.id].assignee
    return sorted(groups.values(), key=lambda g: (-len(g.rows), g.cause.title))


def agents(s: Any) -> list[dict[str, Any]]:
    from ml_connector.server.agents.models import AgentRow

    now = time.time()
    rows = list(s.scalars(select(AgentRow).order_by(AgentRow.site, AgentRow.name)))
    allow: dict[str, dict[str, Any]] = {}
    if rows:
        # The latest allow-list each agent reported (at its start): what it serves of each system.
        for ev in s.scalars(select(AuditRow).where(AuditRow.event == "agent.allow_list",
                                                   AuditRow.source.in_([a.id for a in rows])).order_by(AuditRow.id)):
            systems = (ev.detail or {}).get("systems")
            if isinstance(systems, dict):
                allow[str(ev.source)] = {"systems": systems, "at": ev.at}
    return [{"id": a.id, "name": a.name, "site": a.site, "hostname": a.hostname, "version": a.version,
             "state": a.state, "last_seen": a.last_seen_at,
             "ago": None if a.last_seen_at is None else max(0.0, now - a.last_seen_at),
             "allow": allow.get(a.id)}
            for a in rows]


def connection_secrets(cfg: Any) -> list[tuple[str, str]]:
    """(setting, vault secret name) of every `*_secret` setting of a connection (the names, never values)."""
    out: list[tuple[str, str]] = []
    data = cfg.model_dump() if hasattr(cfg, "model_dump") else dict(cfg)

    def walk(d: Any, prefix: str) -> None:
        if isinstance(d, dict):
            for k, v in d.items():
                if str(k).endswith("_secret") and isinstance(v, str) and v:
                    out.append((prefix + str(k), v))
                else:
                    walk(v, f"{prefix}{k}.")

    walk(data, "")
    return out


@dataclass
class MappingTable:
    flow: str
    name: str
    values: list[tuple[str, str]]
    #: source values records are parked on (no mapping yet), with how many records wait for each
    waiting: list[tuple[str, int]]


def mapping_tables(rt: Any, flow: str) -> list[MappingTable]:
    """The mapping tables of a flow: those its streams read and those holding values, with the values
    that parked records wait for."""
    from ml_connector.core.models import MappingRow

    names: set[str] = set()
    try:
        for st in rt.flow(flow).streams().values():
            names.update(st.mapping_tables)
    except Exception:  # a flow that cannot be built here still shows its stored tables
        log.warning("mapping tables of flow %s: its streams could not be built", flow, exc_info=True)
    with rt.db.read() as s:
        stored: dict[str, list[tuple[str, str]]] = {}
        for r in s.scalars(select(MappingRow).where(MappingRow.flow == flow)
                           .order_by(MappingRow.table, MappingRow.source_value)):
            stored.setdefault(r.table, []).append((r.source_value, r.target_value))
        waits: dict[str, dict[str, int]] = {}
        for parked_on, n in s.execute(select(OutboxRow.parked_on, func.count()).where(
                OutboxRow.flow == flow, OutboxRow.state == "parked").group_by(OutboxRow.parked_on)):
            table, sep, value = str(parked_on or "").partition(":")
            if sep and table in names | set(stored):
                waits.setdefault(table, {})[value] = int(n)
    return [MappingTable(flow, name, stored.get(name, []), sorted(waits.get(name, {}).items()))
            for name in sorted(names | set(stored))]


@dataclass
class BudgetView:
    provider: str
    key: str
    used: int
    limit: int
    low: bool  # used beyond alerts.budget_threshold (the `budget.low` alert's figure)

    @property
    def percent(self) -> int:
        return round(100 * self.used / self.limit) if self.limit else 0


def budgets(rt: Any) -> list[BudgetView]:
    """Each provider's API rate budget and how much of its current window is used: shared through the
    database on Postgres (every worker's calls), this process's otherwise (SQLite: one worker)."""
    from ml_connector.core import ratelimit

    alerts_cfg = getattr(rt.config, "alerts", None)
    threshold = float(getattr(alerts_cfg, "budget_threshold", 0.9)) if alerts_cfg is not None else 0.9
    try:
        found = ratelimit.usage(ratelimit.budgets_for(rt.db))
    except Exception:  # the page still shows the rest
        log.warning("could not read the rate budgets", exc_info=True)
        return []
    # A limit of 1 is a pacing spacer (one call per short gap), not a budget that runs out.
    return sorted((BudgetView(p, redact(k), used, limit, used >= threshold * limit)
                   for p, k, used, limit in found if limit > 1), key=lambda b: (b.provider, b.key))


@dataclass
class TokenHealth:
    """A connection's token or session as the platform holds it, and its latest token events."""

    tokens: list[dict[str, Any]] = field(default_factory=list)  # kind, expires_at, refreshed_at, refreshes
    last_event: AuditRow | None = None
    last_failure: AuditRow | None = None


#: How many recent token events the connections page reads (the latest per connection is among them).
TOKEN_EVENTS_READ = 2000


def token_health(rt: Any) -> dict[str, TokenHealth]:
    """Per configured connection: its stored tokens or sessions (expiry, last refresh; never a value) and
    its latest token event and refresh failure (the OAuth clients audit each)."""
    from ml_connector.core.models import TokenRow

    names = list(rt.config.connections)
    out = {n: TokenHealth() for n in names}
    with rt.db.read() as s:
        for key, expires, refreshed, count in s.execute(select(
                TokenRow.connection, TokenRow.expires_at, TokenRow.refreshed_at, TokenRow.refresh_count)):
            parts = str(key).split(":")
            # an OAuth token is kept under the connection's name, a session as <kind>:<connection>:<digest>
            owner = key if key in out else next((p for p in parts[1:2] if p in out), None)
            if owner is None:
                continue
            out[owner].tokens.append({"kind": parts[0] if owner != key else "OAuth token",
                                      "expires_at": float(expires), "refreshed_at": refreshed,
                                      "refreshes": int(count or 0), "expired": float(expires) < time.time()})
        for ev in s.scalars(select(AuditRow).where(AuditRow.event.like("token.%"))
                            .order_by(AuditRow.id.desc()).limit(TOKEN_EVENTS_READ)):
            conn = str((ev.detail or {}).get("connection") or "")
            h = out.get(conn)
            if h is None:
                continue
            if h.last_event is None:
                h.last_event = ev
            if h.last_failure is None and ev.outcome == "failed":
                h.last_failure = ev
    return out
