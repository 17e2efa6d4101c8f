"""SAP ECC → Procore: the company's hourly budget shared fairly by project (flows/_sap_ecc_procore_fair.py),
and the drift report finding a contract in a third project. The CLI in a subprocess, both emulators on
loopback; each test its own world."""

from __future__ import annotations

import json
from collections import Counter

from ml_connector.sandbox import start_sandboxes
from ml_connector.systems.procore.facts import procore_facts
from tests.support import summary
from tests.support.procore import (
    FLOW,
    active_projects,
    change_job_site_po,
    contract_projects,
    hourly_budget,
    job_site_world,
    line_amount,
    procore_admin,
    procore_client,
    procore_stats,
)


def test_the_hourly_budget_is_procores_hourly_headers_less_what_was_sent_since_or_the_shared_budget():
    from ml_connector.core.ratelimit import RollingWindowLimiter

    handles = start_sandboxes(systems=("procore",))
    try:
        plain = procore_client(handles["procore"])
        limiter = RollingWindowLimiter(500, 3600)
        shared = procore_client(handles["procore"], limiter=limiter)
        # Spike window reported (its reset within 10 s): Procore says nothing of the hour, the shared
        # budget (this installation's requests in the window) does.
        procore_admin(handles, "/_sandbox/limits", {"hourly": 100000, "spike": 50, "reset": True})
        assert plain.hourly_budget() is None
        shared.companies()
        shared.projects()
        b = shared.hourly_budget()
        assert b is not None and (b.source, b.remaining, b.limit) == ("shared budget", 500 - limiter.in_window(), 500)
        assert limiter.in_window() >= 3
        # Hourly window reported (Procore's own count, other clients' requests included): the lower wins.
        hourly_budget(handles, 300)
        plain.companies()
        plain.companies()  # another client of the company spends the budget too
        shared.companies()
        b = shared.hourly_budget()
        assert b is not None and (b.source, b.remaining, b.limit) == ("headers", 297, 300)
        assert b.resets_at is not None and b.resets_at > 0
        shared.companies()
        shared.companies()
        assert shared.hourly_budget() == type(b)(295, 300, b.resets_at, "headers")
        assert procore_facts().pacing.spike_window == 10
    finally:
        for h in handles.values():
            h.stop()


def test_a_po_run_writes_what_the_remaining_hourly_budget_allows_round_robin_and_the_rest_waits(tmp_path):
    handles, env = job_site_world(tmp_path, 8, options={"budget_reserve": 2})
    try:
        order = active_projects(handles, 1, 8)
        served: list[list[str]] = []
        updated_in: list[int] = []
        seen: set[str] = set()
        for run in range(8):
            hourly_budget(handles, 22)  # the next hour: 22 requests, 2 kept in reserve
            before = procore_stats(handles)["requests"]
            out = env.cli("sync", FLOW, "--stream", "purchase_orders")
            counts = summary(out.stdout)
            assert counts["failed"] == 0
            sent = procore_stats(handles)["requests"] - before
            assert sent <= 22  # within Procore's budget: nothing waited for the window, no 429
            now = contract_projects(handles)
            new = sorted(set(now) - seen)
            seen |= set(now)
            served.append(new)
            if counts["updated"]:
                updated_in.append(run)
            if run == 0:
                # Job site 1's PO changes in SAP: its project waits for its turn, after the others.
                change_job_site_po(handles, 1, "12345.67")
            if len(seen) == 8 and updated_in:
                assert "waiting" not in out.stdout
                break
            assert "waiting (not failed)" in out.stdout and "hourly budget is spent" in out.stdout
        assert len(served) >= 3
        # Every run starts at the project after the last one the previous run served: in project order,
        # none twice before all once (26-001's change is written after 26-008's contract).
        assert [p for run in served for p in run] == order
        last = next(i for i, run in enumerate(served) if order[-1] in run)
        assert len(updated_in) == 1 and updated_in[0] >= last
        assert line_amount(handles, "SAP-PO-4510000001", "4510000001-00010") == "12345.67"
        assert all(len(v) == 1 for v in contract_projects(handles).values())
        assert procore_stats(handles)["throttled"] == 0
    finally:
        for h in handles.values():
            h.stop()


def test_drift_reports_a_contract_found_in_a_third_project_as_moved_with_where_it_is(tmp_path):
    handles, env = job_site_world(tmp_path, 3)
    try:
        env.cli("sync", FLOW, "--stream", "purchase_orders")
        st = handles["procore"].state
        ids = {str(p["project_number"]): int(p["id"]) for p in st.projects.values()}
        contract = next(c for c in st.contracts.values() if c["origin_id"] == "SAP-PO-4510000002")
        assert contract["project_id"] == ids["26-002"]
        # In Procore, someone re-creates the contract in project 26-007 under SAP's origin id (the one
        # in 26-002 renamed first: origin ids are unique in the company).
        client = procore_client(handles["procore"])
        client.update_po_contract(ids["26-002"], int(contract["id"]), {"origin_id": "SAP-PO-4510000002-old"})
        client.sync_po_contracts(ids["26-007"], [{"origin_id": "SAP-PO-4510000002", "number": "4510000002",
                                                  "title": "SAP PO 4510000002", "status": "Approved",
                                                  "vendor_id": contract.get("vendor_id")}])
        # And SAP's mapping now names a third project again: job site 2002 → 26-012.
        text = env.config.read_text()
        assert '"2002": "26-002"' in text
        env.config.write_text(text.replace('"2002": "26-002"', '"2002": "26-012"', 1), encoding="utf-8")
        out = env.cli("procore", "drift", FLOW, "--json", check=False)
        assert out.returncode == 1, out.stderr
        drift = [d for d in json.loads(out.stdout)["drift"] if d["origin_id"] == "SAP-PO-4510000002"]
        assert drift == [{"kind": "commitment", "origin_id": "SAP-PO-4510000002", "project": "26-012",
                          "what": "moved", "line": None, "field": None, "sap": None, "procore": "26-007"}]
        # No other commitment drifted (the cost allocations were not synced here: missing).
        assert Counter(d["what"] for d in json.loads(out.stdout)["drift"]
                       if d["kind"] == "commitment") == Counter({"moved": 1})
    finally:
        for h in handles.values():
            h.stop()
