"""SAP ECC → Procore: a purchase-order sync killed (SIGKILL) mid-rotation is resumed by the next `sync`,
which delivers what the killed run admitted and nothing more; the run after it starts at the next
project (flows/_sap_ecc_procore_fair.py). No project is skipped, none is served twice before the
others, no contract is written twice."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.support import summary
from tests.support.crashes import KILLED, cli, tail
from tests.support.procore import (
    FLOW,
    active_projects,
    change_job_site_po,
    contract_projects,
    hourly_budget,
    job_site_world,
    line_amount,
    procore_stats,
)


@pytest.mark.slow  # a sync killed in its own process, then resumed by another
def test_a_po_sync_killed_mid_rotation_resumes_and_the_next_run_starts_at_the_next_project(tmp_path):
    handles, env = job_site_world(tmp_path, 8, options={"budget_reserve": 2})
    try:
        order = active_projects(handles, 1, 8)
        st = handles["procore"].state
        # An hour of 22 requests: the run admits the first four projects (see the rotation test), and is
        # killed when Procore has created the third one's contract, before anything is recorded.
        hourly_budget(handles, 22)
        code = cli(env, "sync", FLOW, "--stream", "purchase_orders",
                   kill_at="http.answered@PATCH /rest/v1.0/purchase_order_contracts/sync#3")
        assert code == KILLED, tail(env.workdir / "cli.log")
        assert sorted(contract_projects(handles)) == order[:3]
        # The next sync is the killed run, resumed: it finishes the projects that run admitted, no others.
        hourly_budget(handles, 22)
        env.cli("sync", FLOW, "--stream", "purchase_orders")
        first = sorted(contract_projects(handles))
        assert first == order[:4]
        # Job site 1's PO changes in SAP. The run after the resumed one starts at the project after the
        # last one the killed run served: 26-001's change waits until every other project had its turn.
        change_job_site_po(handles, 1, "12345.67")
        served = [first]
        updated_in = []
        for run in range(1, 6):
            hourly_budget(handles, 22)
            out = summary(env.cli("sync", FLOW, "--stream", "purchase_orders").stdout)
            assert out["failed"] == 0
            now = sorted(contract_projects(handles))
            served.append(sorted(set(now) - {p for run in served for p in run}))
            if out["updated"]:
                updated_in.append(run)
            if len(now) == len(order) and updated_in:
                break
        assert [p for run in served for p in run] == order and all(served[:-1])
        last = next(i for i, run in enumerate(served) if order[-1] in run)
        assert len(updated_in) == 1 and updated_in[0] >= last
        assert line_amount(handles, "SAP-PO-4510000001", "4510000001-00010") == "12345.67"
        with st.lock:
            origins = Counter(c["origin_id"] for c in st.contracts.values())
            lines = Counter((c["id"], li["origin_id"]) for c in st.contracts.values() for li in c["line_items"])
            complete = all(len(c["line_items"]) >= 2 for c in st.contracts.values())
        assert len(origins) == len(order) and set(origins.values()) == {1}
        assert set(lines.values()) == {1} and complete
        assert procore_stats(handles)["throttled"] == 0
    finally:
        for h in handles.values():
            h.stop()
