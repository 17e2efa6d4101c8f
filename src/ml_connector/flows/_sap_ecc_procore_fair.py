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
- the records not admitted are not staged: the run ends `waiting` (not failed), saying how many wait
  and where the next run starts; that run reads them again and they are still new or changed, so
  nothing is lost. Records parked on a mapping pass through (they cost no write).

A run killed mid-way is resumed by the engine and delivers what it admitted; the cursor then names
the last project it served, so the next run starts at the project after it either way. A run that
left nothing waiting served every project: the next one starts at the first project again.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, Protocol

from ml_connector.core import ledger
from ml_connector.core.flow import Page, RunContext, Source
from ml_connector.core.ledger import Desired, Parked

log = logging.getLogger(__name__)

Mapper = Callable[[RunContext, str, dict[str, Any]], Desired | Parked]

#: Share of the hourly limit kept for others when the flow sets no `budget_reserve`.
DEFAULT_RESERVE_SHARE = 0.02


class Costed(Protocol):
    """A target that can say how many requests writing a record costs (systems/procore/targets.py)."""

    def requests_for(self, payload: dict[str, Any], seen: set[str]) -> int: ...


def round_robin(queues: dict[str, list[str]], after: str | None, budget: float, *,
                cost: Callable[[str], float] | None = None,
                max_records: int | None = None) -> tuple[list[str], str | None]:
    """(the keys admitted, in order; the project served last): one key per project per round, projects
    in order starting with the first after `after` (wrapping), while the next key's `cost` (default 1)
    fits in what is left of `budget` and fewer than `max_records` are admitted. The first key that
    does not fit ends the admission (a cheaper one further on is not taken instead: the next run
    starts at its project)."""
    projects = sorted(p for p, q in queues.items() if q)
    if not projects:
        return [], after
    start = next((i for i, p in enumerate(projects) if after is None or p > after), 0)
    order = projects[start:] + projects[:start]
    pending = {p: list(queues[p]) for p in order}
    admitted: list[str] = []
    last = after
    left = budget
    while any(pending.values()):
        for p in order:
            if not pending[p]:
                continue
            if max_records is not None and len(admitted) >= max_records:
                return admitted, last
            c = cost(pending[p][0]) if cost is not None else 1
            if c > left:
                return admitted, last
            left -= c
            admitted.append(pending[p].pop(0))
            last = p
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
                 reserve: int | None = None, max_records: int | None = None) -> None:
        self.inner = inner
        self.mapper = mapper
        self.connection = connection
        self.target = target
        self.reserve = reserve
        self.max_records = max_records

    def begin(self, ctx: RunContext, cursor: dict[str, Any]) -> dict[str, Any]:
        return {"inner": self.inner.begin(ctx, cursor.get("inner") or {}), "after": cursor.get("after"),
                "served": None, "deferred": 0}

    def _budget(self, ctx: RunContext) -> tuple[float, float, str]:
        """(requests this run may spend, a whole hour's worth less the reserve, how that was found) from
        the connection's hourly budget."""
        from ml_connector.systems.procore.targets import Directory

        client = ctx.runtime.connection(self.connection)
        # The directory is needed by the writes anyway; listing it here also reads Procore's headers.
        Directory.of(client).projects()
        b = client.hourly_budget()
        if b is None:
            return math.inf, math.inf, "no hourly budget known"
        reserve = reserve_of(b.limit, self.reserve)
        whole = max(1, b.limit - reserve) if b.limit else math.inf
        return max(0, b.remaining - reserve), whole, (f"{b.remaining} of the company's hourly budget left "
                                               f"({b.source}), {reserve} kept in reserve")

    def read_page(self, ctx: RunContext, state: dict[str, Any]) -> Page:
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
        budget, whole, how = self._budget(ctx) if changes else (math.inf, math.inf, "")
        seen: set[str] = set()
        # A record costing more than a whole hour's budget would never fit: it counts as costing that
        # (admitted when the budget is whole), and the pacing waits for Procore's window mid-write.
        cap = whole

        def cost(key: str) -> float:
            return min(self.target.requests_for(payload[key], seen), cap)

        admitted, last = round_robin(queues, state.get("after"), budget, cost=cost, max_records=self.max_records)
        deferred = len(changes) - len(admitted)
        waiting = ""
        if deferred:
            why = (f"writes_per_run {self.max_records} reached" if self.max_records is not None
                   and len(admitted) >= self.max_records else f"Procore's hourly budget is spent ({how})")
            waiting = (f"{why}: {len(admitted)} change(s) admitted, {deferred} wait for the next run, which "
                       f"starts after project {last}" if last else f"{why}: {deferred} change(s) wait for the "
                       "next run")
            log.info("%s/%s: %s", ctx.flow, ctx.stream, waiting)
        keys = admitted + sorted(parked)
        return Page([(k, records[k]) for k in keys], dict(state, inner=inner, served=last, deferred=deferred),
                    True, estimate_total=len(keys), waiting=waiting)

    def finish(self, ctx: RunContext, state: dict[str, Any]) -> dict[str, Any]:
        # Nothing left waiting: every project was served, so the next run starts at the first again.
        after = (state.get("served") or state.get("after")) if state.get("deferred") else None
        return {"inner": self.inner.finish(ctx, state["inner"]) if state.get("inner") is not None else {},
                "after": after, "deferred": state.get("deferred", 0)}
