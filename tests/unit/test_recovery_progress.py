"""Issue 16 §5: a recovery (writes in doubt resolved by lookup) that is itself interrupted keeps its
progress: what it found is recorded, and the next recovery looks up only the rest."""

from __future__ import annotations

import pytest

from ml_connector.core import engine, outbox
from ml_connector.core.db import Database
from tests.support.fencing import InterruptedLookup, Store, deliver, outbox_states, stage

KEYS = [f"{i:03d}" for i in range(120)]


@pytest.fixture()
def db(tmp_path):
    d = Database(f"sqlite:///{tmp_path}/t.sqlite")
    d.migrate()
    yield d
    d.dispose()


def test_an_interrupted_recovery_keeps_what_it_found(db):
    stage(db, KEYS)
    with db.session() as s:  # a crash left the whole batch in flight; every record reached the target
        outbox.set_state(s, [e.id for e in outbox.batch_entries(s, "r1", 1)], "in_flight", bump_attempts=True)
    store = Store()
    store.records.update({k: f"t-{k}" for k in KEYS})
    with pytest.raises(RuntimeError, match="recovery interrupted"):
        deliver(db, InterruptedLookup(store, fail_after=110))
    kept = [k for k, (state, _, _) in outbox_states(db).items() if state == "posted"]
    assert len(kept) == 110 // engine.LOOKUP_FLUSH * engine.LOOKUP_FLUSH == 100
    again = InterruptedLookup(store)
    assert deliver(db, again) == {"posted": 20}
    assert sorted(again.asked) == sorted(set(KEYS) - set(kept))  # only the rest is looked up again
    assert store.writes == {}  # nothing written twice (nothing written at all: all were found)
    assert all(state == "posted" for state, _, _ in outbox_states(db).values())


def test_a_slow_lookup_has_each_record_recorded_as_it_is_found(db, monkeypatch):
    """One GET per record (a few in doubt): each found record is kept, not only every LOOKUP_FLUSH."""
    monkeypatch.setattr(engine, "LOOKUP_FLUSH_SECONDS", 0.0)  # every record's GET outlasts the interval
    stage(db, KEYS[:10])
    with db.session() as s:
        outbox.set_state(s, [e.id for e in outbox.batch_entries(s, "r1", 1)], "in_flight", bump_attempts=True)
    store = Store()
    store.records.update({k: f"t-{k}" for k in KEYS[:10]})
    with pytest.raises(RuntimeError, match="recovery interrupted"):
        deliver(db, InterruptedLookup(store, fail_after=7))
    assert sum(state == "posted" for state, _, _ in outbox_states(db).values()) == 7
