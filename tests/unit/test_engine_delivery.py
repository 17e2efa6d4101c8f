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
from tests.support.fencing import NoSource, deliver, stage


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
                 silent: set[str] = frozenset(), batch_size: int = 500, waiting: set[str] = frozenset()) -> None:
        self.connection = "fake"
        self.batch_size = batch_size
        self.db = db
        self.store: dict[str, dict[str, Any]] = {k: {"id": k} for k in existing}
        self.fail, self.silent, self.waiting = set(fail), set(silent), set(waiting)
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
            if e.source_key in self.waiting:  # written; its follow-up could not be done (e.g. no token)
                outs.append(Outcome(e.id, "waiting", target_id=f"t-{e.source_key}", error="report waits: no token"))
                continue
            outs.append(Outcome(e.id, "posted", target_id=f"t-{e.source_key}"))
        report(outs)


def test_a_target_that_never_calls_begin_attempt_still_gets_entries_marked_in_flight(db):
    stage(db, ["1", "2", "3"])
    target = FakeTarget(db)
    assert deliver(db, target) == {"posted": 3}
    # Committed as in flight, one attempt counted, before the write call.
    assert target.states_at_write == {k: ("in_flight", 1) for k in ("1", "2", "3")}
    assert {k: (r.state, r.attempts, r.target_id) for k, r in _rows(db).items()} == {
        k: ("posted", 1, f"t-{k}") for k in ("1", "2", "3")}


def test_each_write_call_is_marked_in_flight_just_before_it(db):
    stage(db, ["1", "2", "3"])
    target = FakeTarget(db, batch_size=2)
    deliver(db, target)
    assert target.calls == [("write", ["1", "2"]), ("write", ["3"])]
    # When the first call ran, the second call's entry was still pending: a crash in the
    # first call leaves only its own entries in doubt.
    assert target.states_at_write == {"1": ("in_flight", 1), "2": ("in_flight", 1), "3": ("in_flight", 1)}


def test_entries_in_doubt_are_looked_up_before_any_write_and_found_ones_are_not_written(db):
    stage(db, ["1", "2", "3", "4"])
    with db.session() as s:
        ids = {e.source_key: e.id for e in outbox.batch_entries(s, "r1", 1)}
        # "1" was in flight at a crash and reached the target; "2" timed out and did not;
        # "3" is uncertain and reached the target; "4" is a fresh pending entry.
        outbox.set_state(s, [ids["1"], ids["2"]], "in_flight", bump_attempts=True)
        outbox.set_state(s, [ids["3"]], "uncertain", bump_attempts=True)
    target = FakeTarget(db, existing={"1", "3"})
    assert deliver(db, target) == {"posted": 4}
    assert target.calls[0] == ("lookup", ["1", "2", "3"])
    assert target.calls[1:] == [("write", ["2", "4"])]  # found ones are never written again
    rows = _rows(db)
    assert {k: (r.state, r.attempts) for k, r in rows.items()} == {
        "1": ("posted", 1), "2": ("posted", 2), "3": ("posted", 1), "4": ("posted", 1)}


def test_a_failed_write_counts_one_attempt(db):
    """Defect (issue 10 §6, issue 16 §6): a failed write showed attempts 2 after its first failure."""
    stage(db, ["1", "2"])
    assert deliver(db, FakeTarget(db, fail={"1"})) == {"failed": 1, "posted": 1}
    rows = _rows(db)
    assert (rows["1"].state, rows["1"].attempts, rows["1"].last_error) == ("failed", 1, "refused")
    # A replay is a second attempt.
    with db.session() as s:
        outbox.set_state(s, [rows["1"].id], "pending")
    deliver(db, FakeTarget(db, fail={"1"}))
    assert _rows(db)["1"].attempts == 2


def test_a_waiting_outcome_records_the_write_ends_the_run_waiting_and_joins_the_next_run(db):
    stage(db, ["1", "2"])
    with db.session() as s:
        s.add(RunRow(run_id="r1", flow="f", stream="s", mode="incremental", status="running", counts={}))
    target = FakeTarget(db, waiting={"1"})
    assert deliver(db, target) == {"posted": 1, "waiting": 1}
    r = _rows(db)["1"]
    assert (r.state, r.attempts, r.target_id, r.last_error) == ("waiting", 1, "t-1", "report waits: no token")
    with db.session() as s:
        # the write is recorded in the ledger with the entry's content
        row = ledger.lookup(s, "f", "s", ["1"])["1"]
        assert (row.target_id, row.content_hash) == ("t-1", r.content_hash)
        run = s.get(RunRow, "r1")
        assert run is not None and "report waits: no token" in run.counts["waiting"]
        assert engine._run_counts(s, "r1")["pending"] == 1
        assert outbox.batch_entries(s, "r1", 1) == []  # not delivered again by this run's sweep
        engine._adopt_waiting(s, "f", "s", "r2")  # the next run's start
    r = _rows(db)["1"]
    assert (r.state, r.run_id, r.batch, r.target_id) == ("pending", "r2", 0, "t-1")
    assert _rows(db)["2"].state == "posted"


def test_an_entry_the_target_gave_no_outcome_for_stays_visible_as_uncertain(db):
    stage(db, ["1", "2"])
    assert deliver(db, FakeTarget(db, silent={"2"})) == {"posted": 1, "uncertain": 1}
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


class HoldingTarget(Target):
    """A target holding records {name, is_active} by key: a create of a record it holds already is
    refused and the record adopted (found, as the Ramp strategy reports it); updates and
    deactivations apply. `compare` is the contract's comparison the engine must apply."""

    def __init__(self, held: dict[str, dict[str, Any]]) -> None:
        self.connection = "fake"
        self.held = {k: dict(v) for k, v in held.items()}
        self.calls: list[tuple[str, list[tuple[str, str]]]] = []

    def compare(self, found: dict[str, Any], payload: dict[str, Any], active: bool) -> str | None:
        if not active:
            return "deactivate" if found["is_active"] else None
        if not found["is_active"]:
            return "reactivate"
        return "update" if found["name"] != payload["name"] else None

    def lookup(self, ctx: RunContext, entries: list[Entry]) -> list[Outcome]:
        self.calls.append(("lookup", [(e.source_key, e.op) for e in entries]))
        return [Outcome(e.id, "posted", target_id=f"t-{e.source_key}", found=dict(self.held[e.source_key]))
                for e in entries if e.source_key in self.held]

    def write(self, ctx: RunContext, entries: list[Entry], report: Report) -> None:
        self.calls.append(("write", [(e.source_key, e.op) for e in entries]))
        outs = []
        for e in entries:
            if e.op == "create" and e.source_key in self.held:
                outs.append(Outcome(e.id, "posted", target_id=f"t-{e.source_key}",
                                    found=dict(self.held[e.source_key]), adopted=True))
                continue
            if e.op != "create" and e.source_key not in self.held:
                outs.append(Outcome(e.id, "posted"))  # nothing to update or deactivate
                continue
            if e.op != "create":
                assert e.target_id == f"t-{e.source_key}", "a correction goes to the found record"
            self.held[e.source_key] = {"name": e.payload["name"], "is_active": e.op != "deactivate"}
            outs.append(Outcome(e.id, "posted", target_id=f"t-{e.source_key}"))
        report(outs)


def _stage_named(db: Database, items: list[tuple[str, str, str]], run_id: str = "r1", batch: int = 1) -> None:
    rows = [{"idempotency_key": f"k{k}:{name}", "source_key": k, "op": op, "payload": {"id": k, "name": name},
             "content_hash": ledger.content_hash({"id": k, "name": name}), "target_id": None}
            for k, name, op in items]
    with db.session() as s:
        outbox.add(s, flow="f", stream="s", run_id=run_id, batch=batch, rows=rows)


def test_records_found_instead_of_created_are_compared_and_corrected_and_counted_adopted(db):
    """Defect (issue 16 §1): a create refused because the record exists adopted it as it was (a stale
    name, a deleted record left active), recorded with the source's hash: never repaired."""
    _stage_named(db, [("1", "Same", "create"), ("2", "New name", "create"), ("3", "Back", "create"),
                      ("4", "Gone", "create")])
    target = HoldingTarget({"1": {"name": "Same", "is_active": True}, "2": {"name": "Old name", "is_active": True},
                            "3": {"name": "Back", "is_active": False}})
    assert deliver(db, target) == {"posted": 4}
    assert target.held == {"1": {"name": "Same", "is_active": True}, "2": {"name": "New name", "is_active": True},
                           "3": {"name": "Back", "is_active": True}, "4": {"name": "Gone", "is_active": True}}
    assert target.calls == [("write", [("1", "create"), ("2", "create"), ("3", "create"), ("4", "create")]),
                            ("write", [("2", "update"), ("3", "reactivate")])]
    rows = _rows(db)
    assert {k: (r.op, r.state, r.target_id) for k, r in rows.items()} == {
        "1": ("adopt", "posted", "t-1"), "2": ("update", "posted", "t-2"), "3": ("reactivate", "posted", "t-3"),
        "4": ("create", "posted", "t-4")}
    with db.session() as s:
        known = ledger.lookup(s, "f", "s", ["1", "2", "3", "4"])
        assert {k: r.content_hash for k, r in known.items()} == {k: r.content_hash for k, r in rows.items()}
        counts = engine._run_counts(s, "r1")
    assert (counts["created"], counts["adopted"], counts["updated"]) == (1, 3, 2)


def test_an_in_doubt_write_found_with_other_content_is_corrected(db):
    _stage_named(db, [("1", "Wanted", "create"), ("2", "Gone", "deactivate")])
    with db.session() as s:
        outbox.set_state(s, [r.id for r in _rows(db).values()], "in_flight", bump_attempts=True)
    target = HoldingTarget({"1": {"name": "Other", "is_active": True}})
    deliver(db, target)
    assert target.held["1"] == {"name": "Wanted", "is_active": True}
    assert ("write", [("1", "update")]) in target.calls


def test_an_older_in_doubt_write_is_resolved_before_a_newer_version_is_written(db):
    """Defect (issue 16 §2): a run failed with a write in flight; the next run computed new content for
    the same record, staged it under a new key and left the old entry in flight for good (not in
    `failures`, never resolved)."""
    _stage_named(db, [("1", "V1", "create"), ("2", "V1", "create")], run_id="r1")
    with db.session() as s:
        outbox.set_state(s, [r.id for r in _rows(db).values()], "in_flight", bump_attempts=True)
        s.add(RunRow(run_id="r1", flow="f", stream="s", mode="incremental", status="failed", counts={}))
    with db.session() as s:
        assert {r.source_key for r in outbox.failures(s)} == {"1", "2"}  # visible to operators
    # "1" reached the target before the crash, "2" did not; the source changed both meanwhile.
    _stage_named(db, [("1", "V2", "create"), ("2", "V2", "create")], run_id="r2")
    with db.session() as s:
        in_r2 = outbox.batch_entries(s, "r2", 1)
    assert sorted((e.source_key, e.payload["name"]) for e in in_r2) == [("1", "V1"), ("1", "V2"), ("2", "V1"),
                                                                         ("2", "V2")]
    target = HoldingTarget({"1": {"name": "V1", "is_active": True}})
    deliver(db, target, run_id="r2")
    assert target.calls[0] == ("lookup", [("1", "create"), ("2", "create")])
    assert target.calls[1:] == [("write", [("2", "create")]), ("write", [("1", "update")])]
    assert target.held == {"1": {"name": "V2", "is_active": True}, "2": {"name": "V2", "is_active": True}}
    with db.session() as s:
        states = sorted((r.source_key, r.payload["name"], r.state) for r in s.scalars(select(OutboxRow)))
        assert outbox.failures(s) == []
    assert states == [("1", "V1", "superseded"), ("1", "V2", "posted"), ("2", "V1", "superseded"),
                      ("2", "V2", "posted")]


def test_a_newer_entry_in_doubt_too_is_resolved_once(db):
    _stage_named(db, [("1", "V1", "create")], run_id="r1")
    with db.session() as s:
        outbox.set_state(s, [r.id for r in _rows(db).values()], "in_flight", bump_attempts=True)
    _stage_named(db, [("1", "V2", "create")], run_id="r2")
    with db.session() as s:  # the newer one was in flight too (r2 crashed during its write)
        outbox.set_state(s, [e.id for e in outbox.batch_entries(s, "r2", 1)], "in_flight", bump_attempts=True)
    target = HoldingTarget({"1": {"name": "V1", "is_active": True}})
    assert deliver(db, target, run_id="r2") == {"superseded": 1, "posted": 1}
    assert target.held == {"1": {"name": "V2", "is_active": True}}
    assert target.calls[1:] == [("write", [("1", "update")])]


def test_replay_of_an_in_doubt_entry_whose_record_was_written_since_in_a_newer_version(db, monkeypatch):
    """An old in-flight entry (left by an earlier version) must not bring old content back on replay."""
    target = HoldingTarget({"1": {"name": "V2", "is_active": True}})
    stream = Stream("s", NoSource(), lambda c, k, r: Desired(k, r), target)
    flow = SimpleNamespace(stream=lambda name: stream, cfg=SimpleNamespace(options={}))
    monkeypatch.setattr(engine, "_RT", SimpleNamespace(db=db, flow=lambda name: flow))
    _stage_named(db, [("1", "V1", "create")], run_id="r1")
    _stage_named(db, [("1", "V2", "create")], run_id="r2", batch=2)
    with db.session() as s:
        old, new = sorted(s.scalars(select(OutboxRow)), key=lambda r: r.id)
        outbox.set_state(s, [old.id], "in_flight", bump_attempts=True)
        outbox.mark_posted(s, new.id, "t-1")
        old_id = old.id
    engine._replay_step.__wrapped__([old_id])  # type: ignore[attr-defined]
    assert target.calls == []
    assert target.held["1"]["name"] == "V2"
    with db.session() as s:
        assert s.get(OutboxRow, old_id).state == "superseded"  # type: ignore[union-attr]
