"""Prometheus metrics at `/metrics` (the official prometheus_client), read from the database at scrape.

Why a collector that reads the tables (and not counters incremented in the engine): the records
moved, failures and queue depth are already counted, durably, by the outbox, runs and token
tables, shared by every worker process; a scrape of any control-plane process sees all of them,
and a restart loses nothing. Everything is labelled by flow and stream (or connection), so a
new integration is measured without code here. `/metrics` is guarded like the JSON API (bearer
token of any role unless the server is loopback-only).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from ml_connector.core.models import OutboxRow, RateBudgetRow, RateGrantRow, RunRow, TokenRow
from ml_connector.server.agents.models import AgentRow

#: Run durations (seconds) are bucketed at these bounds.
DURATION_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)
#: Only the recent runs feed the duration histogram (the runs table grows without bound).
RECENT_RUNS = 5000


def _seconds(run: Any) -> float | None:
    if run.finished_at is None or run.started_at is None:
        return None
    return max(0.0, (run.finished_at - run.started_at).total_seconds())


class PlatformCollector(Collector):
    def __init__(self, rt: Any) -> None:
        self.rt = rt

    def collect(self) -> Iterator[Any]:
        moved = CounterMetricFamily("mlc_records_moved", "Writes confirmed by the target (outbox entries posted)",
                                    labels=["flow", "stream"])
        failed = GaugeMetricFamily("mlc_records_failed", "Records whose write failed or is uncertain, waiting for "
                                   "a replay", labels=["flow", "stream"])
        parked = GaugeMetricFamily("mlc_records_parked", "Records waiting for a mapping or master data",
                                   labels=["flow", "stream"])
        queue = GaugeMetricFamily("mlc_queue_depth", "Writes stored and not yet confirmed (pending or in flight)",
                                  labels=["flow", "stream"])
        runs = CounterMetricFamily("mlc_runs", "Sync runs by final status", labels=["flow", "stream", "status"])
        durations = HistogramMetricFamily("mlc_run_duration_seconds", "Duration of the recent finished runs",
                                          labels=["flow", "stream"])
        refreshes = CounterMetricFamily("mlc_token_refreshes", "OAuth token refreshes per connection",
                                        labels=["connection"])
        agent_lag = GaugeMetricFamily("mlc_agent_seconds_since_seen", "Seconds since each agent was last heard from",
                                      labels=["agent", "site", "state"])
        budget = GaugeMetricFamily("mlc_rate_budget_in_use", "Calls counted against each shared rate budget's "
                                   "window now (Postgres scale-out)", labels=["budget"])
        budget_limit = GaugeMetricFamily("mlc_rate_budget_limit", "Each shared rate budget's limit per window, "
                                         "as the processes using it recorded it (Postgres scale-out)",
                                         labels=["budget"])
        with self.rt.db.read() as s:
            by_state: dict[tuple[str, str], dict[str, int]] = {}
            for flow, stream, state, n in s.execute(
                    select(OutboxRow.flow, OutboxRow.stream, OutboxRow.state, func.count())
                    .group_by(OutboxRow.flow, OutboxRow.stream, OutboxRow.state)):
                by_state.setdefault((flow, stream), {})[state] = int(n)
            for (flow, stream), c in sorted(by_state.items()):
                labels = [flow, stream]
                moved.add_metric(labels, c.get("posted", 0))
                failed.add_metric(labels, c.get("failed", 0) + c.get("uncertain", 0))
                parked.add_metric(labels, c.get("parked", 0))
                queue.add_metric(labels, c.get("pending", 0) + c.get("in_flight", 0))
            for flow, stream, status, n in s.execute(
                    select(RunRow.flow, RunRow.stream, RunRow.status, func.count())
                    .group_by(RunRow.flow, RunRow.stream, RunRow.status)):
                runs.add_metric([flow, stream, status], n)
            per_stream: dict[tuple[str, str], list[float]] = {}
            for run in s.scalars(select(RunRow).where(RunRow.finished_at.is_not(None))
                                 .order_by(RunRow.started_at.desc()).limit(RECENT_RUNS)):
                secs = _seconds(run)
                if secs is not None:
                    per_stream.setdefault((run.flow, run.stream), []).append(secs)
            for (flow, stream), values in sorted(per_stream.items()):
                buckets = [(str(b), float(sum(v <= b for v in values))) for b in DURATION_BUCKETS]
                buckets.append(("+Inf", float(len(values))))
                durations.add_metric([flow, stream], buckets, sum(values))
            for conn, n in s.execute(select(TokenRow.connection, TokenRow.refresh_count)):
                refreshes.add_metric([conn], n or 0)
            now = time.time()
            for agent_id, site, state, seen in s.execute(
                    select(AgentRow.id, AgentRow.site, AgentRow.state, AgentRow.last_seen_at)):
                if seen is not None:
                    agent_lag.add_metric([agent_id, site, state], max(0.0, now - seen))
            for name, n in s.execute(select(RateGrantRow.budget, func.count())
                                     .where(RateGrantRow.until > datetime.now(UTC)).group_by(RateGrantRow.budget)):
                budget.add_metric([name], n)
            for name, limit in s.execute(select(RateBudgetRow.budget, RateBudgetRow.limit)):
                budget_limit.add_metric([name], limit)
        yield from (moved, failed, parked, queue, runs, durations, refreshes, agent_lag, budget, budget_limit)


def metrics_router(rt: Any, admin_dep: list[Any]) -> APIRouter:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PlatformCollector(rt))
    router = APIRouter(dependencies=admin_dep)

    @router.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
