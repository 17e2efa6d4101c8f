"""The fault matrix of the bills flow (Ramp bills → SAP postings, reported back to Ramp; paid and
rejected bills back to SAP): one world for the module (master data synced once), each case with bills
of its own under one fault; and the webhook cases of issue 11 (a dropped, a duplicated and
out-of-order webhooks) through the control plane's Ramp webhook intake served on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.bills import ramp_bill, sap_documents
from tests.support.fault_matrix import Row
from tests.support.faults import (
    BILL_FAULTS,
    BILLS_FLOW,
    STATUS_FAULTS,
    Base,
    World,
    add_bills,
    bill_figures,
    bill_status_figures,
    bills_world,
    open_entries,
    paid_and_rejected,
    paid_figures,
    recover,
    settled,
    sync,
    webhook_intake,
)
from tests.support.waiting import wait_until

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


@pytest.mark.parametrize("fault", list(STATUS_FAULTS))
def test_bill_status_to_sap_under_fault(fault, bills, fault_matrix):
    """Paid and rejected bills back to SAP (clearing, payment block; the payment reported to Ramp)."""
    bills.errors.clear()
    tag = f"T{list(STATUS_FAULTS).index(fault)}"
    paid, rejected, reference = paid_and_rejected(bills, tag, post=lambda: sync(bills, BILLS_FLOW, ("bills",)))
    bills.ramp.faults_injected = 0
    STATUS_FAULTS[fault].arm(bills)
    sync(bills, BILLS_FLOW, ("bill_status",))
    hit = STATUS_FAULTS[fault].hit(bills)
    recover(bills, BILLS_FLOW, streams=("bill_status",))
    figures = bill_status_figures(bills, paid, rejected, reference)
    fault_matrix.append(Row("bill_status", fault, *figures))
    assert hit, "the fault should have struck"
    assert figures == (0, 0), bills.errors


def test_bills_dropped_webhook_is_caught_by_the_reconciliation_poll(bills, fault_matrix):
    """Ramp's delivery of `bills.approved` never arrives (the intake is down, Ramp gives up): the
    bill is not posted until the poll, which posts it once."""
    with webhook_intake(bills) as intake:
        intake.stop()
        [bill] = add_bills(bills, "W-drop", 1)
        wait_until(lambda: [d["status"] for d in intake.deliveries(bill)] == ["failed"], timeout=30, interval=0.05)
        assert sap_documents(bills.handles, bill) == []  # nothing posted it yet
    sync(bills, BILLS_FLOW)  # the reconciliation poll
    figures = bill_figures(bills, [bill])
    fault_matrix.append(Row("bills", "dropped webhook, then the poll", *figures))
    assert figures == (0, 0), bills.errors


def test_bills_duplicated_webhook_posts_once(bills, fault_matrix):
    """Ramp sends `bills.approved` again under the same event id: stored once, posted once, no poll."""
    with webhook_intake(bills) as intake:
        [bill] = add_bills(bills, "W-dup", 1)
        wait_until(lambda: ramp_bill(bills.env, bill)["sync_status"] == "BILL_SYNCED", timeout=90, interval=0.1)
        [first] = intake.deliveries(bill)
        again = intake.deliver(first)
        assert again.status_code == 200 and again.json().get("duplicate") is True
        settled(bills)
    figures = bill_figures(bills, [bill])
    fault_matrix.append(Row("bills", "duplicated webhook", *figures))
    assert figures == (0, 0), bills.errors


def test_bills_out_of_order_webhooks_end_posted_and_paid_once(bills, fault_matrix):
    """`bills.paid` arrives before `bills.approved` (both held back while the intake was down, then
    delivered in reverse): the runs act on the bill's current state; no poll."""
    from tests.support.bills import pay_bill

    with webhook_intake(bills) as intake:
        intake.stop()
        [bill] = add_bills(bills, "W-order", 1)
        pay_bill(bills.env, bill, payment_date="2025-07-01", reference="FM-PAY-W-order")
        wait_until(lambda: [d["status"] for d in intake.deliveries(bill)] == ["failed", "failed"], timeout=30,
                   interval=0.05)
        approved, paid = sorted(intake.deliveries(bill), key=lambda d: '"bills.paid"' in d["body"])
        assert '"bills.approved"' in approved["body"] and '"bills.paid"' in paid["body"]
        intake.start()
        assert intake.deliver(paid).status_code == 200
        assert intake.deliver(approved).status_code == 200
        wait_until(lambda: ramp_bill(bills.env, bill)["sync_status"] == "BILL_AND_PAYMENT_SYNCED", timeout=90,
                   interval=0.2)
        settled(bills)
    figures = paid_figures(bills, bill, "FM-PAY-W-order")
    figures = (figures[0], figures[1] + open_entries(bills, BILLS_FLOW, "bills") +
               open_entries(bills, BILLS_FLOW, "bill_status"))
    fault_matrix.append(Row("bills+bill_status", "out-of-order webhooks", *figures))
    assert figures == (0, 0), bills.errors
