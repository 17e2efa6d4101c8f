"""Pure rules of issue 11 items 9, 4 and 7: what counts as an edit after posting, matching the
accounting vendors Ramp already has, a bill source waiting for a token."""

from __future__ import annotations

from typing import Any

import pytest

from ml_connector.core import ledger
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


MM_POSTED: dict[str, Any] = {
    **POSTED, "kind": "mm", "lines": [{"po_number": "4500000001", "po_item": "00010", "amount": "150.00",
                                       "text": "Bolts", "quantity": "10", "po_unit": "EA"}]}


def test_a_po_bill_edit_is_its_amounts_or_po_items_not_what_sap_adds() -> None:
    fp = posting_fingerprint(MM_POSTED)
    assert fp != posting_fingerprint(POSTED)
    # the quantity and unit come from SAP's PO item when the bill is checked: not the bill's content
    plain = {k: v for k, v in MM_POSTED["lines"][0].items() if k not in ("quantity", "po_unit")}
    assert posting_fingerprint({**MM_POSTED, "lines": [plain]}) == fp
    for changed in ({**plain, "amount": "165.00"}, {**plain, "po_item": "00020"}, {**plain, "po_number": "4500000002"}):
        assert posting_fingerprint({**MM_POSTED, "lines": [changed]}) != fp
    new = {**MM_POSTED, "lines": [{**plain, "amount": "165.00", "po_item": "00020"}]}
    text = what_changed(MM_POSTED, new)
    assert "amount 150.00 USD → 165.00 USD" in text
    assert "lines [PO 4500000001/10 150.00] → [PO 4500000001/20 165.00]" in text


def test_fi_bill_fingerprints_are_unchanged_by_the_mm_rules() -> None:
    # an operator's decision is keyed `<bill>@<fingerprint>`: FI bills keep the fingerprints they had
    keep = {k: POSTED.get(k) for k in ("company_code", "vendor", "currency", "credit_memo", "doc_date",
                                       "invoice_number", "problems")}
    keep["posting_date"] = POSTED["posting_date"]
    keep["lines"] = [[ln["gl_account"], ln["cost_center"], ln["amount"], ln["text"]] for ln in POSTED["lines"]]
    assert posting_fingerprint(POSTED) == ledger.content_hash(keep)[:16] == "c01493b24a851edb"


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
