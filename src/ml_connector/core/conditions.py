"""Conditions that need a person, checked periodically, alerted when they start and when they clear.

- `records.failed`: a flow has records whose write failed or is uncertain (waiting for a replay);
- `records.parked`: records of a flow parked (waiting for a mapping or master data) longer than
  `alerts.parked_after`;
- `stream.stale`: a scheduled stream without a successful run for longer than `alerts.stale_factor`
  times its schedule's period (its freshness target);
- `flow.paused`: a flow paused after repeated failed runs (core/flow_pause.py opens it, with its alert,
  when it pauses the flow; it clears when someone resumes the flow);
- `token.failed`: a connection whose latest token event in the audit trail is a failed refresh
  (it clears with the next token refreshed or issued);
- `budget.low`: an API rate budget whose current window is used beyond `alerts.budget_threshold`
  (the budgets this process uses, or shares through a Postgres database).

Each open condition is a row of mlc_alert_conditions, so that every control-plane process agrees on
what is open: the alert goes out when the row is created, `<event>.cleared` when it is deleted (both
through the Alerter's throttle and outbox, in the same transaction). Knows no external system: it reads
the flows' configuration, the runs and the outbox.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Float, String, func, select
from sqlalchemy.orm import Mapped, mapped_column

from ml_connector.core import ratelimit
from ml_connector.core.alerts import CLEARED, Alert, Alerter, duration_text
from ml_connector.core.models import AuditRow, Base, FlowStateRow, OutboxRow, RunRow
from ml_connector.core.redact import redact

log = logging.getLogger(__name__)

#: The events whose conditions this module checks (each also sends `<event>.cleared`).
CONDITION_EVENTS = ("records.failed", "records.parked", "stream.stale", "flow.paused", "token.failed",
                    "budget.low")
TOKEN_EVENTS_SCANNED = 2000  # the latest token events read to find each connection's last one


class AlertConditionRow(Base):
    """An open condition (migration 0013_console_users): `key` is event|subject."""

    __tablename__ = "mlc_alert_conditions"
    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    opened_at: Mapped[float] = mapped_column(Float)


def schedule_period(schedule: Any, now: datetime) -> float | None:
    """Seconds between two runs of a schedule (a cron's: between its next two times)."""
    if schedule is None:
        return None
    if schedule.cron:
        from croniter import croniter

        it = croniter(schedule.cron, now)
        first, second = it.get_next(datetime), it.get_next(datetime)
        return float((second - first).total_seconds())
    return float(schedule.seconds)


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def current(rt: Any, now: float) -> dict[str, Alert]:
    """The conditions that hold now, keyed event|subject."""
    cfg = rt.config.alerts
    at = datetime.fromtimestamp(now, UTC)
    out: dict[str, Alert] = {}
    with rt.db.read() as s:
        edge = at - timedelta(seconds=cfg.parked_after)
        for flow, n, oldest in s.execute(
                select(OutboxRow.flow, func.count(), func.min(OutboxRow.updated_at))
                .where(OutboxRow.state == "parked", OutboxRow.updated_at < edge).group_by(OutboxRow.flow)):
            waited = (at - _aware(oldest)).total_seconds()
            out[f"records.parked|{flow}"] = Alert(
                event="records.parked", subject=flow, flow=flow, at=now, details={"count": int(n)},
                message=f"{n} record(s) of {flow} have waited for a mapping or master data for more than "
                        f"{duration_text(cfg.parked_after)} (the oldest {duration_text(waited)}): see the "
                        "console's inbox")
        for flow, n, last_error in s.execute(
                select(OutboxRow.flow, func.count(), func.max(OutboxRow.last_error))
                .where(OutboxRow.state.in_(("failed", "uncertain"))).group_by(OutboxRow.flow)):
            out[f"records.failed|{flow}"] = Alert(
                event="records.failed", subject=flow, flow=flow, at=now, details={"count": int(n)},
                message=f"{n} record(s) of {flow} failed and wait for a replay "
                        f"(e.g. {redact(last_error or '')[:200]}): see the console's inbox")
        for (flow,) in s.execute(select(FlowStateRow.flow).where(FlowStateRow.paused.is_(True))):
            out[f"flow.paused|{flow}"] = Alert(
                event="flow.paused", subject=flow, flow=flow, at=now,
                message=f"Flow {flow} is paused after repeated failed runs: fix the cause, then "
                        f"`ml-connector resume {flow}`")
        out.update(_tokens(s, now))
        for name, flow_cfg in rt.config.flows.items():
            period = schedule_period(getattr(flow_cfg, "schedule", None), at)
            if not period:
                continue
            target = period * cfg.stale_factor
            for stream in flow_cfg.streams:
                last = s.scalar(select(func.max(RunRow.finished_at)).where(
                    RunRow.flow == name, RunRow.stream == stream, RunRow.status == "succeeded"))
                if last is None:
                    continue  # never synced: nothing to be stale against yet (a failed first run alerts itself)
                age = (at - _aware(last)).total_seconds()
                if age > target:
                    out[f"stream.stale|{name}/{stream}"] = Alert(
                        event="stream.stale", subject=f"{name}/{stream}", flow=name, stream=stream, at=now,
                        details={"last_success_age_seconds": int(age), "freshness_target_seconds": int(target)},
                        message=f"{name} / {stream} has not synced successfully for {duration_text(age)} "
                                f"(its target: {duration_text(target)})")
    out.update(_budgets(rt, cfg.budget_threshold, now))
    return out


def _tokens(s: Any, now: float) -> dict[str, Alert]:
    """Connections whose latest token event is a failed refresh (the OAuth client audits each)."""
    rows = s.execute(select(AuditRow.event, AuditRow.detail)
                     .where(AuditRow.event.in_(("token.failed", "token.refreshed", "token.issued")))
                     .order_by(AuditRow.id.desc()).limit(TOKEN_EVENTS_SCANNED)).all()
    latest: dict[str, Any] = {}
    for r in rows:
        conn = str((r.detail or {}).get("connection") or "")
        if conn and conn not in latest:
            latest[conn] = r
    out: dict[str, Alert] = {}
    for conn, r in sorted(latest.items()):
        if r.event != "token.failed":
            continue
        d = r.detail or {}
        why = redact(str(d.get("message") or d.get("error") or "refused"))[:300]
        refused = bool(d.get("refused"))
        out[f"token.failed|{conn}"] = Alert(
            event="token.failed", subject=conn, at=now,
            details={"connection": conn, "status": d.get("status"), "refused": refused},
            message=f"Connection {conn}: the token could not be refreshed ({why})"
                    + ("; the credential was refused: store a valid one with `ml-connector secrets set`"
                       if refused else "; retried automatically"))
    return out


def _budgets(rt: Any, threshold: float, now: float) -> dict[str, Alert]:
    """API rate budgets whose current window is used beyond `threshold`."""
    out: dict[str, Alert] = {}
    for provider, key, used, limit in ratelimit.usage(ratelimit.budgets_for(rt.db)):
        # A limit of 1 is a pacing spacer (one call per short gap), not a budget that runs out.
        if limit <= 1 or used < threshold * limit:
            continue
        key = redact(key)  # a host and client, never a credential: masked all the same
        out[f"budget.low|{provider}/{key}"] = Alert(
            event="budget.low", subject=f"{provider}/{key}", at=now,
            details={"provider": provider, "used": used, "limit": limit},
            message=f"API budget of {provider} ({key}) is {used}/{limit} used in its window: calls will wait "
                    "for it; spread the schedules or ask the provider for a higher limit")
    return out


def sweep(rt: Any, alerter: Alerter, now: float) -> list[Alert]:
    """Open the conditions that started, clear those that ended; the alerts admitted (already dispatched)."""
    holding = current(rt, now)
    admitted: list[Alert] = []
    with rt.db.session() as s:
        known = {r.key: r for r in s.scalars(select(AlertConditionRow))}
        for key, alert in holding.items():
            if key in known:
                continue
            s.add(AlertConditionRow(key=key, opened_at=now))
            if alerter.admit(s, alert):
                admitted.append(alert)
        for key, row in known.items():
            if key in holding:
                continue
            event, _, subject = key.partition("|")
            s.delete(row)
            flow, _, stream = subject.partition("/")
            if event in ("token.failed", "budget.low"):
                flow, stream = "", ""  # their subject is a connection or provider/key, not a flow
            cleared = Alert(event=event + CLEARED, subject=subject, flow=flow or None, stream=stream or None, at=now,
                            message=f"resolved: {event} for {subject} (open for {duration_text(now - row.opened_at)})")
            if alerter.admit(s, cleared):
                admitted.append(cleared)
    for alert in admitted:
        alerter.dispatch(alert)
    return admitted


class ConditionWatcher:
    """Checks the conditions every `alerts.check_every` in a daemon thread (one per control-plane process;
    the database rows make several processes agree)."""

    def __init__(self, rt: Any, alerter: Alerter) -> None:
        self.rt, self.alerter = rt, alerter
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="alert-conditions", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        import time

        while not self._stop.wait(float(self.rt.config.alerts.check_every)):
            try:
                sweep(self.rt, self.alerter, time.time())
            except Exception:  # a database hiccup: the next sweep tries again
                log.warning("alerts: checking the conditions failed", exc_info=True)


def watcher_for(rt: Any) -> ConditionWatcher | None:
    """A watcher when alerts are configured for at least one condition's event."""
    alerter = getattr(rt, "alerts", None)
    if alerter is None or not any(alerter.wants(e) for e in CONDITION_EVENTS):
        return None
    return ConditionWatcher(rt, alerter)
