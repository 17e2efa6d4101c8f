"""Pure rules of the SAP ECC ↔ Ramp chart and bill streams, and the Ramp sandbox's sync bookkeeping."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ml_connector.flows.sap_ecc_ramp import _money, gl_classification
from ml_connector.systems.ramp.sandbox.state import RampSandbox


@pytest.mark.parametrize(("saknr", "ska1", "skb1", "want"), [
    ("0000100000", {"XBILK": "X"}, [{}], "ASSET"),
    ("0000160000", {"XBILK": "X"}, [{"MITKZ": "K"}], "LIABILITY"),
    ("0000140000", {"XBILK": "X"}, [{"MITKZ": "D"}], "ASSET"),
    ("0000210000", {"XBILK": "X"}, [{}], "LIABILITY"),
    ("0000300000", {"XBILK": "X"}, [{}], "EQUITY"),
    ("0000600000", {"GVTYP": "X"}, [{}], "EXPENSE"),
    ("0000800000", {"GVTYP": "X"}, [{}], "REVENUE"),
])
def test_gl_classification_rule(saknr, ska1, skb1, want):
    assert gl_classification(saknr, ska1, skb1) == want


def test_gl_classification_overrides_longest_prefix_wins():
    rules = {"1": "ASSET", "175": "LIABILITY"}
    assert gl_classification("0000175000", {"XBILK": "X"}, [{}], rules) == "LIABILITY"
    assert gl_classification("0000170000", {"XBILK": "X"}, [{}], rules) == "ASSET"


def test_money_minor_units_and_bare_decimals():
    assert _money({"amount": 12050, "currency_code": "USD"}, "USD") == Decimal("120.50")
    assert _money({"amount": 500, "currency_code": "JPY"}, "JPY") == Decimal(500)
    assert _money("79.5", "USD") == Decimal("79.5")


def test_sandbox_sync_replay_returns_same_id_and_does_not_reapply():
    st = RampSandbox()
    st.vendors.add({"ramp_id": st.new_ramp_id(), "id": "0000100001", "name": "Acme", "code": "100001"})
    bill = st.create_bill({"vendor": "0000100001", "line_items": [{"amount": "10"}]})
    assert st.bill_sync_ready(st.bills[bill["id"]])
    body = {"idempotency_key": "k1", "sync_type": "BILL_SYNC",
            "successful_syncs": [{"id": bill["id"], "reference_id": "0100000001/1000/2025"}]}
    first, replayed = st.apply_sync(body)
    assert not replayed and st.bills[bill["id"]]["sync_status"] == "BILL_SYNCED"
    again, replayed = st.apply_sync(body)
    assert (again, replayed) == (first, True)
    with pytest.raises(ValueError, match="not ready"):  # a new key for a synced bill is refused
        st.apply_sync(dict(body, idempotency_key="k2"))


def test_sandbox_bill_refuses_unknown_references_unless_allowed():
    st = RampSandbox()
    with pytest.raises(ValueError, match="no accounting vendor"):
        st.create_bill({"vendor": "X", "line_items": [{"amount": "1", "gl_account": "0000600000"}]})
    b = st.create_bill({"vendor": "X", "allow_unknown": True,
                        "line_items": [{"amount": "1.25", "gl_account": "0000600000", "cost_center": "0000009999"}]})
    sels = b["line_items"][0]["accounting_field_selections"]
    assert [(s["external_id"], s["category_info"]["type"]) for s in sels] == [
        ("0000600000", "GL_ACCOUNT"), ("0000009999", "COST_CENTER")]
    assert b["amount"] == {"amount": 125, "currency_code": "USD"}
