"""The fault matrix's crash rows: every flow's write path with its sync process SIGKILLed at each
step of a write (core/killpoints.py), then the operator's recovery (the next sync, `replay --all`)
in a new process; what the targets hold is counted: duplicates and losses must be zero.

The steps: a page staged in the outbox and not delivered; writes marked in flight, the target not
called; the target's write committed and its answer not recorded; the answer recorded, the engine's
step not completed. Each case is its own world (a fresh target sandbox and database)."""

from __future__ import annotations

import pytest

from tests.support.crashes import STEPS, crash_then_recover
from tests.support.fault_matrix import Row
from tests.support.faults import MASTER_FLOW, World, case, master_figures, runtime

pytestmark = [pytest.mark.faults, pytest.mark.slow]  # two or three sync processes per case


@pytest.mark.parametrize("step", list(STEPS))
@pytest.mark.parametrize("stream", ["gl_accounts", "cost_centers"])
def test_master_data_to_ramp_killed_at_each_step(stream, step, fault_base, tmp_path, fault_matrix):
    with case(fault_base, tmp_path) as (ramp, env), runtime(env) as rt:
        crash_then_recover(env, MASTER_FLOW, f"{STEPS[step]}@{stream}", streams=(stream,), db=rt.db)
        figures = master_figures(World({"sap_ecc": fault_base.ecc, "ramp": ramp}, env, rt), stream)
    fault_matrix.append(Row(stream, f"SIGKILL {step}", *figures))
    assert figures == (0, 0)
