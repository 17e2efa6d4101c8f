"""The fault matrix's crash rows: every flow's write path with its sync process SIGKILLed at each
step of a write (core/killpoints.py), then the operator's recovery (the next sync, `replay --all`)
in a new process; what the targets hold is counted: duplicates and losses must be zero.

The steps: a page staged in the outbox and not delivered; writes marked in flight, the target not
called; the target's write committed and its answer not recorded; the answer recorded, the engine's
step not completed. Each case is its own world (a fresh target sandbox and database)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.crashes import STEPS, crash_then_recover
from tests.support.fault_matrix import Row
from tests.support.faults import (
    BILLS_FLOW,
    MASTER_FLOW,
    Base,
    World,
    add_bills,
    bill_figures,
    bill_status_figures,
    case,
    crash_bills_world,
    master_figures,
    paid_and_rejected,
    runtime,
)

pytestmark = [pytest.mark.faults, pytest.mark.slow]  # two or three sync processes per case


@pytest.mark.parametrize("step", list(STEPS))
@pytest.mark.parametrize("stream", ["gl_accounts", "cost_centers"])
def test_master_data_to_ramp_killed_at_each_step(stream, step, fault_base, tmp_path, fault_matrix):
    with case(fault_base, tmp_path) as (ramp, env), runtime(env) as rt:
        crash_then_recover(env, MASTER_FLOW, f"{STEPS[step]}@{stream}", streams=(stream,), db=rt.db)
        figures = master_figures(World({"sap_ecc": fault_base.ecc, "ramp": ramp}, env, rt), stream)
    fault_matrix.append(Row(stream, f"SIGKILL {step}", *figures))
    assert figures == (0, 0)


#: Beyond the engine's steps, the bills' own: SAP committed and Ramp not told yet; Ramp's record of
#: the report committed and its answer lost.
RAMP_REPORT = "POST /developer/v1/accounting/syncs"
BILL_STEPS = {**STEPS, "SAP committed, Ramp not told": f"http.sent@{RAMP_REPORT}",
              "Ramp told, answer lost": f"http.answered@{RAMP_REPORT}"}


@pytest.fixture(scope="module")
def crash_bills(fault_base: Base, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with crash_bills_world(fault_base, tmp_path_factory.mktemp("crash-bills")) as w:
        yield w


@pytest.mark.parametrize("step", list(BILL_STEPS))
def test_bills_posting_killed_at_each_step(step, crash_bills, fault_matrix):
    w = crash_bills
    ids = add_bills(w, f"K{list(BILL_STEPS).index(step)}")
    spec = BILL_STEPS[step] if "@" in BILL_STEPS[step] else f"{BILL_STEPS[step]}@bills"
    crash_then_recover(w.env, BILLS_FLOW, spec, streams=("bills",), db=w.rt.db)
    figures = bill_figures(w, ids)
    fault_matrix.append(Row("bills", f"SIGKILL {step}", *figures))
    assert figures == (0, 0)


@pytest.mark.parametrize("step", list(BILL_STEPS))
def test_bill_status_killed_at_each_step(step, crash_bills, fault_matrix):
    w = crash_bills
    paid, rejected, reference = paid_and_rejected(w, f"S{list(BILL_STEPS).index(step)}")
    spec = BILL_STEPS[step] if "@" in BILL_STEPS[step] else f"{BILL_STEPS[step]}@bill_status"
    crash_then_recover(w.env, BILLS_FLOW, spec, streams=("bill_status",), db=w.rt.db)
    figures = bill_status_figures(w, paid, rejected, reference)
    fault_matrix.append(Row("bill_status", f"SIGKILL {step}", *figures))
    assert figures == (0, 0)
