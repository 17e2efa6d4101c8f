"""Rate budgets shared through Postgres: several processes (or engines) draw from one window
and one concurrency cap, counted on the database's clock."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine

from ml_connector.core.db import Database, sqlalchemy_url
from ml_connector.core.ratelimit import (
    CAP_LOCKS,
    IN_PROCESS,
    DatabaseBudgets,
    PgConcurrencyCap,
    PgRollingWindowLimiter,
    budgets_for,
)
from tests.scaleout.conftest import PG
from tests.support import ROOT
from tests.support.scaleout import busiest_window, grant_times

pytestmark = [pytest.mark.scaleout,
              pytest.mark.skipif(not PG, reason="MLC_TEST_PG_URL not set (make test starts Postgres)")]

# Each process: `threads` threads take `per_thread` slots each from one budget.
WORKER = """
import sys, threading
from ml_connector.core.db import Database
from ml_connector.core.ratelimit import budgets_for
url, budget, limit, period, threads, per_thread = sys.argv[1:7]
db = Database(url)
lim = budgets_for(db).window("test", budget, int(limit), float(period))
def run():
    for _ in range(int(per_thread)):
        lim.acquire()
ts = [threading.Thread(target=run) for _ in range(int(threads))]
for t in ts: t.start()
for t in ts: t.join()
db.dispose()
"""


@pytest.fixture()
def db(pg_database: str) -> Iterator[Database]:
    d = Database(pg_database)
    d.migrate()
    # Test-only observation: every grant as the database stamped it (grants are pruned).
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE grant_log (budget text, until timestamptz)")
        conn.execute("""CREATE FUNCTION log_grant() RETURNS trigger AS $$
            BEGIN INSERT INTO grant_log VALUES (NEW.budget, NEW.until); RETURN NEW; END $$ LANGUAGE plpgsql""")
        conn.execute("CREATE TRIGGER log_grant AFTER INSERT ON mlc_rate_grants "
                     "FOR EACH ROW EXECUTE FUNCTION log_grant()")
    yield d
    d.dispose()


def test_busiest_window_counts_what_it_should() -> None:
    assert busiest_window([0.0, 0.1, 1.0, 1.1], 1.0) == 2  # 0.0 left the window at 1.0, 0.1 at 1.1
    assert busiest_window([0.0, 0.1, 0.2, 0.99], 1.0) == 4


def test_processes_sharing_a_budget_never_exceed_it_in_any_window(db: Database, pg_database: str) -> None:
    limit, period, procs, threads, per_thread = 6, 0.4, 3, 2, 5  # 30 grants: 5 full windows at least
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    started = [subprocess.Popen([sys.executable, "-c", WORKER, pg_database, "shared", str(limit), str(period),
                                 str(threads), str(per_thread)], env=env, stderr=subprocess.PIPE, text=True)
               for _ in range(procs)]
    for p in started:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    stamps = grant_times(pg_database, "test|shared")
    assert len(stamps) == procs * threads * per_thread
    # The window is full (each process alone would have taken `limit` per window) and never over.
    assert busiest_window(stamps, period) == limit


def test_limiters_on_separate_engines_share_the_window_and_the_penalty(db: Database, pg_database: str) -> None:
    a = PgRollingWindowLimiter(create_engine(sqlalchemy_url(pg_database)), "test|pair", 3, 30.0)
    b = PgRollingWindowLimiter(create_engine(sqlalchemy_url(pg_database)), "test|pair", 3, 30.0)
    try:
        assert [a.reserve(), b.reserve(), a.reserve()] == [0.0, 0.0, 0.0]
        wait = b.reserve()  # the window of 30 s is full: wait for the first grant to expire
        assert 29.0 < wait <= 30.0
        assert a.in_window() == b.in_window() == 3
        other = PgRollingWindowLimiter(a.engine, "test|other", 3, 30.0)
        other.penalize(20.0)  # a 429 seen by one process holds back every process on that budget
        hold = PgRollingWindowLimiter(b.engine, "test|other", 3, 30.0).reserve()
        assert 19.0 < hold <= 20.0
        assert other.in_window() == 0  # nothing was granted during the hold
        other.penalize(5.0)  # a shorter penalty never shortens the hold
        assert other.reserve() > 15.0
    finally:
        a.engine.dispose()
        b.engine.dispose()


def test_acquire_waits_for_the_database_window(db: Database, pg_database: str) -> None:
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    lim = PgRollingWindowLimiter(db.engine, "test|acq", 2, 0.3, sleep=sleep)
    for _ in range(3):
        lim.acquire()
    assert len(slept) >= 1 and 0 < slept[0] <= 0.3  # the third waited for the first grant to expire
    stamps = grant_times(pg_database, "test|acq")
    assert len(stamps) == 3 and stamps[2] - stamps[0] >= 0.3


def test_concurrency_cap_holds_across_engines(db: Database, pg_database: str) -> None:
    limit, engines, per_engine = 2, 3, 3  # each engine alone would allow 2: 6 at once without the database
    caps = [PgConcurrencyCap(create_engine(sqlalchemy_url(pg_database)), "test|cap", limit, poll=0.005)
            for _ in range(engines)]
    lock = threading.Lock()
    state = {"in": 0, "peak": 0, "done": 0}
    release = threading.Event()

    def call(cap: PgConcurrencyCap) -> None:
        with cap.slot():
            with lock:
                state["in"] += 1
                state["peak"] = max(state["peak"], state["in"])
            release.wait(0.05)
            with lock:
                state["in"] -= 1
                state["done"] += 1

    threads = [threading.Thread(target=call, args=(c,)) for c in caps for _ in range(per_engine)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert state["done"] == engines * per_engine
        assert state["peak"] <= limit
        # The slots were released: nothing is left locked in the database.
        with psycopg.connect(pg_database) as conn:
            held = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s",
                                (CAP_LOCKS,)).fetchone()
        assert held == (0,)
    finally:
        for c in caps:
            c.engine.dispose()


def test_a_slot_of_a_dead_session_is_free_again(db: Database, pg_database: str) -> None:
    cap = PgConcurrencyCap(db.engine, "test|dead", 1, poll=0.005)
    # Another process took the only slot, then died (its session ends, and the lock with it).
    other = psycopg.connect(pg_database, autocommit=True)
    took = other.execute("SELECT pg_try_advisory_lock(%s, hashtext('test|dead#0'))", (CAP_LOCKS,)).fetchone()
    assert took == (True,)
    got = threading.Event()

    def take() -> None:
        with cap.slot():
            got.set()

    t = threading.Thread(target=take)
    t.start()
    assert not got.wait(0.2)  # held elsewhere: waits
    other.close()
    t.join(30)
    assert got.is_set()


def test_budgets_follow_the_database(db: Database, tmp_path: Any) -> None:
    shared = budgets_for(db)
    assert isinstance(shared, DatabaseBudgets) and budgets_for(db) is shared
    assert isinstance(shared.window("ramp", "egress", 10, 1.0), PgRollingWindowLimiter)
    assert shared.window("ramp", "egress", 10, 1.0) is shared.window("ramp", "egress", 10, 1.0)
    assert isinstance(shared.cap("sap_ecc", "x", 2), PgConcurrencyCap)
    lite = Database(f"sqlite:///{tmp_path}/x.db")
    try:
        assert budgets_for(lite) is IN_PROCESS and budgets_for(None) is IN_PROCESS
    finally:
        lite.dispose()
    with pytest.raises(ValueError, match="needs Postgres"):
        PgRollingWindowLimiter(create_engine("sqlite://"), "k", 1, 1.0)


def test_sap_clients_of_two_processes_share_the_systems_cap(db: Database, pg_database: str) -> None:
    """Two SOAP-RFC clients whose budgets live in separate engines (as in two worker processes)
    never have more calls in flight at the SAP system than its cap."""
    sandbox_app = pytest.importorskip("ml_connector.systems.sap_ecc.sandbox.app")
    from ml_connector.core.servers import serve_in_thread
    from ml_connector.systems.sap_ecc.client import SoapRfcClient

    state = sandbox_app.EccSandbox(vendors=10, seed=7)
    state.faults.update(latency=0.05, max_concurrent=2)
    handle = serve_in_thread(sandbox_app.create_app(state), name="ecc-sandbox")
    engines = [create_engine(sqlalchemy_url(pg_database)) for _ in range(2)]
    clients = [SoapRfcClient(handle.url, "100", sandbox_app.DEMO_USER, sandbox_app.DEMO_PASSWORD,
                             calls_per_second=50, max_concurrency=2, budgets=DatabaseBudgets(e))
               for e in engines]
    errors: list[BaseException] = []

    def calls(c: SoapRfcClient) -> None:
        try:
            for _ in range(3):
                c.call("RFC_PING", {})
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=calls, args=(c,)) for c in clients for _ in range(3)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        assert state.stats.calls.get("RFC_PING") == 18
        assert state.stats.rejected_concurrency == 0
        assert state.stats.peak_in_flight == 2
    finally:
        for c in clients:
            c.close()
        for e in engines:
            e.dispose()
        handle.stop()
