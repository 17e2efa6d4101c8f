"""The Procore emulator: DMSA token endpoint and the REST v1.0 resources an ERP integration uses.

Wire behaviour (reference §2, cloud-apis.md):
- `POST /oauth/token` (form, multipart or JSON; client_credentials) → {access_token, token_type
  "bearer", expires_in 5400, created_at}; a bad client → 401 {"error": "invalid_client"}.
- Every API call needs `Authorization: Bearer` (missing/expired/unknown → 401 "The access token is
  invalid") and `Procore-Company-Id` (missing → 400 "Missing Procore-Company-Id header!"; another
  company → 403 "App is not connected to this company").
- Rate limits per company: hourly and 10 s spike windows; `X-Rate-Limit-Limit/-Remaining/-Reset`
  on every answer (the window hit first); over either → 429 with `Retry-After`.
- Paging: `page` (1-based) and `per_page`; `Total`, `Per-Page` and `Link` (first/prev/next/last as
  Procore documents which rels appear on which page); a page past the end is `[]`.
- Sync actions (`PATCH …/sync`): ≤ 1000 updates matched by id, else origin_id (create when not
  found); always 200 {entities, errors}.
- Creates with an origin_id already used by that resource type in the company → 422.

Admin (no auth, loopback): `GET|POST /_sandbox/faults` (see state.Faults), `POST /_sandbox/limits`
{hourly, spike, spike_period, hour_period, enabled, reset}, `POST /_sandbox/tokens/expire`, `POST
/_sandbox/token_lifetime` {seconds}, `GET /_sandbox/stats`, `GET /_sandbox/state/{vendors|contracts|
direct_costs|projects}`, `POST /_sandbox/projects/{id}/active` {active}.
Also: requisitions (subcontractor invoices) against a commitment (`POST|GET /rest/v1.0/requisitions`),
webhooks (webhooks.py). Not emulated: WBS codes, line item types, v1.1/v2.0 paths, billing periods.
"""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from ml_connector.core.sandbox_admin import Switches, admin_router
from ml_connector.systems.procore.sandbox.state import ProcoreSandbox

V1 = "/rest/v1.0"
MAX_SYNC = 1000
MAX_PER_PAGE = 1000


def _err(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status, headers=headers)


def _money(value: Any) -> Decimal:
    try:
        return Decimal(str(value if value not in (None, "") else "0"))
    except InvalidOperation:
        raise ValueError(f"amount {value!r} is not a number") from None


def _fmt(d: Decimal) -> str:
    return f"{d.quantize(Decimal('0.01'))}"


def _paged(request: Request, items: list[dict[str, Any]]) -> JSONResponse:
    q = request.query_params
    try:
        page = max(1, int(q.get("page", "1")))
        per_page = max(1, min(MAX_PER_PAGE, int(q.get("per_page", "100"))))
    except ValueError:
        return _err(400, "page and per_page must be integers")
    total = len(items)
    last = max(1, -(-total // per_page))
    body = items[(page - 1) * per_page: page * per_page]

    def url(n: int) -> str:
        return str(request.url.include_query_params(page=n))

    rels: list[tuple[str, int]] = []
    if page >= 2 and total:
        rels.append(("first", 1))
    if page >= 3 and total:
        rels.append(("prev", page - 1))
    if page < last:
        rels.append(("next", page + 1))
        rels.append(("last", last))
    headers = {"Total": str(total), "Per-Page": str(per_page)}
    if rels:
        headers["Link"] = ", ".join(f'<{url(n)}>; rel="{r}"' for r, n in rels)
    return JSONResponse(body, headers=headers)


class _Gate:
    """ASGI wrapper: the token, company header, rate limits and faults of every API call, and the
    rate-limit headers on its answer; a `drop_after_commit` fault applies the call and closes the
    connection without an answer."""

    def __init__(self, st: ProcoreSandbox, app: FastAPI) -> None:
        self.st, self.app = st, app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/rest/"):
            await self.app(scope, receive, send)
            return
        st = self.st
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        with st.lock:
            st.stats["requests"] += 1
            st.stats["first_request_at"] = st.stats["first_request_at"] or time.time()
            st.stats["last_request_at"] = time.time()
            f = st.faults
            if f.kind == "expire_tokens" and f.fail_next > 0 and (not f.path or f.path in path):
                # Every token expires just before this call (as after 90 minutes): it gets 401.
                f.fail_next -= 1
                st.stats["faults"] += 1
                st.expire_tokens()
        auth = headers.get("authorization", "")
        if not auth.lower().startswith("bearer ") or not st.token_valid(auth[7:].strip()):
            with st.lock:
                st.stats["unauthorized"] += 1
            await _err(401, "The access token is invalid")(scope, receive, send)
            return
        company = headers.get("procore-company-id")
        if not company:
            await _err(400, "Missing Procore-Company-Id header!")(scope, receive, send)
            return
        if company.strip() != str(st.company_id):
            await _err(403, "App is not connected to this company")(scope, receive, send)
            return
        with st.lock:
            allowed, rl, wait = st.limits.take(time.time())
            fault = None
            f = st.faults
            if allowed and f.fail_next > 0 and f.kind != "expire_tokens" and (not f.path or f.path in path):
                f.fail_next -= 1
                fault = f.kind
                st.stats["faults"] += 1
            retry_after = f.retry_after
            latency = f.latency
        if latency:
            await asyncio.sleep(latency)
        if not allowed:
            with st.lock:
                st.stats["throttled"] += 1
            await JSONResponse({"message": "You have surpassed the max number of requests for an hour. "
                                           "Please wait until your limit resets."}, status_code=429,
                               headers={**rl, "Retry-After": str(max(1, int(wait + 0.999)))})(scope, receive, send)
            return
        if fault in ("429", "503"):
            if fault == "429":
                with st.lock:
                    st.stats["throttled"] += 1
            await _err(int(fault), "Too Many Requests" if fault == "429" else "Service Unavailable",
                       {**rl, "Retry-After": f"{retry_after:g}"})(scope, receive, send)
            return
        if fault == "500":
            await _err(500, "Internal Server Error", rl)(scope, receive, send)
            return
        if fault == "drop":
            self._close(send)
            return
        if fault == "drop_after_commit":
            async def swallow(message: Any) -> None:
                return None

            await self.app(scope, receive, swallow)
            self._close(send)
            await asyncio.sleep(0.01)
            return
        extra = [(k.encode(), v.encode()) for k, v in rl.items()]

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)

    @staticmethod
    def _close(send: Any) -> None:
        transport = getattr(getattr(send, "__self__", None), "transport", None)  # uvicorn's cycle
        if transport is None:
            raise RuntimeError("procore emulator: cannot drop the connection on this server")
        transport.close()


def create_app(st: ProcoreSandbox) -> Any:
    app = FastAPI(title="Procore emulator")

    async def body_of(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw.strip():
            return {}
        ctype = request.headers.get("content-type", "")
        if "json" in ctype:
            data = json.loads(raw)
        elif "multipart" in ctype:
            data = dict((await request.form()).items())
        else:
            data = dict(parse_qsl(raw.decode()))
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        return data

    def int_param(request: Request, name: str) -> int | None:
        v = request.query_params.get(name)
        try:
            return int(v) if v not in (None, "") else None
        except ValueError:
            return None

    # -- OAuth ------------------------------------------------------------------------------
    @app.post("/oauth/token")
    async def token(request: Request) -> JSONResponse:
        try:
            body = await body_of(request)
        except ValueError:
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        if body.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        if body.get("client_id") != st.client_id or body.get("client_secret") != st.client_secret:
            return JSONResponse({"error": "invalid_client", "error_description": "Client authentication failed"},
                                status_code=401)
        tok, life = st.issue_token()
        return JSONResponse({"access_token": tok, "token_type": "bearer", "expires_in": life,
                             "created_at": int(time.time())})

    # -- company / projects / cost codes ------------------------------------------------------
    @app.get(V1 + "/companies")
    async def companies(request: Request) -> JSONResponse:
        return _paged(request, [{"id": st.company_id, "name": st.company_name, "is_active": True,
                                 "logo_url": None, "my_company": True}])

    @app.get(V1 + "/me")
    async def me() -> JSONResponse:
        return JSONResponse({"id": 1, "login": "dmsa@procore-sandbox.local", "name": "ml-connector DMSA"})

    def company_ok(request: Request) -> JSONResponse | None:
        cid = int_param(request, "company_id")
        if cid is None:
            return _err(400, "company_id is required")
        if cid != st.company_id:
            return _err(404, "Company not found")
        return None

    @app.get(V1 + "/projects")
    async def projects(request: Request) -> JSONResponse:
        bad = company_ok(request)
        if bad:
            return bad
        status = request.query_params.get("filters[by_status]")
        with st.lock:
            items = [dict(p) for p in st.projects.values()
                     if status is None or (status == "Active") == bool(p["active"])]
        return _paged(request, items)

    def project_or_404(pid: int | None) -> dict[str, Any] | JSONResponse:
        if pid is None:
            return _err(400, "project_id is required")
        p = st.project(pid)
        if p is None:
            return _err(404, "Project not found")
        return p

    @app.get(V1 + "/cost_codes")
    async def cost_codes(request: Request) -> JSONResponse:
        p = project_or_404(int_param(request, "project_id"))
        if isinstance(p, JSONResponse):
            return p
        with st.lock:
            items = [dict(c) for c in st.cost_codes[p["id"]].values()]
        return _paged(request, items)

    # -- vendors --------------------------------------------------------------------------------
    vendor_fields = ("name", "abbreviated_name", "address", "city", "state_code", "country_code", "zip",
                     "business_phone", "email_address", "website", "is_active", "license_number", "trade_name",
                     "origin_id", "origin_data", "origin_code")

    def vendor_upsert(update: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, list[str]]]:
        unknown = [k for k in update if k not in (*vendor_fields, "id")]
        if unknown:
            return None, {k: ["is not a vendor attribute"] for k in unknown}
        with st.lock:
            found = None
            if update.get("id") is not None:
                found = st.vendors.get(int(update["id"]))
                if found is None:
                    return None, {"id": ["Entity with this ID not found"]}
            elif update.get("origin_id"):
                found = next((v for v in st.vendors.values() if v.get("origin_id") == update["origin_id"]), None)
            created = found is None
            if found is None:
                if not str(update.get("name") or "").strip():
                    return None, {"name": ["can't be blank"]}
                vid = st.next_id()
                found = {"id": vid, "is_active": True, "created_at": st.now(),
                         **{k: None for k in vendor_fields if k != "is_active"}}
                st.vendors[vid] = found
            for k in vendor_fields:
                if k in update:
                    found[k] = update[k]
            found["updated_at"] = st.now()
            st.stats["writes"] += 1
            st.webhooks.emit("Company Vendors", "create" if created else "update", found["id"])
            return dict(found), {}

    @app.get(V1 + "/vendors")
    async def vendors(request: Request) -> JSONResponse:
        bad = company_ok(request)
        if bad:
            return bad
        origin = request.query_params.get("filters[origin_id]")
        with st.lock:
            items = [dict(v) for v in st.vendors.values() if origin is None or v.get("origin_id") == origin]
        return _paged(request, items)

    @app.get(V1 + "/vendors/{vid}")
    async def vendor(vid: int) -> JSONResponse:
        with st.lock:
            v = st.vendors.get(vid)
        return JSONResponse(dict(v)) if v else _err(404, "Vendor not found")

    @app.patch(V1 + "/vendors/sync")
    async def vendors_sync(request: Request) -> JSONResponse:
        body = await body_of(request)
        if body.get("company_id") is None or int(body["company_id"]) != st.company_id:
            return _err(400, "company_id is required")
        updates = body.get("updates")
        if not isinstance(updates, list):
            return _err(400, "updates is required")
        if len(updates) > MAX_SYNC:
            return _err(400, f"at most {MAX_SYNC} updates")
        entities, errors = [], []
        for u in updates:
            rec, errs = vendor_upsert(dict(u))
            if rec is not None:
                entities.append(rec)
            else:
                errors.append({**u, "errors": errs})
        return JSONResponse({"entities": entities, "errors": errors})

    # -- purchase order contracts ------------------------------------------------------------------
    contract_fields = ("vendor_id", "title", "number", "status", "accounting_method", "executed", "description",
                       "origin_id", "origin_data", "origin_code", "payment_terms", "retainage_percent",
                       "contract_date", "delivery_date")
    statuses = ("Draft", "Processing", "Submitted", "Partially Received", "Received", "Approved", "Closed")

    def show_contract(c: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in c.items() if k != "vendor_id"}
        v = st.vendors.get(c.get("vendor_id") or -1)
        out["vendor"] = {"id": v["id"], "name": v["name"]} if v else None
        p = st.projects[c["project_id"]]
        out["project"] = {"id": p["id"], "name": p["name"]}
        live = [li for li in c["line_items"] if not li.get("deleted_at")]
        out["grand_total"] = _fmt(sum((_money(li["amount"]) for li in live), Decimal(0)))
        out["line_items"] = [dict(li) for li in live]
        return out

    def contract_upsert(pid: int, u: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, list[str]]]:
        errs: dict[str, list[str]] = {}
        for k in u:
            if k not in (*contract_fields, "id"):
                errs[k] = ["is not a purchase order contract attribute"]
        if u.get("status") is not None and u["status"] not in statuses:
            errs["status"] = ["is not included in the list"]
        if u.get("vendor_id") is not None and int(u["vendor_id"]) not in st.vendors:
            errs["vendor"] = ["must exist"]
        if errs:
            return None, errs
        found = None
        if u.get("id") is not None:
            found = st.contracts.get(int(u["id"]))
            if found is None or found["project_id"] != pid:
                return None, {"id": ["Entity with this ID not found"]}
        elif u.get("origin_id"):
            found = next((c for c in st.contracts.values() if c.get("origin_id") == u["origin_id"]), None)
            if found is not None and found["project_id"] != pid:
                return None, {"origin_id": ["has already been taken"]}
        created = found is None
        if found is None:
            cid = st.next_id()
            n = sum(1 for c in st.contracts.values() if c["project_id"] == pid) + 1
            found = {"id": cid, "project_id": pid, "number": f"PO-{n:03d}", "status": "Draft",
                     "accounting_method": "amount", "executed": False, "created_at": st.now(), "line_items": [],
                     **{k: None for k in contract_fields if k not in ("number", "status", "accounting_method",
                                                                      "executed")}}
            st.contracts[cid] = found
        for k in contract_fields:
            if k in u:
                found[k] = int(u[k]) if k == "vendor_id" and u[k] is not None else u[k]
        found["updated_at"] = st.now()
        st.stats["writes"] += 1
        st.webhooks.emit("Purchase Order Contracts", "create" if created else "update", found["id"], pid)
        return show_contract(found), {}

    @app.get(V1 + "/purchase_order_contracts")
    async def contracts(request: Request) -> JSONResponse:
        p = project_or_404(int_param(request, "project_id"))
        if isinstance(p, JSONResponse):
            return p
        origin = request.query_params.get("filters[origin_id]")
        with st.lock:
            items = [show_contract(c) for c in st.contracts.values()
                     if c["project_id"] == p["id"] and (origin is None or c.get("origin_id") == origin)]
        for i in items:
            i.pop("line_items")
        return _paged(request, items)

    @app.post(V1 + "/purchase_order_contracts")
    async def create_contract(request: Request) -> JSONResponse:
        body = await body_of(request)
        p = project_or_404(body.get("project_id"))
        if isinstance(p, JSONResponse):
            return p
        u = dict(body.get("purchase_order_contract") or {})
        with st.lock:
            if u.get("origin_id") and any(c.get("origin_id") == u["origin_id"] for c in st.contracts.values()):
                return JSONResponse({"errors": {"origin_id": ["has already been taken"]}}, status_code=422)
            u.pop("id", None)
            rec, errs = contract_upsert(p["id"], u)
        return JSONResponse(rec, status_code=201) if rec else JSONResponse({"errors": errs}, status_code=422)

    @app.patch(V1 + "/purchase_order_contracts/sync")
    async def contracts_sync(request: Request) -> JSONResponse:
        body = await body_of(request)
        p = project_or_404(body.get("project_id"))
        if isinstance(p, JSONResponse):
            return p
        updates = body.get("updates")
        if not isinstance(updates, list) or len(updates) > MAX_SYNC:
            return _err(400, f"updates is required (at most {MAX_SYNC})")
        entities, errors = [], []
        with st.lock:
            for u in updates:
                rec, errs = contract_upsert(p["id"], dict(u))
                if rec:
                    entities.append(rec)
                else:
                    errors.append({**u, "errors": errs})
        return JSONResponse({"entities": entities, "errors": errors})

    def contract_in(request_pid: int | None, cid: int) -> dict[str, Any] | JSONResponse:
        p = project_or_404(request_pid)
        if isinstance(p, JSONResponse):
            return p
        c = st.contracts.get(cid)
        if c is None or c["project_id"] != p["id"]:
            return _err(404, "Purchase order contract not found")
        return c

    @app.get(V1 + "/purchase_order_contracts/{cid}")
    async def contract(request: Request, cid: int) -> JSONResponse:
        with st.lock:
            c = contract_in(int_param(request, "project_id"), cid)
            return c if isinstance(c, JSONResponse) else JSONResponse(show_contract(c))

    @app.patch(V1 + "/purchase_order_contracts/{cid}")
    async def update_contract(request: Request, cid: int) -> JSONResponse:
        body = await body_of(request)
        with st.lock:
            c = contract_in(body.get("project_id"), cid)
            if isinstance(c, JSONResponse):
                return c
            rec, errs = contract_upsert(c["project_id"], {**dict(body.get("purchase_order_contract") or {}),
                                                          "id": cid})
        return JSONResponse(rec) if rec else JSONResponse({"errors": errs}, status_code=422)

    line_fields = ("amount", "cost_code_id", "line_item_type_id", "wbs_code_id", "description", "quantity",
                   "unit_cost", "uom", "extended_type", "tax_code_id", "origin_id", "origin_data")

    def line_upsert(pid: int, owner: dict[str, Any], u: dict[str, Any]) -> tuple[dict[str, Any] | None,
                                                                              dict[str, list[str]]]:
        errs: dict[str, list[str]] = {k: ["is not a line item attribute"] for k in u
                                      if k not in (*line_fields, "id")}
        if u.get("cost_code_id") is not None and st.cost_code(pid, u["cost_code_id"]) is None:
            errs["cost_code"] = ["is invalid for this project"]
        try:
            if "amount" in u:
                _money(u["amount"])
        except ValueError as exc:
            errs["amount"] = [str(exc)]
        if errs:
            return None, errs
        found = None
        if u.get("id") is not None:
            found = next((li for li in owner["line_items"] if li["id"] == int(u["id"])), None)
            if found is None:
                return None, {"id": ["Entity with this ID not found"]}
        elif u.get("origin_id"):
            found = next((li for li in owner["line_items"] if li.get("origin_id") == u["origin_id"]), None)
        created = found is None
        if found is None:
            found = {"id": st.next_id(), "amount": "0.00", **{k: None for k in line_fields if k != "amount"}}
            owner["line_items"].append(found)
        for k in line_fields:
            if k in u:
                found[k] = _fmt(_money(u[k])) if k == "amount" else u[k]
        cc = st.cost_code(pid, found.get("cost_code_id"))
        found["cost_code"] = {"id": cc["id"], "name": cc["name"], "full_code": cc["full_code"]} if cc else None
        owner["updated_at"] = st.now()
        st.stats["writes"] += 1
        kind = "Direct Cost Line Items" if "direct_cost_type" in owner else "Purchase Order Contract Line Items"
        st.webhooks.emit(kind, "create" if created else "update", found["id"], pid)
        return dict(found), {}

    @app.get(V1 + "/purchase_order_contracts/{cid}/line_items")
    async def contract_lines(request: Request, cid: int) -> JSONResponse:
        with st.lock:
            c = contract_in(int_param(request, "project_id"), cid)
            if isinstance(c, JSONResponse):
                return c
            items = [dict(li) for li in c["line_items"]]
        return _paged(request, items)

    @app.post(V1 + "/purchase_order_contracts/{cid}/line_items")
    async def create_contract_line(request: Request, cid: int) -> JSONResponse:
        body = await body_of(request)
        with st.lock:
            c = contract_in(body.get("project_id"), cid)
            if isinstance(c, JSONResponse):
                return c
            u = dict(body.get("line_item") or {})
            if u.get("origin_id") and any(li.get("origin_id") == u["origin_id"] for li in c["line_items"]):
                return JSONResponse({"errors": {"origin_id": ["has already been taken"]}}, status_code=422)
            u.pop("id", None)
            rec, errs = line_upsert(c["project_id"], c, u)
        return JSONResponse(rec, status_code=201) if rec else JSONResponse({"errors": errs}, status_code=422)

    @app.patch(V1 + "/purchase_order_contracts/{cid}/line_items/sync")
    async def contract_lines_sync(request: Request, cid: int) -> JSONResponse:
        body = await body_of(request)
        updates = body.get("updates")
        if not isinstance(updates, list) or len(updates) > MAX_SYNC:
            return _err(400, f"updates is required (at most {MAX_SYNC})")
        entities, errors = [], []
        with st.lock:
            c = contract_in(body.get("project_id"), cid)
            if isinstance(c, JSONResponse):
                return c
            for u in updates:
                rec, errs = line_upsert(c["project_id"], c, dict(u))
                if rec:
                    entities.append(rec)
                else:
                    errors.append({**u, "errors": errs})
        return JSONResponse({"entities": entities, "errors": errors})

    # -- direct costs --------------------------------------------------------------------------------
    dc_fields = ("invoice_number", "vendor_id", "direct_cost_type", "status", "direct_cost_date", "received_date",
                 "payment_date", "terms", "description", "employee_id", "origin_id", "origin_data")
    dc_types = ("invoice", "expense", "payroll", "subcontractor_invoice")

    def show_dc(d: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in d.items() if k != "line_items"}
        v = st.vendors.get(d.get("vendor_id") or -1)
        out["vendor"] = {"id": v["id"], "name": v["name"]} if v else None
        out["vendor_name"] = v["name"] if v else None
        out["grand_total"] = _fmt(sum((_money(li["amount"]) for li in d["line_items"]), Decimal(0)))
        out["line_items_count"] = len(d["line_items"])
        return out

    def dc_in(pid: int, did: int) -> dict[str, Any] | JSONResponse:
        p = project_or_404(pid)
        if isinstance(p, JSONResponse):
            return p
        d = st.direct_costs.get(did)
        if d is None or d["project_id"] != pid:
            return _err(404, "Direct cost not found")
        return d

    @app.get(V1 + "/projects/{pid}/direct_costs")
    async def direct_costs(request: Request, pid: int) -> JSONResponse:
        p = project_or_404(pid)
        if isinstance(p, JSONResponse):
            return p
        origin = request.query_params.get("filters[origin_id]")
        inv = request.query_params.get("filters[invoice_number]")
        with st.lock:
            items = [show_dc(d) for d in st.direct_costs.values() if d["project_id"] == pid
                     and (origin is None or d.get("origin_id") == origin)
                     and (inv is None or d.get("invoice_number") == inv)]
        return _paged(request, items)

    @app.get(V1 + "/projects/{pid}/direct_costs/{did}")
    async def direct_cost(pid: int, did: int) -> JSONResponse:
        with st.lock:
            d = dc_in(pid, did)
            return d if isinstance(d, JSONResponse) else JSONResponse(
                {**show_dc(d), "line_items": [dict(li) for li in d["line_items"]]})

    @app.post(V1 + "/projects/{pid}/direct_costs")
    async def create_direct_cost(request: Request, pid: int) -> JSONResponse:
        p = project_or_404(pid)
        if isinstance(p, JSONResponse):
            return p
        body = await body_of(request)
        item = dict(body.get("item") or {})
        errs: dict[str, list[str]] = {k: ["is not a direct cost attribute"] for k in item if k not in dc_fields}
        for k in ("invoice_number", "vendor_id", "direct_cost_type"):
            if item.get(k) in (None, ""):
                errs[k] = ["can't be blank"]
        if item.get("direct_cost_type") and item["direct_cost_type"] not in dc_types:
            errs["direct_cost_type"] = ["is not included in the list"]
        with st.lock:
            if item.get("vendor_id") is not None and int(item["vendor_id"]) not in st.vendors:
                errs["vendor"] = ["must exist"]
            if item.get("origin_id") and any(d.get("origin_id") == item["origin_id"]
                                             for d in st.direct_costs.values()):
                errs["origin_id"] = ["has already been taken"]
            if errs:
                return JSONResponse({"errors": errs}, status_code=422)
            did = st.next_id()
            d: dict[str, Any] = {"id": did, "project_id": pid, "status": "draft", "created_at": st.now(),
                                 "updated_at": st.now(), "line_items": [],
                                 **{k: None for k in dc_fields if k != "status"}}
            for k in dc_fields:
                if k in item:
                    d[k] = int(item[k]) if k == "vendor_id" else item[k]
            st.direct_costs[did] = d
            st.stats["writes"] += 1
            st.webhooks.emit("Direct Costs", "create", did, pid)
            return JSONResponse(show_dc(d), status_code=201)

    @app.get(V1 + "/projects/{pid}/direct_costs/{did}/line_items")
    async def dc_lines(request: Request, pid: int, did: int) -> JSONResponse:
        with st.lock:
            d = dc_in(pid, did)
            if isinstance(d, JSONResponse):
                return d
            items = [dict(li) for li in d["line_items"]]
        return _paged(request, items)

    @app.post(V1 + "/projects/{pid}/direct_costs/{did}/line_items")
    async def create_dc_line(request: Request, pid: int, did: int) -> JSONResponse:
        body = await body_of(request)
        with st.lock:
            d = dc_in(pid, did)
            if isinstance(d, JSONResponse):
                return d
            u = dict(body.get("line_item") or {})
            if u.get("origin_id") and any(li.get("origin_id") == u["origin_id"] for li in d["line_items"]):
                return JSONResponse({"errors": {"origin_id": ["has already been taken"]}}, status_code=409)
            u.pop("id", None)
            rec, errs = line_upsert(pid, d, u)
        return JSONResponse(rec, status_code=201) if rec else JSONResponse({"errors": errs}, status_code=422)

    # -- requisitions (subcontractor invoices against a commitment) ------------------------------------
    req_fields = ("period_id", "requisition_start", "requisition_end", "billing_date", "invoice_number", "status",
                  "final", "origin_id", "origin_data")
    req_statuses = ("draft", "under_review", "revise_and_resubmit", "approved", "approved_as_noted",
                    "pending_owner_approval")

    @app.post(V1 + "/requisitions")
    async def create_requisition(request: Request) -> JSONResponse:
        body = await body_of(request)
        p = project_or_404(body.get("project_id"))
        if isinstance(p, JSONResponse):
            return p
        req = dict(body.get("requisition") or {})
        with st.lock:
            c = st.contracts.get(int(body.get("commitment_id") or 0))
            if c is None or c["project_id"] != p["id"]:
                return _err(404, "Commitment not found")
            errs = {k: ["is not a requisition attribute"] for k in req if k not in req_fields}
            if req.get("status") is not None and req["status"] not in req_statuses:
                errs["status"] = ["is not included in the list"]
            if req.get("origin_id") and any(r.get("origin_id") == req["origin_id"] for r in st.requisitions.values()):
                errs["origin_id"] = ["has already been taken"]
            if errs:
                return JSONResponse({"errors": errs}, status_code=422)
            rid = st.next_id()
            number = 1 + sum(1 for r in st.requisitions.values() if r["commitment_id"] == c["id"])
            rec = {"id": rid, "number": number, "commitment_id": c["id"], "project_id": p["id"],
                   "vendor_id": c.get("vendor_id"), "status": "draft", "final": False, "created_at": st.now(),
                   **{k: None for k in req_fields if k not in ("status", "final")}, **req}
            st.requisitions[rid] = rec
            st.stats["writes"] += 1
            return JSONResponse(dict(rec), status_code=201)

    @app.get(V1 + "/requisitions")
    async def requisitions(request: Request) -> JSONResponse:
        p = project_or_404(int_param(request, "project_id"))
        if isinstance(p, JSONResponse):
            return p
        q = request.query_params
        commitment, origin = q.get("filters[commitment_id]"), q.get("filters[origin_id]")
        with st.lock:
            items = [dict(r) for r in st.requisitions.values() if r["project_id"] == p["id"]
                     and (commitment is None or str(r["commitment_id"]) == commitment)
                     and (origin is None or r.get("origin_id") == origin)]
        return _paged(request, items)

    # -- webhooks (webhooks.py) -------------------------------------------------------------------------
    wh = st.webhooks

    def owner_ok(source: dict[str, Any]) -> JSONResponse | int | None:
        """The hook's owner: the company (None) or a project id; an error answer otherwise."""
        cid, pid = source.get("company_id"), source.get("project_id")
        if pid not in (None, ""):
            p = project_or_404(int(pid))
            return p if isinstance(p, JSONResponse) else int(pid)
        if cid in (None, "") or int(cid) != st.company_id:
            return _err(400, "company_id or project_id is required")
        return None

    @app.post(V1 + "/webhooks/hooks")
    async def create_hook(request: Request) -> JSONResponse:
        body = await body_of(request)
        owner = owner_ok(body)
        if isinstance(owner, JSONResponse):
            return owner
        hook = dict(body.get("hook") or {})
        if not str(hook.get("destination_url") or "").startswith(("http://", "https://")):
            return JSONResponse({"errors": {"destination_url": ["is invalid"]}}, status_code=422)
        return JSONResponse(wh.add_hook(hook, owner), status_code=201)

    @app.get(V1 + "/webhooks/hooks")
    async def hooks(request: Request) -> JSONResponse:
        owner = owner_ok(dict(request.query_params))
        if isinstance(owner, JSONResponse):
            return owner
        with wh.lock:
            return JSONResponse([wh.show(h) for h in wh.hooks.values() if h["owned_by_project_id"] == owner])

    @app.delete(V1 + "/webhooks/hooks/{hid}")
    async def delete_hook(hid: int) -> JSONResponse:
        with wh.lock:
            if wh.hooks.pop(hid, None) is None:
                return _err(404, "Hook not found")
            for tid in [t for t, tr in wh.triggers.items() if tr["webhook_hook_id"] == hid]:
                del wh.triggers[tid]
        return JSONResponse({})

    @app.post(V1 + "/webhooks/hooks/{hid}/triggers")
    async def create_trigger(request: Request, hid: int) -> JSONResponse:
        body = await body_of(request)
        trigger = dict(body.get("trigger") or {})
        if hid not in wh.hooks:
            return _err(404, "Hook not found")
        if str(trigger.get("event_type", "")).lower() not in ("create", "update", "delete") \
                or not trigger.get("resource_name"):
            return JSONResponse({"errors": {"trigger": ["resource_name and event_type create|update|delete"]}},
                                status_code=422)
        return JSONResponse(wh.add_trigger(hid, trigger), status_code=201)

    @app.get(V1 + "/webhooks/hooks/{hid}/triggers")
    async def triggers(hid: int) -> JSONResponse:
        with wh.lock:
            return JSONResponse([t for t in wh.triggers.values() if t["webhook_hook_id"] == hid])

    @app.get(V1 + "/webhooks/hooks/{hid}/deliveries")
    async def deliveries(request: Request, hid: int) -> JSONResponse:
        status = request.query_params.get("filter[status]", "any")
        outcomes = {"any": None, "successful": {"ok"}, "discarded": {"discarded"}, "failing": {"retried", "failed"}}
        want = outcomes.get(status)
        with wh.lock:
            items = [dict(d) for d in wh.deliveries.get(hid, []) if want is None or d["outcome"] in want]
        return _paged(request, items)

    # -- admin -----------------------------------------------------------------------------------------
    @app.post("/_sandbox/webhooks")
    async def webhook_settings(request: Request) -> JSONResponse:
        return JSONResponse(wh.settings(await admin_body(request)))

    async def admin_body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        data = json.loads(raw) if raw.strip() else {}
        return data if isinstance(data, dict) else {}

    def set_faults(body: dict[str, Any]) -> dict[str, Any]:
        with st.lock:
            return st.faults.update(body)

    def read_stats() -> dict[str, Any]:
        with st.lock:
            return {**st.stats, "tokens_issued": st.tokens_issued}

    app.include_router(admin_router(faults=Switches(st.faults.as_dict, set_faults), stats=read_stats))

    @app.post("/_sandbox/limits")
    async def limits(request: Request) -> JSONResponse:
        with st.lock:
            return JSONResponse(st.limits.update(await admin_body(request)))

    @app.post("/_sandbox/tokens/expire")
    async def expire() -> JSONResponse:
        return JSONResponse({"expired": st.expire_tokens()})

    @app.post("/_sandbox/token_lifetime")
    async def lifetime(request: Request) -> JSONResponse:
        body = await admin_body(request)
        with st.lock:
            st.token_lifetime = max(1, int(body.get("seconds", st.token_lifetime)))
            return JSONResponse({"token_lifetime": st.token_lifetime})

    @app.get("/_sandbox/state/{name}")
    async def state(name: str) -> Response:
        with st.lock:
            if name == "vendors":
                data: Any = [dict(v) for v in st.vendors.values()]
            elif name == "contracts":
                data = [show_contract(c) for c in st.contracts.values()]
            elif name == "direct_costs":
                data = [{**show_dc(d), "line_items": [dict(li) for li in d["line_items"]]}
                        for d in st.direct_costs.values()]
            elif name == "projects":
                data = [dict(p) for p in st.projects.values()]
            else:
                return _err(404, f"no state {name!r}")
        return JSONResponse({name: data})

    return _Gate(st, app)
