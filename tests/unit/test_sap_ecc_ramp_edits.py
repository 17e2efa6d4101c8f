"""Pure rules of issue 11 items 9, 4 and 7: what counts as an edit after posting, matching the
accounting vendors Ramp already has, a bill source waiting for a token."""

from __future__ import annotations

from typing import Any

import pytest

from ml_connector.core.http import CredentialRefused, TokenEndpointError
from ml_connector.flows._sap_ecc_ramp_edits import is_reversal, posting_fingerprint, reversal_key, what_changed
from ml_connector.flows.sap_ecc_ramp import match_accounting_vendor
from ml_connector.systems.ramp.sources import no_token

POSTED: dict[str, Any] = {
    "bill_id": "b1", "invoice_number": "INV-1", "company_code": "1000", "vendor": "0000100001", "currency": "USD",
    "doc_date": "2025-06-15", "posting_date": "2025-06-15", "xblnr": "RMPABC", "credit_memo": False,
    "problems": [], "lines": [{"gl_account": "0000600000", "cost_center": "0000001000", "amount": "100.00",
                               "text": "Paper"}]}


def test_only_what_sap_holds_makes_an_edit() -> None:
    fp = posting_fingerprint(POSTED)
    # a new prefix or a replaced document is not the bill's content; the original posting date is the date
    assert posting_fingerprint({**POSTED, "xblnr": "OTHER", "replaces": "1/1000/2025"}) == fp
    assert posting_fingerprint({**POSTED, "posting_date": "2025-07-01", "original_posting_date": "2025-06-15"}) == fp
    line = POSTED["lines"][0]
    for changed in ({**line, "amount": "120.00"}, {**line, "cost_center": "0000001100"},
                    {**line, "gl_account": "0000610000"}, {**line, "text": "Toner"}):
        assert posting_fingerprint({**POSTED, "lines": [changed]}) != fp
    assert posting_fingerprint({**POSTED, "vendor": "0000100002"}) != fp


def test_what_changed_says_it_in_words() -> None:
    new = {**POSTED, "lines": [{**POSTED["lines"][0], "amount": "120.00", "cost_center": "0000001100"}]}
    text = what_changed(POSTED, new)
    assert "amount 100.00 USD → 120.00 USD" in text
    assert "lines [GL 600000/CC 1000 100.00] → [GL 600000/CC 1100 120.00]" in text


def test_reversal_keys_name_the_bill_and_the_document() -> None:
    key = reversal_key("b1", "1900000001/1000/2025")
    assert is_reversal(key) and key.startswith("b1") and not is_reversal("b1")


SAP = {"NAME1": "Acme Tools", "LAND1": "US", "ORT01": "Boston", "STCD1": "12-3456789"}


def test_accounting_vendors_match_by_tax_id_then_name_and_address_never_a_guess() -> None:
    assert match_accounting_vendor("0000100001", SAP, [
        {"ramp_id": "r1", "id": "QB-1", "name": "Other", "tax_id": "123456789"},
        {"ramp_id": "r2", "id": "QB-2", "name": "Acme Tools"}]) == ("r1", [])
    assert match_accounting_vendor("0000100001", SAP, [{"ramp_id": "r2", "id": "QB-2", "name": "ACME TOOLS, Inc."}]
                                   ) == ("r2", [])
    # another country is another vendor; two alike are for an operator
    assert match_accounting_vendor("0000100001", SAP, [{"ramp_id": "r3", "name": "Acme Tools", "country": "DE"}]
                                   ) == (None, [])
    twins = [{"ramp_id": "r4", "name": "Acme Tools"}, {"ramp_id": "r5", "name": "Acme Tools LLC"}]
    assert match_accounting_vendor("0000100001", SAP, twins) == (None, ["r4", "r5"])


def test_a_bill_source_waits_when_no_token_can_be_had_but_not_for_a_refused_credential() -> None:
    page = no_token(TokenEndpointError("ramp: token request failed (HTTP 503: Service unavailable)"), {"start": None})
    assert page.done and not page.records and "HTTP 503" in page.waiting
    gone = TokenEndpointError("ramp: token request failed (HTTP 404)")
    gone.permanent = True
    with pytest.raises(TokenEndpointError):
        no_token(gone, {})
    assert not isinstance(CredentialRefused("x"), TokenEndpointError)  # refused: never waited out
