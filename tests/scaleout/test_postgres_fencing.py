"""Issue 16 §4 on Postgres: executions of one delivery on separate connections (a worker taken over
and the one that took over) record each result once; the stalled one is refused by the fence."""

from __future__ import annotations

import pytest

from ml_connector.core import outbox
from ml_connector.core.db import Database
from tests.scaleout.conftest import PG
from tests.support.fencing import (
    StallingTarget,
    Store,
    concurrent_lookups,
    deliver,
    outbox_states,
    recorded,
    stage,
)

pytestmark = [pytest.mark.scaleout,
              pytest.mark.skipif(not PG, reason="MLC_TEST_PG_URL not set (make test starts Postgres)")]

KEYS = [str(i) for i in range(40)]


@pytest.fixture()
def db(pg_database):
    d = Database(pg_database)
    d.migrate()
    yield d
    d.dispose()


def test_a_taken_over_worker_records_nothing_over_the_new_owners_results(db):
    stage(db, KEYS)
    store = Store()
    takeover: list[dict[str, int]] = []
    stalled = StallingTarget(store, stall=lambda: takeover.append(deliver(db, StallingTarget(store))))
    assert deliver(db, stalled) == {"fenced": len(KEYS)}
    assert takeover == [{"posted": len(KEYS)}]
    assert recorded(db) == {k: 1 for k in KEYS}
    assert outbox_states(db) == {k: ("posted", 1, f"t-{k}") for k in KEYS}


def test_concurrent_executions_resolving_one_batch_record_each_result_once(db):
    stage(db, KEYS)
    with db.session() as s:
        outbox.set_state(s, [e.id for e in outbox.batch_entries(s, "r1", 1)], "in_flight", bump_attempts=True)
    store = Store()
    store.records.update({k: f"t-{k}" for k in KEYS})
    tallies = concurrent_lookups(db, store, 3)
    assert sum(t.get("posted", 0) for t in tallies) == len(KEYS)
    assert sum(t.get("fenced", 0) for t in tallies) == 2 * len(KEYS)
    assert recorded(db) == {k: 1 for k in KEYS}
