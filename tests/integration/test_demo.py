"""`make demo` end to end: sandbox, agent protocol, sync, the bill round trip; the second run writes no
master data."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from ml_connector.demo import run_demo
from tests.support import summary_rows


@pytest.mark.slow  # the whole demo twice, with the agent's real long polls (`make demo` runs it as well)
def test_demo_twice(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first, second = io.StringIO(), io.StringIO()
    assert run_demo(tmp_path / "demo", vendors=200, console=Console(file=first, width=200)) == 0
    rows = summary_rows(first.getvalue())
    # The bill round trip: posted at the plants' cost centers, paid → cleared, rejected → blocked,
    # the bill on a missing cost center parked, then posted once SAP had it (no replay).
    text = first.getvalue()
    assert "poll 1: posted 3, parked 1" in text and "poll 2: posted 1, status changes 2" in text
    assert "BILL_AND_PAYMENT_SYNCED" in text and "paid: cleared by" in text and "payment block A" in text
    assert "not posted" not in text
    assert len(rows) == 3 and rows[0][1] > 0  # vendors, GL accounts, cost centers created
    assert run_demo(tmp_path / "demo", vendors=200, console=Console(file=second, width=200)) == 0
    again = summary_rows(second.getvalue())
    # created, adopted, updated, deactivated: zero writes
    assert len(again) == 3 and all(r[1] == r[2] == r[3] == r[4] == 0 for r in again)
    # The agent ran the SAP calls; the control plane never held the SAP password.
    audit = [json.loads(x) for x in (tmp_path / "demo" / "agent" / "agent-audit.jsonl").read_text().splitlines()]
    assert any(e["event"] == "call.executed" and e["function"] == "RFC_READ_TABLE" for e in audit)
    raw = b"".join(f.read_bytes() for f in (tmp_path / "demo" / "data").iterdir()
                   if f.name.startswith("ml-connector.sqlite"))
    assert b"Sandbox-1234" not in raw
