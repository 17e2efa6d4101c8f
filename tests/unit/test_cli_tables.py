"""The CLI's tables stay readable in an 80-column terminal: every word whole, nothing cut to "…"."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console
from rich.table import Table

from ml_connector.cli import RUN_COUNTS, failures_table, parked_table, runs_table, summary_table
from ml_connector.server.agents.cli import agents_table
from ml_connector.server.cli import tokens_table

RUN_ID = "sync:vendors_to_ramp:vendors:incremental:2026-12-07T11:00:00Z"


def render(table: Table, width: int = 80) -> str:
    console = Console(width=width, record=True, force_terminal=False, color_system=None)
    console.print(table)
    return console.export_text()


def column(text: str, index: int) -> str:
    """Column `index` of the table's body, its lines joined without spaces: a folded value reads whole."""
    parts = [line.split("│")[index + 1] for line in text.splitlines() if line.startswith("│")]
    return "".join(p.strip().replace(" ", "") for p in parts)


def assert_readable(text: str, words: list[str], whole: dict[int, list[str]]) -> None:
    assert "…" not in text, text
    assert all(len(line) <= 80 for line in text.splitlines()), text
    for w in words:  # short values: on one line, never wrapped
        assert re.search(rf"(?<!\S){re.escape(w)}(?!\S)", text), (w, text)
    for index, values in whole.items():  # long values: folded or wrapped across lines, but complete
        for value in values:
            assert value.replace(" ", "") in column(text, index), (value, text)


def test_runs_table_at_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    rows = [SimpleNamespace(run_id=RUN_ID, status="succeeded", started_at="2026-12-07 11:41:02.123456",
                            finished_at="2026-12-07 11:42:05.999", counts={"read": 600, "created": 598,
                                                                           "deactivated": 1, "unchanged": 12,
                                                                           "failed": 2}),
            SimpleNamespace(run_id="sync:bills_to_sap:bills:full:0e1b5a1e", status="running",
                            started_at="2026-12-07 11:43:00", finished_at=None, counts={})]
    text = render(runs_table(rows))
    assert_readable(text, ["succeeded", "running", "status", "started", "finished", "2026-12-07", "11:41:02",
                           "read 600", "created 598", "deactivated 1", "unchanged 12", "failed 2", "read 0"],
                    {0: [RUN_ID, "sync:bills_to_sap:bills:full:0e1b5a1e"]})
    # The counts that are zero are not listed; read always is.
    assert "updated" not in text and "parked" not in text


def test_runs_table_from_the_console_width_of_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    console = Console(record=True, color_system=None)
    assert console.width == 80
    rows = [SimpleNamespace(run_id=RUN_ID, status="succeeded", started_at="2026-12-07 11:41:02",
                            finished_at="2026-12-07 11:42:05", counts={"read": 3})]
    console.print(runs_table(rows))
    text = console.export_text()
    assert "succeeded" in text and "…" not in text


def test_failures_table_at_80_columns() -> None:
    data: list[dict[str, Any]] = [{
        "id": 12, "flow": "vendors_to_ramp", "stream": "vendors", "record": "0000100042", "op": "create",
        "state": "uncertain", "attempts": 2,
        "error": "HTTPStatusError: Ramp answered 422 Unprocessable Entity: name must not be empty"}]
    text = render(failures_table(data))
    assert_readable(text, ["12", "create", "uncertain", "tries", "0000100042", "Unprocessable", "Entity:"],
                    {1: ["vendors_to_ramp / vendors"], 6: [data[0]["error"]]})


def test_parked_table_at_80_columns() -> None:
    rows = [("17", "bills_to_sap", "0e1b5a1e-0000-4000-8000-000000000001:bill-123",
             "entities:0e1b5a1e-0000-4000-8000-000000000001")]
    text = render(parked_table(rows))
    assert_readable(text, ["17", "bills_to_sap", "waits"], {2: [rows[0][2]], 3: [rows[0][3]]})


def test_agents_table_at_80_columns() -> None:
    agents = [{"id": "agt_0123456789abcdef", "site": "plant-1", "name": "sap-gateway-host-01.corp.example.com",
               "state": "online", "seconds_since_seen": 3.2, "in_flight": 4, "queued_for_site": 120,
               "clock_skew": -0.4},
              {"id": "agt_fedcba9876543210", "site": "plant-2", "name": "b1", "state": "revoked",
               "seconds_since_seen": None, "in_flight": 0, "queued_for_site": 0, "clock_skew": None}]
    text = render(agents_table(agents))
    assert_readable(text, ["online", "revoked", "3 s ago", "never", "plant-1", "120", "-0.4"],
                    {0: ["agt_0123456789abcdef", "agt_fedcba9876543210"], 2: ["sap-gateway-host-01.corp.example.com"]})


def test_tokens_table_at_80_columns() -> None:
    rows = [{"id": "0123456789abcdef", "name": "ci-deploy-pipeline", "state": "active", "created_at": 1.7e9,
             "last_used_at": 1.7e9 + 60, "revoked_at": None},
            {"id": "fedcba9876543210", "name": "old", "state": "revoked", "created_at": 1.7e9,
             "last_used_at": None, "revoked_at": 1.7e9 + 3600}]
    text = render(tokens_table(rows))
    assert_readable(text, ["0123456789abcdef", "active", "revoked", "2023-11-14", "22:13:20", "UTC"],
                    {1: ["ci-deploy-pipeline"]})


def test_sync_summary_table_at_80_columns() -> None:
    counts = {"read": 50000, "created": 48000, "adopted": 120, "updated": 1500, "deactivated": 190,
              "unchanged": 190, "parked": 12, "failed": 3}
    text = render(summary_table("vendors_to_ramp", "vendors", counts))
    assert_readable(text, [*RUN_COUNTS, *(str(v) for v in counts.values())], {})
