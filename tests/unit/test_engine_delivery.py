"""The engine's side of exactly-once delivery, with tiny fake targets over a real SQLite database:
the engine (not the target) marks entries in flight before the call, looks entries in doubt up
before anything is written again, and counts one attempt per attempt."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select

from ml_connector.core import engine, ledger, outbox
from ml_connector.core.db import Database
from ml_connector.core.flow import Outcome, Page, Report, RunContext, Source, Stream, Target
from ml_connector.core.ledger import Desired
from ml_connector.core.models import OutboxRow, RunRow
from ml_connector.core.outbox import Entry


@pytest.fixture()
def db(tmp_path):
    d = Database(f"sqlite:///{tmp_path}/t.sqlite")
    d.migrate()
    yield d
    d.dispose()


def _rows(db: Database) -> dict[str, OutboxRow]:
    with db.session() as s:
        rows = list(s.scalars(select(OutboxRow)))
        s.expunge_all()
    return {r.source_key: r for r in rows}


class FakeTarget(Target):
    """Writes to a dict; never calls outbox.begin_attempt itself. Records what it saw."""

    def __init__(self, db: Database, *, existing: set[str] = frozenset(), fail: set[str] = frozenset(),
                 silent: set[str] = frozenset(), batch_size: int = 500) -> None:
        self.connection = "fake"
        self.batch_size = batch_size
        self.db = db
        self.store: dict[str, dict[str, Any]] = {k: {"id": k} for k in existing}
        self.fail, self.silent = set(fail), set(silent)
        self.calls: list[tuple[str, list[str]]] = []
        self.states_at_write: dict[str, tuple[str, int]] = {}

    def lookup(self, ctx: RunContext, entries: list[Entry]) -> list[Outcome]:
        self.calls.append(("lookup", [e.source_key for e in entries]))
        return [Outcome(e.id, "posted", target_id=f"t-{e.source_key}") for e in entries if e.source_key in self.store]

    def write(self, ctx: RunContext, entries: list[Entry], report: Report) -> None:
        self.calls.append(("write", [e.source_key for e in entries]))
        committed = _rows(self.db)  # what another connection sees: the engine committed before the call
        outs = []
        for e in entries:
            self.states_at_write[e.source_key] = (committed[e.source_key].state, committed[e.source_key].attempts)
            if e.source_key in self.silent:
                continue
            if e.source_key in self.fail:
                outs.append(Outcome(e.id, "failed", error="refused"))
                continue
            self.store[e.source_key] = dict(e.payload)
            outs.append(Outcome(e.id, "posted", target_id=f"t-{e.source_key}"))
        report(outs)


class NoSource(Source):
    pass


def _stage(db: Database, keys: list[str], run_id: str = "r1") -> None:
    rows = [{"idempotency_key": f"k{k}", "source_key": k, "op": "create", "payload": {"id": k},
             "content_hash": ledger.content_hash({"id": k}), "target_id": None} for k in keys]
    with db.session() as s:
        outbox.add(s, flow="f", stream="s", run_id=run_id, batch=1, rows=rows)


def _deliver(db: Database, target: Target, run_id: str = "r1") -> dict[str, int]:
    ctx = RunContext(SimpleNamespace(db=db), "f", "s", run_id, "incremental")  # type: ignore[arg-type]
    stream = Stream("s", NoSource(), lambda c, k, r: Desired(k, r), target)
    with db.session() as s:
        entries = outbox.batch_entries(s, run_id, 1)
    return engine.deliver_entries(ctx, stream, entries)


def test_a_target_that_never_calls_begin_attempt_still_gets_entries_marked_in_flight(db):
    _stage(db, ["1", "2", "3"])
    target = FakeTarget(db)
    assert _deliver(db, target) == {"posted": 3}
    # Committed as in flight, one attempt counted, before the write call.
    assert target.states_at_write == {k: ("in_flight", 1) for k in ("1", "2", "3")}
    assert {k: (r.state, r.attempts, r.target_id) for k, r in _rows(db).items()} == {
        k: ("posted", 1, f"t-{k}") for k in ("1", "2", "3")}


def test_each_write_call_is_marked_in_flight_just_before_it(db):
    _stage(db, ["1", "2", "3"])
    target = FakeTarget(db, batch_size=2)
    _deliver(db, target)
    assert target.calls == [("write", ["1", "2"]), ("write", ["3"])]
    # When the first call ran, the second call's entry was still pending: a crash in the
    # first call leaves only its own entries in doubt.
    assert target.states_at_write == {"1": ("in_flight", 1), "2": ("in_flight", 1), "3": ("in_flight", 1)}


def test_entries_in_doubt_are_looked_up_before_any_write_and_found_ones_are_not_written(db):
    _stage(db, ["1", "2", "3", "4"])
    with db.session() as s:
        ids = {e.source_key: e.id for e in outbox.batch_entries(s, "r1", 1)}
        # "1" was in flight at a crash and reached the target; "2" timed out and did not;
        # "3" is uncertain and reached the target; "4" is a fresh pending entry.
        outbox.set_state(s, [ids["1"], ids["2"]], "in_flight", bump_attempts=True)
        outbox.set_state(s, [ids["3"]], "uncertain", bump_attempts=True)
    target = FakeTarget(db, existing={"1", "3"})
    assert _deliver(db, target) == {"posted": 4}
    assert target.calls[0] == ("lookup", ["1", "2", "3"])
    assert target.calls[1:] == [("write", ["2", "4"])]  # found ones are never written again
    rows = _rows(db)
    assert {k: (r.state, r.attempts) for k, r in rows.items()} == {
        "1": ("posted", 1), "2": ("posted", 2), "3": ("posted", 1), "4": ("posted", 1)}


def test_a_failed_write_counts_one_attempt(db):
    """Defect (issue 10 §6, issue 16 §6): a failed write showed attempts 2 after its first failure."""
    _stage(db, ["1", "2"])
    assert _deliver(db, FakeTarget(db, fail={"1"})) == {"failed": 1, "posted": 1}
    rows = _rows(db)
    assert (rows["1"].state, rows["1"].attempts, rows["1"].last_error) == ("failed", 1, "refused")
    # A replay is a second attempt.
    with db.session() as s:
        outbox.set_state(s, [rows["1"].id], "pending")
    _deliver(db, FakeTarget(db, fail={"1"}))
    assert _rows(db)["1"].attempts == 2


def test_an_entry_the_target_gave_no_outcome_for_stays_visible_as_uncertain(db):
    _stage(db, ["1", "2"])
    assert _deliver(db, FakeTarget(db, silent={"2"})) == {"posted": 1, "uncertain": 1}
    assert (_rows(db)["2"].state, _rows(db)["2"].attempts) == ("uncertain", 1)


class ListSource(Source):
    def __init__(self, records: list[tuple[str, dict[str, Any]]]) -> None:
        self.records = records

    def begin(self, ctx: RunContext, cursor: dict[str, Any]) -> dict[str, Any]:
        return {}

    def read_page(self, ctx: RunContext, state: dict[str, Any]) -> Page:
        return Page(list(self.records), {"read": True}, True)


def test_a_rerun_that_stages_nothing_says_staged_0(db, monkeypatch):
    """Defect (issue 16 §6): a re-run showed `staged: 4` when nothing was staged (records whose
    write had failed are planned again, but their outbox entry exists: nothing new is staged)."""
    records = [(str(i), {"id": str(i)}) for i in range(4)]
    stream = Stream("s", ListSource(records), lambda c, k, r: Desired(k, r), FakeTarget(db))
    flow = SimpleNamespace(stream=lambda name: stream, cfg=SimpleNamespace(options={}))
    monkeypatch.setattr(engine, "_RT", SimpleNamespace(db=db, flow=lambda name: flow))

    def page_of_run(run_id: str) -> dict[str, Any]:
        with db.session() as s:
            s.add(RunRow(run_id=run_id, flow="f", stream="s", mode="incremental", status="running",
                         counts={"read": 0, "unchanged": 0, "parked": 0, "staged": 0}))
            ledger.save_cursor(s, "f", "s", {"run": run_id, "mode": "incremental", "state": {}, "batch": 0,
                                             "done": False, "kept": {}})
        engine._page_step.__wrapped__("f", "s", "incremental", run_id)  # type: ignore[attr-defined]
        with db.session() as s:
            run = s.get(RunRow, run_id)
            assert run is not None
            return dict(run.counts)

    assert page_of_run("r1")["staged"] == 4
    with db.session() as s:  # every write failed
        outbox.set_state(s, [e.id for e in outbox.batch_entries(s, "r1", 1)], "failed", error="refused")
    counts = page_of_run("r2")
    assert (counts["read"], counts["staged"]) == (4, 0)
