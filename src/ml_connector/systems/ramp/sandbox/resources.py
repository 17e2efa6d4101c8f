"""Read-mostly Developer API resources of the Ramp sandbox (cloud-apis.md §1.3, Ramp's OAS R1).

Transactions, reimbursements, users, departments, locations, entities, cards, receipts, purchase
orders, spend programs and Bill Pay vendor contacts: Ramp's paths, payload shapes, keyset paging
(`page_size` 2-100, `start` = the last id of the previous page, `page.next` an absolute URL) and the
filters Ramp documents for each, each behind its read scope. The records are `RampSandbox`
attributes (`{id: record}`), seeded by `seed.py`.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from ml_connector.systems.ramp.sandbox.state import ENTITIES, RampSandbox

PREFIX = "/developer/v1"
Row = dict[str, Any]
Pred = Callable[[Row], bool]


@dataclass
class Helpers:
    """The app's request helpers (closures over the sandbox), shared with these routes."""

    bearer: Callable[[Request, str], None]
    page_size: Callable[[Request], int]
    invalid: Callable[..., Exception]
    not_found: Callable[[str], Exception]
    json_body: Callable[[Request], Any]
    bool_param: Callable[[Request, str], bool | None]


def parse_when(raw: str, *, end: bool) -> datetime:
    """An ISO date or datetime as an aware UTC datetime. A bare date used as an upper bound covers
    the whole day (the bound is the next midnight, exclusive)."""
    if len(raw) == 10:
        d = date.fromisoformat(raw)
        at = datetime(d.year, d.month, d.day, tzinfo=UTC)
        return at + timedelta(days=1) if end else at
    at = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _field(name: str) -> Callable[[Row], Any]:
    return lambda r: r.get(name)


def _equals(get: Callable[[Row], Any], want: str) -> Pred:
    return lambda r: str(get(r)) == want


def register(app: FastAPI, st: RampSandbox, h: Helpers) -> None:
    def when_param(request: Request, name: str, *, end: bool = False) -> datetime | None:
        raw = request.query_params.get(name)
        if raw is None:
            return None
        try:
            return parse_when(raw, end=end)
        except ValueError:
            raise h.invalid({name: ["Not a valid datetime."]}) from None

    def number_param(request: Request, name: str) -> float | None:
        raw = request.query_params.get(name)
        if raw is None:
            return None
        try:
            return float(raw)
        except ValueError:
            raise h.invalid({name: ["Not a valid number."]}) from None

    def enum_param(request: Request, name: str, allowed: tuple[str, ...]) -> str | None:
        raw = request.query_params.get(name)
        if raw is not None and raw not in allowed:
            raise h.invalid({name: ["Must be one of: " + ", ".join(allowed) + "."]})
        return raw

    def between(value: str | None, lo: datetime | None, hi: datetime | None, *, hi_inclusive: bool = False) -> bool:
        if lo is None and hi is None:
            return True
        if not value:
            return False
        at = parse_when(value, end=False)
        if lo is not None and at < lo:
            return False
        return not (hi is not None and (at > hi if hi_inclusive else at >= hi))

    def in_range(field: str, lo: datetime | None, hi: datetime | None) -> Pred:
        return lambda r: between(r.get(field), lo, hi)

    def after_pred(field: str, after: datetime, inclusive: bool = False) -> Pred:
        def pred(r: Row) -> bool:
            if not r.get(field):
                return False
            at = parse_when(str(r[field]), end=False)
            return at >= after if inclusive else at > after
        return pred

    def eq_filters(request: Request, fields: dict[str, Callable[[Row], Any]]) -> list[Pred]:
        """`?param=value` equality filters; `fields` maps a parameter to the record's value."""
        preds: list[Pred] = []
        for param, get in fields.items():
            want = request.query_params.get(param)
            if want is not None:
                preds.append(_equals(get, want))
        return preds

    def sync_filters(request: Request) -> list[Pred]:
        """`sync_status`, else `sync_ready` and `has_no_sync_commits` (transactions, reimbursements)."""
        preds: list[Pred] = []
        sync_status = enum_param(request, "sync_status", ("SYNC_READY", "NOT_SYNC_READY", "SYNCED"))
        sync_ready = h.bool_param(request, "sync_ready")
        no_commits = h.bool_param(request, "has_no_sync_commits")
        if sync_status is not None:  # [verified R1] overrides sync_ready and has_no_sync_commits
            preds.append(lambda r: r["sync_status"] == sync_status)
            return preds
        if sync_ready is not None:
            preds.append(lambda r: (r["sync_status"] == "SYNC_READY") == sync_ready)
        if no_commits is not None:
            preds.append(lambda r: (r["synced_at"] is None) == no_commits)
        return preds

    def listing(request: Request, rows: Iterable[Row], preds: list[Pred],
                order: Callable[[Row], Any] | None = None, reverse: bool = False,
                view: Callable[[Row], Row] | None = None) -> Response:
        """One keyset page of `rows` (in id order) that pass every predicate. A custom `order`
        sorts by (order, id); `start` then resumes right after that id in the sorted list."""
        n = h.page_size(request)
        start = request.query_params.get("start")
        with st.lock:
            items = [r for r in rows if all(p(r) for p in preds)]
            if order is not None:
                items.sort(key=lambda r: (order(r), r["id"]), reverse=reverse)
                if start:
                    ids = [r["id"] for r in items]
                    if start not in ids:
                        raise h.invalid({"start": ["Not a record of this listing."]})
                    pos = ids.index(start) + 1
                else:
                    pos = 0
            else:
                pos = bisect.bisect_right([r["id"] for r in items], start) if start else 0
            page = items[pos:pos + n]
            more = len(items) > pos + n
            nxt = None
            if more and page:
                q = [(k, v) for k, v in request.query_params.multi_items() if k != "start"]
                q.append(("start", page[-1]["id"]))
                nxt = f"{str(request.base_url).rstrip('/')}{request.url.path}?{urlencode(q)}"
            return JSONResponse({"data": [view(r) for r in page] if view else page, "page": {"next": nxt}})

    def table(name: str) -> list[Row]:
        with st.lock:
            d: dict[str, Row] = getattr(st, name)
            return [d[k] for k in sorted(d)]

    def one(name: str, rid: str) -> Response:
        with st.lock:
            rec = getattr(st, name).get(rid)
            if rec is None:
                raise h.not_found(rid)
            return JSONResponse(rec)

    # -- transactions --
    @app.get(PREFIX + "/transactions")
    async def list_transactions(request: Request) -> Response:
        h.bearer(request, "transactions:read")
        q = request.query_params
        preds = eq_filters(request, {
            "card_id": lambda r: r["card_id"], "merchant_id": lambda r: r["merchant_id"],
            "spend_program_id": lambda r: r["spend_program_id"], "entity_id": lambda r: r["entity_id"],
            "user_id": lambda r: r["card_holder"]["user_id"],
            "department_id": lambda r: r["card_holder"]["department_id"],
            "location_id": lambda r: r["card_holder"]["location_id"], "sk_category_id": lambda r: r["sk_category_id"],
            "statement_id": lambda r: r["statement_id"], "limit_id": lambda r: r["limit_id"],
            "trip_id": lambda r: r["trip_id"]})
        states = ("ALL", "CLEARED", "COMPLETION", "DECLINED", "ERROR", "PENDING", "PENDING_INITIATION")
        state = enum_param(request, "state", states)
        if state is None:
            preds.append(lambda r: r["state"] != "DECLINED")  # [verified R1] declined only on request
        elif state != "ALL":
            preds.append(lambda r: r["state"] == state)
        preds += sync_filters(request)
        synced_after = when_param(request, "synced_after")
        if synced_after is not None:
            preds.append(after_pred("synced_at", synced_after))
        updated_after = when_param(request, "updated_after")  # [unverified] not in R1; public clients send it
        if updated_after is not None:
            preds.append(after_pred("updated_at", updated_after, st.updated_after_inclusive))
        lo, hi = when_param(request, "from_date"), when_param(request, "to_date", end=True)
        preds.append(lambda r: between(r["user_transaction_time"], lo, hi))
        mn, mx = number_param(request, "min_amount"), number_param(request, "max_amount")
        if mn is not None:
            preds.append(lambda r: abs(r["amount"]) >= mn)
        if mx is not None:
            preds.append(lambda r: abs(r["amount"]) <= mx)
        sel = q.get("accounting_field_selection_id")
        if sel is not None:
            preds.append(lambda r: any(s["id"] == sel for s in r["accounting_field_selections"]))
        orders = {"order_by_date_asc": ("user_transaction_time", False),
                  "order_by_date_desc": ("user_transaction_time", True),
                  "order_by_amount_asc": ("amount", False), "order_by_amount_desc": ("amount", True)}
        chosen = [k for k in orders if h.bool_param(request, k)]
        if len(chosen) > 1:
            raise h.invalid({"_schema": ["Provide at most one order_by_* parameter."]})
        if chosen:
            field, rev = orders[chosen[0]]
            return listing(request, table("transactions"), preds, order=_field(field), reverse=rev)
        return listing(request, table("transactions"), preds)

    @app.get(PREFIX + "/transactions/{transaction_id}")
    async def get_transaction(request: Request, transaction_id: str) -> Response:
        h.bearer(request, "transactions:read")
        return one("transactions", transaction_id)

    # -- reimbursements --
    @app.get(PREFIX + "/reimbursements")
    async def list_reimbursements(request: Request) -> Response:
        h.bearer(request, "reimbursements:read")
        preds = eq_filters(request, {"entity_id": lambda r: r["entity_id"], "user_id": lambda r: r["user_id"],
                                     "trip_id": lambda r: r["trip_id"]})
        direction = enum_param(request, "direction", ("BUSINESS_TO_USER", "USER_TO_BUSINESS")) or "BUSINESS_TO_USER"
        preds.append(lambda r: r["direction"] == direction)  # [verified R1] default BUSINESS_TO_USER
        preds += sync_filters(request)
        for field, lo_name, hi_name in (("created_at", "from_date", "to_date"),
                                        ("transaction_date", "from_transaction_date", "to_transaction_date"),
                                        ("submitted_at", "from_submitted_at", "to_submitted_at")):
            lo, hi = when_param(request, lo_name), when_param(request, hi_name, end=True)
            preds.append(in_range(field, lo, hi))
        for field, name in (("updated_at", "updated_after"), ("synced_at", "synced_after")):
            after = when_param(request, name)
            if after is not None:
                preds.append(after_pred(field, after, name == "updated_after" and st.updated_after_inclusive))
        sel = request.query_params.get("accounting_field_selection_id")
        if sel is not None:
            preds.append(lambda r: any(s["id"] == sel for s in r["accounting_field_selections"]))
        return listing(request, table("reimbursements"), preds)

    @app.get(PREFIX + "/reimbursements/{reimbursement_id}")
    async def get_reimbursement(request: Request, reimbursement_id: str) -> Response:
        h.bearer(request, "reimbursements:read")
        return one("reimbursements", reimbursement_id)

    # -- users --
    @app.get(PREFIX + "/users")
    async def list_users(request: Request) -> Response:
        h.bearer(request, "users:read")
        roles = ("AUDITOR", "BUSINESS_ADMIN", "BUSINESS_BOOKKEEPER", "BUSINESS_OWNER", "BUSINESS_USER",
                 "GUEST_USER", "IT_ADMIN")
        enum_param(request, "role", roles)
        preds = eq_filters(request, {k: _field(k) for k in (
            "employee_id", "role", "entity_id", "department_id", "email", "location_id")})
        return listing(request, table("users"), preds, view=user_view)

    def user_view(u: Row) -> Row:
        return {**u, "business_id": st.business_id}  # the business id survives a snapshot restore

    @app.get(PREFIX + "/users/{user_id}")
    async def get_user(request: Request, user_id: str) -> Response:
        h.bearer(request, "users:read")
        with st.lock:
            rec = st.users.get(user_id)
            if rec is None:
                raise h.not_found(user_id)
            return JSONResponse(user_view(rec))

    # -- departments and locations (read; simple writes with their write scopes) --
    def named_write(kind: str, scope: str, extra: tuple[str, ...]) -> None:
        path = f"{PREFIX}/{kind}"

        @app.get(path)
        async def list_named(request: Request) -> Response:
            h.bearer(request, f"{kind}:read")
            preds = eq_filters(request, {k: _field(k) for k in extra})
            return listing(request, table(kind), preds)

        @app.get(path + "/{rid}")
        async def get_named(request: Request, rid: str) -> Response:
            h.bearer(request, f"{kind}:read")
            return one(kind, rid)

        def check(body: Any, create: bool) -> dict[str, Any]:
            if not isinstance(body, dict):
                raise h.invalid({"_schema": ["Invalid input."]})
            errs: dict[str, list[str]] = {}
            name = body.get("name")
            if (create or "name" in body) and (not isinstance(name, str) or not name.strip()):
                errs["name"] = ["Missing data for required field."]
            for k in body:
                if k not in ("name", *extra):
                    errs[k] = ["Unknown field."]
            if errs:
                raise h.invalid(errs)
            return body

        @app.post(path)
        async def create_named(request: Request) -> Response:
            h.bearer(request, scope)
            body = check(await h.json_body(request), True)
            rec = {"id": st.new_ramp_id(), "name": body["name"], **{k: body.get(k) for k in extra}}
            with st.lock:
                getattr(st, kind)[rec["id"]] = rec
            return JSONResponse(rec, status_code=200)

        @app.patch(path + "/{rid}")
        async def patch_named(request: Request, rid: str) -> Response:
            h.bearer(request, scope)
            body = check(await h.json_body(request), False)
            with st.lock:
                rec = getattr(st, kind).get(rid)
                if rec is None:
                    raise h.not_found(rid)
                rec.update(body)
                return JSONResponse(rec)

    named_write("departments", "departments:write", ())
    named_write("locations", "locations:write", ("entity_id",))

    # -- entities (read-only; configured in the UI) --
    def entity_view(e: Row) -> Row:
        with st.lock:
            locs = sorted(lid for lid, loc in st.locations.items() if loc.get("entity_id") == e["id"])
        return {**e, "location_ids": locs, "accounts": []}

    @app.get(PREFIX + "/entities")
    async def list_entities(request: Request) -> Response:
        h.bearer(request, "entities:read")
        preds = eq_filters(request, {"entity_name": lambda r: r["entity_name"], "currency": lambda r: r["currency"]})
        primary = h.bool_param(request, "is_primary")
        if primary is not None:
            preds.append(lambda r: r["is_primary"] == primary)
        return listing(request, [entity_view(e) for e in sorted(ENTITIES, key=lambda e: str(e["id"]))], preds)

    @app.get(PREFIX + "/entities/{entity_id}")
    async def get_entity(request: Request, entity_id: str) -> Response:
        h.bearer(request, "entities:read")
        for e in ENTITIES:
            if e["id"] == entity_id:
                return JSONResponse(entity_view(e))
        raise h.not_found(entity_id)

    # -- cards --
    @app.get(PREFIX + "/cards")
    async def list_cards(request: Request) -> Response:
        h.bearer(request, "cards:read")
        preds = eq_filters(request, {"entity_id": lambda r: r["entity_id"], "user_id": lambda r: r["cardholder_id"],
                                     "card_program_id": lambda r: r["card_program_id"],
                                     "display_name": lambda r: r["display_name"]})
        activated = h.bool_param(request, "is_activated")
        if activated is not None:
            preds.append(lambda r: (r["state"] != "UNACTIVATED") == activated)
        terminated = h.bool_param(request, "is_terminated")
        if terminated is not None:
            preds.append(lambda r: (r["state"] == "TERMINATED") == terminated)
        elif st.cards_hide_terminated:  # [unverified] the legacy list leaves terminated cards out
            preds.append(lambda r: r["state"] != "TERMINATED")
        return listing(request, table("cards"), preds)

    @app.get(PREFIX + "/cards/{card_id}")
    async def get_card(request: Request, card_id: str) -> Response:
        h.bearer(request, "cards:read")
        return one("cards", card_id)

    # -- receipts --
    @app.get(PREFIX + "/receipts")
    async def list_receipts(request: Request) -> Response:
        h.bearer(request, "receipts:read")
        preds = eq_filters(request, {"transaction_id": lambda r: r["transaction_id"]})
        for lo_name, hi_name in (("created_after", "created_before"), ("from_date", "to_date")):
            lo, hi = when_param(request, lo_name), when_param(request, hi_name, end=True)
            preds.append(in_range("created_at", lo, hi))
        return listing(request, table("receipts"), preds)

    @app.get(PREFIX + "/receipts/{receipt_id}")
    async def get_receipt(request: Request, receipt_id: str) -> Response:
        h.bearer(request, "receipts:read")
        return one("receipts", receipt_id)

    # -- purchase orders (Ramp Plus) --
    @app.get(PREFIX + "/purchase-orders")
    async def list_pos(request: Request) -> Response:
        h.bearer(request, "purchase_orders:read")
        enum_param(request, "creation_source", ("ACCOUNTING_PROVIDER", "DEVELOPER_API", "RAMP"))
        enum_param(request, "receipt_status", ("FULLY_RECEIVED", "NOT_RECEIVED", "OVER_RECEIVED",
                                               "PARTIALLY_RECEIVED"))
        preds = eq_filters(request, {k: _field(k) for k in (
            "creation_source", "receipt_status", "entity_id")})
        three_way = h.bool_param(request, "three_way_match_enabled")
        if three_way is not None:
            preds.append(lambda r: r["three_way_match_enabled"] == three_way)
        if not h.bool_param(request, "include_archived"):
            preds.append(lambda r: not r["archived_at"])
        lo, hi = when_param(request, "from_created_at"), when_param(request, "to_created_at", end=True)
        preds.append(lambda r: between(r["created_at"], lo, hi))
        return listing(request, table("purchase_orders"), preds)

    @app.get(PREFIX + "/purchase-orders/{po_id}")
    async def get_po(request: Request, po_id: str) -> Response:
        h.bearer(request, "purchase_orders:read")
        return one("purchase_orders", po_id)

    # -- spend programs --
    @app.get(PREFIX + "/spend-programs")
    async def list_programs(request: Request) -> Response:
        h.bearer(request, "spend_programs:read")
        return listing(request, table("spend_programs"), [])

    @app.get(PREFIX + "/spend-programs/{program_id}")
    async def get_program(request: Request, program_id: str) -> Response:
        h.bearer(request, "spend_programs:read")
        return one("spend_programs", program_id)

    # -- Bill Pay vendor contacts --
    def vendor_or_404(vendor_id: str) -> Row:
        rec: Row | None = st.billpay_vendors.get(vendor_id)
        if rec is None:
            raise h.not_found(vendor_id)
        return rec

    @app.get(PREFIX + "/vendors/{vendor_id}/contacts")
    async def list_contacts(request: Request, vendor_id: str) -> Response:
        h.bearer(request, "vendors:read")
        with st.lock:
            vendor_or_404(vendor_id)
        return listing(request, table("vendor_contacts"), [lambda r: r["vendor_id"] == vendor_id])

    @app.get(PREFIX + "/vendors/{vendor_id}/contacts/{contact_id}")
    async def get_contact(request: Request, vendor_id: str, contact_id: str) -> Response:
        h.bearer(request, "vendors:read")
        with st.lock:
            vendor_or_404(vendor_id)
            rec = st.vendor_contacts.get(contact_id)
            if rec is None or rec["vendor_id"] != vendor_id:
                raise h.not_found(contact_id)
            return JSONResponse(rec)

