"""Every process sees every worker's API budget use (issue 15): a budget used by one process (its own
database engine) is read, with its limit, by another that never called through it: the console's
overview, the `budget.low` alert sweep and /metrics read the same shared figures."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from ml_connector.core import conditions, ratelimit
from ml_connector.core.db import Database
from ml_connector.server.console import queries
from ml_connector.server.console.metrics import PlatformCollector
from tests.scaleout.conftest import PG

pytestmark = [pytest.mark.scaleout,
              pytest.mark.skipif(not PG, reason="MLC_TEST_PG_URL not set (make test starts Postgres)")]


@pytest.fixture()
def two_processes(pg_database: str) -> Iterator[tuple[Database, Database]]:
    worker, console = Database(pg_database), Database(pg_database)
    worker.migrate()
    try:
        yield worker, console
    finally:
        worker.dispose()
        console.dispose()


def test_a_budget_used_by_a_worker_is_seen_with_its_limit_by_another_process(two_processes) -> None:
    worker, console = two_processes
    lim = ratelimit.budgets_for(worker).window("ramp", "client-1", 10, 60.0)
    for _ in range(9):
        lim.acquire()
    ratelimit.budgets_for(worker).window("ramp", "client-1|spacing", 1, 0.1).acquire()
    seen = ratelimit.usage(ratelimit.budgets_for(console))  # this process never called through it
    assert ("ramp", "client-1", 9, 10) in seen
    rt = SimpleNamespace(db=console, config=SimpleNamespace(alerts=SimpleNamespace(budget_threshold=0.8)))
    [view] = queries.budgets(rt)  # the spacer (limit 1) is not a budget that runs out
    assert (view.provider, view.key, view.used, view.limit, view.percent, view.low) == \
        ("ramp", "client-1", 9, 10, 90, True)
    alerts = conditions._budgets(rt, 0.8, time.time())
    assert list(alerts) == ["budget.low|ramp/client-1"]
    assert "9/10" in alerts["budget.low|ramp/client-1"].message
    families = {f.name: f for f in PlatformCollector(rt).collect()}
    assert {s.labels["budget"]: s.value for s in families["mlc_rate_budget_limit"].samples} == {
        "ramp|client-1": 10, "ramp|client-1|spacing": 1}
    assert {s.labels["budget"]: s.value for s in families["mlc_rate_budget_in_use"].samples}["ramp|client-1"] == 9
