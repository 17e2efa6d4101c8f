"""The fault matrix's table (issue 16, "Done when"): duplicates and losses per flow stream and fault.

A pytest plugin (registered in tests/conftest.py). Tests marked `faults` add rows: the matrix tests
(tests/faults) with the figures they measured, through the `fault_matrix` fixture; a test elsewhere
marked `@pytest.mark.faults(stream=..., fault=...)` (e.g. a SIGKILL test) adds one row from its
outcome, as its own assertions are of zero duplicates and losses. The table is printed at the end of
the run (`make faults`; `make test` runs the same tests)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Row:
    stream: str
    fault: str
    duplicates: int | None  # None: not measured here (a marker-only test): its assertions say 0
    losses: int | None
    passed: bool = True


ROWS: list[Row] = []
_ROW = "fault_matrix_row"


class Rows:
    """Where a matrix test records its rows: on the test's report (`user_properties`), so that they
    reach the process that prints the table also when pytest-xdist runs the tests elsewhere."""

    def __init__(self, item: pytest.Item) -> None:
        self.item = item

    def append(self, row: Row) -> None:
        self.item.user_properties.append((_ROW, (row.stream, row.fault, row.duplicates, row.losses)))

    def extend(self, rows: Iterable[Row]) -> None:
        for r in rows:
            self.append(r)


@pytest.fixture()
def fault_matrix(request: pytest.FixtureRequest) -> Rows:
    """Where a matrix test records its rows."""
    return Rows(request.node)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call":
        return
    for name, value in report.user_properties:
        if name == _ROW:
            stream, fault, duplicates, losses = value
            ROWS.append(Row(str(stream), str(fault), duplicates, losses, report.passed))
        elif name == "fault_marker" and isinstance(value, (tuple, list)):
            stream, fault = value
            ROWS.append(Row(str(stream), str(fault), 0 if report.passed else None, 0 if report.passed else None,
                            report.passed))


def pytest_runtest_setup(item: pytest.Item) -> None:
    m = item.get_closest_marker("faults")
    if m is not None and m.kwargs.get("stream") and m.kwargs.get("fault"):
        item.user_properties.append(("fault_marker", (str(m.kwargs["stream"]), str(m.kwargs["fault"]))))


def table(rows: list[Row]) -> list[str]:
    head = ("stream", "fault", "duplicates", "losses", "result")
    body = [(r.stream, r.fault, "?" if r.duplicates is None else str(r.duplicates),
             "?" if r.losses is None else str(r.losses),
             "ok" if r.passed and not r.duplicates and not r.losses else "FAIL") for r in rows]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*head), fmt.format(*("-" * w for w in widths)), *(fmt.format(*b) for b in body)]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not ROWS:
        return
    terminalreporter.section("fault matrix: duplicates and losses per stream and fault")
    for line in table(sorted(ROWS, key=lambda r: (r.stream, r.fault))):
        terminalreporter.write_line(line)
