"""Issue 16 §4: a worker that was taken over must not record its results over the new owner's, and a
result reported twice is recorded once. On SQLite here; the same scenarios on Postgres with real
concurrent transactions in tests/scaleout/test_postgres_fencing.py."""

from __future__ import annotations

import pytest

from ml_connector.core import outbox
from ml_connector.core.db import Database
from tests.support.fencing import (
    StallingTarget,
    Store,
    concurrent_lookups,
    deliver,
    fenced_events,
    outbox_states,
    recorded,
    stage,
)

KEYS = ["1", "2", "3"]


@pytest.fixture()
def db(tmp_path):
    d = Database(f"sqlite:///{tmp_path}/t.sqlite")
    d.migrate()
    yield d
    d.dispose()


def test_a_worker_stalled_after_its_write_records_nothing_over_the_new_owners_results(db):
    """Defect: after a SIGSTOP past the takeover deadline, the stalled worker and the one that took
    over both recorded the batch (two `record.create ok` audit rows per vendor)."""
    stage(db, KEYS)
    store = Store()
    takeover: list[dict[str, int]] = []
    stalled = StallingTarget(store, stall=lambda: takeover.append(deliver(db, StallingTarget(store))))
    assert deliver(db, stalled) == {"fenced": 3}
    assert takeover == [{"posted": 3}]  # found by lookup, not written again
    assert store.writes == {k: 1 for k in KEYS}
    assert recorded(db) == {k: 1 for k in KEYS}
    assert outbox_states(db) == {k: ("posted", 1, f"t-{k}") for k in KEYS}
    assert fenced_events(db) == 1


def test_a_worker_stalled_before_its_write_is_refused_after_the_new_owner_attempted_again(db):
    stage(db, KEYS)
    store = Store()
    takeover: list[dict[str, int]] = []
    stalled = StallingTarget(store, when="before",
                             stall=lambda: takeover.append(deliver(db, StallingTarget(store))))
    assert deliver(db, stalled) == {"fenced": 3}
    assert takeover == [{"posted": 3}]
    assert recorded(db) == {k: 1 for k in KEYS}
    # The new owner's attempt (the second) is the one recorded.
    assert outbox_states(db) == {k: ("posted", 2, f"t-{k}") for k in KEYS}


def test_an_entry_settled_by_another_execution_is_not_written_by_a_stale_one(db):
    stage(db, KEYS)
    with db.session() as s:
        stale_view = outbox.batch_entries(s, "r1", 1)  # read before the other execution ran
    store = Store()
    assert deliver(db, StallingTarget(store)) == {"posted": 3}
    assert outbox.claim(db, stale_view) == set()
    assert outbox_states(db) == {k: ("posted", 1, f"t-{k}") for k in KEYS}


def test_the_same_result_reported_twice_is_recorded_once(db):
    stage(db, KEYS)
    tally = deliver(db, StallingTarget(Store(), report_twice=True))
    assert tally == {"posted": 3, "fenced": 3}
    assert recorded(db) == {k: 1 for k in KEYS}


def test_two_executions_resolving_one_batch_by_lookup_record_it_once(db):
    stage(db, KEYS)
    with db.session() as s:  # in flight when the first worker stalled; the records reached the target
        outbox.set_state(s, [e.id for e in outbox.batch_entries(s, "r1", 1)], "in_flight", bump_attempts=True)
    store = Store()
    store.records.update({k: f"t-{k}" for k in KEYS})
    tallies = concurrent_lookups(db, store, 2)
    assert sorted(t.get("posted", 0) for t in tallies) == [0, 3]
    assert sorted(t.get("fenced", 0) for t in tallies) == [0, 3]
    assert recorded(db) == {k: 1 for k in KEYS}


def test_posting_fenced_in_one_statement_changes_nothing_unless_every_entry_is_still_ours(db):
    """`outbox.post_fenced` (the delivery's common path): all or nothing, so that a batch with one entry
    taken over falls back to fencing entry by entry and records only its own."""
    stage(db, KEYS)
    with db.session() as s:
        entries = outbox.batch_entries(s, "r1", 1)
    assert outbox.claim(db, entries) == {e.id for e in entries}  # attempt 1 of each, in flight
    taken = entries[1]
    assert outbox.claim(db, [outbox.Entry(**{**vars(taken), "attempts": 1})]) == {taken.id}  # another owner
    with db.session() as s:
        assert not outbox.post_fenced(s, [(e.id, 1, f"t-{e.source_key}") for e in entries])
    assert outbox_states(db) == {"1": ("in_flight", 1, None), "2": ("in_flight", 2, None), "3": ("in_flight", 1, None)}
    with db.session() as s:
        assert outbox.fence(s, [(e.id, 1) for e in entries]) == {entries[0].id, entries[2].id}
        assert outbox.post_fenced(s, [(e.id, 1, f"t-{e.source_key}") for e in (entries[0], entries[2])])
    assert outbox_states(db) == {"1": ("posted", 1, "t-1"), "2": ("in_flight", 2, None), "3": ("posted", 1, "t-3")}
