"""The fault matrix of the other integrations' write paths (tests/support/fault_pairs.py): SAP
Concur → Business One, SAP ECC → Procore, SAP ECC → Marketing Cloud, each case on a fresh target
sandbox and database: the fault armed, the flow synced in this process (a run may fail under it),
the operator's recovery without the fault, then duplicates and losses counted (all zero)."""

from __future__ import annotations

import pytest

from tests.support.fault_matrix import Row
from tests.support.fault_pairs import (
    CONCUR_FAULTS,
    CONCUR_FLOW,
    PROCORE_FAULTS,
    PROCORE_FLOW,
    SFMC_FAULTS,
    SFMC_FLOW,
    SFMC_MASTER_STREAMS,
    SFMC_STREAMS,
    concur_case,
    concur_figures,
    engine_here,
    procore_case,
    procore_figures,
    sfmc_case,
    sfmc_figures,
    sfmc_master_case,
    sfmc_master_figures,
)
from tests.support.faults import recover, sync

pytestmark = [pytest.mark.faults, pytest.mark.slow,  # sandboxes and the engine started per case
              pytest.mark.usefixtures("quick_retries")]


@pytest.mark.parametrize("fault", list(CONCUR_FAULTS))
def test_concur_to_business_one_under_fault(fault, tmp_path, fault_matrix):
    with concur_case(tmp_path) as case, engine_here(case.w):
        CONCUR_FAULTS[fault].arm(case.w)
        sync(case.w, CONCUR_FLOW)
        hit = CONCUR_FAULTS[fault].hit(case.w)
        recover(case.w, CONCUR_FLOW, case.reset)
        figures = concur_figures(case)
    fault_matrix.append(Row("concur expense_reports", fault, *figures))
    assert hit, "the fault should have struck"
    assert figures == (0, 0), case.w.errors


@pytest.mark.parametrize("fault", list(PROCORE_FAULTS))
def test_ecc_to_procore_under_fault(fault, ecc, tmp_path, fault_matrix):
    with procore_case(ecc, tmp_path) as case, engine_here(case.w):
        PROCORE_FAULTS[fault].arm(case.w)
        sync(case.w, PROCORE_FLOW)
        hit = PROCORE_FAULTS[fault].hit(case.w)
        recover(case.w, PROCORE_FLOW, case.reset)
        figures = procore_figures(case)
    fault_matrix.append(Row("procore vendors+commitments+direct costs", fault, *figures))
    assert hit, "the fault should have struck"
    assert figures == (0, 0), case.w.errors


@pytest.mark.parametrize("fault", list(SFMC_FAULTS))
def test_ecc_to_marketing_cloud_under_fault(fault, ecc, tmp_path, fault_matrix):
    with sfmc_case(ecc, tmp_path) as case, engine_here(case.w):
        SFMC_FAULTS[fault].arm(case.w)
        sync(case.w, SFMC_FLOW, SFMC_STREAMS)
        hit = SFMC_FAULTS[fault].hit(case.w)
        recover(case.w, SFMC_FLOW, case.reset, SFMC_STREAMS)
        figures = sfmc_figures(case)
    fault_matrix.append(Row("sfmc orders: DE rows+journey events", fault, *figures))
    assert hit, "the fault should have struck"
    assert figures == (0, 0), case.w.errors


@pytest.mark.parametrize("fault", list(SFMC_FAULTS))
def test_ecc_to_marketing_cloud_master_data_under_fault(fault, small_ecc, sfmc_expected, tmp_path, fault_matrix):
    with sfmc_master_case(small_ecc, tmp_path) as case, engine_here(case.w):
        SFMC_FAULTS[fault].arm(case.w)
        sync(case.w, SFMC_FLOW, SFMC_MASTER_STREAMS)
        hit = SFMC_FAULTS[fault].hit(case.w)
        recover(case.w, SFMC_FLOW, case.reset, SFMC_MASTER_STREAMS)
        figures = {s: sfmc_master_figures(case, s, sfmc_expected[s]) for s in SFMC_MASTER_STREAMS}
    fault_matrix.extend(Row(f"sfmc {s}: DE rows", fault, d, lost) for s, (d, lost) in figures.items())
    assert hit, "the fault should have struck"
    assert figures == {s: (0, 0) for s in figures}, case.w.errors
