"""The fault matrix (issue 16, "Done when"): every flow's write path under the sandboxes' fault
injections, each case on a fresh world: the fault is armed, the flow syncs (a run may fail under
it), then the operator's recovery (the next sync, `replay --all`) runs without faults. What the
targets hold is then counted: duplicates and losses per stream must be zero. `make faults` runs
these (and the SIGKILL tests marked `faults`) and prints the table; `make test` runs them too.
The bills flow's cases: test_fault_matrix_bills.py."""

from __future__ import annotations

import pytest

from tests.support.fault_matrix import Row
from tests.support.faults import MASTER_FAULTS, MASTER_FLOW, master_figures, recover, sync, world

pytestmark = pytest.mark.faults


@pytest.mark.parametrize("fault", list(MASTER_FAULTS))
def test_master_data_to_ramp_under_fault(fault, fault_base, tmp_path, fault_matrix):
    with world(fault_base, tmp_path) as w:
        MASTER_FAULTS[fault].arm(w)
        sync(w, MASTER_FLOW)
        hit = MASTER_FAULTS[fault].hit(w)
        recover(w, MASTER_FLOW)
        figures = {s: master_figures(w, s) for s in w.rt.config.flows[MASTER_FLOW].streams}
    fault_matrix.extend(Row(s, fault, d, lost) for s, (d, lost) in figures.items())
    assert hit, "the fault should have struck"
    assert figures == {s: (0, 0) for s in figures}, w.errors

