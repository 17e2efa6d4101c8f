"""A worker taken over mid-delivery (issue 16 §4), in one process over a real database: the stalled
execution and the one that took over deliver the same outbox batch through one dict-backed target.
Used by the SQLite unit tests and the Postgres scale-out test."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

from sqlalchemy import func, select

from ml_connector.core import engine, ledger, outbox
from ml_connector.core.db import Database
from ml_connector.core.flow import Outcome, Report, RunContext, Source, Stream, Target
from ml_connector.core.ledger import Desired
from ml_connector.core.models import AuditRow, OutboxRow
from ml_connector.core.outbox import Entry


class Store:
    """The target's records by source key; `writes` counts the write requests per key."""

    def __init__(self) -> None:
        self.records: dict[str, str] = {}
        self.writes: Counter[str] = Counter()
        self.lock = threading.Lock()


class StallingTarget(Target):
    """Writes to a `Store`. With `stall` set, its first write call stalls once (as a SIGSTOPped worker
    does) `before` or `after` the records reach the store, runs `stall` meanwhile (the execution that
    takes over), then reports. `report_twice` reports every answer twice. `meet` (a barrier) holds
    a lookup until every execution has one, so their results are recorded at the same moment."""

    def __init__(self, store: Store, *, stall: Callable[[], Any] | None = None, when: str = "after",
                 report_twice: bool = False, meet: threading.Barrier | None = None) -> None:
        self.connection = "fake"
        self.batch_size = 500
        self.store, self.stall, self.when = store, stall, when
        self.report_twice, self.meet = report_twice, meet

    def lookup(self, ctx: RunContext, entries: list[Entry]) -> list[Outcome]:
        if self.meet is not None:
            self.meet.wait(timeout=30)
        return [Outcome(e.id, "posted", target_id=self.store.records[e.source_key]) for e in entries
                if e.source_key in self.store.records]

    def write(self, ctx: RunContext, entries: list[Entry], report: Report) -> None:
        stall, self.stall = self.stall, None
        if stall is not None and self.when == "before":
            stall()
        outs = []
        with self.store.lock:
            for e in entries:
                self.store.writes[e.source_key] += 1
                self.store.records.setdefault(e.source_key, f"t-{e.source_key}")
                outs.append(Outcome(e.id, "posted", target_id=self.store.records[e.source_key]))
        if stall is not None and self.when == "after":
            stall()
        report(outs)
        if self.report_twice:
            report(outs)


class NoSource(Source):
    """A stream's source where only delivery is exercised."""


def stage(db: Database, keys: list[str], run_id: str = "r1") -> None:
    """Entries `k<key>` (create, payload {"id": key}) of batch 1 of `run_id` in the outbox."""
    rows = [{"idempotency_key": f"k{k}", "source_key": k, "op": "create", "payload": {"id": k},
             "content_hash": ledger.content_hash({"id": k}), "target_id": None} for k in keys]
    with db.session() as s:
        outbox.add(s, flow="f", stream="s", run_id=run_id, batch=1, rows=rows)


def deliver(db: Database, target: Target, run_id: str = "r1") -> dict[str, int]:
    """One execution of the batch's delivery step: reads the batch's open entries, delivers them."""
    ctx = RunContext(SimpleNamespace(db=db), "f", "s", run_id, "incremental")  # type: ignore[arg-type]
    stream = Stream("s", NoSource(), lambda c, k, r: Desired(k, r), target)
    with db.session() as s:
        entries = outbox.batch_entries(s, run_id, 1)
    return engine.deliver_entries(ctx, stream, entries)


def recorded(db: Database) -> dict[str, int]:
    """`record.create ok` audit rows per source key (what the issue counted twice)."""
    with db.session() as s:
        rows = s.execute(select(AuditRow.source, func.count()).where(
            AuditRow.event == "record.create", AuditRow.outcome == "ok").group_by(AuditRow.source))
        return {str(src).split(":", 1)[1]: int(n) for src, n in rows}


def outbox_states(db: Database) -> dict[str, tuple[str, int, str | None]]:
    with db.session() as s:
        return {r.source_key: (r.state, r.attempts, r.target_id) for r in s.scalars(select(OutboxRow))}


def fenced_events(db: Database) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(AuditRow).where(
            AuditRow.event == "delivery.fenced")) or 0)


def concurrent_lookups(db: Database, store: Store, n: int) -> list[dict[str, int]]:
    """`n` executions of one batch left in flight resolve it by lookup at the same moment."""
    meet = threading.Barrier(n)
    tallies: list[dict[str, int]] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            tallies.append(deliver(db, StallingTarget(store, meet=meet)))
        except BaseException as exc:  # re-raised by the caller's assertion
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return tallies


class InterruptedLookup(Target):
    """Finds every record in doubt in `store`, yielding them one by one, and fails (the recovery is
    interrupted: killed, a 500) after `fail_after` of them; `asked` counts the records looked up."""

    def __init__(self, store: Store, fail_after: int | None = None) -> None:
        self.connection = "fake"
        self.batch_size = 500
        self.store, self.fail_after = store, fail_after
        self.asked: Counter[str] = Counter()

    def lookup(self, ctx: RunContext, entries: list[Entry]) -> Iterator[Outcome]:
        for n, e in enumerate(entries):
            if self.fail_after is not None and n >= self.fail_after:
                raise RuntimeError("recovery interrupted")
            self.asked[e.source_key] += 1
            if e.source_key in self.store.records:
                yield Outcome(e.id, "posted", target_id=self.store.records[e.source_key])

    def write(self, ctx: RunContext, entries: list[Entry], report: Report) -> None:
        StallingTarget(self.store).write(ctx, entries, report)


class LoggingTarget(Target):
    """Posts one record per call and logs about it, as a posting target does."""

    batch_size = 1

    def lookup(self, ctx: RunContext, entries: list[Entry]) -> list[Outcome]:
        return []

    def write(self, ctx: RunContext, entries: list[Entry], report: Report) -> None:
        logging.getLogger("mlc.test.target").warning("posting document")
        report([Outcome(e.id, "posted", target_id=f"t-{e.source_key}") for e in entries])
