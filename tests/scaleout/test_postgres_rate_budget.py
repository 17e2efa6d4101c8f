"""Scale-out: two worker processes against one Postgres database share Ramp's rate budget.

Ramp counts its limit per source IP, and both workers send from 127.0.0.1. Each with its own
window, together they send up to twice their budget; with the budget in the database, the
two together stay within it and Ramp never has to answer 429.
"""

from __future__ import annotations

import httpx
import psycopg
import pytest

from ml_connector.sandbox import start_sandboxes
from tests.scaleout.conftest import PG
from tests.support import in_scope_vendors, make_env, ramp_vendors, stop_all, wait_healthy
from tests.support.scaleout import sync_over_api, vendor_patches

pytestmark = [pytest.mark.scaleout,
              pytest.mark.skipif(not PG, reason="MLC_TEST_PG_URL not set (make test starts Postgres)")]

# Ramp's 200 per rolling 10 s, scaled down so that a small sync fills several windows. The
# workers are configured for LIMIT (they allow themselves LIMIT - 1); the sandbox answers 429
# above SERVER_LIMIT. The slack stands for the skew between grant and arrival, which at
# 200 per 10 s the 1% headroom covers; two separate budgets (2 x 19) overrun it.
LIMIT, SERVER_LIMIT, PERIOD = 20, 25, 2.0
RENAMED = 80


def test_two_workers_stay_within_one_shared_ramp_window(tmp_path, pg_database):
    handles = start_sandboxes(vendors=200)
    procs = []
    try:
        ecc, ramp = handles["sap_ecc"].state, handles["ramp"].state
        env = make_env(tmp_path, handles["sap_ecc"].url, handles["ramp"].url, database_url=pg_database,
                       options={"page_size": 16}, ramp_limits={"requests": LIMIT, "period": f"{PERIOD:g}s"})
        base = env.serve_on_free_port()
        procs.append(env.popen("run", "--worker-id", "worker-a"))
        procs.append(env.popen("run", "--worker-id", "worker-b", "--no-server"))

        wait_healthy(base, timeout=90)
        assert httpx.get(f"{base}/health").json()["database"] == "postgresql"
        sync_over_api(base)  # the initial load: batched creates, a few requests

        # Renames become one PATCH each: many small requests from both workers at once.
        total = ecc.data.count("LFA1", ecc.client)
        renamed = [str(100001 + i * (total // RENAMED)).rjust(10, "0") for i in range(RENAMED)]
        for lifnr in renamed:
            assert ecc.data.update_vendor(lifnr, client=ecc.client, NAME1=f"Renamed {lifnr}") is not None
        want = in_scope_vendors(ecc)
        to_patch = sum(1 for lifnr in renamed if lifnr in want and want[lifnr]["active"])
        assert to_patch > 3 * LIMIT  # several full windows
        with ramp.lock:
            ramp.rate_limit.limit, ramp.rate_limit.period = SERVER_LIMIT, PERIOD
            ramp.rate_limit.mode, ramp.rate_limit.per = "rolling", "ip"
            ramp.windows.clear()
            ramp.peak_in_window = 0
        before = ramp.stats()
        sync_over_api(base)
        after = ramp.stats()

        assert after["rate_limited"] - before["rate_limited"] == 0, after
        assert after["sent_429"] == before["sent_429"], after
        assert vendor_patches(after) - vendor_patches(before) == to_patch
        # The workers used the window to its full (their budget was the bottleneck), never more.
        assert LIMIT - 3 <= after["peak_in_window"] <= SERVER_LIMIT, after
        got = {v["id"]: v["name"] for v in ramp_vendors(handles["ramp"].url)}
        assert {k: got.get(k) for k in renamed if k in want and want[k]["active"]} == \
            {k: want[k]["name"] for k in renamed if k in want and want[k]["active"]}
        with psycopg.connect(pg_database) as conn:
            attempts = dict(conn.execute("select attempts, count(*) from mlc_outbox group by attempts").fetchall())
            # Per stream: plant 1000 and company code 1000 are two records.
            dup = conn.execute("select stream, source from mlc_audit where event in ('record.create', 'record.update') "
                               "group by event, stream, source having count(*) > 1").fetchall()
            by_worker = dict(conn.execute(
                "select executor_id, count(*) from dbos.workflow_status where name = 'mlc.deliver' "
                "group by executor_id").fetchall())
        assert set(attempts) == {1}, attempts  # each change written by exactly one attempt
        assert dup == []
        assert set(by_worker) == {"worker-a", "worker-b"}, by_worker  # both drew from the window
    finally:
        stop_all(procs, handles)
