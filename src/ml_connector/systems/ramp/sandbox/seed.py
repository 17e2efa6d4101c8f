"""Deterministic demo data of the Ramp sandbox: the business's people, cards and spend.

A manufacturer with three plants (the issue's example): departments, locations (one per plant),
users in them, spend programs, cards of users, card transactions with merchants and accounting
coding, receipts of some transactions, reimbursements, purchase orders with line items, and
(optionally) Bill Pay vendors with contacts. Ids are fixed uuids whose string order is the seed
order, so keyset paging and tests can name them. Small on purpose: it is rebuilt on every reset.
"""

from __future__ import annotations

from typing import Any

from ml_connector.systems.ramp.sandbox.state import DEFAULT_ENTITY_ID, SECOND_ENTITY_ID

#: Kinds get a distinct first uuid group so that ids of different resources never collide.
KIND = {"department": 0xD0, "location": 0x10, "user": 0x05, "spend_program": 0x5B, "card": 0xCA,
        "transaction": 0x7A, "receipt": 0x8E, "reimbursement": 0x8B, "purchase_order": 0x90,
        "po_line": 0x91, "vendor": 0xBE, "vendor_contact": 0xBC, "merchant": 0x3E, "line": 0x71}


def seed_id(kind: str, i: int) -> str:
    """`5eed0000-…`-style ids: deterministic, ordered by `i` within a kind."""
    return f"5eed{KIND[kind]:04x}-0000-4000-8000-{i:012x}"


def money(minor: int, ccy: str = "USD") -> dict[str, Any]:
    return {"amount": minor, "currency_code": ccy}


DEPARTMENTS = ("Finance", "Operations", "Engineering", "Sales", "Procurement")
#: (name, entity) - one location per plant, as the example's three plants.
LOCATIONS = (("Plant 1000 Detroit", DEFAULT_ENTITY_ID), ("Plant 2000 Cleveland", DEFAULT_ENTITY_ID),
             ("Plant 3000 Hamburg", SECOND_ENTITY_ID))
#: (first, last, role, department index, location index, manager index or None)
USERS = (
    ("Avery", "Stone", "BUSINESS_OWNER", 0, 0, None),
    ("Blake", "Moreno", "BUSINESS_ADMIN", 0, 0, 0),
    ("Casey", "Nguyen", "BUSINESS_USER", 1, 0, 1),
    ("Devon", "Patel", "BUSINESS_USER", 2, 1, 1),
    ("Emery", "Schmidt", "BUSINESS_USER", 1, 2, 1),
    ("Finley", "Okafor", "BUSINESS_BOOKKEEPER", 0, 1, 1),
    ("Gray", "Ivanova", "BUSINESS_USER", 3, 1, 1),
    ("Harper", "Lindqvist", "BUSINESS_USER", 4, 2, 1),
)
SPEND_PROGRAMS = (("Travel", "TravelIcon", 500_000), ("Software", "SoftwareIcon", 1_000_000),
                  ("Plant supplies", "CUSTOM", 250_000))
#: (name, merchant category code, sk_category_id, sk category name, GL account, spend program index)
MERCHANTS = (
    ("Grainger Industrial Supply", "5085", 21, "Industrial Supplies", "0000600100", 2),
    ("Delta Air Lines", "3058", 3, "Airlines", "0000640000", 0),
    ("Marriott Hotels", "3509", 17, "Lodging", "0000640000", 0),
    ("Amazon Web Services", "4816", 24, "SaaS / Software", "0000651000", 1),
    ("Fastenal Company", "5072", 21, "Industrial Supplies", "0000600100", 2),
    ("Uber", "4121", 26, "Taxi and Rideshare", "0000640000", 0),
)
#: Cost centers by location (the plants' SAP cost centers).
PLANT_COST_CENTER = ("0000001000", "0000002000", "0000003000")
GL_NAMES = {"0000600100": "Consumables", "0000640000": "Travel expenses", "0000651000": "IT services"}
VENDORS = (("Grainger Industrial Supply", "US", "V100001"), ("Fastenal Company", "US", "V100002"),
           ("Hamburg Stahl GmbH", "DE", "V100003"))


def _selections(gl: str, cost_center: str) -> list[dict[str, Any]]:
    """Accounting field selections as on a coded transaction (GL account + cost center)."""
    return [
        {"id": seed_id("line", int(gl)), "external_id": gl, "external_code": gl.lstrip("0"),
         "name": GL_NAMES.get(gl, gl), "type": "GL_ACCOUNT", "source": None,
         "category_info": {"id": None, "external_id": None, "name": "GL Account", "type": "GL_ACCOUNT"}},
        {"id": seed_id("line", 10_000 + int(cost_center)), "external_id": cost_center,
         "external_code": cost_center.lstrip("0"), "name": f"Cost center {cost_center.lstrip('0')}",
         "type": "COST_CENTER", "source": None,
         "category_info": {"id": None, "external_id": "SAP_COST_CENTER", "name": "Cost Center",
                           "type": "COST_CENTER"}},
    ]


def build(business_id: str, *, vendors: bool) -> dict[str, dict[str, dict[str, Any]]]:
    """All seeded resources as `{resource: {id: record}}`, each dict in id (= keyset) order."""
    created = "2026-09-01T09:00:00+00:00"
    out: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in (
        "departments", "locations", "users", "spend_programs", "cards", "transactions", "receipts",
        "reimbursements", "purchase_orders", "billpay_vendors", "vendor_contacts")}
    for i, name in enumerate(DEPARTMENTS):
        out["departments"][seed_id("department", i)] = {"id": seed_id("department", i), "name": name}
    for i, (name, ent) in enumerate(LOCATIONS):
        out["locations"][seed_id("location", i)] = {"id": seed_id("location", i), "name": name, "entity_id": ent}
    users: list[dict[str, Any]] = []
    for i, (first, last, role, dep, loc, mgr) in enumerate(USERS):
        uid = seed_id("user", i)
        rec: dict[str, Any] = {"id": uid, "business_id": business_id, "first_name": first, "last_name": last,
               "email": f"{first.lower()}.{last.lower()}@sandbox-mfg.example", "employee_id": f"E{1000 + i}",
               "phone": f"+1555010{i:04d}", "role": role, "status": "USER_ACTIVE",
               "department_id": seed_id("department", dep), "location_id": seed_id("location", loc),
               "entity_id": LOCATIONS[loc][1], "manager_id": seed_id("user", mgr) if mgr is not None else None,
               "is_manager": any(u[5] == i for u in USERS), "custom_fields": []}
        out["users"][uid] = rec
        users.append(rec)
    for i, (name, icon, limit) in enumerate(SPEND_PROGRAMS):
        pid = seed_id("spend_program", i)
        out["spend_programs"][pid] = {
            "id": pid, "display_name": name, "description": f"{name} spend", "icon": icon,
            "is_shareable": False, "issue_physical_card_if_needed": i == 2,
            "permitted_spend_types": {"primary_card_enabled": True, "reimbursements_enabled": i != 1},
            "restrictions": {"interval": "MONTHLY", "limit": money(limit), "transaction_amount_limit": None,
                             "temporary_limit": None, "allowed_categories": [], "blocked_categories": [],
                             "allowed_vendors": [], "blocked_vendors": [], "auto_lock_date": None,
                             "next_interval_reset": "2026-12-01T00:00:00+00:00",
                             "start_of_interval": "2026-11-01T00:00:00+00:00"}}
    cards: list[dict[str, Any]] = []
    for u in users[1:]:  # everyone but the owner has a card; Casey has two
        for extra in ((0, 1) if u["first_name"] == "Casey" else (0,)):
            n = len(cards)
            cid = seed_id("card", n)
            rec = {"id": cid, "display_name": f"{u['first_name']}'s {'travel ' if extra else ''}card",
                   "last_four": f"{4000 + n:04d}", "expiration": "0129", "cardholder_id": u["id"],
                   "cardholder_name": f"{u['first_name']} {u['last_name']}", "entity_id": u["entity_id"],
                   "card_program_id": None, "has_program_overridden": False, "is_physical": not extra,
                   "state": "TERMINATED" if n == 5 else "ACTIVE", "created_at": created,
                   "spending_restrictions": {"amount": 5000.0, "interval": "MONTHLY", "suspended": False,
                                             "transaction_amount_limit": None, "auto_lock_date": None,
                                             "categories": [], "blocked_categories": []},
                   "fulfillment": None}
            out["cards"][cid] = rec
            cards.append(rec)
    active_cards = [c for c in cards if c["state"] == "ACTIVE"]
    by_user = {u["id"]: u for u in users}
    states = ("CLEARED",) * 7 + ("PENDING",) + ("CLEARED",) * 3 + ("DECLINED",)
    for i in range(24):
        tid = seed_id("transaction", i)
        card = active_cards[i % len(active_cards)]
        u = by_user[card["cardholder_id"]]
        loc = [seed_id("location", k) for k in range(len(LOCATIONS))].index(u["location_id"])
        m_name, mcc, sk_id, sk_name, gl, prog = MERCHANTS[i % len(MERCHANTS)]
        minor = 1250 + (i * 7919) % 98_000
        ccy = "EUR" if u["entity_id"] == SECOND_ENTITY_ID else "USD"
        day = 1 + (i * 5) % 28
        month = 10 + (i % 2)
        when = f"2026-{month:02d}-{day:02d}T{8 + i % 10:02d}:{(i * 13) % 60:02d}:00+00:00"
        state = states[i % len(states)]
        sync = "SYNCED" if i < 4 else "SYNC_READY" if i % 3 else "NOT_SYNC_READY"
        if state != "CLEARED":
            sync = "NOT_SYNC_READY"
        sels = _selections(gl, PLANT_COST_CENTER[loc])
        receipts = [seed_id("receipt", i)] if state == "CLEARED" and i % 2 == 0 else []
        out["transactions"][tid] = {
            "id": tid, "amount": minor / 100, "currency_code": ccy,
            "original_transaction_amount": money(minor, ccy), "user_transaction_time": when,
            "settlement_date": None if state != "CLEARED" else when[:10] + "T00:00:00+00:00",
            "accounting_date": when, "state": state, "card_id": card["id"], "entity_id": u["entity_id"],
            "card_holder": {"user_id": u["id"], "first_name": u["first_name"], "last_name": u["last_name"],
                            "department_id": u["department_id"],
                            "department_name": out["departments"][u["department_id"]]["name"],
                            "location_id": u["location_id"],
                            "location_name": out["locations"][u["location_id"]]["name"],
                            "employee_id": u["employee_id"]},
            "merchant_id": seed_id("merchant", i % len(MERCHANTS)), "merchant_name": m_name,
            "merchant_descriptor": m_name.upper()[:22], "merchant_category_code": mcc,
            "merchant_category_code_description": sk_name, "merchant_location": None, "merchant_data": None,
            "sk_category_id": sk_id, "sk_category_name": sk_name,
            "spend_program_id": seed_id("spend_program", prog), "limit_id": None, "statement_id": None,
            "trip_id": None, "trip_name": None, "memo": f"{sk_name} - {u['first_name']}",
            "card_present": mcc in ("5085", "5072"), "receipts": receipts, "receipt_affidavit": None,
            "accounting_categories": [{"category_id": s["id"], "category_name": s["name"],
                                       "tracking_category_remote_id": s["external_id"],
                                       "tracking_category_remote_name": s["name"],
                                       "tracking_category_remote_type": s["type"]} for s in sels],
            "accounting_field_selections": sels,
            "line_items": [{"amount": money(minor, ccy), "converted_amount": money(minor, ccy),
                            "memo": None, "accounting_field_selections": sels}],
            "policy_violations": [], "disputes": [], "attendees": [],
            "decline_details": {"reason": "INSUFFICIENT_FUNDS"} if state == "DECLINED" else None,
            "sync_status": sync, "synced_at": "2026-11-20T06:00:00+00:00" if sync == "SYNCED" else None,
            "updated_at": "2026-11-20T06:00:00+00:00" if sync == "SYNCED" else when,
            "minor_unit_conversion_rate": 100,
        }
        for rid in receipts:
            out["receipts"][rid] = {"id": rid, "transaction_id": tid, "user_id": u["id"], "created_at": when,
                                    "receipt_url": f"https://receipts.sandbox.invalid/{rid}.pdf"}
    kinds = (("OUT_OF_POCKET", "BUSINESS_TO_USER"), ("MILEAGE", "BUSINESS_TO_USER"),
             ("OUT_OF_POCKET", "BUSINESS_TO_USER"), ("PAYBACK_FULL", "USER_TO_BUSINESS"),
             ("OUT_OF_POCKET", "BUSINESS_TO_USER"), ("PER_DIEM", "BUSINESS_TO_USER"))
    r_states = ("REIMBURSED", "APPROVED", "REIMBURSED", "REIMBURSED", "PENDING", "REIMBURSED")
    for i, (kind, direction) in enumerate(kinds):
        rid = seed_id("reimbursement", i)
        u = users[2 + i % (len(users) - 2)]
        loc = [seed_id("location", k) for k in range(len(LOCATIONS))].index(u["location_id"])
        ccy = "EUR" if u["entity_id"] == SECOND_ENTITY_ID else "USD"
        minor = 2300 + i * 4150
        day = 3 + i * 4
        sync = "SYNCED" if i == 0 else "SYNC_READY" if r_states[i] == "REIMBURSED" else "NOT_SYNC_READY"
        sels = _selections("0000640000", PLANT_COST_CENTER[loc])
        out["reimbursements"][rid] = {
            "id": rid, "type": kind, "direction": direction, "state": r_states[i],
            "amount": minor / 100, "currency": ccy, "original_reimbursement_amount": money(minor, ccy),
            "payee_amount": money(minor, ccy), "user_id": u["id"],
            "user_full_name": f"{u['first_name']} {u['last_name']}", "user_email": u["email"],
            "employee_id": u["employee_id"], "entity_id": u["entity_id"],
            "merchant": None if kind in ("MILEAGE", "PER_DIEM") else MERCHANTS[i % len(MERCHANTS)][0],
            "merchant_id": None, "memo": f"{kind.replace('_', ' ').lower()} {i}",
            "transaction_date": f"2026-10-{day:02d}", "created_at": f"2026-10-{day:02d}T12:00:00+00:00",
            "submitted_at": f"2026-10-{day:02d}T12:30:00+00:00",
            "approved_at": None if r_states[i] == "PENDING" else f"2026-10-{day + 1:02d}T09:00:00+00:00",
            "updated_at": f"2026-10-{day + 2:02d}T09:00:00+00:00", "accounting_date": f"2026-10-{day:02d}",
            "distance": 42.5 if kind == "MILEAGE" else None,
            "start_location": "Detroit, MI" if kind == "MILEAGE" else None,
            "end_location": "Cleveland, OH" if kind == "MILEAGE" else None, "waypoints": [],
            "payment_id": seed_id("reimbursement", 100 + i) if r_states[i] == "REIMBURSED" else None,
            "spend_limit_id": None, "trip_id": None, "receipts": [], "attendees": [],
            "accounting_field_selections": sels,
            "line_items": [{"amount": money(minor, ccy), "memo": None, "accounting_field_selections": sels}],
            "payment_processed_at": f"2026-10-{day + 2:02d}T09:00:00+00:00" if r_states[i] == "REIMBURSED" else None,
            "payment_batch_id": None, "repayment_transaction_id": None,
            "sync_status": sync, "synced_at": "2026-11-20T06:00:00+00:00" if sync == "SYNCED" else None,
        }
    if vendors:
        for i, (name, country, remote) in enumerate(VENDORS):
            vid = seed_id("vendor", i)
            contact = seed_id("vendor_contact", i)
            out["vendor_contacts"][contact] = {
                "id": contact, "vendor_id": vid, "first_name": "Accounts", "last_name": "Receivable",
                "email": f"ar@{name.split()[0].lower()}.example", "phone": f"+1555020{i:04d}", "is_default": True}
            out["billpay_vendors"][vid] = {
                "id": vid, "name": name, "name_legal": name, "country": country, "vendor_owner_id": users[1]["id"],
                "is_active": True, "is_deletable": False, "accounting_vendor_remote_id": remote,
                "address": None, "state": None, "created_at": created, "contacts": [contact],
                "vendor_type": "BUSINESS", "description": None, "merchant_id": None,
                "sk_category_id": None, "sk_category_name": None, "billing_frequency": None,
                "federal_tax_classification": None, "tax_address": None,
                "custom_form_collection_response": None,
                **{k: money(0) for k in ("total_spend_all_time", "total_spend_last_30_days",
                                         "total_spend_last_365_days", "total_spend_ytd")}}
    for i in range(3):
        pid = seed_id("purchase_order", i)
        loc = i
        ent = LOCATIONS[loc][1]
        ccy = "EUR" if ent == SECOND_ENTITY_ID else "USD"
        lines: list[dict[str, Any]] = []
        for j in range(2 + i % 2):
            qty, unit = 10 * (j + 1), 1500 + 250 * j + 1000 * i
            lines.append({"id": seed_id("po_line", i * 10 + j), "remote_id": f"{(j + 1) * 10:05d}",
                          "description": f"Item {j + 1} for plant {loc + 1}000", "unit_quantity": qty,
                          "unit_price": money(unit, ccy), "amount": money(qty * unit, ccy),
                          "accounting_field_selections": _selections("0000600100", PLANT_COST_CENTER[loc])})
        total = sum(ln["amount"]["amount"] for ln in lines)
        out["purchase_orders"][pid] = {
            "id": pid, "purchase_order_number": f"450000{i + 1:04d}", "name": f"Plant {loc + 1}000 supplies",
            "remote_id": f"450000{i + 1:04d}", "entity_id": ent, "user_id": users[2 + i]["id"],
            "vendor_id": seed_id("vendor", i) if vendors else None, "memo": None,
            "amount": money(total, ccy), "spend_total_amount": money(0, ccy), "line_items": lines,
            "accounting_field_selections": [], "creation_source": "RAMP" if i < 2 else "ACCOUNTING_PROVIDER",
            "receipt_status": ("NOT_RECEIVED", "PARTIALLY_RECEIVED", "FULLY_RECEIVED")[i],
            "billing_status": "OPEN", "three_way_match_enabled": i == 2, "net_payment_terms": 30,
            "promise_date": f"2026-12-{10 + i:02d}", "spend_start_date": "2026-11-01",
            "spend_end_date": "2026-12-31", "spend_request_id": None, "bill_ids": [], "transaction_ids": [],
            "custom_form_collection_response": None, "archived_at": None,
            "created_at": f"2026-11-0{1 + i}T10:00:00+00:00"}
    return out
