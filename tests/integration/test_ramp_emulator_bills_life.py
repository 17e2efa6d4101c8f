"""Ramp emulator: a bill's whole life over real HTTP, driven by the admin endpoints.

Line items with accounting selections (GL account, cost-center option, other fields), approval,
payment (method, date, trace id) and rejection with their timestamps, edits after approval, and
BILL_SYNC / BILL_PAYMENT_SYNC reported back through `POST /accounting/syncs`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ml_connector.core.servers import ServerHandle, serve_in_thread
from ml_connector.systems.ramp.sandbox.app import create_app
from ml_connector.systems.ramp.sandbox.state import (
    DEFAULT_ENTITY_ID,
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_SCOPES,
    RampSandbox,
)

API = "/developer/v1"


@pytest.fixture
def ramp() -> Iterator[tuple[RampSandbox, ServerHandle, dict[str, str]]]:
    st = RampSandbox()
    st.rate_limit.enabled = False
    h = serve_in_thread(create_app(st), name="ramp-bills-life")
    try:
        r = httpx.post(h.url + API + "/token", auth=(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET),
                       data={"grant_type": "client_credentials", "scope": DEMO_SCOPES})
        hdr = {"Authorization": "Bearer " + r.json()["access_token"]}
        _chart(h, hdr)
        yield st, h, hdr
    finally:
        h.stop()


def _chart(h: ServerHandle, hdr: dict[str, str]) -> None:
    def post(path: str, body: dict[str, Any]) -> Any:
        r = httpx.post(h.url + API + path, headers=hdr, json=body)
        assert r.status_code == 201, r.text
        return r.json()

    post("/accounting/vendors", {"vendors": [{"id": "0000100001", "name": "Grainger"}]})
    post("/accounting/accounts", {"gl_accounts": [{"id": "0000600100", "name": "Consumables", "code": "600100",
                                                   "classification": "EXPENSE"}]})
    cc = post("/accounting/fields", {"id": "SAP_COST_CENTER", "name": "Cost Center", "input_type": "SINGLE_CHOICE"})
    plant = post("/accounting/fields", {"id": "SAP_PLANT", "name": "Plant", "input_type": "SINGLE_CHOICE"})
    post("/accounting/field-options", {"field_id": cc["ramp_id"], "options": [
        {"id": "0000001000", "value": "Plant 1000 production", "code": "1000"},
        {"id": "0000002000", "value": "Plant 2000 production", "code": "2000"}]})
    post("/accounting/field-options", {"field_id": plant["ramp_id"], "options": [{"id": "1000", "value": "Detroit"}]})


def new_bill(h: ServerHandle, **over: Any) -> dict[str, Any]:
    body = {"vendor": "0000100001", "invoice_number": f"INV-{uuid.uuid4().hex[:8]}", "due_at": "2026-12-31",
            "line_items": [{"amount": "100.50", "memo": "bolts", "gl_account": "0000600100",
                            "cost_center": "0000001000", "fields": {"SAP_PLANT": "1000"}},
                           {"amount": "20", "gl_account": "0000600100", "cost_center": "0000002000"}],
            **over}
    r = httpx.post(h.url + "/_sandbox/bills", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def api(h: ServerHandle, hdr: dict[str, str], bill_id: str) -> dict[str, Any]:
    r = httpx.get(h.url + API + f"/bills/{bill_id}", headers=hdr)
    assert r.status_code == 200, r.text
    return dict(r.json())


def admin(h: ServerHandle, bill_id: str, action: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.post(h.url + f"/_sandbox/bills/{bill_id}/{action}", json=body or {})


def test_lines_carry_accounting_selections(ramp: tuple[RampSandbox, ServerHandle, dict[str, str]]) -> None:
    _, h, hdr = ramp
    b = api(h, hdr, new_bill(h, fields={"SAP_PLANT": "1000"})["id"])
    assert b["amount"] == {"amount": 12050, "currency_code": "USD"}
    first = b["line_items"][0]
    assert first["amount"] == {"amount": 10050, "currency_code": "USD"} and first["memo"] == "bolts"
    by_type = {s["category_info"]["type"]: s for s in first["accounting_field_selections"]}
    assert set(by_type) == {"GL_ACCOUNT", "COST_CENTER", "OTHER"}
    assert by_type["GL_ACCOUNT"]["external_id"] == "0000600100" and by_type["GL_ACCOUNT"]["external_code"] == "600100"
    assert by_type["COST_CENTER"]["external_id"] == "0000001000"
    assert by_type["COST_CENTER"]["category_info"]["external_id"] == "SAP_COST_CENTER"
    assert by_type["OTHER"]["external_id"] == "1000" and by_type["OTHER"]["category_info"]["name"] == "Plant"
    assert [s["external_id"] for s in b["accounting_field_selections"]] == ["1000"]
    for k in ("bill_owner", "vendor_contact_id", "inventory_line_items", "invoice_urls", "fx_conversion_rate",
              "deep_link_url", "issued_at", "due_at", "payment", "paid_at"):
        assert k in b
    assert b["approval_status"] == "APPROVED" and b["approved_at"] and b["status"] == "OPEN" and b["sync_ready"]
    bad = httpx.post(h.url + "/_sandbox/bills", json={"vendor": "0000100001", "line_items": [
        {"amount": "1", "fields": {"SAP_PLANT": "9999"}}]})
    assert bad.status_code == 400 and "9999" in bad.json()["error"]


def test_approve_pay_and_payment_sync(ramp: tuple[RampSandbox, ServerHandle, dict[str, str]]) -> None:
    _, h, hdr = ramp
    bid = new_bill(h, approval_status="PENDING", payment_method="CHECK")["id"]
    b = api(h, hdr, bid)
    assert (b["approval_status"], b["approved_at"], b["sync_ready"]) == ("PENDING", None, False)
    assert admin(h, bid, "pay").status_code == 409  # not approved yet
    ok = admin(h, bid, "approve")
    assert ok.status_code == 200 and ok.json()["approval_status"] == "APPROVED" and ok.json()["approved_at"]
    assert admin(h, bid, "approve").status_code == 409
    assert api(h, hdr, bid)["sync_ready"] is True
    ready = httpx.get(h.url + API + "/bills", headers=hdr, params={"sync_ready": "true"}).json()["data"]
    assert bid in {x["id"] for x in ready}
    # BILL_SYNC, then payment
    r = httpx.post(h.url + API + "/accounting/syncs", headers=hdr, json={
        "idempotency_key": str(uuid.uuid4()), "sync_type": "BILL_SYNC",
        "successful_syncs": [{"id": bid, "reference_id": "5105600001"}]})
    assert r.status_code == 201, r.text
    early = httpx.post(h.url + API + "/accounting/syncs", headers=hdr, json={
        "idempotency_key": str(uuid.uuid4()), "sync_type": "BILL_PAYMENT_SYNC",
        "successful_syncs": [{"id": bid, "reference_id": "1500000001"}]})
    assert early.status_code == 400 and "not ready" in early.json()["error_v2"]["message"]
    paid = admin(h, bid, "pay", {"payment_date": "2026-12-15", "reference": "CHK-004711"})
    assert paid.status_code == 200, paid.text
    b = api(h, hdr, bid)
    assert (b["status"], b["payment_status"], b["paid_at"]) == ("PAID", "PAID", "2026-12-15T00:00:00+00:00")
    pay = b["payment"]
    assert pay["payment_method"] == "CHECK" and pay["amount"] == b["amount"] and pay["id"]
    assert pay["payment_date"] == "2026-12-15T00:00:00+00:00" and pay["effective_date"] == pay["payment_date"]
    assert pay["trace_id"] == {"descriptor": "Check Number", "trace_id": "CHK-004711"}
    assert "approval_status" in pay["details"]
    listed = httpx.get(h.url + API + "/bills", headers=hdr, params={"payment_status": "PAID"}).json()["data"]
    assert [x["id"] for x in listed] == [bid] and listed[0]["payment"]["trace_id"] is None  # R1: GET by id only
    assert httpx.get(h.url + API + "/bills", headers=hdr,
                     params={"from_paid_at": "2026-12-15", "to_paid_at": "2026-12-15"}).json()["data"][0]["id"] == bid
    assert httpx.get(h.url + API + "/bills", headers=hdr, params={"from_paid_at": "2026-12-16"}).json()["data"] == []
    assert admin(h, bid, "pay").status_code == 409 and admin(h, bid, "reject").status_code == 409
    r = httpx.post(h.url + API + "/accounting/syncs", headers=hdr, json={
        "idempotency_key": str(uuid.uuid4()), "sync_type": "BILL_PAYMENT_SYNC",
        "successful_syncs": [{"id": bid, "reference_id": "1500000001"}]})
    assert r.status_code == 201, r.text
    assert api(h, hdr, bid)["sync_status"] == "BILL_AND_PAYMENT_SYNCED"
    synced = httpx.get(h.url + API + "/bills", headers=hdr, params={"sync_status": "BILL_AND_PAYMENT_SYNCED"})
    assert [x["id"] for x in synced.json()["data"]] == [bid]
    # a manual payment names its manual method; a card payment has no trace id
    other = new_bill(h)["id"]
    man = admin(h, other, "pay", {"payment_method": "PAID_MANUALLY", "manual_payment_method": "DOMESTIC_WIRE_TRANSFER"})
    assert man.json()["payment"]["details"] == {"manual_payment_method": "DOMESTIC_WIRE_TRANSFER"}
    card = admin(h, new_bill(h)["id"], "pay", {"payment_method": "CARD"}).json()["payment"]
    assert card["trace_id"] is None and card["effective_date"] is None and "transaction_ids" in card["details"]
    assert admin(h, new_bill(h)["id"], "pay", {"payment_method": "BITCOIN"}).status_code == 400
    assert admin(h, "nope", "pay").status_code == 404


def test_reject_pending_and_after_sync(ramp: tuple[RampSandbox, ServerHandle, dict[str, str]]) -> None:
    _, h, hdr = ramp
    pending = new_bill(h, approval_status="PENDING")["id"]
    r = admin(h, pending, "reject", {"reason": "duplicate invoice"})
    assert r.status_code == 200
    b = api(h, hdr, pending)
    assert (b["approval_status"], b["rejection_reason"], b["sync_ready"]) == ("REJECTED", "duplicate invoice", False)
    assert b["rejected_at"] and admin(h, pending, "approve").status_code == 409
    posted = new_bill(h)["id"]
    httpx.post(h.url + API + "/accounting/syncs", headers=hdr, json={
        "idempotency_key": str(uuid.uuid4()), "sync_type": "BILL_SYNC",
        "successful_syncs": [{"id": posted, "reference_id": "5105600002"}]}).raise_for_status()
    assert admin(h, posted, "reject", {"reason": "wrong amount"}).status_code == 200
    b = api(h, hdr, posted)
    assert (b["approval_status"], b["sync_status"]) == ("REJECTED", "BILL_SYNCED")
    assert admin(h, posted, "pay").status_code == 409
    rejected = httpx.get(h.url + API + "/bills", headers=hdr, params={"approval_status": "REJECTED"}).json()["data"]
    assert {x["id"] for x in rejected} == {pending, posted}


def test_edit_after_approval_and_sync(ramp: tuple[RampSandbox, ServerHandle, dict[str, str]]) -> None:
    st, h, hdr = ramp
    bill = new_bill(h)
    bid = bill["id"]
    httpx.post(h.url + API + "/accounting/syncs", headers=hdr, json={
        "idempotency_key": str(uuid.uuid4()), "sync_type": "BILL_SYNC",
        "successful_syncs": [{"id": bid, "reference_id": "5105600003"}]}).raise_for_status()
    r = httpx.patch(h.url + f"/_sandbox/bills/{bid}", json={
        "memo": "corrected", "line_items": [{"amount": "150", "gl_account": "0000600100",
                                             "cost_center": "0000002000"}]})
    assert r.status_code == 200, r.text
    b = api(h, hdr, bid)
    assert b["amount"]["amount"] == 15000 and b["memo"] == "corrected" and len(b["line_items"]) == 1
    assert b["line_items"][0]["accounting_field_selections"][1]["external_id"] == "0000002000"
    assert b["updated_at"] >= bill["updated_at"] and b["approval_status"] == "APPROVED"
    assert b["sync_status"] == "BILL_SYNCED"  # default: an edit does not re-open the sync
    st.edit_resets_sync = True
    assert httpx.patch(h.url + f"/_sandbox/bills/{bid}", json={"memo": "again"}).status_code == 200
    assert api(h, hdr, bid)["sync_status"] == "NOT_SYNCED" and api(h, hdr, bid)["sync_ready"] is True
    assert httpx.patch(h.url + f"/_sandbox/bills/{bid}", json={"vendor": "x"}).status_code == 400
    assert httpx.patch(h.url + f"/_sandbox/bills/{bid}", json={"line_items": [
        {"amount": "1", "gl_account": "NOPE"}]}).status_code == 400
    admin(h, bid, "pay").raise_for_status()
    assert httpx.patch(h.url + f"/_sandbox/bills/{bid}", json={"memo": "late"}).status_code == 409
    # archive (DELETE /bills/{id}) hides the bill from the default listing
    other = new_bill(h)["id"]
    assert httpx.delete(h.url + API + f"/bills/{other}", headers=hdr).status_code == 204
    assert other not in {x["id"] for x in httpx.get(h.url + API + "/bills", headers=hdr).json()["data"]}
    assert other in {x["id"] for x in httpx.get(h.url + API + "/bills", headers=hdr,
                                                params={"is_archived": "true"}).json()["data"]}
    assert admin(h, other, "approve").status_code == 409


def test_bill_list_filters(ramp: tuple[RampSandbox, ServerHandle, dict[str, str]]) -> None:
    _, h, hdr = ramp
    small = new_bill(h, line_items=[{"amount": "5", "gl_account": "0000600100"}], issued_at="2026-11-01")["id"]
    big = new_bill(h, line_items=[{"amount": "5000", "gl_account": "0000600100"}], issued_at="2026-11-20")["id"]

    def ids(**params: Any) -> list[str]:
        r = httpx.get(h.url + API + "/bills", headers=hdr, params=params)
        assert r.status_code == 200, r.text
        return [x["id"] for x in r.json()["data"]]

    assert ids(min_amount="100") == [big] and ids(max_amount="100") == [small]
    assert ids(from_issued_date="2026-11-10") == [big] and ids(to_issued_date="2026-11-10") == [small]
    assert ids(payment_method="ACH") == [small, big] and ids(payment_method="CHECK") == []
    assert httpx.get(h.url + API + "/bills", headers=hdr, params={"payment_method": "X"}).status_code == 400
    assert httpx.get(h.url + API + "/bills", headers=hdr, params={"from_due_date": "soon"}).status_code == 400


def test_developer_api_create_and_patch_bill(ramp: tuple[RampSandbox, ServerHandle, dict[str, str]]) -> None:
    st, h, hdr = ramp
    v = httpx.post(h.url + API + "/vendors", headers=hdr, json={
        "name": "Grainger", "country": "US", "vendor_owner_id": next(iter(st.users)),
        "accounting_vendor_remote_id": "0000100001",
        "business_vendor_contacts": [{"first_name": "Ann", "last_name": "Ar", "email": "ar@grainger.example"}]})
    assert v.status_code == 200, v.text
    vendor = v.json()
    body = {"vendor_id": vendor["id"], "vendor_contact_id": vendor["contacts"][0], "entity_id": DEFAULT_ENTITY_ID,
            "invoice_number": "API-1", "invoice_currency": "USD", "issued_at": "2026-11-02", "due_at": "2026-12-02",
            "payment_method": "ACH", "memo": "via API", "remote_id": "ext-1",
            "line_items": [
                {"amount": "12.34", "memo": "a", "accounting_field_selections": [
                    {"field_external_id": "GL_ACCOUNT", "field_option_external_id": "0000600100"},
                    {"field_external_id": "SAP_COST_CENTER", "field_option_external_id": "0000001000"}]},
                {"amount": {"amount": 66, "currency_code": "USD"}, "accounting_field_selections": [
                    {"field_external_id": "SAP_PLANT", "field_option_external_id": "1000"}]}]}
    r = httpx.post(h.url + API + "/bills", headers=hdr, json=body)
    assert r.status_code == 201, r.text
    b = r.json()
    assert b["approval_status"] == "APPROVED" and b["sync_ready"]  # API bills are auto-approved
    assert b["amount"] == {"amount": 1300, "currency_code": "USD"} and b["remote_id"] == "ext-1"
    assert b["vendor"]["remote_id"] == "0000100001" and b["vendor_contact_id"] == vendor["contacts"][0]
    types = [[s["category_info"]["type"] for s in ln["accounting_field_selections"]] for ln in b["line_items"]]
    assert types == [["GL_ACCOUNT", "COST_CENTER"], ["OTHER"]]
    for bad in ({**body, "vendor_contact_id": "x"}, {**body, "payment_method": "CASH"},
                {**body, "line_items": []}, {**body, "entity_id": "nope"},
                {**body, "line_items": [{"amount": "1", "accounting_field_selections": [
                    {"field_external_id": "NOPE", "field_option_external_id": "1"}]}]},
                {k: v for k, v in body.items() if k != "due_at"}):
        bad_r = httpx.post(h.url + API + "/bills", headers=hdr, json=bad)
        assert bad_r.status_code == 400 and bad_r.json()["error_v2"]["error_code"] == "DEVELOPER_7001", bad
    po = next(iter(st.purchase_orders))
    p = httpx.patch(h.url + API + f"/bills/{b['id']}", headers=hdr, json={
        "memo": "patched", "purchase_order_id": po,
        "line_items": [{"amount": "99", "accounting_field_selections": [
            {"field_external_id": "GL_ACCOUNT", "field_option_external_id": "0000600100"}]}]})
    assert p.status_code == 200, p.text
    assert (p.json()["memo"], p.json()["amount"]["amount"], p.json()["purchase_order_id"]) == ("patched", 9900, po)
    assert b["id"] in st.purchase_orders[po]["bill_ids"]
    ro = httpx.post(h.url + API + "/token", auth=(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET),
                    data={"grant_type": "client_credentials", "scope": "bills:read"}).json()["access_token"]
    assert httpx.post(h.url + API + "/bills", headers={"Authorization": f"Bearer {ro}"}, json=body).status_code == 403
    admin(h, b["id"], "pay").raise_for_status()
    late = httpx.patch(h.url + API + f"/bills/{b['id']}", headers=hdr, json={"memo": "too late"})
    assert late.status_code == 422
    assert httpx.patch(h.url + API + "/bills/nope", headers=hdr, json={"memo": "x"}).status_code == 404
