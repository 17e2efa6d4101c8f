"""Round-robin by project of one run's write budget (flows/_sap_ecc_procore_fair.py): pure."""

from __future__ import annotations

from ml_connector.flows._sap_ecc_procore_fair import reserve_of, round_robin

QUEUES = {"26-001": ["a1", "a2", "a3"], "26-002": ["b1"], "26-003": ["c1", "c2"], "26-004": []}


def test_one_record_per_project_per_round_from_the_first_project_when_nothing_was_served():
    assert round_robin(QUEUES, None, 4) == (["a1", "b1", "c1", "a2"], "26-001")
    assert round_robin(QUEUES, None, 100) == (["a1", "b1", "c1", "a2", "c2", "a3"], "26-001")


def test_a_run_starts_at_the_project_after_the_one_served_last_and_wraps():
    assert round_robin(QUEUES, "26-001", 2) == (["b1", "c1"], "26-003")
    assert round_robin(QUEUES, "26-003", 2) == (["a1", "b1"], "26-002")  # wraps around
    assert round_robin(QUEUES, "26-002", 1) == (["c1"], "26-003")        # an empty queue is skipped


def test_successive_runs_on_a_small_budget_serve_every_project_before_any_twice():
    queues = {f"26-{i:03d}": [f"{i}-x", f"{i}-y"] for i in range(1, 8)}
    after, served = None, []
    for _ in range(3):
        admitted, after = round_robin(queues, after, 3)
        for k in admitted:
            queues[f"26-{int(k.split('-')[0]):03d}"].remove(k)
        served += admitted
    assert [k.split("-")[0] for k in served[:7]] == ["1", "2", "3", "4", "5", "6", "7"]
    assert served[7:] == ["1-y", "2-y"] and after == "26-002"


def test_nothing_to_write_keeps_the_cursor():
    assert round_robin({"26-001": []}, "26-001", 5) == ([], "26-001")
    assert round_robin({}, None, 5) == ([], None)


def test_writes_per_run_caps_the_records_within_the_budget():
    assert round_robin(QUEUES, None, 100, max_records=2) == (["a1", "b1"], "26-002")
    assert round_robin(QUEUES, None, 2, max_records=5) == (["a1", "b1"], "26-002")


def test_the_reserve_is_the_flows_setting_or_two_percent_of_the_hourly_limit():
    assert reserve_of(3600, None) == 72 and reserve_of(400, None) == 8 and reserve_of(None, None) == 0
    assert reserve_of(3600, 0) == 0 and reserve_of(3600, 500) == 500
