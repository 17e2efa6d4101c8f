"""Business One's refusals of a journal entry in the console's catalogue: a failed record's error (as
the journal-entry target writes it) and a verdict message of the approval queue are both explained
by the Business One entry for the cause, not by a generic one."""

from __future__ import annotations

import pytest

from ml_connector.server.console.catalogue import classify
from ml_connector.systems.sap_b1 import known_errors as msg

CASES = [
    (msg.NO_PERIOD, "sap_b1:period-undefined"),
    (msg.PERIOD_LOCKED, "sap_b1:period-locked"),
    (msg.NO_RATE, "sap_b1:exchange-rate"),
    (msg.unbalanced(100.0, 120.5), "sap_b1:unbalanced"),
    (msg.invalid_account(1, "9999"), "sap_b1:account"),
    (msg.title_account(2, "6000"), "sap_b1:account"),
    (msg.frozen_account(1, "6030"), "sap_b1:account"),
    (msg.manual_locked_account(1, "6030"), "sap_b1:account"),
    (msg.invalid_partner(2, "V9"), "sap_b1:partner"),
    (msg.inactive_partner("E00001", "cSupplier"), "sap_b1:partner"),
    (msg.invalid_rule(1, "CostingCode2", "X"), "sap_b1:distribution-rule"),
    (msg.inactive_rule(1, "CostingCode", "CC01"), "sap_b1:distribution-rule"),
    (msg.invalid_project(1, "P9"), "sap_b1:project"),
    (msg.invalid_currency(1, "XYZ"), "sap_b1:currency"),
]


@pytest.mark.parametrize("text,key", CASES)
def test_business_one_refusals_are_explained_by_their_own_catalogue_entry(text: str, key: str) -> None:
    failed = f"Business One refused journal entry concur:report:R1: {text} (HTTP 400, code -5002)"
    assert classify("failed", None, failed).key == key
    assert classify("failed", None, msg.with_code(msg.JE_CODE, text)).key == key
    # the approval queue's verdict: B1's code and text first, then the catalogue's words for the cause
    title = next(k.title for k in msg.KNOWN_ERRORS if k.key == key)
    assert msg.explained(msg.with_code(msg.JE_CODE, text)).startswith(f"({msg.JE_CODE}) {text}. {title}. ")
