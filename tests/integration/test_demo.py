"""`make demo` end to end: sandbox, agent protocol, sync, the bill round trip; the second run writes no
master data."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from ml_connector.demo import run_demo
from tests.support import summary_rows


def demo_part(out: str, title: str) -> str:
    """One pair's part of the demo's output: from its heading to the next pair's (each pair's demo
    fails the demo's exit code by itself when it does not do what it shows)."""
    _, sep, rest = out.partition(f"ml-connector demo: {title}")
    assert sep, f"the demo ran no part {title!r}"
    return rest.split("ml-connector demo:", 1)[0]


@pytest.mark.slow  # the whole demo twice, with the agent's real long polls (`make demo` runs it as well)
def test_demo_twice(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first, second = io.StringIO(), io.StringIO()
    assert run_demo(tmp_path / "demo", vendors=200, console=Console(file=first, width=200)) == 0
    rows = summary_rows(demo_part(first.getvalue(), "SAP ECC vendors → Ramp"))
    # The bill round trip: posted at the plants' cost centers, paid → cleared, rejected → blocked,
    # the bill on a missing cost center parked, then posted once SAP had it (no replay).
    text = demo_part(first.getvalue(), "SAP ECC vendors → Ramp")
    assert "poll 1: posted 3, parked 1" in text and "poll 2: posted 1, status changes 2" in text
    assert "BILL_AND_PAYMENT_SYNCED" in text and "paid: cleared by" in text and "payment block A" in text
    assert "not posted" not in text
    # vendors, GL accounts, cost centers, company codes, plants, departments: each created
    assert [r[1] > 0 for r in rows] == [True] * 6
    pair = summary_rows(demo_part(first.getvalue(), "SAP Concur expense reports"))
    assert len(pair) == 2  # the Concur → Business One pair's two streams
    procore = demo_part(first.getvalue(), "SAP ECC → Procore")
    # Procore: vendors, purchase orders, cost allocations, each writing; SAP and Procore tie out
    assert [r[1] > 0 for r in summary_rows(procore)] == [True] * 3
    assert "SAP and Procore tie out" in procore and "DIFFER" not in procore
    assert run_demo(tmp_path / "demo", vendors=200, console=Console(file=second, width=200)) == 0
    again = summary_rows(demo_part(second.getvalue(), "SAP ECC vendors → Ramp"))
    again += summary_rows(demo_part(second.getvalue(), "SAP Concur expense reports"))
    again += summary_rows(demo_part(second.getvalue(), "SAP ECC → Procore"))
    # created, adopted, updated, deactivated: zero writes
    assert len(again) == 6 + 2 + 3 and all(r[1] == r[2] == r[3] == r[4] == 0 for r in again)
    # The agent ran the SAP calls; the control plane never held the SAP password.
    audit = [json.loads(x) for x in (tmp_path / "demo" / "agent" / "agent-audit.jsonl").read_text().splitlines()]
    assert any(e["event"] == "call.executed" and e["function"] == "RFC_READ_TABLE" for e in audit)
    raw = b"".join(f.read_bytes() for f in (tmp_path / "demo" / "data").iterdir()
                   if f.name.startswith("ml-connector.sqlite"))
    assert b"Sandbox-1234" not in raw
