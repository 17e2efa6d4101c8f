"""A flow that fails repeatedly is paused: after `pause_after` failed runs in a row (of any of its
streams) its schedule starts nothing and `sync` refuses it, until `ml-connector resume FLOW`.

One run before that, a `flow.failing` warning alert; at the pause a `flow.paused` alert, whose
condition row (core/conditions.py: a paused flow is a condition) is stored with it, so that the
condition sweep does not alert it a second time and sends `flow.paused.cleared` once the flow is
resumed. Pausing and resuming are audited.
"""

from __future__ import annotations

import getpass
import logging
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from ml_connector.core import audit
from ml_connector.core.alerts import Alert, Alerter
from ml_connector.core.conditions import AlertConditionRow
from ml_connector.core.models import FlowStateRow, RunRow

log = logging.getLogger(__name__)


class FlowPaused(RuntimeError):
    def __init__(self, flow: str, reason: str | None) -> None:
        super().__init__(f"flow {flow} is paused ({reason or 'repeated failed runs'}): fix the cause, then "
                         f"`ml-connector resume {flow}`")
        self.flow = flow


def state(sess: Any, flow: str) -> FlowStateRow | None:
    row = sess.get(FlowStateRow, flow)
    return row if row is not None and row.paused else None


def paused_flows(sess: Any) -> list[FlowStateRow]:
    return list(sess.scalars(select(FlowStateRow).where(FlowStateRow.paused.is_(True)).order_by(FlowStateRow.flow)))


def check(rt: Any, flow: str) -> None:
    """Raise FlowPaused when `flow` is paused."""
    with rt.db.read() as sess:
        row = state(sess, flow)
        if row is not None:
            raise FlowPaused(flow, row.reason)


def failed_in_a_row(sess: Any, flow: str, limit: int) -> int:
    """Failed runs of `flow` in a row, the latest first (since it was last resumed)."""
    q = select(RunRow.status).where(RunRow.flow == flow, RunRow.status.in_(RunRow.ENDED))
    row = sess.get(FlowStateRow, flow)
    if row is not None and row.resumed_at:
        q = q.where(RunRow.started_at >= datetime.fromtimestamp(row.resumed_at, UTC))
    rows = sess.scalars(q.order_by(RunRow.started_at.desc(), RunRow.run_id.desc()).limit(limit)).all()
    n = 0
    for status in rows:
        if status != "failed":
            break
        n += 1
    return n


def after_run(rt: Any, flow: str, run_id: str) -> None:
    """After a run of `flow` ended: warn one failed run before the pause, pause at `pause_after`."""
    cfg = rt.config.flows.get(flow)
    limit = getattr(cfg, "pause_after", None) if cfg is not None else None
    if not limit:
        return
    alerts: Alerter | None = getattr(rt, "alerts", None)
    out: list[Alert] = []
    now = time.time()
    with rt.db.session() as sess:
        n = failed_in_a_row(sess, flow, int(limit))
        if n == 0 or state(sess, flow) is not None:
            return
        if n >= int(limit):
            reason = f"{n} failed runs in a row, the last {run_id}"
            row = sess.get(FlowStateRow, flow)
            if row is None:
                sess.add(FlowStateRow(flow=flow, paused=True, paused_at=now, reason=reason))
            else:
                row.paused, row.paused_at, row.reason = True, now, reason
            audit.record(sess, "flow.paused", outcome="paused", flow=flow, run_id=run_id,
                         detail={"failed_runs": n, "pause_after": int(limit)})
            log.warning("flow %s paused after %d failed runs in a row; `ml-connector resume %s` ends it",
                        flow, n, flow)
            message = (f"Flow {flow} is paused: {reason}; fix the cause, then `ml-connector resume {flow}`")
            if alerts is not None and alerts.wants("flow.paused"):
                key = f"flow.paused|{flow}"
                if sess.get(AlertConditionRow, key) is None:
                    sess.add(AlertConditionRow(key=key, opened_at=now))
                a = Alert(event="flow.paused", subject=flow, flow=flow, run_id=run_id, at=now, message=message,
                          details={"failed_runs": n})
                if alerts.admit(sess, a):
                    out.append(a)
        elif n == int(limit) - 1 and alerts is not None and alerts.wants("flow.failing"):
            a = Alert(event="flow.failing", subject=flow, flow=flow, run_id=run_id, at=now,
                      message=(f"Flow {flow} failed {n} run(s) in a row: one more failed run pauses it "
                               f"(pause_after {limit})"), details={"failed_runs": n, "pause_after": int(limit)})
            if alerts.admit(sess, a):
                out.append(a)
    if alerts is not None:
        for a in out:
            alerts.dispatch(a)


def resume(rt: Any, flow: str, *, by: str | None = None) -> bool:
    """Resume a paused flow (audited with who did it). False when it was not paused."""
    with rt.db.session() as sess:
        row = state(sess, flow)
        if row is None:
            return False
        since = row.paused_at
        row.paused, row.paused_at, row.reason, row.resumed_at = False, None, None, time.time()
        audit.record(sess, "flow.resumed", flow=flow,
                     detail={"by": by or _user(), "paused_for_seconds": round(time.time() - since) if since else None})
    return True


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (a container without a passwd entry)
        return "unknown"
