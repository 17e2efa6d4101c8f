"""SAP Business One Service Layer emulator (FastAPI), per reference §6.6.

    POST /b1s/v1|v2/Login            {"CompanyDB","UserName","Password"} -> 200 + B1SESSION/ROUTEID cookies
    POST /b1s/v1|v2/Logout           -> 204, the session is gone
    GET  /b1s/v1|v2/<Set>            server-driven paging (20, B1S-PageSize, Prefer odata.maxpagesize)
    GET  /b1s/v1|v2/<Set>(<key>)     one entity
    POST /b1s/v1|v2/<Set>            201 + entity, or 204 + Location with Prefer: return-no-content
    PATCH /b1s/v1|v2/<Set>(<key>)    204
    DELETE /b1s/v1|v2/<Set>(<key>)   204 (JournalEntries: 400 -5006)
    POST /b1s/v1|v2/<Action>         CompanyService_GetPeriods, CompanyService_GetFinancePeriods,
                                     SBOBobService_GetCurrencyRate: reads ({"value": ...})
Sets: ChartOfAccounts, BusinessPartners, JournalEntries, ProfitCenters, Dimensions, Projects,
DistributionRules, Currencies.

Admin (no session; loopback only), like the other emulators:
- `GET|POST /_sandbox/faults` JSON, keys optional: latency (s), fail_next + fail_kind (http_500, http_502,
  http_503, drop: before anything is processed) + fail_resource (only that entity set, or
  "<METHOD> <Set>"),
  after_commit_next + after_commit_kind (drop, http_502, http_504: the write commits, its answer is
  lost), expire_sessions (true: every session is gone now), expire_sessions_after (N: every session
  times out at the N-th Service Layer request from now, which gets the 401), clear_faults.
- `GET|POST /_sandbox/config` session_timeout_minutes, seconds_per_minute (tests shrink a minute),
  page_size, next_link_style (absolute|relative), route_id, load_balanced (ROUTEID required too;
  default off: a single node accepts B1SESSION alone), login_seconds (what a Login costs).
- `GET /_sandbox/stats`, `GET /_sandbox/state/{Set}` (all rows).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from ml_connector.core.sandbox_admin import Switches, admin_router
from ml_connector.systems.sap_b1.sandbox.odata import ODataError, select
from ml_connector.systems.sap_b1.sandbox.state import ACTIONS, B1Sandbox, SlError, error_body, invalid_session

__all__ = ["B1Sandbox", "create_app"]

_SL_PREFIX = "/b1s/"
_GATEWAY_PAGES = {
    502: "<html><head><title>502 Proxy Error</title></head><body><h1>Proxy Error</h1>"
         "<p>The proxy server received an invalid response from an upstream server.</p></body></html>\n",
    503: "<html><head><title>503 Service Unavailable</title></head><body><h1>Service Unavailable</h1>"
         "</body></html>\n",
    504: "<html><head><title>504 Gateway Timeout</title></head><body><h1>Gateway Timeout</h1></body></html>\n",
}
_FAULT_SCOPE_KEY = "b1_sandbox_drop"


def _abort_connection(send: Any) -> None:
    """Close the client's TCP connection (RST) under uvicorn, without a response."""
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise ConnectionAbortedError("sandbox fault: connection dropped")
    transport.abort()
    cycle.disconnected = True  # type: ignore[union-attr]


class _B1App(FastAPI):
    """FastAPI that can drop the connection instead of answering (the 'drop' faults): a route
    sets scope[_FAULT_SCOPE_KEY]; the response it returns is then never sent."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or not str(scope.get("path", "")).startswith(_SL_PREFIX):
            await super().__call__(scope, receive, send)
            return
        scope[_FAULT_SCOPE_KEY] = False
        dropped = False

        async def send_(message: Any) -> None:
            nonlocal dropped
            if dropped:
                return
            if scope.get(_FAULT_SCOPE_KEY):
                dropped = True
                _abort_connection(send)
                return
            await send(message)

        await super().__call__(scope, receive, send_)


def _cookies(header: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            out[name.strip()] = value.strip()
    return out


def _split(path: str) -> tuple[str, str | None, str | None]:
    """'JournalEntries(5)/Cancel' -> ('JournalEntries', '5', 'Cancel')."""
    head, _, rest = path.partition("/")
    key = None
    if "(" in head and head.endswith(")"):
        head, _, key = head[:-1].partition("(")
    return head, key, rest or None


def create_app(state: B1Sandbox | None = None) -> FastAPI:
    st = state or B1Sandbox()
    app = _B1App(title="SAP Business One Service Layer sandbox", docs_url=None, redoc_url=None)
    app.state.sandbox = st

    def b1_error(version: str, err: SlError) -> JSONResponse:
        return JSONResponse(error_body(version, err), status_code=err.status)

    async def body_json(request: Request, version: str) -> Any:
        raw = await request.body()
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise SlError(400, -1000, "The request body is not valid JSON") from None

    @app.api_route("/b1s/{version}/{path:path}", methods=["GET", "POST", "PATCH", "PUT", "DELETE"])
    async def service_layer(version: str, path: str, request: Request) -> Response:
        if version not in ("v1", "v2"):
            return JSONResponse({"error": "not found"}, status_code=404)
        with st.lock:
            st.stats_requests += 1
            st.last_headers = {k.lower(): v for k, v in request.headers.items() if k.lower() != "cookie"}
        name, key, action = _split(path)
        kind = st.take_fault(request.method, name)
        if kind == "drop":
            request.scope[_FAULT_SCOPE_KEY] = True
            return Response(status_code=500)
        if kind is not None:
            status = int(kind.removeprefix("http_"))
            if status == 500:
                return b1_error(version, SlError(500, -1, "Internal server error"))
            return Response(_GATEWAY_PAGES[status], status_code=status, media_type="text/html")
        st.in_flight += 1
        st.peak_in_flight = max(st.peak_in_flight, st.in_flight)
        try:
            return await _serve(version, path, name, key, action, request)
        except SlError as exc:
            return b1_error(version, exc)
        finally:
            st.in_flight -= 1

    async def _serve(version: str, path: str, name: str, key: str | None, action: str | None,
                     request: Request) -> Response:
        method = request.method
        root = f"{str(request.base_url).rstrip('/')}/b1s/{version}"
        if path == "Login" and method == "POST":  # case-sensitive [P]: 'login' falls through to the 401
            if st.config.login_seconds > 0:
                await asyncio.sleep(st.config.login_seconds)  # a real login costs seconds
            sess, timeout = st.login(await body_json(request, version))
            meta = ({"odata.metadata": f"{root}/$metadata#B1Sessions/@Element"} if version == "v1"
                    else {"@odata.context": f"{root}/$metadata#B1Sessions/$entity"})
            resp = JSONResponse({**meta, "SessionId": sess.id, "Version": st.version, "SessionTimeout": timeout})
            # Exactly as SL sends them [V]: B1SESSION without Path and with a trailing ';'.
            resp.raw_headers.append((b"set-cookie", f"B1SESSION={sess.id};HttpOnly;".encode()))
            if st.config.route_id:
                resp.raw_headers.append((b"set-cookie", f"ROUTEID={st.config.route_id}; path=/b1s".encode()))
            return resp
        if path.lower() in ("login", "logout") and path not in ("Login", "Logout"):
            with st.lock:  # the wrong case of Login is not Login: 401/301 whatever the session [P]
                st.unauthorized += 1
            raise invalid_session()
        st.count_toward_expiry()
        cookies = _cookies(request.headers.get("cookie", ""))
        if st.config.load_balanced and st.config.route_id and cookies.get("ROUTEID") != st.config.route_id:
            # Without the stickiness cookie the balancer may pick a node that does not know the session.
            with st.lock:
                st.unauthorized += 1
            raise invalid_session()
        sess = st.session(cookies.get("B1SESSION"))
        if path == "Logout" and method == "POST":
            st.logout(sess.id)
            return Response(status_code=204)
        with st.lock:
            st.by_resource[f"{method} {name}"] += 1
        if st.faults.latency > 0:
            await asyncio.sleep(st.faults.latency)
        if name in ACTIONS:
            if method != "POST" or key is not None or action is not None:
                raise SlError(405, -5006, "The requested action is not supported for this object.")
            result = st.action(name, await body_json(request, version))
            # The function import's return type: a collection (PeriodCategoryParams, FinancePeriod) or Edm.Double.
            of = "Edm.Double" if name == "SBOBobService_GetCurrencyRate" else \
                f"Collection(SAPB1.{'PeriodCategoryParams' if name.endswith('GetPeriods') else 'FinancePeriod'})"
            annotation = "odata.metadata" if version == "v1" else "@odata.context"
            return JSONResponse({annotation: f"{root}/$metadata#{of}", "value": result})
        es = st.entity_set(name)
        if action is not None:
            raise SlError(404, -1, "Unrecognized resource path.")
        if method == "GET":
            if key is not None:
                row = st.get(es, st.parse_key(es, key))
                try:
                    row = select(row, dict(request.query_params), es.fields)
                except ODataError as exc:
                    raise SlError(400, -1000, str(exc)) from None
                return JSONResponse(_annotate(version, root, name, row, single=True))
            return _collection(version, root, name, es, request)
        if method == "POST" and key is None:
            row = st.create(es, await body_json(request, version))
            location = f"{root}/{name}({_key_literal(row[es.key])})"
            lost = self_after_commit(request)
            if lost is not None:
                return lost
            if "return-no-content" in request.headers.get("prefer", ""):
                return Response(status_code=204, headers={"Location": location,
                                                          "Preference-Applied": "return-no-content"})
            return JSONResponse(_annotate(version, root, name, row, single=True), status_code=201,
                                headers={"Location": location})
        if method in ("PATCH", "PUT") and key is not None:
            st.update(es, st.parse_key(es, key), await body_json(request, version))
            return self_after_commit(request) or Response(status_code=204)
        if method == "DELETE" and key is not None:
            st.delete(es, st.parse_key(es, key))
            return self_after_commit(request) or Response(status_code=204)
        raise SlError(405 if key is None else 400, -5006, "The requested action is not supported for this object.")

    def self_after_commit(request: Request) -> Response | None:
        kind = st.take_after_commit()
        if kind is None:
            return None
        if kind == "drop":
            request.scope[_FAULT_SCOPE_KEY] = True
            return Response(status_code=500)
        status = int(kind.removeprefix("http_"))
        return Response(_GATEWAY_PAGES[status], status_code=status, media_type="text/html")

    def _collection(version: str, root: str, name: str, es: Any, request: Request) -> Response:
        query = {k: v for k, v in request.query_params.items()}
        page_size = st.config.page_size
        headers: dict[str, str] = {}
        b1s = request.headers.get("b1s-pagesize")
        if b1s is not None:
            try:
                page_size = int(b1s)
            except ValueError:
                raise SlError(400, -1000, f"B1S-PageSize: expected an integer, got {b1s!r}") from None
        for pref in request.headers.get("prefer", "").split(","):
            k, _, v = pref.strip().partition("=")
            if k == "odata.maxpagesize":  # wins over PageSize [V]; 0 turns paging off [V]
                try:
                    page_size = int(v)
                except ValueError:
                    raise SlError(400, -1000, f"Prefer odata.maxpagesize: expected an integer, got {v!r}") from None
                headers["Preference-Applied"] = f"odata.maxpagesize={page_size}"
        if page_size < 0:
            raise SlError(400, -1000, "page size must not be negative")
        rows, total, nxt = st.query(es, query, page_size)
        meta_key = "odata.metadata" if version == "v1" else "@odata.context"
        body: dict[str, Any] = {meta_key: f"{root}/$metadata#{name}", "value": rows}
        if query.get("$inlinecount") == "allpages" or query.get("$count") == "true":
            body["odata.count" if version == "v1" else "@odata.count"] = total
        if nxt is not None:
            body["odata.nextLink" if version == "v1" else "@odata.nextLink"] = st.next_link(version, name, nxt)
        return JSONResponse(body, headers=headers)

    # ---- admin ----------------------------------------------------------------------------------

    app.include_router(admin_router(
        faults=Switches(st.faults.to_dict, lambda body: st.set_faults(**body)),
        config=Switches(st.config.to_dict, lambda body: st.set_config(**body)),
        stats=st.stats))

    @app.get("/_sandbox/state/{name}")
    async def state_rows(name: str) -> Response:
        if name not in st.sets:
            return JSONResponse({"error": f"no entity set {name!r}; one of {sorted(st.sets)}"}, status_code=404)
        return JSONResponse({name: st.rows(name)})

    return app


def _key_literal(key: Any) -> str:
    return str(key) if isinstance(key, int) else "'" + str(key).replace("'", "''") + "'"


def _annotate(version: str, root: str, name: str, row: dict[str, Any], *, single: bool) -> dict[str, Any]:
    if version == "v1":
        return {"odata.metadata": f"{root}/$metadata#{name}/@Element", **row}
    return {"@odata.context": f"{root}/$metadata#{name}/$entity", **row}
