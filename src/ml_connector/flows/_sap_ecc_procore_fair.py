"""Fair scheduling of one company budget over Procore's projects (pair sap_ecc_procore; the leading
underscore keeps it out of the flow pairs).

The 150+ projects of a company share one hourly request budget, also spent by webhooks' syncs, the
drift check and other flows. A run of `purchase_orders` or `cost_allocations` that cannot write
everything within what is left of it must not serve the first projects every time while the last
ones wait. `FairProjects` wraps the stream's SAP source:

- it reads SAP in full (SAP is not the budget being shared; the sources re-read their whole window
  every run anyway), maps each record as the stream does and keeps the records the ledger says are new
  or changed, queued per Procore project in source-key order;
- it asks the Procore connection what is left of the company's hourly budget
  (`ProcoreClient.hourly_budget`: Procore's own rate-limit headers, and the shared budget every
  process of this installation draws from), keeps the flow's `budget_reserve` of it for others, and
  admits records round-robin, one per project per round, starting at the project after the one the
  last run served last (`after`, kept in the stream's cursor), each costing the requests its write
  takes (the target's `requests_for`), until the next one does not fit; `writes_per_run` (optional)
  caps the number of records as well;
- the admitted records are a page; the next page admits the next part of the same rotation once
  budget is back (what earlier pages admitted and is not written yet counts as spent). When nothing
  fits, the run waits while its own writes are in flight or while Procore's hourly window frees
  budget within `budget_wait` seconds (a rolling window gives it back as its oldest requests age
  out: ending the run then would waste the budget while the next one starts); otherwise the budget
  is spent and the run ends `waiting` (not failed), saying how many wait and where the next run
  starts. Those records were not staged: the next run reads them again, still new or changed, so
  nothing is lost. Records parked on a mapping pass through (they cost no write).

A run killed mid-way is resumed by the engine and delivers what it admitted; the cursor then names
the last project it served, so the next run starts at the project after it either way. A run that
left nothing waiting served every project: the next one starts at the first project again.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from ml_connector.core import ledger
from ml_connector.core.flow import Page, RunContext, Source
from ml_connector.core.ledger import Desired, Parked

log = logging.getLogger(__name__)

Mapper = Callable[[RunContext, str, dict[str, Any]], Desired | Parked]

#: Share of the hourly limit kept for others when the flow sets no `budget_reserve`.
DEFAULT_RESERVE_SHARE = 0.02
#: Share of the hourly limit a round may admit ahead of a window that gives budget back soon.
LOOKAHEAD_SHARE = 0.05


class Costed(Protocol):
    """A target that can say how many requests writing a record costs (systems/procore/targets.py)."""

    def requests_for(self, payload: dict[str, Any], seen: set[str]) -> int: ...


def round_robin(queues: dict[str, list[str]], after: str | None, budget: float, *,
                max_records: int | None = None) -> tuple[list[str], str | None]:
    """(the keys admitted, in order; the project served last): one key per project per round, projects
    in order starting with the first after `after` (wrapping), until `budget` keys, or `max_records`,
    or none left. With an unbounded budget, the run's whole rotation: its rounds admit prefixes of it."""
    projects = sorted(p for p, q in queues.items() if q)
    if not projects:
        return [], after
    start = next((i for i, p in enumerate(projects) if after is None or p > after), 0)
    order = projects[start:] + projects[:start]
    pending = {p: list(queues[p]) for p in order}
    admitted: list[str] = []
    last = after
    limit = min(budget, max_records if max_records is not None else math.inf)
    while len(admitted) < limit and any(pending.values()):
        for p in order:
            if pending[p]:
                admitted.append(pending[p].pop(0))
                last = p
                if len(admitted) >= limit:
                    break
    return admitted, last


def reserve_of(limit: int | None, configured: int | None) -> int:
    """Requests of the hourly budget a run leaves for others: the flow's `budget_reserve`, else a
    small share of the limit."""
    if configured is not None:
        return configured
    return math.ceil(limit * DEFAULT_RESERVE_SHARE) if limit else 0


def sap_source(source: Source) -> Source:
    """The SAP source under a stream's `FairProjects` (the drift report and the reconciliation read
    every record, not a run's admitted changes)."""
    return source.inner if isinstance(source, FairProjects) else source


class FairProjects(Source):
    """The stream's source, admitting changes within Procore's remaining hourly budget (less a
    reserve), round-robin by project (module docstring)."""

    def __init__(self, inner: Source, mapper: Mapper, *, connection: str, target: Costed,
                 reserve: int | None = None, max_records: int | None = None, wait: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time) -> None:
        self.inner = inner
        self.mapper = mapper
        self.connection = connection
        self.target = target
        self.reserve = reserve
        self.max_records = max_records
        self.wait = wait
        self._sleep = sleep
        self._clock = clock
        # The records of a run's later rounds, by run id (this process only: a run resumed elsewhere
        # ends at the round it reached, and the next run reads SAP again).
        self._runs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def begin(self, ctx: RunContext, cursor: dict[str, Any]) -> dict[str, Any]:
        return {"inner": self.inner.begin(ctx, cursor.get("inner") or {}), "after": cursor.get("after"),
                "served": None, "deferred": 0, "pending": None}

    def _budget(self, ctx: RunContext) -> tuple[float, float, float | None, str]:
        """(requests left to spend now, a whole hour's worth, when Procore's hourly window frees some
        next (None: unknown), how that was found), each less the reserve, from the connection's
        hourly budget."""
        from ml_connector.systems.procore.targets import Directory

        client = ctx.runtime.connection(self.connection)
        # The directory is needed by the writes anyway; listing it here also reads Procore's headers.
        Directory.of(client).projects()
        b = client.hourly_budget()
        if b is None:
            return math.inf, math.inf, None, "no hourly budget known"
        reserve = reserve_of(b.limit, self.reserve)
        whole = max(1, b.limit - reserve) if b.limit else math.inf
        return max(0, b.remaining - reserve), whole, b.resets_at, (
            f"{b.remaining} of the company's hourly budget left ({b.source}), {reserve} kept in reserve")

    @staticmethod
    def _in_flight(ctx: RunContext, run: dict[str, Any]) -> float:
        """The requests earlier rounds of this run admitted and have not written yet: the estimated
        cost of its outbox entries still pending or in flight (whichever process delivers them)."""
        from sqlalchemy import select

        from ml_connector.core.models import OutboxRow

        with ctx.runtime.db.read() as s:
            keys = s.scalars(select(OutboxRow.source_key).where(
                OutboxRow.run_id == ctx.run_id, OutboxRow.flow == ctx.flow, OutboxRow.stream == ctx.stream,
                OutboxRow.state.in_(("pending", "in_flight"))))
            return float(sum(run["cost"].get(k, 0) for k in keys))

    def read_page(self, ctx: RunContext, state: dict[str, Any]) -> Page:
        if state.get("pending") is None:
            return self._first_round(ctx, state)
        return self._next_round(ctx, state)

    def _first_round(self, ctx: RunContext, state: dict[str, Any]) -> Page:
        """Read SAP, queue the changes by project in rotation order, admit what the budget allows now."""
        records: dict[str, dict[str, Any]] = {}
        inner = state["inner"]
        while True:
            page = self.inner.read_page(ctx, inner)
            records.update(page.records)
            inner = page.position
            if page.done:
                break
        parked: list[str] = []
        desired: list[Desired] = []
        payload: dict[str, dict[str, Any]] = {}
        for key, rec in records.items():
            m = self.mapper(ctx, key, rec)
            if isinstance(m, Parked):
                parked.append(key)
            else:
                desired.append(m)
                payload[key] = m.payload
        with ctx.runtime.db.read() as s:
            changes, _ = ledger.plan_changes(s, ctx.flow, ctx.stream, desired)
        queues: dict[str, list[str]] = {}
        for c in sorted(changes, key=lambda c: c.source_key):
            queues.setdefault(str(payload[c.source_key].get("project") or ""), []).append(c.source_key)
        # The whole rotation, in order: a run admits a prefix of it, round after round.
        order, _ = round_robin(queues, state.get("after"), math.inf, max_records=self.max_records)
        capped = len(changes) - len(order)
        run = {"records": records, "payload": payload, "seen": set(), "cost": {}, "project": {
            k: str(payload[k].get("project") or "") for k in order}}
        with self._lock:
            self._runs[ctx.run_id] = run
        st = dict(state, inner=inner, pending=order, capped=capped, deferred=len(changes))
        page = self._admit(ctx, st, run)
        keys = [k for k, _ in page.records] + sorted(parked)
        return Page([(k, records[k]) for k in keys], page.position, page.done,
                    estimate_total=len(order) + len(parked), waiting=page.waiting)

    def _next_round(self, ctx: RunContext, state: dict[str, Any]) -> Page:
        with self._lock:
            run = self._runs.get(ctx.run_id)
        if run is None:  # resumed in another process: this run ends at the round it reached
            return self._end(ctx, state, "the run was resumed after a restart")
        return self._admit(ctx, state, run)

    def _admit(self, ctx: RunContext, state: dict[str, Any], run: dict[str, Any]) -> Page:
        """The next round: the prefix of the pending rotation that fits in the budget left now, less
        what earlier rounds admitted and have not sent yet. Nothing fits: wait while earlier rounds'
        writes are in flight or Procore's window frees some within `wait` seconds; else the run ends."""
        pending: list[str] = list(state["pending"])
        if not pending:
            return self._end(ctx, state, "")
        deadline = self._clock() + self.wait
        while True:
            budget, whole, resets_at, how = self._budget(ctx)
            outstanding = self._in_flight(ctx, run)
            now = self._clock()
            soon = resets_at is not None and resets_at <= deadline
            # A window that gives budget back within `wait` (a rolling one): admit a little ahead of it,
            # so the writes queue at the pacing instead of waiting for the next round.
            left = budget - outstanding + (math.ceil(whole * LOOKAHEAD_SHARE) if soon and whole < math.inf else 0)
            taken: list[str] = []
            spent = 0.0
            for key in pending:
                # A record costing more than a whole hour's budget would never fit: it counts as
                # costing that (admitted when the budget is whole); the pacing waits mid-write.
                seen = set(run["seen"])  # its first-touch costs count only once it is admitted
                c = min(self.target.requests_for(run["payload"][key], seen), whole)
                if spent + c > left:
                    break
                spent += c
                run["seen"] = seen
                run["cost"][key] = c
                taken.append(key)
            if taken:
                rest = pending[len(taken):]
                st = dict(state, pending=rest, served=run["project"][taken[-1]], deferred=len(rest))
                if not rest:
                    with self._lock:
                        self._runs.pop(ctx.run_id, None)
                    st["deferred"] = int(state.get("capped") or 0)
                return Page([(k, run["records"][k]) for k in taken], st, not rest,
                            waiting="" if rest else self._capped(st))
            if now >= deadline or not (outstanding > 0 or soon):
                return self._end(ctx, state, f"Procore's hourly budget is spent ({how})")
            self._sleep(min(1.0, max(0.05, (resets_at - now) if soon and resets_at and resets_at > now else 0.25)))

    def _capped(self, state: dict[str, Any]) -> str:
        n = int(state.get("capped") or 0)
        return (f"writes_per_run {self.max_records} reached: {n} change(s) wait for the next run, which starts "
                f"after project {state.get('served')}") if n else ""

    def _end(self, ctx: RunContext, state: dict[str, Any], why: str) -> Page:
        with self._lock:
            self._runs.pop(ctx.run_id, None)
        rest = len(state.get("pending") or []) + int(state.get("capped") or 0)
        waiting = ""
        if rest:
            where = f", which starts after project {state['served']}" if state.get("served") else ""
            waiting = f"{why or 'writes_per_run reached'}: {rest} change(s) wait for the next run{where}"
            log.info("%s/%s: %s", ctx.flow, ctx.stream, waiting)
        return Page([], dict(state, pending=[], deferred=rest), True, waiting=waiting)

    def finish(self, ctx: RunContext, state: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._runs.pop(ctx.run_id, None)
        # Nothing left waiting: every project was served, so the next run starts at the first again.
        after = (state.get("served") or state.get("after")) if state.get("deferred") else None
        return {"inner": self.inner.finish(ctx, state["inner"]) if state.get("inner") is not None else {},
                "after": after, "deferred": state.get("deferred", 0)}
