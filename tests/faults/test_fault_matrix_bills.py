"""The fault matrix of the bills flow (Ramp bills → SAP postings, reported back to Ramp): one world
for the module (master data synced once), each case posting bills of its own under one fault."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fault_matrix import Row
from tests.support.faults import (
    BILL_FAULTS,
    BILLS_FLOW,
    Base,
    World,
    add_bills,
    bill_figures,
    bills_world,
    recover,
    sync,
)

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def bills(fault_base: Base, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with bills_world(fault_base, tmp_path_factory.mktemp("bills")) as w:
        yield w


@pytest.mark.parametrize("fault", list(BILL_FAULTS))
def test_bills_to_sap_under_fault(fault, bills, fault_matrix):
    bills.errors.clear()
    ids = add_bills(bills, fault)
    bills.ramp.faults_injected = 0
    BILL_FAULTS[fault].arm(bills)
    sync(bills, BILLS_FLOW)
    hit = BILL_FAULTS[fault].hit(bills)
    recover(bills, BILLS_FLOW)
    figures = bill_figures(bills, ids)
    fault_matrix.append(Row("bills", fault, *figures))
    assert hit, "the fault should have struck"
    assert figures == (0, 0), bills.errors
