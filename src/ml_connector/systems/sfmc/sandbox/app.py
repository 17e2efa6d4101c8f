"""The Marketing Cloud emulator (FastAPI), one server for the three tenant hosts:

- auth: `POST /v2/token` (JSON or form; client credentials, optional account_id) → token with
  `rest_instance_url` = `{url}/rest/`, `soap_instance_url` = `{url}/soap/`, expires_in 1080 (the
  token lives 1200 s);
- SOAP: `POST /soap/Service.asmx` (SOAP 1.1 `text/xml` + SOAPAction, SOAP 1.2
  `application/soap+xml` with WS-Addressing), `fueloauth` header; Create / Retrieve / Update /
  Delete of DataExtension and DataExtensionObject, Retrieve of DataExtensionField, Simple and
  Complex filters, `UpdateAdd`, Retrieve pages of 2,500 with ContinueRequest; the WSDL at
  `GET /soap/etframework.wsdl` (its fault schema imported from this server);
- REST under `/rest/`: rowset upserts, single-row PUT, the async rows API with status and results,
  journey event definitions and entry events, `GET platform/v1/tokenContext`;
- expired token: REST 401 errorcode 0, SOAP 500 Security fault "Token Expired"; throttling: REST 429
  with Retry-After (errorcode 50100), SOAP 500 fault "Rate Limited" (apifault Code 17), by switch
  (`throttle_next`) or by a per-minute limit (`calls_per_minute` over `rate_window` seconds, REST
  and SOAP together; Retry-After = seconds until a call is admitted again).

Admin (loopback, no auth): `GET|POST /_sandbox/faults` {throttle_next, retry_after, fail_next,
kind 5xx|drop|timeout_after_commit, latency, async_pending_polls, event_reject_contacts,
calls_per_minute, rate_window};
`GET /_sandbox/stats`; `POST /_sandbox/tokens/expire`; `GET /_sandbox/des`,
`GET /_sandbox/des/{key}/rows`; `GET /_sandbox/events`.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from lxml import etree

from ml_connector.core.sandbox_admin import Switches, admin_router
from ml_connector.systems.sfmc import soap as S  # noqa: N812
from ml_connector.systems.sfmc.sandbox.state import (
    ASYNC_ROWS_MAX,
    SYNC_ROWS_MAX,
    DataExtension,
    SfmcSandbox,
)


def _drop(request: Request) -> Response:
    """Close this request's connection without an answer (see `_DropWrapper`)."""
    request.scope["mlc_drop"] = True
    return Response(status_code=204)


def _rest_error(status: int, message: str, code: int, **headers: str) -> JSONResponse:
    return JSONResponse({"message": message, "errorcode": code,
                         "documentation": "https://developer.salesforce.com/docs/marketing/marketing-cloud/"
                                          "guide/error-handling.html"}, status_code=status, headers=headers or None)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def create_app(state: SfmcSandbox) -> Any:
    app = FastAPI(title="Marketing Cloud sandbox")

    # ------------------------------------------------------------------------------ auth

    @app.post("/v2/token")
    async def token(request: Request) -> Response:
        raw = await request.body()
        data: dict[str, Any]
        if "json" in request.headers.get("content-type", ""):
            try:
                data = json.loads(raw or b"{}")
            except ValueError:
                return JSONResponse({"error": "invalid_request", "error_description": "body is not JSON"}, 400)
        else:
            form = await request.form()
            data = {k: str(v) for k, v in form.items()}
        if data.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type",
                                 "error_description": "Use client_credentials.",
                                 "error_uri": "https://developer.salesforce.com/docs"}, 400)
        if data.get("client_id") != state.client_id or data.get("client_secret") != state.client_secret:
            return JSONResponse({"error": "invalid_client",
                                 "error_description": "Client authentication failed. Make sure that the client ID "
                                                      "and client secret are valid.",
                                 "error_uri": "https://developer.salesforce.com/docs"}, 401)
        if data.get("account_id") not in (None, "") and str(data["account_id"]) != state.account_id:
            return JSONResponse({"error": "unauthorized_client", "error_description": "account_id not reachable",
                                 "error_uri": "https://developer.salesforce.com/docs"}, 401)
        tok, expires = state.issue_token()
        base = str(request.base_url).rstrip("/")
        return JSONResponse({"access_token": tok, "token_type": "Bearer", "expires_in": expires,
                             "scope": "data_extensions_read data_extensions_write journeys_execute",
                             "soap_instance_url": f"{base}/soap/", "rest_instance_url": f"{base}/rest/"})

    # ------------------------------------------------------------------------------ REST

    async def rest_guard(request: Request, handler: Callable[[], Awaitable[Response]]) -> Response:
        if state.faults.latency:
            await asyncio.sleep(state.faults.latency)
        auth = request.headers.get("authorization", "")
        tok = auth[7:] if auth.lower().startswith("bearer ") else None
        if state.token_state(tok) != "ok":
            return _rest_error(401, "Not Authorized", 0)
        state.stats["rest_calls"] += 1
        limited = state.over_rate()
        fault = "throttle" if limited is not None else state.take_fault()
        if fault == "throttle":
            ra = limited if limited is not None else int(state.faults.retry_after)
            return JSONResponse({"message": "Rate limit exceeded", "errorcode": 50100, "retryAfter": ra,
                                 "documentation": ""}, status_code=429, headers={"Retry-After": str(ra)})
        if fault == "5xx":
            return _rest_error(500, "Internal Server Error", 0)
        if fault == "drop":
            return _drop(request)
        resp = await handler()
        if fault == "timeout_after_commit":
            return _drop(request)  # applied, then the answer is lost
        return resp

    async def json_body(request: Request) -> Any:
        try:
            return json.loads(await request.body() or b"null")
        except ValueError:
            return None

    @app.get("/rest/platform/v1/tokenContext")
    async def token_context(request: Request) -> Response:
        async def h() -> Response:
            return JSONResponse({"enterprise": {"id": int(state.account_id)},
                                 "organization": {"id": int(state.account_id)},
                                 "user": {"id": 1, "timezone": {"name": "UTC"}}, "application": {"id": "sandbox"}})
        return await rest_guard(request, h)

    def _find_de(key: str) -> DataExtension | None:
        return state.des.get(key) or next((d for d in state.des.values() if d.object_id == key), None)

    @app.post("/rest/hub/v1/dataevents/key:{key}/rowset")
    async def rowset(key: str, request: Request) -> Response:
        async def h() -> Response:
            body = await json_body(request)
            de = _find_de(key)
            if de is None:
                return _rest_error(404, f"Data Extension with key {key} not found", 10000)
            if not isinstance(body, list) or not body:
                return _rest_error(400, "The request body must be a non-empty array of rows", 10004)
            if len(body) > SYNC_ROWS_MAX:
                return _rest_error(400, f"Too many rows ({len(body)})", 10005)
            errors = []
            with state.lock:
                staged = []
                for i, item in enumerate(body):
                    if not isinstance(item, dict):
                        errors.append({"message": f"row {i}: not an object", "errorcode": 10004})
                        continue
                    staged.append({**(item.get("keys") or {}), **(item.get("values") or {})})
                for i, row in enumerate(staged):
                    try:
                        probe = DataExtension(de.key, de.name, de.fields)
                        state.upsert_row(probe, row)  # validate first: a refused rowset changes nothing
                        state.stats["rows_upserted"] -= 1
                    except ValueError as exc:
                        errors.append({"message": f"row {i}: {exc}", "errorcode": 10005})
                if errors:
                    return JSONResponse({"message": "Bad request", "errorcode": 10006, "documentation": "",
                                         "additionalErrors": errors}, status_code=400)
                for row in staged:
                    state.upsert_row(de, row)
                state.stats["rowset_calls"] += 1
            return JSONResponse(body)
        return await rest_guard(request, h)

    @app.put("/rest/hub/v1/dataevents/key:{key}/rows/{pk}")
    async def put_row(key: str, pk: str, request: Request) -> Response:
        async def h() -> Response:
            body = await json_body(request)
            de = _find_de(key)
            if de is None:
                return _rest_error(404, f"Data Extension with key {key} not found", 10000)
            name, _, value = pk.partition(":")
            try:
                with state.lock:
                    state.upsert_row(de, {name: value, **((body or {}).get("values") or {})})
            except ValueError as exc:
                return _rest_error(400, str(exc), 10005)
            return JSONResponse({"keys": {name: value}, "values": (body or {}).get("values") or {}})
        return await rest_guard(request, h)

    async def _async_rows(key: str, request: Request, upsert: bool) -> Response:
        async def h() -> Response:
            body = await json_body(request)
            de = _find_de(key)
            if de is None:
                return _rest_error(404, f"Data Extension with key {key} not found", 10000)
            items = (body or {}).get("items") if isinstance(body, dict) else None
            if not isinstance(items, list) or not items:
                return _rest_error(400, "items: a non-empty array is required", 10002)
            if len(items) > ASYNC_ROWS_MAX:
                return _rest_error(400, f"items: at most {ASYNC_ROWS_MAX} objects", 10005)
            rid = str(uuid.uuid4())
            with state.lock:
                state.async_requests[rid] = {"key": de.key, "items": items, "upsert": upsert, "called": _now(),
                                             "polls": 0, "status": "Pending", "results": []}
                state.stats["async_requests"] += 1
            return JSONResponse({"requestId": rid, "resultMessages": []}, status_code=202)
        return await rest_guard(request, h)

    @app.put("/rest/data/v1/async/dataextensions/key:{key}/rows")
    async def async_put(key: str, request: Request) -> Response:
        return await _async_rows(key, request, True)

    @app.post("/rest/data/v1/async/dataextensions/key:{key}/rows")
    async def async_post(key: str, request: Request) -> Response:
        return await _async_rows(key, request, False)

    def _process(req: dict[str, Any]) -> None:
        de = state.des.get(req["key"])
        results = []
        for i, row in enumerate(req["items"]):
            try:
                if de is None:
                    raise ValueError("Data Extension deleted")
                if not req["upsert"] and state.pk_of(de, row) in de.rows:
                    raise ValueError("Violation of PRIMARY KEY constraint")
                state.upsert_row(de, row)
                results.append({"status": "OK", "errorCode": "", "message": "", "index": i})
            except ValueError as exc:
                results.append({"status": "Error", "errorCode": "ValidationError", "message": str(exc), "index": i})
        req["results"] = results
        req["status"] = "Complete"
        req["completed"] = _now()

    @app.get("/rest/data/v1/async/{rid}/status")
    async def async_status(rid: str, request: Request) -> Response:
        async def h() -> Response:
            with state.lock:
                req = state.async_requests.get(rid)
                if req is None:
                    return _rest_error(404, f"request {rid} not found", 10000)
                req["polls"] += 1
                if req["status"] == "Pending" and req["polls"] > state.faults.async_pending_polls:
                    _process(req)
                errors = any(r["status"] != "OK" for r in req["results"])
                return JSONResponse({"status": {"callDateTime": req["called"],
                                                "completionDateTime": req.get("completed"),
                                                "hasErrors": errors, "pickupDateTime": req["called"],
                                                "requestStatus": req["status"],
                                                "resultStatus": ("Error" if errors else "OK")
                                                if req["status"] == "Complete" else "",
                                                "requestId": rid}, "requestId": rid})
        return await rest_guard(request, h)

    @app.get("/rest/data/v1/async/{rid}/results")
    async def async_results(rid: str, request: Request) -> Response:
        async def h() -> Response:
            req = state.async_requests.get(rid)
            if req is None:
                return _rest_error(404, f"request {rid} not found", 10000)
            items = [r for r in req["results"]]
            return JSONResponse({"page": 1, "pageSize": len(items), "count": len(items), "items": items})
        return await rest_guard(request, h)

    @app.post("/rest/interaction/v1/eventDefinitions")
    async def create_event_definition(request: Request) -> Response:
        async def h() -> Response:
            body = await json_body(request) or {}
            key = str(body.get("eventDefinitionKey") or body.get("key") or "")
            if not key:
                return _rest_error(400, "eventDefinitionKey is required", 10002)
            with state.lock:
                state.event_definitions[key] = {"key": key, "name": body.get("name", key), "type": "APIEvent",
                                                "fields": list(body.get("fields") or [])}
            return JSONResponse({"id": str(uuid.uuid4()), **state.event_definitions[key]}, status_code=201)
        return await rest_guard(request, h)

    @app.post("/rest/interaction/v1/events")
    async def fire_event(request: Request) -> Response:
        async def h() -> Response:
            body = await json_body(request)
            if not isinstance(body, dict):
                return _rest_error(400, "Invalid message format", 10004)
            key, contact = body.get("EventDefinitionKey"), body.get("ContactKey")
            if not contact:
                return _rest_error(400, "ContactKey is required", 10002)
            if key not in state.event_definitions:
                return _rest_error(400, f"Event definition {key!r} not found", 10000)
            if contact in state.faults.event_reject_contacts:
                return _rest_error(400, f"Contact {contact} is not active", 10000)
            iid = str(uuid.uuid4())
            with state.lock:
                state.events.append({"eventInstanceId": iid, "ContactKey": contact, "EventDefinitionKey": key,
                                     "Data": body.get("Data") or {}, "at": time.time()})
                state.stats["events"] += 1
            return JSONResponse({"eventInstanceId": iid}, status_code=201)
        return await rest_guard(request, h)

    # ------------------------------------------------------------------------------ SOAP

    from ml_connector.systems.sfmc.sandbox.soap_api import SoapApi, fault_envelope, fault_xsd, wsdl_text

    api = SoapApi(state)

    @app.post("/soap/Service.asmx")
    @app.post("/soap/service.asmx")
    async def service(request: Request) -> Response:
        if state.faults.latency:
            await asyncio.sleep(state.faults.latency)
        raw = await request.body()
        ctype = request.headers.get("content-type", "")
        version = "1.2" if "soap+xml" in ctype else "1.1"
        endpoint = str(request.url)
        try:
            doc = S.parse(raw)
        except S.SoapParseError as exc:
            return fault_envelope(version, "soap:Client", str(exc), endpoint, status=400)
        env_ns = etree.QName(doc).namespace
        version = "1.2" if env_ns == S.SOAP12 else "1.1"
        header = S.child(doc, "Header")
        fuel = None
        if header is not None:
            for el in header.iter():
                if isinstance(el.tag, str) and S.local(el) == "fueloauth":
                    fuel = (el.text or "").strip()
        tstate = state.token_state(fuel)
        if tstate != "ok":
            return fault_envelope(version, "q0:Security", "Token Expired" if tstate == "expired" else "Login Failed",
                                  endpoint, security=True)
        state.stats["soap_calls"] += 1
        fault = "throttle" if state.over_rate() is not None else state.take_fault()
        if fault == "throttle":
            return fault_envelope(version, "soap:Server", "Rate Limited", endpoint, api_code="17")
        if fault == "5xx":
            return fault_envelope(version, "soap:Server", "Server was unable to process request.", endpoint)
        if fault == "drop":
            return _drop(request)
        try:
            body = S.body_of(doc)
        except S.SoapParseError as exc:
            return fault_envelope(version, "soap:Client", str(exc), endpoint, status=500)
        out = api.dispatch(body, version)
        if fault == "timeout_after_commit":
            return _drop(request)
        return out

    @app.get("/soap/etframework.wsdl")
    async def wsdl(request: Request) -> Response:
        base = str(request.base_url).rstrip("/")
        return Response(wsdl_text(f"{base}/soap/Service.asmx", f"{base}/soap/ETFrameworkFault.xsd"),
                        media_type="text/xml")

    @app.get("/soap/ETFrameworkFault.xsd")
    async def xsd() -> Response:
        return Response(fault_xsd(), media_type="text/xml")

    # ------------------------------------------------------------------------------ admin

    def set_faults(body: dict[str, Any]) -> dict[str, Any]:
        with state.lock:
            state.faults.update(body)
        return dict(state.faults.__dict__)

    app.include_router(admin_router(faults=Switches(lambda: dict(state.faults.__dict__), set_faults),
                                    stats=lambda: dict(state.stats)))

    @app.post("/_sandbox/tokens/expire")
    async def expire() -> dict[str, Any]:
        return {"expired": state.expire_tokens()}

    @app.get("/_sandbox/des")
    async def des() -> dict[str, Any]:
        return {"des": [{"key": d.key, "name": d.name, "rows": len(d.rows), "fields": d.fields}
                        for d in state.des.values()]}

    @app.get("/_sandbox/des/{key}/rows")
    async def de_rows(key: str) -> Response:
        de = state.des.get(key)
        if de is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        return JSONResponse({"rows": list(de.rows.values())})

    @app.get("/_sandbox/events")
    async def events() -> dict[str, Any]:
        return {"events": list(state.events)}

    return _DropWrapper(app)


class _DropWrapper:
    """ASGI wrapper: a request marked `mlc_drop` gets no answer; its connection is closed (the client
    cannot tell whether the call was applied)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def guarded(message: Any) -> None:
            if scope.get("mlc_drop"):
                return None
            await send(message)

        await self.app(scope, receive, guarded)
        if scope.get("mlc_drop"):
            transport = getattr(getattr(send, "__self__", None), "transport", None)  # uvicorn's cycle
            if transport is None:
                raise RuntimeError("sfmc emulator: cannot drop the connection on this server")
            transport.close()
            await asyncio.sleep(0.01)
