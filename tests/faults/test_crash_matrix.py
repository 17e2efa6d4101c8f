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
from tests.support.fault_pairs import (
    CONCUR_FLOW,
    PROCORE_FLOW,
    PROCORE_STREAMS,
    SFMC_FLOW,
    SFMC_MASTER_STREAMS,
    SFMC_STREAMS,
    concur_case,
    concur_figures,
    procore_case,
    procore_figures,
    sfmc_case,
    sfmc_figures,
    sfmc_master_case,
    sfmc_master_figures,
)
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


B1_POST = "POST /b1s/v1/JournalEntries"
CONCUR_STEPS = {**STEPS, "B1 committed, answer lost": f"http.answered@{B1_POST}"}


@pytest.mark.parametrize("step", list(CONCUR_STEPS))
def test_concur_to_business_one_killed_at_each_step(step, tmp_path, fault_matrix):
    spec = CONCUR_STEPS[step] if "@" in CONCUR_STEPS[step] else f"{CONCUR_STEPS[step]}@expense_reports"
    with concur_case(tmp_path) as case:
        crash_then_recover(case.w.env, CONCUR_FLOW, spec, db=case.w.rt.db)
        figures = concur_figures(case)
    fault_matrix.append(Row("concur expense_reports", f"SIGKILL {step}", *figures))
    assert figures == (0, 0)


#: Every step of every Procore write path: vendors (the bulk sync endpoint), commitments (purchase
#: orders, with their lines) and direct costs. Each case syncs the whole flow (the kill lands in its
#: stream), then recovers it: every stream's figures are counted.
PROCORE_CASES = [(stream, step) for stream in PROCORE_STREAMS for step in STEPS]


@pytest.mark.parametrize(("stream", "step"), PROCORE_CASES)
def test_ecc_to_procore_killed_at_each_step(stream, step, ecc, tmp_path, fault_matrix):
    with procore_case(ecc, tmp_path) as case:
        crash_then_recover(case.w.env, PROCORE_FLOW, f"{STEPS[step]}@{stream}", db=case.w.rt.db)
        figures = procore_figures(case)
    fault_matrix.append(Row(f"procore {stream}", f"SIGKILL {step}", *figures))
    assert figures == (0, 0)


@pytest.mark.parametrize("step", list(STEPS))
def test_ecc_to_marketing_cloud_orders_killed_at_each_step(step, ecc, tmp_path, fault_matrix):
    with sfmc_case(ecc, tmp_path) as case:
        crash_then_recover(case.w.env, SFMC_FLOW, f"{STEPS[step]}@orders", streams=SFMC_STREAMS, db=case.w.rt.db)
        figures = sfmc_figures(case)
    fault_matrix.append(Row("sfmc orders: DE rows+journey events", f"SIGKILL {step}", *figures))
    assert figures == (0, 0)


@pytest.mark.parametrize("step", list(STEPS))
@pytest.mark.parametrize("stream", SFMC_MASTER_STREAMS)
def test_ecc_to_marketing_cloud_master_data_killed_at_each_step(stream, step, small_ecc, sfmc_expected, tmp_path,
                                                                fault_matrix):
    # At the second time the step is reached: one page was delivered, the run is part done.
    with sfmc_master_case(small_ecc, tmp_path) as case:
        crash_then_recover(case.w.env, SFMC_FLOW, f"{STEPS[step]}@{stream}#2", streams=(stream,), db=case.w.rt.db)
        figures = sfmc_master_figures(case, stream, sfmc_expected[stream])
    fault_matrix.append(Row(f"sfmc {stream}: DE rows", f"SIGKILL {step}", *figures))
    assert figures == (0, 0)
