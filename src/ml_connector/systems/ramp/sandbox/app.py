"""Ramp Developer API emulator: token endpoint, accounting (connection, vendors, GL accounts, fields,
options, syncs), bills, Bill Pay vendors and contacts, transactions, reimbursements, users, departments,
locations, entities, cards, receipts, purchase orders, spend programs, business (resources.py,
seeded by seed.py), webhooks with signed, retried deliveries (webhooks.py).

Wire behaviour follows cloud-apis.md §1 (Ramp OpenAPI + guides). Undocumented behaviour is
a switch on `RampSandbox` (state.py). Admin endpoints under `/_sandbox/` are not rate
limited, not faulted and need no token:

- `POST /_sandbox/faults` JSON, every key optional:
  `{"latency": 0.2, "fail_next": 3, "kind": "429|500|502|503|drop|timeout_after_commit|reject|expire_token",
    "path": "/developer/v1/accounting/vendors", "method": "POST", "clear_faults": true,
    "expire_tokens_now": true, "token_lifetime": 5, "commit_then": "drop|hang", "hang_seconds": 5,
    "scope_mismatch": "grant_subset|invalid_scope", "invalid_token_status": 401,
    "validation_status": 400, "batch_error_status": 400,
    "webhook_max_attempts": 10, "webhook_first_delay": 60, "webhook_retry_scale": 1.0,
    "webhook_timeout": 10, "webhook_require_verification": true, "edit_resets_sync": false,
    "cards_hide_terminated": true, "updated_after_inclusive": true,
    "rate_limit": {"enabled": true, "limit": 200, "period": 10, "mode": "rolling|lockout",
                   "lockout_seconds": 60, "per": "ip|token", "retry_after": null (0 = real wait),
                   "count_token_endpoint": true, "count_rejected": false}}`
  → 200 the current switches. `latency` delays a read before it is served and a write's answer
  after it is applied (a client that gives up meanwhile finds its write committed).
- `GET /_sandbox/stats` → `{requests_total, requests_by_path: {path: {status: n}}, rate_limited,
  faults_injected, peak_in_window, tokens_issued, vendors, gl_accounts}`.
- `GET /_sandbox/state/vendors` → `{"vendors": [VendorAccount…]}` (all, in keyset order).
- `GET /_sandbox/state/gl_accounts` → `{"gl_accounts": […]}`.
- `POST /_sandbox/bills` JSON (see `RampSandbox.create_bill`) → 201 the Bill; 400 `{"error": …}`
  when it names a vendor, GL account, cost-center or other field option that was not uploaded.
  Emits `bills.created` (and `bills.approved` when created approved).
- A bill's life (200 the bill; 404 unknown; 409 when its state does not allow it; 400 bad input):
  `POST /_sandbox/bills/{id}/approve` (PENDING/INITIALIZED → APPROVED, `approved_at`; emits
  `bills.approved`), `POST /_sandbox/bills/{id}/reject` `{"reason"?}` (pending or approved, also
  after sync, not paid → REJECTED, `rejected_at`; emits `bills.rejected`),
  `POST /_sandbox/bills/{id}/pay` `{"payment_method"?, "payment_date"?, "effective_date"?,
  "reference"? (the trace id), "payment_id"?, "manual_payment_method"?}` (approved → status and
  payment_status PAID, `paid_at`, `payment{…}`; emits `bills.paid`), `PATCH /_sandbox/bills/{id}`
  `{"memo"?, "invoice_number"?, "due_at"?, "issued_at"?, "posting_date"?, "accounting_date"?,
  "line_items"? (as in create), "fields"?}` (not once paid; `updated_at`).
- `POST /_sandbox/purchase_orders` JSON (see `RampSandbox.create_purchase_order`) → 201 the purchase
  order; emits `purchase_orders.created`. A bill names it with `purchase_order_id`.
- `POST /_sandbox/transactions/{id}/{ready_to_sync|ready_for_review|authorized|cleared}` and
  `POST /_sandbox/reimbursements/{id}/{ready_to_sync|ready_for_review}` → 200 the record; emit
  `<resource>.<action>` (409 when a synced record is made ready again).
- `POST /_sandbox/webhooks/emit` `{"type": "tests.test_event", "object_id"?}` → `{"event_id"}`
  (null when no subscription wants it).
- `GET /_sandbox/state/{fields|field_options|bills|syncs|webhooks|webhook_deliveries|transactions|
  reimbursements|users|cards|purchase_orders}` → `{"<name>": […]}` (webhooks with their secrets;
  deliveries with their attempts `[{attempt, at, status_code, error, duration_ms}]` and status
  pending|delivered|failed|cancelled).
- `POST /_sandbox/reset` (optional JSON `{"tokens": false}` keeps issued tokens) → 200; the seed
  is rebuilt, subscriptions and deliveries are dropped.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import hmac
import json
import math
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from ml_connector.core.sandbox_admin import Switches, admin_router
from ml_connector.systems.ramp.sandbox import resources
from ml_connector.systems.ramp.sandbox.resources import parse_when
from ml_connector.systems.ramp.sandbox.state import (
    ENTITIES,
    FIELD_INPUT_TYPES,
    FIELD_REQUIRED_FOR,
    GL_CLASSIFICATIONS,
    PAYMENT_METHODS,
    SYNC_TYPES,
    BillStateError,
    RampSandbox,
)
from ml_connector.systems.ramp.sandbox.state import now_iso as _iso
from ml_connector.systems.ramp.sandbox.webhooks import EVENT_SCOPES, EVENT_TYPES

PREFIX = "/developer/v1"
TOKEN_PATH = PREFIX + "/token"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
VENDORS = PREFIX + "/accounting/vendors"
ACCOUNTS = PREFIX + "/accounting/accounts"
BILLPAY = PREFIX + "/vendors"
FIELDS = PREFIX + "/accounting/fields"
OPTIONS = PREFIX + "/accounting/field-options"
BILLS = PREFIX + "/bills"
SYNCS = PREFIX + "/accounting/syncs"
WEBHOOKS = PREFIX + "/webhooks"
CONNECTION = PREFIX + "/accounting/connection"
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


# ---- bodies ------------------------------------------------------------------------------
def error_body(code: str, message: str, additional_info: Any = None, legacy: Any = None) -> dict[str, Any]:
    return {
        "error_v2": {"error_code": code, "message": message,
                     "additional_info": additional_info if additional_info is not None else {},
                     "notes": ""},
        "error": legacy if legacy is not None else (additional_info or message),
    }


def error(status: int, code: str, message: str, additional_info: Any = None,
          headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message, additional_info), status_code=status, headers=headers)


def oauth_error(status: int, err: str, desc: str) -> JSONResponse:
    return JSONResponse({"error": err, "error_description": desc}, status_code=status)


class ApiError(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def _bool_param(request: Request, name: str, status: int) -> bool | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    low = raw.lower()
    if low in ("true", "1"):
        return True
    if low in ("false", "0"):
        return False
    raise ApiError(error(status, "DEVELOPER_7001", "Not a valid boolean.", {name: ["Not a valid boolean."]}))


# ---- the gate: trace id, stats, rate limit, faults ---------------------------------------
class _Gate:
    def __init__(self, state: RampSandbox, inner: ASGIApp) -> None:
        self.state = state
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        st = self.state
        path: str = scope["path"]
        method: str = scope["method"]
        trace = uuid.uuid4().hex
        status_box: list[int | str] = [0]

        async def send_traced(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                status_box[0] = int(msg["status"])
                msg = dict(msg)
                msg["headers"] = [*list(msg.get("headers", [])), (b"x-trace-id", trace.encode())]
            await send(msg)

        if path.startswith("/_sandbox"):
            await self.inner(scope, receive, send_traced)
            return
        # A write is committed when the service has processed it; the latency is the answer's trip
        # back, so a client that dies during it finds the write applied (as with the real service).
        # A read's latency comes first: nothing is committed either way.
        write = method in WRITE_METHODS
        try:
            if st.latency > 0 and not write:
                await asyncio.sleep(st.latency)
            rl = st.rate_limit
            if path != TOKEN_PATH or rl.count_token_endpoint:
                allowed, wait = st.admit(self._key(scope))
                if not allowed:
                    with st.lock:
                        st.rate_limited += 1
                    headers = None
                    if rl.retry_after is not None:  # 0 → the true seconds until a slot frees
                        secs = rl.retry_after if rl.retry_after > 0 else math.ceil(wait)
                        headers = {"Retry-After": str(max(1, round(secs)))}
                    await error(429, "DEVELOPER_7429", "Rate limit exceeded. Please retry later.",
                                headers=headers)(scope, receive, send_traced)
                    return
            kind = st.take_fault(method, path)
            if kind in ("429", "500", "502", "503"):
                code = int(kind)
                msg = {429: "Rate limit exceeded. Please retry later.", 500: "Internal server error",
                       502: "Bad gateway", 503: "Service unavailable"}[code]
                await error(code, f"DEVELOPER_{code}", msg)(scope, receive, send_traced)
                return
            if kind == "expire_token":
                # The token this request carries expires now: answered as Ramp answers an expired token.
                for k, v in scope.get("headers", []):
                    if k == b"authorization" and v[:7].lower() == b"bearer ":
                        st.expire_token(v[7:].decode("latin-1").strip())
                await error(st.invalid_token_status, st.invalid_token_error_code,
                            "Invalid, expired or missing access token.")(scope, receive, send_traced)
                return
            if kind == "reject":
                # A validation refusal (Ramp's 4xx DEVELOPER_7001): nothing is applied.
                await error(st.batch_error_status, "DEVELOPER_7001", "Invalid input.",
                            {"_schema": ["Rejected by the sandbox's fault switch."]})(scope, receive, send_traced)
                return
            if kind == "drop":
                status_box[0] = "drop"
                st.record(path, "drop")
                await self._drop(send)
                return
            if kind == "timeout_after_commit":
                async def swallow(msg: Message) -> None:
                    return None

                await self.inner(scope, receive, swallow)  # the write is applied, the answer lost
                status_box[0] = "drop"
                st.record(path, "drop")
                if st.commit_then == "hang":
                    await asyncio.sleep(st.hang_seconds)
                await self._drop(send)
                return
            if write and st.latency > 0:
                held: list[Message] = []

                async def hold(msg: Message) -> None:
                    held.append(msg)

                await self.inner(scope, receive, hold)  # applied now, answered after the delay
                await asyncio.sleep(st.latency)
                for answer in held:
                    await send_traced(answer)
                return
            await self.inner(scope, receive, send_traced)
        finally:
            if status_box[0] != "drop":
                st.record(path, status_box[0])

    def _key(self, scope: Scope) -> str:
        if self.state.rate_limit.per == "token":
            for k, v in scope.get("headers", []):
                if k == b"authorization":
                    return "auth:" + v.decode("latin-1")
        client = scope.get("client") or ("unknown", 0)
        return "ip:" + str(client[0])

    @staticmethod
    async def _drop(send: Send) -> None:
        """Close the TCP connection without answering (uvicorn's cycle holds the transport)."""
        cycle = getattr(send, "__self__", None)
        transport = getattr(cycle, "transport", None)
        if transport is None:
            raise RuntimeError("sandbox: cannot drop the connection on this server")
        transport.close()
        await asyncio.sleep(0.01)  # let connection_lost mark the cycle disconnected


class _SandboxApp(FastAPI):
    """FastAPI with the gate outermost, so it sees the server's own `send`."""

    gate: _Gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.gate(scope, receive, send)

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)


# ---- the app -----------------------------------------------------------------------------
def create_app(state: RampSandbox | None = None) -> FastAPI:
    st = state if state is not None else RampSandbox()
    app = _SandboxApp(title="Ramp sandbox", docs_url=None, redoc_url=None, openapi_url=None)
    app.gate = _Gate(st, app._app)
    app.state.sandbox = st

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> Response:
        return exc.response

    # -- auth helpers --
    def bearer(request: Request, scope_needed: str) -> None:
        hdr = request.headers.get("authorization", "")
        tok = hdr[7:].strip() if hdr[:7].lower() == "bearer " else ""
        t = st.token_valid(tok) if tok else None
        if t is None:
            raise ApiError(error(st.invalid_token_status, st.invalid_token_error_code,
                                 "Invalid, expired or missing access token."))
        if scope_needed and scope_needed not in t.scopes:  # "" = any valid token (webhooks)
            raise ApiError(error(403, st.missing_scope_error_code,
                                 f"Access token is missing the required scope: {scope_needed}",
                                 {"required_scope": [scope_needed]}))

    def client_from_basic(request: Request) -> str | None:
        hdr = request.headers.get("authorization", "")
        if hdr[:6].lower() != "basic ":
            return None
        try:
            raw = base64.b64decode(hdr[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        cid, _, secret = raw.partition(":")
        if cid == st.client_id and secret == st.client_secret:
            return cid
        return None

    async def form_or_json(request: Request) -> dict[str, str]:
        body = await request.body()
        ctype = request.headers.get("content-type", "")
        if "json" in ctype:
            try:
                data = json.loads(body or b"{}")
            except ValueError:
                return {}
            return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
        return dict(parse_qsl(body.decode("utf-8", "replace")))

    # -- token --
    @app.post(TOKEN_PATH)
    async def token(request: Request) -> Response:
        form = await form_or_json(request)
        cid = client_from_basic(request)
        if cid is None:
            return oauth_error(401, "invalid_client", "Client authentication failed.")
        grant = form.get("grant_type", "")
        if grant in ("authorization_code", "refresh_token"):
            return oauth_error(400, "unauthorized_client", "Grant type not enabled for this client.")
        if grant != "client_credentials":
            return oauth_error(400, "unsupported_grant_type", f"Unsupported grant_type: {grant!r}.")
        wanted = form.get("scope", "").split()
        if not wanted:
            return oauth_error(400, "invalid_request", "Missing required parameter: scope.")
        allowed = set(st.allowed_scopes.split())
        extra = [s for s in wanted if s not in allowed]
        if extra and st.scope_mismatch != "grant_subset":
            return oauth_error(400, "invalid_scope",
                               f"Requested scope not configured for app: {' '.join(extra)}")
        granted = [s for s in wanted if s in allowed]
        if not granted:
            return oauth_error(400, "invalid_scope", "None of the requested scopes is configured.")
        tok, life = st.issue_token(cid, frozenset(granted))
        return JSONResponse({"access_token": tok, "token_type": "Bearer", "expires_in": int(life),
                             "scope": " ".join(granted)})

    @app.post(TOKEN_PATH + "/revoke")
    async def revoke(request: Request) -> Response:
        form = await form_or_json(request)
        if client_from_basic(request) is None:
            return oauth_error(401, "invalid_client", "Client authentication failed.")
        with st.lock:
            t = st.tokens.get(form.get("token", ""))
            if t is not None:
                t.revoked = True
        return JSONResponse({})

    # -- paging --
    def page_size(request: Request) -> int:
        raw = request.query_params.get("page_size")
        if raw is None:
            return 20
        msg = "Value must be between 2 and 100"
        try:
            n = int(raw)
        except ValueError:
            n = -1
        if not 2 <= n <= 100:
            raise ApiError(error(st.validation_status, "DEVELOPER_7001", msg, {"page_size": [msg]}))
        return n

    def paged(request: Request, items: list[dict[str, Any]], more: bool,
              key: str = "ramp_id") -> JSONResponse:
        nxt = None
        if more and items:
            q = [(k, v) for k, v in request.query_params.multi_items() if k != "start"]
            q.append(("start", items[-1][key]))
            base = str(request.base_url).rstrip("/")
            nxt = f"{base}{request.url.path}?{urlencode(q)}"
        return JSONResponse({"data": items, "page": {"next": nxt}})

    def list_store(request: Request, store_name: str) -> JSONResponse:
        n = page_size(request)
        remote_id = request.query_params.get("remote_id")
        is_active = _bool_param(request, "is_active", st.validation_status)
        is_synced = _bool_param(request, "is_synced", st.validation_status)
        start = request.query_params.get("start")
        out: list[dict[str, Any]] = []
        more = False
        with st.lock:
            store = getattr(st, store_name)
            if remote_id is not None:
                rid = store.by_remote.get(remote_id)
                source = [store.by_id[rid]] if rid and (not start or rid > start) else []
            else:
                source = store.iter_after(start)
            for rec in source:
                if is_active is not None and rec["is_active"] != is_active:
                    continue
                if is_synced is not None and rec.get("is_synced") != is_synced:
                    continue
                if len(out) == n:
                    more = True
                    break
                out.append(dict(rec))
        return paged(request, out, more)

    async def json_body(request: Request) -> Any:
        try:
            return json.loads(await request.body() or b"null")
        except ValueError as exc:
            raise ApiError(error(400, "DEVELOPER_7001", "Request body is not valid JSON.")) from exc

    def upload(body: Any, store_name: str, list_key: str, make: Callable[[dict[str, Any]], dict[str, Any]],
               validate: Callable[[dict[str, Any]], dict[str, list[str]]],
               scope_key: str = "") -> JSONResponse:
        status = st.batch_error_status
        if not isinstance(body, dict) or not isinstance(body.get(list_key), list):
            raise ApiError(error(status, "DEVELOPER_7001", "Invalid input.",
                                 {list_key: ["Missing data for required field."]}))
        items: list[Any] = body[list_key]
        if not 1 <= len(items) <= 500:
            msg = "Length must be between 1 and 500."
            raise ApiError(error(status, "DEVELOPER_7001", msg, {list_key: [msg]}))
        invalid: dict[str, dict[str, list[str]]] = {}
        for i, item in enumerate(items):
            errs = validate(item) if isinstance(item, dict) else {"_schema": ["Invalid input type."]}
            if errs:
                invalid[str(i)] = errs
        with st.lock:
            store = getattr(st, store_name)
            seen: set[str] = set()
            existing: list[str] = []
            dupes: list[str] = []
            for item in items:
                rid = item.get("id") if isinstance(item, dict) else None
                if not isinstance(rid, str):
                    continue
                if scope_key + rid in store.by_remote:
                    existing.append(rid)
                elif rid in seen:
                    dupes.append(rid)
                seen.add(rid)
            if invalid or existing or dupes:
                info: dict[str, Any] = {}
                if invalid:
                    info[list_key] = invalid
                if existing:
                    info["existing_ids"] = existing
                if dupes:
                    info["duplicate_ids"] = dupes
                parts = []
                if invalid:
                    parts.append(f"{len(invalid)} malformed item(s)")
                if existing:
                    parts.append("already exist: " + ", ".join(existing[:20]))
                if dupes:
                    parts.append("duplicated in batch: " + ", ".join(dupes[:20]))
                raise ApiError(error(status, "DEVELOPER_7001",
                                     "Batch rejected (all or nothing): " + "; ".join(parts), info))
            created = [make(item) for item in items]
            for rec in created:
                store.add(rec, scope_key + rec["id"])
        return JSONResponse({list_key: created, "uploaded": [r["ramp_id"] for r in created]},
                            status_code=201)

    def _str_field(item: dict[str, Any], name: str, errs: dict[str, list[str]], required: bool) -> None:
        v = item.get(name)
        if v is None:
            if required:
                errs[name] = ["Missing data for required field."]
        elif not isinstance(v, str):
            errs[name] = ["Not a valid string."]
        elif required and not v.strip():
            errs[name] = ["Field may not be blank."]

    def validate_vendor(item: dict[str, Any]) -> dict[str, list[str]]:
        errs: dict[str, list[str]] = {}
        _str_field(item, "id", errs, True)
        _str_field(item, "name", errs, True)
        allowed = {"id", "name", "code"} if st.accept_code_on_vendor_upload else {"id", "name"}
        if "code" in allowed:
            _str_field(item, "code", errs, False)
        for k in item:
            if k not in allowed:
                errs[k] = ["Unknown field."]
        return errs

    def make_vendor(item: dict[str, Any]) -> dict[str, Any]:
        now = _iso()
        return {"ramp_id": st.new_ramp_id(), "id": item["id"], "name": item["name"],
                "code": item.get("code"), "is_active": True, "is_synced": st.vendors_synced_on_upload,
                "created_at": now, "updated_at": now, "vendor_category_info": None}

    def validate_gl(item: dict[str, Any]) -> dict[str, list[str]]:
        errs: dict[str, list[str]] = {}
        _str_field(item, "id", errs, True)
        _str_field(item, "name", errs, True)
        _str_field(item, "code", errs, False)
        c = item.get("classification")
        if c is None:
            errs["classification"] = ["Missing data for required field."]
        elif c not in GL_CLASSIFICATIONS:
            errs["classification"] = ["Must be one of: " + ", ".join(GL_CLASSIFICATIONS) + "."]
        for k in item:
            if k not in ("id", "name", "code", "classification"):
                errs[k] = ["Unknown field."]
        return errs

    def make_gl(item: dict[str, Any]) -> dict[str, Any]:
        now = _iso()
        return {"ramp_id": st.new_ramp_id(), "id": item["id"], "name": item["name"],
                "code": item.get("code"), "classification": item["classification"], "is_active": True,
                "gl_account_category_info": None, "created_at": now, "updated_at": now}

    def get_one(store_name: str, ramp_id: str) -> dict[str, Any]:
        rec: dict[str, Any] | None = getattr(st, store_name).by_id.get(ramp_id)
        if rec is None:
            raise ApiError(error(404, "DEVELOPER_7004", "Resource not found.", {"id": [ramp_id]}))
        return rec

    async def patch_one(request: Request, store_name: str, ramp_id: str) -> JSONResponse:
        body = await json_body(request)
        status = st.validation_status
        if not isinstance(body, dict):
            raise ApiError(error(status, "DEVELOPER_7001", "Invalid input.", {"_schema": ["Invalid input."]}))
        errs: dict[str, list[str]] = {}
        for k in ("name", "code"):
            if k in body and not isinstance(body[k], str):
                errs[k] = ["Not a valid string."]
        if "name" in body and isinstance(body["name"], str) and not body["name"].strip():
            errs["name"] = ["Field may not be blank."]
        if "reactivate" in body and body["reactivate"] is not True:
            errs["reactivate"] = ["Must be one of: True."]
        for k in body:
            if k not in ("name", "code", "reactivate"):
                errs[k] = ["Unknown field."]
        if errs:
            raise ApiError(error(status, "DEVELOPER_7001", "Invalid input.", errs))
        with st.lock:
            rec = get_one(store_name, ramp_id)
            if "name" in body:
                rec["name"] = body["name"]
            if "code" in body:
                rec["code"] = body["code"] or None  # "" clears the code
            if body.get("reactivate"):
                rec["is_active"] = True
            rec["updated_at"] = _iso()
            return JSONResponse(dict(rec))

    def delete_one(store_name: str, ramp_id: str) -> Response:
        with st.lock:
            rec = get_one(store_name, ramp_id)
            rec["is_active"] = False
            rec["updated_at"] = _iso()
        return Response(status_code=204)

    # -- accounting vendors --

    @app.get(VENDORS)
    async def list_vendors(request: Request) -> Response:
        bearer(request, "accounting:read")
        return list_store(request, "vendors")

    @app.post(VENDORS)
    async def upload_vendors(request: Request) -> Response:
        bearer(request, "accounting:write")
        return upload(await json_body(request), "vendors", "vendors", make_vendor, validate_vendor)

    @app.get(VENDORS + "/{ramp_id}")
    async def get_vendor(request: Request, ramp_id: str) -> Response:
        bearer(request, "accounting:read")
        with st.lock:
            return JSONResponse(dict(get_one("vendors", ramp_id)))

    @app.patch(VENDORS + "/{ramp_id}")
    async def patch_vendor(request: Request, ramp_id: str) -> Response:
        bearer(request, "accounting:write")
        return await patch_one(request, "vendors", ramp_id)

    @app.delete(VENDORS + "/{ramp_id}")
    async def delete_vendor(request: Request, ramp_id: str) -> Response:
        bearer(request, "accounting:write")
        return delete_one("vendors", ramp_id)

    # -- GL accounts --

    @app.get(ACCOUNTS)
    async def list_accounts(request: Request) -> Response:
        bearer(request, "accounting:read")
        return list_store(request, "gl_accounts")

    @app.post(ACCOUNTS)
    async def upload_accounts(request: Request) -> Response:
        bearer(request, "accounting:write")
        return upload(await json_body(request), "gl_accounts", "gl_accounts", make_gl, validate_gl)

    @app.get(ACCOUNTS + "/{ramp_id}")
    async def get_account(request: Request, ramp_id: str) -> Response:
        bearer(request, "accounting:read")
        with st.lock:
            return JSONResponse(dict(get_one("gl_accounts", ramp_id)))

    @app.patch(ACCOUNTS + "/{ramp_id}")
    async def patch_account(request: Request, ramp_id: str) -> Response:
        bearer(request, "accounting:write")
        return await patch_one(request, "gl_accounts", ramp_id)

    @app.delete(ACCOUNTS + "/{ramp_id}")
    async def delete_account(request: Request, ramp_id: str) -> Response:
        bearer(request, "accounting:write")
        return delete_one("gl_accounts", ramp_id)

    # -- Bill Pay vendors (not accounting vendors; linked via accounting_vendor_remote_id) --
    @app.get(BILLPAY)
    async def list_billpay(request: Request) -> Response:
        bearer(request, "vendors:read")
        n = page_size(request)
        name = request.query_params.get("name")
        is_active = _bool_param(request, "is_active", st.validation_status)
        owner = request.query_params.get("vendor_owner_id")
        from_created = request.query_params.get("from_created_at")
        start = request.query_params.get("start")
        out: list[dict[str, Any]] = []
        more = False
        with st.lock:
            pos = bisect.bisect_right(st.billpay_order, start) if start else 0
            for vid in st.billpay_order[pos:]:
                rec = st.billpay_vendors[vid]
                if name is not None and rec["name"] != name:
                    continue
                if is_active is not None and rec["is_active"] != is_active:
                    continue
                if owner is not None and rec.get("vendor_owner_id") != owner:
                    continue
                if from_created is not None and str(rec.get("created_at") or "") < from_created:
                    continue  # ISO strings in one format compare in time order
                if len(out) == n:
                    more = True
                    break
                out.append(dict(rec))
        return paged(request, out, more, key="id")

    @app.post(BILLPAY)
    async def create_billpay(request: Request) -> Response:
        bearer(request, "vendors:write")
        body = await json_body(request)
        status = st.validation_status
        if not isinstance(body, dict):
            raise ApiError(error(status, "DEVELOPER_7001", "Invalid input.", {"_schema": ["Invalid input."]}))
        errs: dict[str, list[str]] = {}
        for k in ("country", "vendor_owner_id"):
            _str_field(body, k, errs, True)
        contacts = body.get("business_vendor_contacts")
        if not isinstance(contacts, list):
            errs["business_vendor_contacts"] = ["Missing data for required field."]
        if body.get("accounting_vendor_remote_id") and body.get("vendor_tracking_category_option_id"):
            errs["_schema"] = ["Provide at most one of accounting_vendor_remote_id and "
                               "vendor_tracking_category_option_id."]
        if errs:
            raise ApiError(error(status, "DEVELOPER_7001", "Invalid input.", errs))
        now = _iso()
        vid = st.new_ramp_id()
        made: list[dict[str, Any]] = [{"id": st.new_ramp_id(), "vendor_id": vid, "first_name": c.get("first_name"),
                 "last_name": c.get("last_name"), "email": c.get("email"), "phone": c.get("phone"),
                 "is_default": i == 0} for i, c in enumerate(contacts or []) if isinstance(c, dict)]
        rec = {"id": vid, "name": body.get("name") or "", "country": body["country"],
               "vendor_owner_id": body["vendor_owner_id"], "is_active": True, "is_deletable": True,
               "accounting_vendor_remote_id": body.get("accounting_vendor_remote_id"),
               "address": body.get("address"), "state": body.get("state"), "created_at": now,
               "contacts": [c["id"] for c in made], "vendor_type": "BUSINESS",
               "total_spend_all_time": {"amount": 0, "currency_code": "USD"},
               "total_spend_last_30_days": {"amount": 0, "currency_code": "USD"},
               "total_spend_last_365_days": {"amount": 0, "currency_code": "USD"},
               "total_spend_ytd": {"amount": 0, "currency_code": "USD"}}
        with st.lock:
            st.billpay_vendors[rec["id"]] = rec
            bisect.insort(st.billpay_order, rec["id"])  # seeded vendors may sort after new ids
            for c in made:
                st.vendor_contacts[c["id"]] = c
        return JSONResponse(rec, status_code=200)  # [verified R1] 200, not 201

    @app.get(BILLPAY + "/{vendor_id}")
    async def get_billpay(request: Request, vendor_id: str) -> Response:
        bearer(request, "vendors:read")
        with st.lock:
            rec = st.billpay_vendors.get(vendor_id)
            if rec is None:
                return error(404, "DEVELOPER_7004", "Resource not found.", {"id": [vendor_id]})
            return JSONResponse(dict(rec))

    @app.patch(BILLPAY + "/{vendor_id}")
    async def patch_billpay(request: Request, vendor_id: str) -> Response:
        bearer(request, "vendors:write")
        body = await json_body(request)
        if not isinstance(body, dict):
            raise invalid({"_schema": ["Invalid input."]})
        fields = ("accounting_vendor_remote_id", "address", "country", "description", "is_active", "state",
                  "vendor_tracking_category_option_id", "name")
        errs: dict[str, list[str]] = {k: ["Unknown field."] for k in body if k not in fields}
        if "is_active" in body and not isinstance(body["is_active"], bool):
            errs["is_active"] = ["Not a valid boolean."]
        if "address" in body and not isinstance(body["address"], (dict, type(None))):
            errs["address"] = ["Not a valid object."]
        if body.get("accounting_vendor_remote_id") and body.get("vendor_tracking_category_option_id"):
            errs["_schema"] = ["Provide at most one of accounting_vendor_remote_id and "
                               "vendor_tracking_category_option_id."]
        if errs:
            raise invalid(errs)
        with st.lock:
            rec = st.billpay_vendors.get(vendor_id)
            if rec is None:
                return error(404, "DEVELOPER_7004", "Resource not found.", {"id": [vendor_id]})
            rec.update(body)
            return JSONResponse(dict(rec))

    @app.delete(BILLPAY + "/{vendor_id}")
    async def delete_billpay(request: Request, vendor_id: str) -> Response:
        bearer(request, "vendors:write")
        with st.lock:
            rec = st.billpay_vendors.get(vendor_id)
            if rec is None:
                return error(404, "DEVELOPER_7004", "Resource not found.", {"id": [vendor_id]})
            rec["is_active"] = False
        return Response(status_code=204)

    # -- business --
    @app.get(PREFIX + "/business")
    async def business(request: Request) -> Response:
        bearer(request, "business:read")
        return JSONResponse({
            "id": st.business_id, "active": True, "business_name_legal": "Sandbox Manufacturing Inc.",
            "business_name_on_card": "SANDBOX MFG", "created_time": "2022-08-20T16:54:29+00:00",
            "enforce_sso": False, "initial_approved_limit": 2000000, "is_integrated_with_slack": False,
            "is_reimbursements_enabled": True, "limit_locked": False, "phone": "8014441234",
            "website": "www.example.com",
            "billing_address": {"address1": "1 Main St", "city": "New York City", "country": "US",
                                "postal_code": "10003", "state": "NY"},
        })

    # -- the accounting connection (one active per business) --
    def active_connection() -> dict[str, Any] | None:
        return next((c for c in st.accounting_connections.values() if c["is_active"]), None)

    @app.post(CONNECTION)
    async def create_connection(request: Request) -> Response:
        bearer(request, "accounting:write")
        body = await json_body(request)
        if not isinstance(body, dict):
            raise invalid({"_schema": ["Invalid input."]})
        errs: dict[str, list[str]] = {}
        _str_field(body, "remote_provider_name", errs, True)
        for k in body:
            if k not in ("remote_provider_name", "reactivate"):
                errs[k] = ["Unknown field."]
        if errs:
            raise invalid(errs)
        with st.lock:
            cur = active_connection()
            if cur is not None:
                if cur["remote_provider_name"] == body["remote_provider_name"]:
                    return JSONResponse(dict(cur), status_code=201)  # [unverified] same provider: that one
                raise invalid({"_schema": ["An accounting connection is already active."]},
                              "An accounting connection is already active.")
            now = _iso()
            rec = {"id": st.new_ramp_id(), "remote_provider_name": body["remote_provider_name"], "status": "linked",
                   "is_active": True, "created_at": now, "last_linked_at": now}
            st.accounting_connections[rec["id"]] = rec
            return JSONResponse(dict(rec), status_code=201)

    @app.get(PREFIX + "/accounting/all-connections")
    async def all_connections(request: Request) -> Response:
        bearer(request, "accounting:read")
        with st.lock:
            return JSONResponse({"connections": [dict(c) for c in st.accounting_connections.values()]})

    @app.get(CONNECTION)
    async def get_connection(request: Request) -> Response:
        """Deprecated in R1; 404 when there is no active connection."""
        bearer(request, "accounting:read")
        with st.lock:
            cur = active_connection()
            if cur is None:
                return error(404, "DEVELOPER_7004", "No active accounting connection.")
            return JSONResponse(dict(cur))

    @app.delete(CONNECTION)
    async def delete_connection(request: Request) -> Response:
        bearer(request, "accounting:write")
        with st.lock:
            cur = active_connection()
            if cur is None:
                return error(404, "DEVELOPER_7004", "No active accounting connection.")
            cur.update(is_active=False, status="unlinked")
        return Response(status_code=204)

    @app.post(CONNECTION + "/{connection_id}/reactivate")
    async def reactivate_connection(request: Request, connection_id: str) -> Response:
        bearer(request, "accounting:write")
        with st.lock:
            rec = st.accounting_connections.get(connection_id)
            if rec is None:
                return error(404, "DEVELOPER_7004", "Resource not found.", {"id": [connection_id]})
            cur = active_connection()
            if cur is not None and cur is not rec:
                raise invalid({"_schema": ["Another accounting connection is active."]},
                              "Another accounting connection is active.")
            rec.update(is_active=True, status="linked", last_linked_at=_iso())
            return JSONResponse(dict(rec))

    # -- accounting custom fields and their options --

    def invalid(errs: dict[str, Any], message: str = "Invalid input.") -> ApiError:
        return ApiError(error(st.validation_status, "DEVELOPER_7001", message, errs))

    @app.post(FIELDS)
    async def upsert_field(request: Request) -> Response:
        bearer(request, "accounting:write")
        body = await json_body(request)
        if not isinstance(body, dict):
            raise invalid({"_schema": ["Invalid input."]})
        errs: dict[str, list[str]] = {}
        for k in ("id", "name"):
            _str_field(body, k, errs, True)
        _str_field(body, "display_name", errs, False)
        if body.get("input_type") not in FIELD_INPUT_TYPES:
            errs["input_type"] = ["Must be one of: " + ", ".join(FIELD_INPUT_TYPES) + "."]
        req_for = body.get("is_required_for", [])
        if not isinstance(req_for, list) or any(x not in FIELD_REQUIRED_FOR for x in req_for):
            errs["is_required_for"] = ["Must be a list of: " + ", ".join(FIELD_REQUIRED_FOR) + "."]
        if "is_splittable" in body and not isinstance(body["is_splittable"], bool):
            errs["is_splittable"] = ["Not a valid boolean."]
        for k in body:
            if k not in ("id", "name", "input_type", "display_name", "is_splittable", "is_required_for"):
                errs[k] = ["Unknown field."]
        if errs:
            raise invalid(errs)
        with st.lock:
            rid = st.fields.by_remote.get(body["id"])
            if rid is not None:  # [verified R1] an existing id returns that field and reactivates it
                rec = st.fields.by_id[rid]
                rec["is_active"] = True
                return JSONResponse(dict(rec), status_code=201)
            now = _iso()
            rec = {"ramp_id": st.new_ramp_id(), "id": body["id"], "name": body["name"],
                   "display_name": body.get("display_name") or body["name"], "input_type": body["input_type"],
                   "is_active": True, "is_splittable": bool(body.get("is_splittable", False)),
                   "is_required_for": list(req_for), "created_at": now, "updated_at": now}
            st.fields.add(rec)
            return JSONResponse(dict(rec), status_code=201)

    @app.get(FIELDS)
    async def list_fields(request: Request) -> Response:
        bearer(request, "accounting:read")
        return list_store(request, "fields")

    @app.get(FIELDS + "/{ramp_id}")
    async def get_field(request: Request, ramp_id: str) -> Response:
        bearer(request, "accounting:read")
        with st.lock:
            return JSONResponse(dict(get_one("fields", ramp_id)))

    @app.patch(FIELDS + "/{ramp_id}")
    async def patch_field(request: Request, ramp_id: str) -> Response:
        bearer(request, "accounting:write")
        body = await json_body(request)
        if not isinstance(body, dict) or any(k not in ("name", "display_name", "is_splittable") for k in body):
            raise invalid({"_schema": ["Invalid input."]})
        with st.lock:
            rec = get_one("fields", ramp_id)
            rec.update(body)
            rec["updated_at"] = _iso()
            return JSONResponse(dict(rec))

    @app.delete(FIELDS + "/{ramp_id}")
    async def delete_field(request: Request, ramp_id: str) -> Response:
        bearer(request, "accounting:write")
        return delete_one("fields", ramp_id)

    def validate_option(item: dict[str, Any]) -> dict[str, list[str]]:
        errs: dict[str, list[str]] = {}
        _str_field(item, "id", errs, True)
        _str_field(item, "value", errs, True)
        _str_field(item, "code", errs, False)
        for k in item:
            if k not in ("id", "value", "code"):
                errs[k] = ["Unknown field."]
        return errs

    def option_maker(field_id: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
        def make(item: dict[str, Any]) -> dict[str, Any]:
            now = _iso()
            return {"ramp_id": st.new_ramp_id(), "id": item["id"], "value": item["value"],
                    "code": item.get("code"), "display_name": item["value"], "visibility": "VISIBLE",
                    "is_active": True, "field_id": field_id, "created_at": now, "updated_at": now}
        return make

    def field_of(field_id: Any) -> dict[str, Any]:
        if not isinstance(field_id, str) or not field_id:
            raise invalid({"field_id": ["Missing data for required field."]})
        rec: dict[str, Any] | None = st.fields.by_id.get(field_id)
        if rec is None:
            raise ApiError(error(404, "DEVELOPER_7004", "Resource not found.", {"field_id": [field_id]}))
        return rec

    @app.post(OPTIONS)
    async def upload_options(request: Request) -> Response:
        bearer(request, "accounting:write")
        body = await json_body(request)
        if not isinstance(body, dict):
            raise invalid({"_schema": ["Invalid input."]})
        with st.lock:
            field = field_of(body.get("field_id"))
        return upload(body, "field_options", "options", option_maker(field["ramp_id"]), validate_option,
                      scope_key=field["ramp_id"] + "\x00")

    @app.get(OPTIONS)
    async def list_options(request: Request) -> Response:
        bearer(request, "accounting:read")
        n = page_size(request)
        q = request.query_params
        is_active = _bool_param(request, "is_active", st.validation_status)
        start = q.get("start")
        out: list[dict[str, Any]] = []
        more = False
        with st.lock:
            field = field_of(q.get("field_id"))
            remote_id, code = q.get("remote_id"), q.get("code")
            source: Any
            if remote_id is not None:
                rid = st.field_options.by_remote.get(field["ramp_id"] + "\x00" + remote_id)
                source = [st.field_options.by_id[rid]] if rid and (not start or rid > start) else []
            else:
                source = st.field_options.iter_after(start)
            for rec in source:
                if rec["field_id"] != field["ramp_id"]:
                    continue
                if is_active is not None and rec["is_active"] != is_active:
                    continue
                if code is not None and rec.get("code") != code:
                    continue
                if len(out) == n:
                    more = True
                    break
                out.append(dict(rec))
        return paged(request, out, more)

    @app.get(OPTIONS + "/{ramp_id}")
    async def get_option(request: Request, ramp_id: str) -> Response:
        bearer(request, "accounting:read")
        with st.lock:
            return JSONResponse(dict(get_one("field_options", ramp_id)))

    @app.patch(OPTIONS + "/{ramp_id}")
    async def patch_option(request: Request, ramp_id: str) -> Response:
        bearer(request, "accounting:write")
        body = await json_body(request)
        errs: dict[str, list[str]] = {}
        if not isinstance(body, dict):
            raise invalid({"_schema": ["Invalid input."]})
        for k in ("value", "code", "display_name"):
            if k in body and not isinstance(body[k], str):
                errs[k] = ["Not a valid string."]
        if "value" in body and isinstance(body["value"], str) and not body["value"].strip():
            errs["value"] = ["Field may not be blank."]
        if "visibility" in body and body["visibility"] not in ("HIDDEN", "VISIBLE"):
            errs["visibility"] = ["Must be one of: HIDDEN, VISIBLE."]
        if "reactivate" in body and body["reactivate"] is not True:
            errs["reactivate"] = ["Must be one of: True."]
        for k in body:
            if k not in ("value", "code", "display_name", "visibility", "reactivate"):
                errs[k] = ["Unknown field."]
        if errs:
            raise invalid(errs)
        with st.lock:
            rec = get_one("field_options", ramp_id)
            for k in ("value", "display_name", "visibility"):
                if k in body:
                    rec[k] = body[k]
            if "code" in body:
                rec["code"] = body["code"] or None
            if body.get("reactivate"):
                rec["is_active"] = True
            rec["updated_at"] = _iso()
            return JSONResponse(dict(rec))

    @app.delete(OPTIONS + "/{ramp_id}")
    async def delete_option(request: Request, ramp_id: str) -> Response:
        bearer(request, "accounting:write")
        return delete_one("field_options", ramp_id)

    # -- bills --
    def bill_view(bill: dict[str, Any], listing: bool = False) -> dict[str, Any]:
        out = {k: v for k, v in bill.items() if k not in (
            "sync_reference_id", "sync_errors", "synced_at", "payment_sync_reference_id", "edits")}
        out["sync_ready"] = st.bill_sync_ready(bill)
        if listing and out.get("payment"):  # [verified R1] trace_id only in GET /bills/{id}
            out["payment"] = {**out["payment"], "trace_id": None}
        return out

    def when(raw: str | None, name: str, end: bool = False) -> datetime | None:
        if raw is None:
            return None
        try:
            return parse_when(raw, end=end)
        except ValueError:
            raise invalid({name: ["Not a valid datetime."]}) from None

    def bill_in_ranges(b: dict[str, Any], ranges: list[tuple[str, datetime | None, datetime | None]],
                       amounts: list[Decimal | None]) -> bool:
        for field, lo, hi in ranges:
            if not b.get(field):
                return False
            at = parse_when(str(b[field]), end=False)
            if (lo is not None and at < lo) or (hi is not None and at >= hi):
                return False
        major = Decimal(b["amount"]["amount"]) / 100  # [unverified] min/max_amount in major units
        lo_amt, hi_amt = amounts
        return not ((lo_amt is not None and major < lo_amt) or (hi_amt is not None and major > hi_amt))

    @app.get(BILLS)
    async def list_bills(request: Request) -> Response:
        bearer(request, "bills:read")
        n = page_size(request)
        q = request.query_params
        sync_ready = _bool_param(request, "sync_ready", st.validation_status)
        is_archived = _bool_param(request, "is_archived", st.validation_status) or False
        filters = {k: q.get(k) for k in ("sync_status", "entity_id", "vendor_id", "approval_status",
                                          "payment_status")}
        if filters["sync_status"] not in (None, "NOT_SYNCED", "BILL_SYNCED", "BILL_AND_PAYMENT_SYNCED"):
            raise invalid({"sync_status": ["Must be one of: NOT_SYNCED, BILL_SYNCED, BILL_AND_PAYMENT_SYNCED."]})
        if filters["payment_status"] not in (None, "OPEN", "PAID"):
            raise invalid({"payment_status": ["Must be one of: OPEN, PAID."]})
        if q.get("payment_method") not in (None, *PAYMENT_METHODS):
            raise invalid({"payment_method": ["Must be one of: " + ", ".join(PAYMENT_METHODS) + "."]})
        ranges = []
        for field, lo_name, hi_name in (("created_at", "from_created_at", "to_created_at"),
                                        ("due_at", "from_due_date", "to_due_date"),
                                        ("issued_at", "from_issued_date", "to_issued_date"),
                                        ("paid_at", "from_paid_at", "to_paid_at")):
            lo, hi = when(q.get(lo_name), lo_name), when(q.get(hi_name), hi_name, end=True)
            if lo or hi:
                ranges.append((field, lo, hi))
        amounts = []
        for name in ("min_amount", "max_amount"):
            raw = q.get(name)
            try:
                amounts.append(None if raw is None else Decimal(raw))
            except ArithmeticError:
                raise invalid({name: ["Not a valid number."]}) from None
        sel_id = q.get("accounting_field_selection_id")
        start = q.get("start")
        out: list[dict[str, Any]] = []
        more = False
        with st.lock:
            pos = bisect.bisect_right(st.bill_order, start) if start else 0
            for bid in st.bill_order[pos:]:
                b = st.bills[bid]
                if not bill_in_ranges(b, ranges, amounts):
                    continue
                if q.get("payment_method") is not None and b.get("payment_method") != q.get("payment_method"):
                    continue
                if sel_id is not None and not any(
                        s.get("id") == sel_id for ln in b["line_items"] for s in ln["accounting_field_selections"]):
                    continue
                if sync_ready is not None and st.bill_sync_ready(b) != sync_ready:
                    continue
                if bool(b.get("archived_at")) != is_archived:
                    continue
                if filters["vendor_id"] is not None and b["vendor"].get("id") != filters["vendor_id"]:
                    continue
                if any(v is not None and b.get(k) != v for k, v in filters.items() if k != "vendor_id"):
                    continue
                if len(out) == n:
                    more = True
                    break
                out.append(bill_view(b, listing=True))
        return paged(request, out, more, key="id")

    @app.get(BILLS + "/{bill_id}")
    async def get_bill(request: Request, bill_id: str) -> Response:
        bearer(request, "bills:read")
        with st.lock:
            b = st.bills.get(bill_id)
            if b is None:
                return error(404, "DEVELOPER_7004", "Resource not found.", {"id": [bill_id]})
            return JSONResponse(bill_view(b))

    def api_bill_spec(body: dict[str, Any], create: bool) -> dict[str, Any]:
        """A `POST /bills` / `PATCH /bills/{id}` body (R1) as a create_bill / edit_bill spec."""
        errs: dict[str, list[str]] = {}
        known = {"vendor_id", "vendor_contact_id", "entity_id", "invoice_number", "invoice_currency", "issued_at",
                 "due_at", "payment_method", "line_items", "accounting_field_selections", "memo", "posting_date",
                 "remote_id", "payment_details", "purchase_order_id", "inventory_line_items"}
        for k in body:
            if k not in known or (create and k == "purchase_order_id"):
                errs[k] = ["Unknown field."]
        if create:
            for k in ("vendor_id", "vendor_contact_id", "entity_id", "invoice_number", "invoice_currency",
                      "issued_at", "due_at", "payment_method"):
                _str_field(body, k, errs, True)
        if isinstance(body.get("invoice_number"), str) and len(body["invoice_number"]) > 20:
            errs["invoice_number"] = ["Longer than maximum length 20."]
        if "payment_method" in body and body["payment_method"] not in PAYMENT_METHODS:
            errs["payment_method"] = ["Must be one of: " + ", ".join(PAYMENT_METHODS) + "."]
        if "entity_id" in body and body["entity_id"] not in {e["id"] for e in ENTITIES}:
            errs["entity_id"] = ["Unknown entity."]
        lines = body.get("line_items")
        if (create or lines is not None) and (not isinstance(lines, list) or not lines
                                              or not all(isinstance(x, dict) for x in lines)):
            errs["line_items"] = ["Provide at least one line item."]
        if errs:
            raise invalid(errs)
        spec: dict[str, Any] = {k: body[k] for k in ("memo", "posting_date", "remote_id", "issued_at", "due_at",
                                                     "invoice_number", "payment_method", "purchase_order_id",
                                                     "vendor_contact_id") if k in body}
        try:
            with st.lock:
                if lines is not None:
                    spec["line_items"] = [st.api_line(ln) for ln in lines]
                    spec["fields"] = st.api_line({"accounting_field_selections":
                                                  body.get("accounting_field_selections")})["fields"]
                if create:
                    vendor = st.billpay_vendors.get(body["vendor_id"])
                    if vendor is None:
                        raise ValueError(f"no vendor {body['vendor_id']!r}")
                    if body["vendor_contact_id"] not in vendor.get("contacts", []):
                        raise ValueError(f"vendor contact {body['vendor_contact_id']!r} is not a contact of the vendor")
                    spec.update(billpay_vendor_id=body["vendor_id"], entity_id=body["entity_id"],
                                currency=body["invoice_currency"], approval_status="APPROVED")
        except ValueError as exc:
            raise invalid({"_schema": [str(exc)]}, str(exc)) from None
        return spec

    @app.post(BILLS)
    async def api_create_bill(request: Request) -> Response:
        """[verified R2] API-created bills are auto-approved."""
        bearer(request, "bills:write")
        body = await json_body(request)
        if not isinstance(body, dict):
            raise invalid({"_schema": ["Invalid input."]})
        spec = api_bill_spec(body, create=True)
        try:
            bill = st.create_bill(spec)
        except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
            raise invalid({"_schema": [str(exc)]}, str(exc)) from None
        return JSONResponse(bill_view(bill), status_code=201)

    @app.patch(BILLS + "/{bill_id}")
    async def api_patch_bill(request: Request, bill_id: str) -> Response:
        bearer(request, "bills:write")
        body = await json_body(request)
        if not isinstance(body, dict):
            raise invalid({"_schema": ["Invalid input."]})
        spec = api_bill_spec(body, create=False)
        try:
            bill = st.edit_bill(bill_id, spec)
        except KeyError:
            return error(404, "DEVELOPER_7004", "Resource not found.", {"id": [bill_id]})
        except BillStateError as exc:  # [unverified] Ramp's status for a bill that cannot change
            return error(422, "DEVELOPER_7001", str(exc), {"_schema": [str(exc)]})
        except (ValueError, TypeError, ArithmeticError) as exc:
            raise invalid({"_schema": [str(exc)]}, str(exc)) from None
        return JSONResponse(bill_view(bill))

    @app.delete(BILLS + "/{bill_id}")
    async def archive_bill(request: Request, bill_id: str) -> Response:
        bearer(request, "bills:write")
        try:
            st.archive_bill(bill_id)
        except KeyError:
            return error(404, "DEVELOPER_7004", "Resource not found.", {"id": [bill_id]})
        return Response(status_code=204)

    # -- webhooks (§1.7): no scope for the endpoints; an event type needs its resource's read scope --
    def webhook_view(sub: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in sub.items() if k not in ("secret", "challenge")}

    @app.post(WEBHOOKS)
    async def subscribe(request: Request) -> Response:
        bearer(request, "")
        body = await json_body(request)
        if not isinstance(body, dict):
            raise invalid({"_schema": ["Invalid input."]})
        errs: dict[str, list[str]] = {}
        url = body.get("endpoint_url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            errs["endpoint_url"] = ["Not a valid URL."]
        types = body.get("event_types")
        if not isinstance(types, list) or not types or any(t not in EVENT_TYPES for t in types):
            errs["event_types"] = ["Must be a non-empty list of: " + ", ".join(EVENT_TYPES) + "."]
        extra = body.get("additional_headers") or {}
        if not isinstance(extra, dict) or len(extra) > 5 or any(
                not isinstance(v, str) or len(str(k)) > 100 or len(v) > 1000 for k, v in extra.items()):
            errs["additional_headers"] = ["At most 5 headers; names up to 100, values up to 1000 characters."]
        for k in body:
            if k not in ("endpoint_url", "event_types", "additional_headers"):
                errs[k] = ["Unknown field."]
        if errs or not isinstance(url, str) or not isinstance(types, list):
            raise invalid(errs)
        for t in types:
            need = EVENT_SCOPES.get(t.split(".")[0])
            if need:
                bearer(request, need)
        sub = st.subscribe(url, types, extra)
        return JSONResponse(webhook_view(sub) | {"secret": sub["secret"]}, status_code=201)

    @app.get(WEBHOOKS)
    async def list_webhooks(request: Request) -> Response:
        bearer(request, "")
        with st.lock:
            return JSONResponse([webhook_view(w) for w in st.webhooks.values()])  # [verified R1] an array

    def webhook_or_404(webhook_id: str) -> dict[str, Any]:
        sub: dict[str, Any] | None = st.webhooks.get(webhook_id)
        if sub is None:
            raise ApiError(error(404, "DEVELOPER_7004", "Resource not found.", {"id": [webhook_id]}))
        return sub

    @app.get(WEBHOOKS + "/{webhook_id}")
    async def get_webhook(request: Request, webhook_id: str) -> Response:
        bearer(request, "")
        with st.lock:
            return JSONResponse(webhook_view(webhook_or_404(webhook_id)))

    @app.delete(WEBHOOKS + "/{webhook_id}")
    async def delete_webhook(request: Request, webhook_id: str) -> Response:
        bearer(request, "")
        with st.lock:
            webhook_or_404(webhook_id)
            del st.webhooks[webhook_id]
        return Response(status_code=204)

    @app.post(WEBHOOKS + "/{webhook_id}/verify")
    async def verify_webhook(request: Request, webhook_id: str) -> Response:
        bearer(request, "")
        body = await json_body(request)
        challenge = body.get("challenge") if isinstance(body, dict) else None
        if not isinstance(challenge, str) or not challenge:
            raise invalid({"challenge": ["Missing data for required field."]})
        with st.lock:
            sub = webhook_or_404(webhook_id)
            if not hmac.compare_digest(challenge, sub["challenge"]):
                raise invalid({"challenge": ["Challenge does not match."]}, "Challenge does not match.")
            sub["status"] = "active"
            sub["updated_at"] = _iso()
        return JSONResponse({"success": True})

    # -- reporting sync outcomes (§1.8) --
    @app.post(SYNCS)
    async def post_syncs(request: Request) -> Response:
        bearer(request, "accounting:write")
        body = await json_body(request)
        if not isinstance(body, dict):
            raise invalid({"_schema": ["Invalid input."]})
        errs: dict[str, Any] = {}
        key = body.get("idempotency_key")
        if not isinstance(key, str) or not key.strip():
            errs["idempotency_key"] = ["Missing data for required field."]
        if body.get("sync_type") not in SYNC_TYPES:
            errs["sync_type"] = ["Must be one of: " + ", ".join(SYNC_TYPES) + "."]
        ok, bad = body.get("successful_syncs", []), body.get("failed_syncs", [])
        for name, items in (("successful_syncs", ok), ("failed_syncs", bad)):
            if not isinstance(items, list) or len(items) > 5000:
                errs[name] = ["Length must be between 1 and 5000."]
                continue
            for i, it in enumerate(items):
                e: list[str] = []
                if not isinstance(it, dict) or not isinstance(it.get("id"), str):
                    e.append("id: Missing data for required field.")
                elif name == "successful_syncs" and not isinstance(it.get("reference_id"), str):
                    e.append("reference_id: Missing data for required field.")
                elif name == "failed_syncs" and not isinstance((it.get("error") or {}).get("message"), str):
                    e.append("error.message: Missing data for required field.")
                if e:
                    errs.setdefault(name, {})[str(i)] = e
        if not errs and not ok and not bad:
            errs["_schema"] = ["Provide successful_syncs or failed_syncs."]
        if errs:
            raise invalid(errs)
        try:
            sync_id, _ = st.apply_sync(body)
        except ValueError as exc:
            raise invalid({"_schema": [str(exc)]}, str(exc)) from None
        return JSONResponse({"sync_id": sync_id}, status_code=201)

    # -- transactions, reimbursements, users, departments, locations, entities, cards, receipts,
    #    purchase orders, spend programs, vendor contacts (resources.py) --
    def not_found_error(rid: str) -> ApiError:
        return ApiError(error(404, "DEVELOPER_7004", "Resource not found.", {"id": [rid]}))

    resources.register(app, st, resources.Helpers(
        bearer=bearer, page_size=page_size, invalid=invalid, not_found=not_found_error, json_body=json_body,
        bool_param=lambda request, name: _bool_param(request, name, st.validation_status)))

    # -- unknown API paths: Ramp-style 404 --
    @app.api_route(PREFIX + "/{rest:path}", methods=["GET", "POST", "PATCH", "PUT", "DELETE"])
    async def not_found(request: Request, rest: str) -> Response:
        return error(404, "DEVELOPER_7004", "Resource not found.")

    # -- admin --
    def apply_faults(body: dict[str, Any]) -> dict[str, Any]:
        st.apply(body)
        return st.switches()

    app.include_router(admin_router(faults=Switches(st.switches, apply_faults), stats=st.stats))

    @app.get("/_sandbox/state/vendors")
    async def state_vendors() -> Response:
        with st.lock:
            return JSONResponse({"vendors": [dict(r) for r in st.vendors.iter_after(None)]})

    @app.get("/_sandbox/state/gl_accounts")
    async def state_accounts() -> Response:
        with st.lock:
            return JSONResponse({"gl_accounts": [dict(r) for r in st.gl_accounts.iter_after(None)]})

    @app.post("/_sandbox/bills")
    async def sandbox_bill(request: Request) -> Response:
        body = await json_body(request)
        if not isinstance(body, dict):
            return JSONResponse({"error": "expected a JSON object"}, status_code=400)
        try:
            return JSONResponse(st.create_bill(body), status_code=201)
        except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    def bill_action(action: Callable[[], dict[str, Any]]) -> Response:
        try:
            return JSONResponse(action())
        except KeyError as exc:
            return JSONResponse({"error": str(exc.args[0]) if exc.args else "not found"}, status_code=404)
        except BillStateError as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        except (ValueError, TypeError, ArithmeticError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    async def admin_json(request: Request) -> dict[str, Any]:
        raw = await request.body()
        body = json.loads(raw) if raw.strip() else {}
        if not isinstance(body, dict):
            raise ValueError("expected a JSON object")
        return body

    @app.post("/_sandbox/bills/{bill_id}/approve")
    async def sandbox_approve(bill_id: str) -> Response:
        return bill_action(lambda: st.approve_bill(bill_id))

    @app.post("/_sandbox/bills/{bill_id}/reject")
    async def sandbox_reject(request: Request, bill_id: str) -> Response:
        body = await admin_json(request)
        return bill_action(lambda: st.reject_bill(bill_id, body.get("reason")))

    @app.post("/_sandbox/bills/{bill_id}/pay")
    async def sandbox_pay(request: Request, bill_id: str) -> Response:
        body = await admin_json(request)
        return bill_action(lambda: st.pay_bill(bill_id, body))

    @app.patch("/_sandbox/bills/{bill_id}")
    async def sandbox_edit(request: Request, bill_id: str) -> Response:
        body = await admin_json(request)
        return bill_action(lambda: st.edit_bill(bill_id, body))

    @app.post("/_sandbox/purchase_orders")
    async def sandbox_po(request: Request) -> Response:
        body = await admin_json(request)
        try:
            return JSONResponse(st.create_purchase_order(body), status_code=201)
        except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    @app.post("/_sandbox/{kind}/{rid}/{action}")
    async def sandbox_spend(kind: str, rid: str, action: str) -> Response:
        if kind not in ("transactions", "reimbursements"):
            return JSONResponse({"error": f"no admin actions on {kind!r}"}, status_code=404)
        return bill_action(lambda: st.mark_spend(kind, rid, action))

    @app.post("/_sandbox/webhooks/emit")
    async def sandbox_emit(request: Request) -> Response:
        body = await admin_json(request)
        etype = str(body.get("type") or "tests.test_event")
        if etype not in EVENT_TYPES:
            return JSONResponse({"error": f"unknown event type {etype!r}"}, status_code=400)
        return JSONResponse({"event_id": st.emit(etype, str(body.get("object_id") or st.business_id))})

    @app.get("/_sandbox/state/{name}")
    async def state_other(name: str) -> Response:
        with st.lock:
            if name in ("fields", "field_options"):
                return JSONResponse({name: [dict(r) for r in getattr(st, name).iter_after(None)]})
            if name == "bills":
                return JSONResponse({"bills": [dict(st.bills[b]) for b in st.bill_order]})
            if name == "webhook_deliveries":
                return JSONResponse({name: [dict(d) for d in st.webhook_deliveries.values()]})
            if name == "webhooks":  # with their secrets, so a demo receiver can verify signatures
                return JSONResponse({name: [dict(w) for w in st.webhooks.values()]})
            if name in ("transactions", "reimbursements", "users", "cards", "purchase_orders"):
                return JSONResponse({name: [getattr(st, name)[k] for k in sorted(getattr(st, name))]})
            if name == "syncs":
                return JSONResponse({"syncs": [{"idempotency_key": k, **v} for k, v in st.syncs.items()]})
        return JSONResponse({"error": f"no state {name!r}"}, status_code=404)

    @app.post("/_sandbox/reset")
    async def reset(request: Request) -> Response:
        body = await request.body()
        opts = json.loads(body) if body.strip() else {}
        st.reset(tokens=bool(opts.get("tokens", True)) if isinstance(opts, dict) else True)
        return JSONResponse({"ok": True})

    return app
