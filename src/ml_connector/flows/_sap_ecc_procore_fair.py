"""Fair scheduling of one company budget over Procore's projects (pair sap_ecc_procore; the leading
underscore keeps it out of the flow pairs).

With the flow's option `writes_per_run: N`, a run of `purchase_orders` or `cost_allocations` writes at
most N records (contracts, direct costs): the 150+ projects share one company budget, and a weekly
sync that cannot write everything in one go must not serve the first projects every time while the
last ones wait. `FairProjects` wraps the stream's SAP source:

- it reads SAP in full (SAP is not the budget being shared; the sources re-read their whole window
  every run anyway), maps each record as the stream does and keeps the records the ledger says are new
  or changed, queued per Procore project in source-key order;
- it admits them round-robin, one per project per round, starting at the project after the one the
  last run served last (`after`, kept in the stream's cursor), until N are admitted;
- the records not admitted are simply not staged: the next run reads them again and they are still
  new or changed, so nothing is lost. Records parked on a mapping pass through (they cost no write).

A run killed mid-way is resumed by the engine and delivers what it admitted; the cursor then names
the last project it served, so the next run starts at the project after it either way.
Without `writes_per_run` the source is not wrapped (every change is written in one run).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ml_connector.core import ledger
from ml_connector.core.flow import Page, RunContext, Source
from ml_connector.core.ledger import Desired, Parked

log = logging.getLogger(__name__)

Mapper = Callable[[RunContext, str, dict[str, Any]], Desired | Parked]


def round_robin(queues: dict[str, list[str]], after: str | None, budget: int) -> tuple[list[str], str | None]:
    """(the keys admitted, in order; the project served last): one key per project per round, projects
    in order starting with the first after `after` (wrapping), until `budget` keys or none left."""
    projects = sorted(p for p, q in queues.items() if q)
    if not projects:
        return [], after
    start = next((i for i, p in enumerate(projects) if after is None or p > after), 0)
    order = projects[start:] + projects[:start]
    pending = {p: list(queues[p]) for p in order}
    admitted: list[str] = []
    last = after
    while len(admitted) < budget and any(pending.values()):
        for p in order:
            if pending[p]:
                admitted.append(pending[p].pop(0))
                last = p
                if len(admitted) >= budget:
                    break
    return admitted, last


class FairProjects(Source):
    """The stream's source with a per-run write budget shared round-robin by project (module docstring)."""

    def __init__(self, inner: Source, mapper: Mapper, budget: int) -> None:
        self.inner = inner
        self.mapper = mapper
        self.budget = budget

    def begin(self, ctx: RunContext, cursor: dict[str, Any]) -> dict[str, Any]:
        return {"inner": self.inner.begin(ctx, cursor.get("inner") or {}), "after": cursor.get("after"),
                "served": None, "deferred": 0}

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
        project: dict[str, str] = {}
        for key, rec in records.items():
            m = self.mapper(ctx, key, rec)
            if isinstance(m, Parked):
                parked.append(key)
            else:
                desired.append(m)
                project[key] = str(m.payload.get("project") or "")
        with ctx.runtime.db.read() as s:
            changes, _ = ledger.plan_changes(s, ctx.flow, ctx.stream, desired)
        queues: dict[str, list[str]] = {}
        for c in sorted(changes, key=lambda c: c.source_key):
            queues.setdefault(project[c.source_key], []).append(c.source_key)
        admitted, last = round_robin(queues, state.get("after"), self.budget)
        deferred = len(changes) - len(admitted)
        if deferred:
            log.info("%s/%s: %d change(s) admitted (writes_per_run), %d left for the next run, which starts "
                     "after project %s", ctx.flow, ctx.stream, len(admitted), deferred, last)
        keys = admitted + sorted(parked)
        return Page([(k, records[k]) for k in keys], dict(state, inner=inner, served=last, deferred=deferred),
                    True, estimate_total=len(keys))

    def finish(self, ctx: RunContext, state: dict[str, Any]) -> dict[str, Any]:
        return {"inner": self.inner.finish(ctx, state["inner"]) if state.get("inner") is not None else {},
                "after": state.get("served") or state.get("after"), "deferred": state.get("deferred", 0)}
