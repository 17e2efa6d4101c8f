"""Ramp emulator: the Developer API's read resources over real HTTP (uvicorn on loopback).

Paths, shapes, keyset paging, filters and scopes of transactions, reimbursements, users,
departments, locations, entities, cards, receipts, purchase orders, spend programs, Bill Pay
vendors and their contacts, checked against cloud-apis.md §1 and Ramp's OAS (R1).
"""

from __future__ import annotations

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
    SECOND_ENTITY_ID,
    RampSandbox,
)

API = "/developer/v1"


@pytest.fixture
def ramp() -> Iterator[tuple[RampSandbox, ServerHandle]]:
    st = RampSandbox(seed_vendors=True)
    st.rate_limit.enabled = False
    h = serve_in_thread(create_app(st), name="ramp-emulator")
    try:
        yield st, h
    finally:
        h.stop()


def token(h: ServerHandle, scope: str = DEMO_SCOPES) -> dict[str, str]:
    r = httpx.post(h.url + API + "/token", auth=(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET),
                   data={"grant_type": "client_credentials", "scope": scope})
    assert r.status_code == 200, r.text
    return {"Authorization": "Bearer " + r.json()["access_token"]}


def get(h: ServerHandle, hdr: dict[str, str], path: str, **params: Any) -> Any:
    r = httpx.get(h.url + API + path, headers=hdr, params=params)
    assert r.status_code == 200, (path, r.status_code, r.text)
    return r.json()


def walk(h: ServerHandle, hdr: dict[str, str], path: str, **params: Any) -> list[dict[str, Any]]:
    """Every record of a listing by following page.next; checks the URLs stay on our origin."""
    out: list[dict[str, Any]] = []
    body = get(h, hdr, path, **params)
    pages = 0
    while True:
        pages += 1
        assert pages < 500
        out.extend(body["data"])
        nxt = body["page"]["next"]
        if nxt is None:
            return out
        assert nxt.startswith(h.url + API + path + "?") and "start=" in nxt
        r = httpx.get(nxt, headers=hdr)
        assert r.status_code == 200, r.text
        body = r.json()


LISTS = ("/transactions", "/reimbursements", "/users", "/departments", "/locations", "/entities", "/cards",
         "/receipts", "/purchase-orders", "/spend-programs", "/vendors", "/bills", "/accounting/vendors",
         "/accounting/accounts", "/accounting/fields")


def _upload_chart(h: ServerHandle, hdr: dict[str, str]) -> str:
    def post(path: str, body: dict[str, Any]) -> Any:
        r = httpx.post(h.url + API + path, headers=hdr, json=body)
        assert r.status_code == 201, r.text
        return r.json()

    post("/accounting/vendors", {"vendors": [{"id": f"V{i}", "name": f"Vendor {i}"} for i in range(5)]})
    post("/accounting/accounts", {"gl_accounts": [{"id": f"{600000 + i}", "name": f"GL {i}",
                                                   "classification": "EXPENSE"} for i in range(5)]})
    field = post("/accounting/fields", {"id": "SAP_COST_CENTER", "name": "Cost Center",
                                        "input_type": "SINGLE_CHOICE"})
    post("/accounting/fields", {"id": "SAP_PLANT", "name": "Plant", "input_type": "SINGLE_CHOICE"})
    post("/accounting/field-options", {"field_id": field["ramp_id"],
                                       "options": [{"id": f"CC{i}", "value": f"Cost center {i}"} for i in range(5)]})
    return str(field["ramp_id"])


def test_every_list_pages_with_page_size_2_without_duplicates_or_omissions(
        ramp: tuple[RampSandbox, ServerHandle]) -> None:
    st, h = ramp
    hdr = token(h)
    field_id = _upload_chart(h, hdr)
    for i in range(5):
        r = httpx.post(h.url + "/_sandbox/bills", json={
            "vendor": f"V{i}", "invoice_number": f"INV-{i}",
            "line_items": [{"amount": "10.00", "gl_account": "600000", "cost_center": "CC1"}]})
        assert r.status_code == 201, r.text
    for i in range(3):  # new Bill Pay vendors sort before the seeded ones: both must be listed
        r = httpx.post(h.url + API + "/vendors", headers=hdr, json={
            "name": f"New {i}", "country": "US", "vendor_owner_id": "u",
            "business_vendor_contacts": [{"first_name": "A", "last_name": "B", "email": f"a{i}@x.example"}]})
        assert r.status_code == 200, r.text
    lists = [(p, {}) for p in LISTS] + [("/accounting/field-options", {"field_id": field_id})]
    lists += [(f"/vendors/{v}/contacts", {}) for v in st.billpay_vendors]
    lists += [("/transactions", {"state": "ALL"}), ("/reimbursements", {"direction": "USER_TO_BUSINESS"}),
              ("/transactions", {"order_by_amount_desc": "true"}), ("/transactions", {"order_by_date_asc": "true"})]
    for path, params in lists:
        whole = get(h, hdr, path, page_size=100, **params)
        assert whole["page"]["next"] is None, path
        ids = [r.get("ramp_id") or r["id"] for r in whole["data"]]
        assert ids, f"{path} is empty: the seed or the setup should fill it"
        paged = [r.get("ramp_id") or r["id"] for r in walk(h, hdr, path, page_size=2, **params)]
        assert paged == ids, (path, params)
        assert len(set(paged)) == len(paged), path
    counts = {p: len(walk(h, hdr, p, page_size=100)) for p in ("/transactions", "/users", "/cards", "/vendors")}
    assert counts == {"/transactions": len([t for t in st.transactions.values() if t["state"] != "DECLINED"]),
                      "/users": len(st.users), "/vendors": len(st.billpay_vendors),
                      "/cards": len([c for c in st.cards.values() if c["state"] != "TERMINATED"])}
    # as public connectors read cards: is_terminated=false, then true, gives every card once
    both = walk(h, hdr, "/cards", is_terminated="false") + walk(h, hdr, "/cards", is_terminated="true")
    assert sorted(c["id"] for c in both) == sorted(st.cards)


def test_seed_is_deterministic_and_consistent_across_resources(ramp: tuple[RampSandbox, ServerHandle]) -> None:
    st, h = ramp
    hdr = token(h)
    other = RampSandbox(seed_vendors=True)
    assert sorted(other.transactions) == sorted(st.transactions)
    assert [t["original_transaction_amount"] for t in other.transactions.values()] == \
        [t["original_transaction_amount"] for t in st.transactions.values()]
    users = {u["id"]: u for u in walk(h, hdr, "/users", page_size=100)}
    deps = {d["id"] for d in walk(h, hdr, "/departments")}
    locs = {loc["id"]: loc for loc in walk(h, hdr, "/locations")}
    cards = {c["id"]: c for c in walk(h, hdr, "/cards", page_size=100)}
    assert len(locs) == 3 and len(deps) >= 4 and len(users) >= 6
    business = get(h, hdr, "/business")["id"]
    for u in users.values():
        assert u["department_id"] in deps and u["location_id"] in locs and u["business_id"] == business
        assert u["entity_id"] == locs[u["location_id"]]["entity_id"]
        assert u["manager_id"] is None or u["manager_id"] in users
    for c in cards.values():
        assert c["cardholder_id"] in users and len(c["last_four"]) == 4
    txs = walk(h, hdr, "/transactions", state="ALL", page_size=100)
    receipts = {r["id"]: r for r in walk(h, hdr, "/receipts", page_size=100)}
    for t in txs:
        card = cards[t["card_id"]]
        assert t["card_holder"]["user_id"] == card["cardholder_id"]
        assert t["card_holder"]["department_id"] == users[card["cardholder_id"]]["department_id"]
        assert t["entity_id"] == card["entity_id"]
        amt = t["original_transaction_amount"]
        assert isinstance(amt["amount"], int) and amt["currency_code"] in ("USD", "EUR")
        assert t["amount"] == amt["amount"] / 100  # the legacy float in major units
        types = {s["type"] for s in t["accounting_field_selections"]}
        assert types == {"GL_ACCOUNT", "COST_CENTER"} and t["merchant_name"]
        for rid in t["receipts"]:
            assert receipts[rid]["transaction_id"] == t["id"]
    assert {r["transaction_id"] for r in receipts.values()} <= {t["id"] for t in txs}
    for r in walk(h, hdr, "/reimbursements", page_size=100):
        assert r["user_id"] in users and r["direction"] == "BUSINESS_TO_USER"
        assert r["original_reimbursement_amount"]["currency_code"] == r["currency"]
    pos = walk(h, hdr, "/purchase-orders")
    assert len(pos) == 3
    for po in pos:
        assert po["line_items"] and po["vendor_id"] in st.billpay_vendors and po["user_id"] in users
        assert po["amount"]["amount"] == sum(ln["amount"]["amount"] for ln in po["line_items"])
        for ln in po["line_items"]:
            assert ln["amount"]["amount"] == ln["unit_quantity"] * ln["unit_price"]["amount"]
    ents = {e["id"]: e for e in walk(h, hdr, "/entities")}
    assert set(ents) == {DEFAULT_ENTITY_ID, SECOND_ENTITY_ID}
    assert set(ents[SECOND_ENTITY_ID]["location_ids"]) == {i for i, v in locs.items()
                                                           if v["entity_id"] == SECOND_ENTITY_ID}
    assert get(h, hdr, f"/entities/{DEFAULT_ENTITY_ID}")["is_primary"] is True
    assert [e["id"] for e in get(h, hdr, "/entities", is_primary="false")["data"]] == [SECOND_ENTITY_ID]
    assert [e["id"] for e in get(h, hdr, "/entities", currency="EUR")["data"]] == [SECOND_ENTITY_ID]
    # the vendors' contacts
    vid = next(iter(st.billpay_vendors))
    vendor = get(h, hdr, f"/vendors/{vid}")
    contacts = get(h, hdr, f"/vendors/{vid}/contacts")["data"]
    assert [c["id"] for c in contacts] == vendor["contacts"]
    assert get(h, hdr, f"/vendors/{vid}/contacts/{contacts[0]['id']}")["is_default"] is True
    assert httpx.get(h.url + API + f"/vendors/{vid}/contacts/nope", headers=hdr).status_code == 404
    # an empty business when the seed is off
    assert RampSandbox(seed_demo=False).transactions == {}
    assert RampSandbox().billpay_vendors == {} and RampSandbox().purchase_orders  # vendors seeded only on request


def test_filters(ramp: tuple[RampSandbox, ServerHandle]) -> None:
    st, h = ramp
    hdr = token(h)
    every = walk(h, hdr, "/transactions", state="ALL", page_size=100)
    assert any(t["state"] == "DECLINED" for t in every)
    default = walk(h, hdr, "/transactions", page_size=100)
    assert default == [t for t in every if t["state"] != "DECLINED"]
    assert {t["state"] for t in walk(h, hdr, "/transactions", state="PENDING")} == {"PENDING"}
    oct_first = walk(h, hdr, "/transactions", from_date="2026-10-01", to_date="2026-10-10", state="ALL")
    assert oct_first and all("2026-10-01" <= t["user_transaction_time"][:10] <= "2026-10-10" for t in oct_first)
    assert len(oct_first) == len([t for t in every if "2026-10-01" <= t["user_transaction_time"][:10] <= "2026-10-10"])
    later = walk(h, hdr, "/transactions", from_date="2026-10-10T12:00:00Z", state="ALL")
    assert all(t["user_transaction_time"] >= "2026-10-10T12:00:00" for t in later)
    user = next(iter(st.users.values()))
    dept = user["department_id"]
    by_dept = walk(h, hdr, "/transactions", department_id=dept)
    assert by_dept and all(t["card_holder"]["department_id"] == dept for t in by_dept)
    some_user = by_dept[0]["card_holder"]["user_id"]
    assert all(t["card_holder"]["user_id"] == some_user for t in walk(h, hdr, "/transactions", user_id=some_user))
    assert {t["sync_status"] for t in walk(h, hdr, "/transactions", sync_ready="true")} == {"SYNC_READY"}
    synced = walk(h, hdr, "/transactions", sync_status="SYNCED", sync_ready="true")  # sync_status wins
    assert synced and {t["sync_status"] for t in synced} == {"SYNCED"}
    assert walk(h, hdr, "/transactions", synced_after="2030-01-01") == []
    # updated_after (public clients' incremental cursor): inclusive by default, a switch
    stamp = every[5]["updated_at"]
    newer = walk(h, hdr, "/transactions", updated_after=stamp, state="ALL", page_size=100)
    assert every[5]["id"] in {t["id"] for t in newer}
    assert {t["id"] for t in newer} == {t["id"] for t in every if t["updated_at"] >= stamp}
    st.updated_after_inclusive = False
    assert every[5]["id"] not in {t["id"] for t in walk(h, hdr, "/transactions", updated_after=stamp, state="ALL")}
    st.updated_after_inclusive = True
    desc = walk(h, hdr, "/transactions", order_by_amount_desc="true", page_size=3)
    assert [t["amount"] for t in desc] == sorted((t["amount"] for t in default), reverse=True)
    assert all(t["amount"] >= 500 for t in walk(h, hdr, "/transactions", min_amount=500))
    two = httpx.get(h.url + API + "/transactions", headers=hdr,
                    params={"order_by_date_asc": "true", "order_by_amount_asc": "true"})
    assert two.status_code == 400 and two.json()["error_v2"]["error_code"] == "DEVELOPER_7001"
    bad = httpx.get(h.url + API + "/transactions", headers=hdr, params={"from_date": "yesterday"})
    assert bad.status_code == 400 and "from_date" in bad.json()["error_v2"]["additional_info"]
    assert httpx.get(h.url + API + "/transactions", headers=hdr, params={"state": "NOPE"}).status_code == 400
    assert httpx.get(h.url + API + "/transactions", headers=hdr, params={"page_size": 1}).status_code == 400
    one = every[3]
    assert get(h, hdr, f"/transactions/{one['id']}") == one
    missing = httpx.get(h.url + API + "/transactions/00000000-0000-4000-8000-000000000000", headers=hdr)
    assert missing.status_code == 404 and missing.json()["error_v2"]["error_code"] == "DEVELOPER_7004"
    # reimbursements
    paybacks = walk(h, hdr, "/reimbursements", direction="USER_TO_BUSINESS")
    assert paybacks and all(r["direction"] == "USER_TO_BUSINESS" for r in paybacks)
    ready = walk(h, hdr, "/reimbursements", sync_status="SYNC_READY")
    assert ready and all(r["sync_status"] == "SYNC_READY" for r in ready)
    assert walk(h, hdr, "/reimbursements", updated_after="2030-01-01T00:00:00Z") == []
    r0 = walk(h, hdr, "/reimbursements")[0]
    assert all(r["user_id"] == r0["user_id"] for r in walk(h, hdr, "/reimbursements", user_id=r0["user_id"]))
    assert get(h, hdr, f"/reimbursements/{r0['id']}") == r0
    # users, cards, receipts, purchase orders, locations
    in_dept = walk(h, hdr, "/users", department_id=dept)
    assert in_dept and all(u["department_id"] == dept for u in in_dept)
    assert [u["id"] for u in walk(h, hdr, "/users", email=user["email"])] == [user["id"]]
    assert {u["entity_id"] for u in walk(h, hdr, "/users", entity_id=SECOND_ENTITY_ID)} == {SECOND_ENTITY_ID}
    cards = walk(h, hdr, "/cards", user_id=some_user)
    assert cards and all(c["cardholder_id"] == some_user for c in cards)
    assert {c["state"] for c in walk(h, hdr, "/cards", is_terminated="true")} == {"TERMINATED"}
    assert all(c["state"] != "TERMINATED" for c in walk(h, hdr, "/cards"))
    st.cards_hide_terminated = False
    assert "TERMINATED" in {c["state"] for c in walk(h, hdr, "/cards")}
    rec = walk(h, hdr, "/receipts")[0]
    assert [r["id"] for r in walk(h, hdr, "/receipts", transaction_id=rec["transaction_id"])] == [rec["id"]]
    po = walk(h, hdr, "/purchase-orders")[0]
    st.purchase_orders[po["id"]]["archived_at"] = "2026-11-30T00:00:00+00:00"
    assert po["id"] not in {p["id"] for p in walk(h, hdr, "/purchase-orders")}
    assert po["id"] in {p["id"] for p in walk(h, hdr, "/purchase-orders", include_archived="true")}
    assert {p["entity_id"] for p in walk(h, hdr, "/purchase-orders", entity_id=SECOND_ENTITY_ID)} == {SECOND_ENTITY_ID}
    assert {p["creation_source"] for p in walk(h, hdr, "/purchase-orders", creation_source="RAMP")} == {"RAMP"}
    assert {loc["entity_id"] for loc in walk(h, hdr, "/locations", entity_id=DEFAULT_ENTITY_ID)} == {DEFAULT_ENTITY_ID}
    sp = walk(h, hdr, "/spend-programs")[0]
    assert get(h, hdr, f"/spend-programs/{sp['id']}")["restrictions"]["limit"]["currency_code"] == "USD"


@pytest.mark.parametrize(("path", "scope"), [
    ("/transactions", "transactions:read"), ("/reimbursements", "reimbursements:read"), ("/users", "users:read"),
    ("/departments", "departments:read"), ("/locations", "locations:read"), ("/entities", "entities:read"),
    ("/cards", "cards:read"), ("/receipts", "receipts:read"), ("/purchase-orders", "purchase_orders:read"),
    ("/spend-programs", "spend_programs:read"), ("/vendors", "vendors:read"), ("/business", "business:read"),
    ("/bills", "bills:read")])
def test_each_resource_needs_its_scope(ramp: tuple[RampSandbox, ServerHandle], path: str, scope: str) -> None:
    _, h = ramp
    other = "accounting:read" if scope != "accounting:read" else "bills:read"
    r = httpx.get(h.url + API + path, headers=token(h, other))
    assert r.status_code == 403
    body = r.json()
    assert body["error_v2"]["error_code"] == "DEVELOPER_7100" and scope in body["error_v2"]["message"]
    assert body["error_v2"]["additional_info"] == {"required_scope": [scope]}
    assert httpx.get(h.url + API + path, headers=token(h, scope)).status_code == 200
    assert httpx.get(h.url + API + path).status_code == 401


def test_token_grants_the_subset_the_app_has_by_default(ramp: tuple[RampSandbox, ServerHandle]) -> None:
    st, h = ramp
    assert {"transactions:read", "reimbursements:read", "users:read", "entities:read"} <= set(DEMO_SCOPES.split())
    r = httpx.post(h.url + API + "/token", auth=(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET),
                   data={"grant_type": "client_credentials", "scope": "transactions:read cards:write"})
    assert r.status_code == 200 and r.json()["scope"] == "transactions:read"
    hdr = {"Authorization": "Bearer " + r.json()["access_token"]}
    assert httpx.get(h.url + API + "/cards", headers=hdr).status_code == 403  # the gap shows up later
    st.scope_mismatch = "invalid_scope"
    r = httpx.post(h.url + API + "/token", auth=(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET),
                   data={"grant_type": "client_credentials", "scope": "transactions:read cards:write"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"


def test_department_and_location_writes(ramp: tuple[RampSandbox, ServerHandle]) -> None:
    st, h = ramp
    st.allowed_scopes += " departments:write locations:write"
    hdr = token(h, "departments:read departments:write locations:read locations:write")
    r = httpx.post(h.url + API + "/departments", headers=hdr, json={"name": "Quality"})
    assert r.status_code == 200 and r.json()["name"] == "Quality"
    did = r.json()["id"]
    assert httpx.patch(h.url + API + f"/departments/{did}", headers=hdr, json={"name": "QA"}).json()["name"] == "QA"
    assert did in {d["id"] for d in walk(h, hdr, "/departments")}
    assert httpx.post(h.url + API + "/departments", headers=hdr, json={}).status_code == 400
    loc = httpx.post(h.url + API + "/locations", headers=hdr,
                     json={"name": "Plant 4000", "entity_id": SECOND_ENTITY_ID})
    assert loc.status_code == 200 and loc.json()["entity_id"] == SECOND_ENTITY_ID
    ro = token(h, "departments:read")
    assert httpx.post(h.url + API + "/departments", headers=ro, json={"name": "X"}).status_code == 403


def test_accounting_connection(ramp: tuple[RampSandbox, ServerHandle]) -> None:
    _, h = ramp
    hdr = token(h)
    conn = API + "/accounting/connection"
    assert httpx.get(h.url + conn, headers=hdr).status_code == 404  # deprecated GET: none yet
    assert get(h, hdr, "/accounting/all-connections") == {"connections": []}
    r = httpx.post(h.url + conn, headers=hdr, json={"remote_provider_name": "SAP ECC"})
    assert r.status_code == 201 and r.json()["status"] == "linked" and r.json()["is_active"] is True
    first = r.json()
    assert set(first) == {"id", "remote_provider_name", "status", "is_active", "created_at", "last_linked_at"}
    assert httpx.post(h.url + conn, headers=hdr, json={"remote_provider_name": "SAP ECC"}).json()["id"] == first["id"]
    assert httpx.post(h.url + conn, headers=hdr, json={"remote_provider_name": "Other"}).status_code == 400
    assert httpx.post(h.url + conn, headers=hdr, json={}).status_code == 400
    assert get(h, hdr, "/accounting/connection")["id"] == first["id"]
    assert httpx.delete(h.url + conn, headers=hdr).status_code == 204
    assert httpx.delete(h.url + conn, headers=hdr).status_code == 404
    second = httpx.post(h.url + conn, headers=hdr, json={"remote_provider_name": "Other"}).json()
    assert httpx.post(h.url + f"{conn}/{first['id']}/reactivate", headers=hdr).status_code == 400  # another active
    httpx.delete(h.url + conn, headers=hdr).raise_for_status()
    again = httpx.post(h.url + f"{conn}/{first['id']}/reactivate", headers=hdr)
    assert again.status_code == 200 and again.json()["is_active"] is True
    states = {c["id"]: c["status"] for c in get(h, hdr, "/accounting/all-connections")["connections"]}
    assert states == {first["id"]: "linked", second["id"]: "unlinked"}
    ro = token(h, "accounting:read")
    assert httpx.post(h.url + conn, headers=ro, json={"remote_provider_name": "X"}).status_code == 403


def test_admin_purchase_order_and_bill_on_it(ramp: tuple[RampSandbox, ServerHandle]) -> None:
    st, h = ramp
    hdr = token(h)
    _upload_chart(h, hdr)
    vendor = next(iter(st.billpay_vendors))
    r = httpx.post(h.url + "/_sandbox/purchase_orders", json={
        "purchase_order_number": "4500000099", "vendor_id": vendor, "line_items": [
            {"description": "Bolts", "unit_quantity": 100, "unit_price": "0.25", "remote_id": "00010",
             "gl_account": "600000", "cost_center": "CC1"},
            {"description": "Nuts", "unit_quantity": 10, "unit_price": "1.5", "remote_id": "00020"}]})
    assert r.status_code == 201, r.text
    po = get(h, hdr, f"/purchase-orders/{r.json()['id']}")
    assert po["amount"] == {"amount": 4000, "currency_code": "USD"} and po["creation_source"] == "DEVELOPER_API"
    assert [ln["unit_price"]["amount"] for ln in po["line_items"]] == [25, 150]
    assert [ln["remote_id"] for ln in po["line_items"]] == ["00010", "00020"]
    assert po["line_items"][0]["accounting_field_selections"][0]["external_id"] == "600000"
    bill = httpx.post(h.url + "/_sandbox/bills", json={"vendor": "V1", "purchase_order_id": po["id"],
                                                       "line_items": [{"amount": "25"}]})
    assert bill.status_code == 201 and bill.json()["purchase_order_id"] == po["id"]
    assert get(h, hdr, f"/purchase-orders/{po['id']}")["bill_ids"] == [bill.json()["id"]]
    bad = httpx.post(h.url + "/_sandbox/purchase_orders", json={"vendor_id": "nope", "line_items": []})
    assert bad.status_code == 400
    # transactions and reimbursements can be driven too
    tid = next(t["id"] for t in st.transactions.values() if t["sync_status"] == "NOT_SYNC_READY"
               and t["state"] == "CLEARED")
    assert httpx.post(h.url + f"/_sandbox/transactions/{tid}/ready_to_sync").json()["sync_status"] == "SYNC_READY"
    assert tid in {t["id"] for t in walk(h, hdr, "/transactions", sync_status="SYNC_READY", page_size=100)}
    r2 = httpx.post(h.url + API + "/accounting/syncs", headers=hdr, json={
        "idempotency_key": "tx-1", "sync_type": "TRANSACTION_SYNC",
        "successful_syncs": [{"id": tid, "reference_id": "JE-1"}]})
    assert r2.status_code == 201 and get(h, hdr, f"/transactions/{tid}")["sync_status"] == "SYNCED"
    assert httpx.post(h.url + f"/_sandbox/transactions/{tid}/ready_to_sync").status_code == 409
    assert httpx.post(h.url + f"/_sandbox/transactions/{tid}/explode").status_code == 400
    assert httpx.post(h.url + "/_sandbox/cards/x/ready_to_sync").status_code == 404


def test_billpay_vendor_patch(ramp: tuple[RampSandbox, ServerHandle]) -> None:
    st, h = ramp
    hdr = token(h)
    vid = next(iter(st.billpay_vendors))
    r = httpx.patch(h.url + API + f"/vendors/{vid}", headers=hdr,
                    json={"description": "steel", "address": {"city": "Hamburg", "country": "DE"}})
    assert r.status_code == 200 and r.json()["description"] == "steel"
    assert get(h, hdr, f"/vendors/{vid}")["address"]["city"] == "Hamburg"
    assert httpx.patch(h.url + API + f"/vendors/{vid}", headers=hdr, json={"bogus": 1}).status_code == 400
    assert httpx.patch(h.url + API + "/vendors/nope", headers=hdr, json={"description": "x"}).status_code == 404
    assert httpx.patch(h.url + API + f"/vendors/{vid}", headers=token(h, "vendors:read"),
                       json={"description": "x"}).status_code == 403
