"""The Concur → Business One part of `make demo`: posts, reviews one vendor, posts it once mapped;
the second run posts nothing."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from ml_connector.demo_concur_b1 import run_concur_b1_demo
from tests.support import summary_rows


@pytest.mark.slow  # the pair's whole demo twice (`make demo` runs it as well)
def test_concur_b1_demo_twice(tmp_path) -> None:
    first, second = io.StringIO(), io.StringIO()
    assert run_concur_b1_demo(tmp_path, Console(file=first, width=200), b1_login_seconds=0) == 0
    out = first.getvalue()
    reports, invoices = summary_rows(out)
    assert reports[:2] == [4, 3] and reports[6] == 1  # read, created; parked: the coffee shop's report
    assert invoices[:2] == [2, 2]
    assert "waits for vendors:Blue Bottle Coffee" in out and "resumed" in out
    assert "Business One now holds 6 journal entries" in out
    assert run_concur_b1_demo(tmp_path, Console(file=second, width=200), b1_login_seconds=0) == 0
    again = summary_rows(second.getvalue())
    assert len(again) == 2 and all(r[1] == r[2] == r[3] == r[6] == 0 for r in again)
    assert "Business One now holds 6 journal entries" in second.getvalue()
    assert "concur-sandbox-secret" not in (tmp_path / "concur-b1" / "ml-connector.yaml").read_text()
