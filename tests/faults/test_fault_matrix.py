"""The fault matrix (issue 16, "Done when"): every flow's write path under the sandboxes' fault
injections, each case on a fresh world: the fault is armed, the flow syncs (a run may fail under
it), then the operator's recovery (the next sync, `replay --all`) runs without faults. What the
targets hold is then counted: duplicates and losses per stream must be zero. `make faults` runs
these (and the SIGKILL tests marked `faults`) and prints the table; `make test` runs them too."""

from __future__ import annotations

import pytest

from tests.support.fault_matrix import Row
from tests.support.faults import (
    BILL_FAULTS,
    BILLS_FLOW,
    MASTER_FAULTS,
    MASTER_FLOW,
    add_bills,
    bill_figures,
    master_figures,
    recover,
    sync,
    world,
)

pytestmark = pytest.mark.faults


@pytest.mark.parametrize("fault", list(MASTER_FAULTS))
def test_master_data_to_ramp_under_fault(fault, fault_base, tmp_path, fault_matrix):
    with world(fault_base, tmp_path) as w:
        MASTER_FAULTS[fault](w)
        sync(w, MASTER_FLOW)
        injected = w.ramp.faults_injected + w.ramp.tokens_issued
        recover(w, MASTER_FLOW)
        figures = {s: master_figures(w, s) for s in w.rt.config.flows[MASTER_FLOW].streams}
    fault_matrix.extend(Row(s, fault, d, lost) for s, (d, lost) in figures.items())
    assert injected > 0, "the fault should have been hit"
    assert figures == {s: (0, 0) for s in figures}, w.errors


@pytest.mark.parametrize("fault", list(BILL_FAULTS))
def test_bills_to_sap_under_fault(fault, fault_base, tmp_path, fault_matrix):
    with world(fault_base, tmp_path) as w:
        sync(w, MASTER_FLOW)  # master data in Ramp, without faults
        bills = add_bills(w)
        BILL_FAULTS[fault](w)
        sync(w, BILLS_FLOW)
        recover(w, BILLS_FLOW)
        figures = bill_figures(w, bills)
    fault_matrix.append(Row("bills", fault, *figures))
    assert figures == (0, 0), w.errors
