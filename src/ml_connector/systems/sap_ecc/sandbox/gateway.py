"""Sandbox: an SAP Gateway OData v2 service under /sap/opu/odata/sap/ (reference §1.3, §1.4 item 6).

Service ZMLC_VENDOR_SRV (a typical customer SEGW service on ECC) with VendorSet over LFA1:
- `GET  .../ZMLC_VENDOR_SRV/` service document, `GET .../$metadata` EDMX;
- `GET  .../VendorSet?$top=&$skip=&$filter=Lifnr eq '…'|Land1 eq '…'&$inlinecount=allpages` ->
  `{"d":{"results":[…],"__next":"…$skiptoken=N"}}` (server page size `page_size`);
- `GET  .../VendorSet('0000100001')`, `POST .../VendorSet` (create), `MERGE|PATCH|PUT
  .../VendorSet('…')` (change Name1/Land1/Ort01 through the EccData vendor API), `DELETE` sets the
  deletion flag. JSON only (`$format=json` or not: the answer is JSON).
- CSRF: `X-CSRF-Token: Fetch` on a GET issues a token bound to the session cookie
  (SAP_SESSIONID_<SID>_<CLNT>); modifying requests without a valid token (or without the cookie)
  get 403, `X-CSRF-Token: Required`, body "CSRF token validation failed".
- Errors: Gateway error JSON; unknown service -> 404 `/IWFND/MED/170`, unknown entity set ->
  404 `/IWFND/CM_MGW/051`, unknown key -> 404 `/IWBEP/CM_MGW_RT/020`, validation -> 400 with
  `errordetails` (propertyref/target).

Switches (`gateway_state(state).update(...)` or `POST /_sandbox/gateway`): page_size, token_ttl
(seconds), expire_tokens (invalidate every issued token now), csrf_required (bool),
reject_csrf_next (the next N modifying requests fail CSRF even with a valid token).
"""

from __future__ import annotations

import re
import secrets
import threading
import time
import weakref
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from .app import EccSandbox, _basic_credentials, _logon_failed
from .data import alpha_in

ODATA_ROOT = "/sap/opu/odata/sap"
SERVICE = "ZMLC_VENDOR_SRV"
MODIFYING = ("POST", "PUT", "PATCH", "MERGE", "DELETE")
# OData property -> LFA1 field
VENDOR_PROPS = {"Lifnr": "LIFNR", "Name1": "NAME1", "Land1": "LAND1", "Ort01": "ORT01", "Pstlz": "PSTLZ",
                "Stras": "STRAS", "Ktokk": "KTOKK", "Loevm": "LOEVM", "Erdat": "ERDAT"}
CHANGEABLE = ("Name1", "Land1", "Ort01", "Pstlz", "Stras")
_FILTER = re.compile(r"^\s*(\w+)\s+eq\s+'((?:[^']|'')*)'\s*$")


class GatewayState:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.page_size = 50
        self.token_ttl = 1800.0
        self.csrf_required = True
        self.reject_csrf_next = 0
        self._tokens: dict[str, tuple[str, float]] = {}  # token -> (session, expires)
        self.csrf_failures = 0

    def issue(self, session: str) -> str:
        token = secrets.token_urlsafe(18)
        with self._lock:
            self._tokens[token] = (session, time.monotonic() + self.token_ttl)
            if len(self._tokens) > 5000:
                self._tokens.pop(next(iter(self._tokens)))
        return token

    def valid(self, token: str | None, session: str | None) -> bool:
        with self._lock:
            if self.reject_csrf_next > 0:
                self.reject_csrf_next -= 1
                return False
            entry = self._tokens.get(token or "")
            return bool(entry and session and entry[0] == session and entry[1] > time.monotonic())

    def update(self, **kw: Any) -> dict[str, Any]:
        with self._lock:
            for key, value in kw.items():
                if key == "page_size":
                    self.page_size = max(int(value), 1)
                elif key == "token_ttl":
                    self.token_ttl = float(value)
                elif key == "csrf_required":
                    self.csrf_required = bool(value)
                elif key == "reject_csrf_next":
                    self.reject_csrf_next = int(value)
                elif key == "expire_tokens":
                    if value:
                        self._tokens.clear()
                else:
                    raise ValueError(f"unknown gateway switch {key!r}")
            return self.to_dict()

    def to_dict(self) -> dict[str, Any]:
        return {"page_size": self.page_size, "token_ttl": self.token_ttl, "csrf_required": self.csrf_required,
                "reject_csrf_next": self.reject_csrf_next, "tokens": len(self._tokens),
                "csrf_failures": self.csrf_failures}


_states: weakref.WeakKeyDictionary[EccSandbox, GatewayState] = weakref.WeakKeyDictionary()
_states_lock = threading.Lock()


def gateway_state(state: EccSandbox) -> GatewayState:
    with _states_lock:
        gw = _states.get(state)
        if gw is None:
            gw = _states[state] = GatewayState()
        return gw


def error_json(state: EccSandbox, status: int, code: str, message: str, *, service: str = SERVICE,
               details: list[dict[str, str]] | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    now = time.gmtime()
    body = {"error": {
        "code": code, "message": {"lang": "en", "value": message},
        "innererror": {
            "application": {"component_id": "", "service_namespace": "/SAP/", "service_id": service,
                            "service_version": "0001"},
            "transactionid": secrets.token_hex(16).upper(),
            "timestamp": time.strftime("%Y%m%d%H%M%S", now) + ".0000000",
            "Error_Resolution": {
                "SAP_Transaction": "Run transaction /IWFND/ERROR_LOG on SAP Gateway hub system and search for "
                                   "entries with the timestamp above for more details",
                "SAP_Note": "See SAP Note 1797736 for error analysis (https://service.sap.com/sap/support/notes/"
                            "1797736)"},
            "errordetails": details or []}}}
    return JSONResponse(body, status_code=status, headers={"sap-system": state.config.sid, **(headers or {})})


def _entity(base: str, row: dict[str, Any]) -> dict[str, Any]:
    uri = f"{base}/VendorSet('{row['LIFNR']}')"
    out: dict[str, Any] = {"__metadata": {"id": uri, "uri": uri, "type": f"{SERVICE}.Vendor"}}
    for prop, fld in VENDOR_PROPS.items():
        out[prop] = str(row.get(fld, "") or "").rstrip()
    return out


_METADATA = """<?xml version="1.0" encoding="utf-8"?>
<edmx:Edmx Version="1.0" xmlns:edmx="http://schemas.microsoft.com/ado/2007/06/edmx"
 xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata"
 xmlns:sap="http://www.sap.com/Protocols/SAPData">
 <edmx:DataServices m:DataServiceVersion="2.0">
  <Schema Namespace="{svc}" xml:lang="en" sap:schema-version="1"
   xmlns="http://schemas.microsoft.com/ado/2008/09/edm">
   <EntityType Name="Vendor" sap:content-version="1">
    <Key><PropertyRef Name="Lifnr"/></Key>
{props}
   </EntityType>
   <EntityContainer Name="{svc}_Entities" m:IsDefaultEntityContainer="true">
    <EntitySet Name="VendorSet" EntityType="{svc}.Vendor" sap:creatable="true" sap:updatable="true"
     sap:deletable="true" sap:content-version="1"/>
   </EntityContainer>
  </Schema>
 </edmx:DataServices>
</edmx:Edmx>
"""


def gateway_router(state: EccSandbox) -> APIRouter:
    router = APIRouter()
    gw = gateway_state(state)

    def session_cookie(client: str) -> str:
        return f"SAP_SESSIONID_{state.config.sid}_{client}"

    @router.get("/_sandbox/gateway")
    async def get_switches() -> dict[str, Any]:
        return gw.to_dict()

    @router.post("/_sandbox/gateway")
    async def set_switches(request: Request) -> Response:
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("expected a JSON object")
            return JSONResponse(gw.update(**body))
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    @router.api_route(ODATA_ROOT + "/{service}/{path:path}", methods=["GET", *MODIFYING])
    async def odata(service: str, path: str, request: Request) -> Response:
        cfg = state.config
        client = request.query_params.get("sap-client") or cfg.default_client
        host = request.headers.get("host", "localhost")
        creds = _basic_credentials(request.headers.get("authorization"))
        cookie = request.cookies.get(session_cookie(client))
        session: str | None = None
        user: str | None = None
        new_session = False
        if creds is not None:
            user = state.authenticate(creds[0], creds[1], client)
            if user is not None:
                if cookie and state.session_user(cookie, client) == user:
                    session = cookie
                else:
                    session, new_session = state.new_session(user, client), True
        elif cookie:
            user = state.session_user(cookie, client)
            session = cookie if user else None
        if user is None or session is None:
            return _logon_failed(state, client, "", host)
        extra: dict[str, str] = {}
        if new_session:
            extra["set-cookie"] = f"{session_cookie(client)}={session}; path=/; HttpOnly"

        def finish(resp: Response) -> Response:
            for k, v in extra.items():
                resp.headers.append(k, v)
            resp.headers.append("sap-server", "true")
            return resp

        if service.upper() != SERVICE:
            return finish(error_json(state, 404, "/IWFND/MED/170",
                                     f"No service found for namespace '/SAP/', name '{service}', version '0001'",
                                     service=service))
        method = request.method.upper()
        if request.headers.get("x-http-method", "").upper() in ("MERGE", "PATCH", "PUT", "DELETE") \
                and method == "POST":
            method = request.headers["x-http-method"].upper()
        base = f"{request.url.scheme}://{host}{ODATA_ROOT}/{SERVICE}"
        if method == "GET" and request.headers.get("x-csrf-token", "").lower() == "fetch":
            extra["x-csrf-token"] = gw.issue(session)
        if method in MODIFYING and gw.csrf_required and not gw.valid(request.headers.get("x-csrf-token"),
                                                                     cookie if not new_session else None):
            gw.csrf_failures += 1
            return finish(Response("CSRF token validation failed", status_code=403, media_type="text/plain",
                                   headers={"x-csrf-token": "Required"}))
        try:
            return finish(await _handle(state, gw, method, path, request, base, client))
        except _ODataError as exc:
            return finish(error_json(state, exc.status, exc.code, exc.message, details=exc.details))

    return router


class _ODataError(Exception):
    def __init__(self, status: int, code: str, message: str, details: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details or []


def _detail(code: str, message: str, prop: str) -> dict[str, str]:
    return {"code": code, "message": message, "propertyref": prop, "severity": "error", "target": prop}


async def _handle(state: EccSandbox, gw: GatewayState, method: str, path: str, request: Request, base: str,
                  client: str) -> Response:
    path = path.strip("/")
    if path == "":
        if method != "GET":
            raise _ODataError(405, "/IWFND/CM_MGW/004", "Method not allowed for the service document")
        return JSONResponse({"d": {"EntitySets": ["VendorSet"]}})
    if path == "$metadata":
        props = "\n".join(f'    <Property Name="{p}" Type="Edm.String" Nullable="{str(p != "Lifnr").lower()}"/>'
                          for p in VENDOR_PROPS)
        return Response(_METADATA.format(svc=SERVICE, props=props), media_type="application/xml")
    m = re.fullmatch(r"VendorSet(?:\('([^']*)'\))?", path)
    if m is None:
        segment = path.split("(")[0].split("/")[0]
        raise _ODataError(404, "/IWFND/CM_MGW/051", f"Resource not found for the segment '{segment}'")
    key = m.group(1)
    data = state.data
    if key is None:
        if method == "GET":
            return _collection(state, gw, request, base, client)
        if method == "POST":
            body = await _json(request)
            missing = [p for p in ("Name1", "Land1") if not str(body.get(p, "")).strip()]
            if missing:
                raise _ODataError(400, "ZMLC/001", f"Property {missing[0]} is mandatory",
                                  [_detail("ZMLC/001", f"Property {p} is mandatory", p) for p in missing])
            optional: dict[str, Any] = {VENDOR_PROPS[p]: str(body[p]) for p in ("Ort01", "Pstlz", "Stras")
                                        if body.get(p)}
            try:
                lifnr = data.create_vendor(name1=str(body["Name1"]), land1=str(body["Land1"]),
                                           lifnr=str(body["Lifnr"]) if body.get("Lifnr") else None, client=client,
                                           **optional)
            except KeyError as exc:
                raise _ODataError(400, "ZMLC/002", str(exc).strip("'"), [_detail("ZMLC/002", str(exc), "Lifnr")]) \
                    from None
            except ValueError as exc:
                raise _ODataError(400, "ZMLC/003", str(exc), [_detail("ZMLC/003", str(exc), "Name1")]) from None
            row = data.get("LFA1", (lifnr,), client)
            assert row is not None
            return JSONResponse({"d": _entity(base, row)}, status_code=201,
                                headers={"location": f"{base}/VendorSet('{lifnr}')"})
        raise _ODataError(405, "/IWFND/CM_MGW/004", f"Method {method} not allowed on an entity set")
    lifnr = alpha_in(key) if key.isdigit() else key
    row = data.get("LFA1", (lifnr,), client)
    if row is None:
        raise _ODataError(404, "/IWBEP/CM_MGW_RT/020", f"Resource not found for segment 'Vendor' key '{key}'")
    if method == "GET":
        return JSONResponse({"d": _entity(base, row)})
    if method == "DELETE":
        data.flag_vendor_for_deletion(lifnr, client=client)
        return Response(status_code=204)
    body = await _json(request)
    unknown = [p for p in body if p not in VENDOR_PROPS and p != "__metadata"]
    readonly = [p for p in body if p in VENDOR_PROPS and p not in CHANGEABLE and p != "Lifnr"]
    bad = unknown + readonly
    if bad:
        raise _ODataError(400, "ZMLC/004", f"Property {bad[0]} cannot be changed",
                          [_detail("ZMLC/004", f"Property {p} cannot be changed", p) for p in bad])
    changes = {VENDOR_PROPS[p]: str(v) for p, v in body.items() if p in CHANGEABLE}
    if method == "PUT":  # replace: unspecified changeable properties become initial
        changes = {VENDOR_PROPS[p]: str(body.get(p, "")) for p in CHANGEABLE}
    try:
        data.update_vendor(lifnr, client=client, tcode="XK02", **changes)
    except ValueError as exc:
        prop = next((p for p, f in VENDOR_PROPS.items() if f"-{f}:" in str(exc)), "")
        raise _ODataError(400, "ZMLC/003", str(exc), [_detail("ZMLC/003", str(exc), prop)]) from None
    return Response(status_code=204)


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise _ODataError(400, "/IWBEP/CM_MGW_RT/021", "Malformed JSON in the request body") from None
    if not isinstance(body, dict):
        raise _ODataError(400, "/IWBEP/CM_MGW_RT/021", "Expected a JSON object")
    return body


def _collection(state: EccSandbox, gw: GatewayState, request: Request, base: str, client: str) -> Response:
    q = request.query_params
    fmt = q.get("$format")
    if fmt and fmt.lower() != "json":
        raise _ODataError(400, "/IWBEP/CM_MGW_RT/005", f"Format '{fmt}' is not supported by the sandbox")
    rows = state.data.rows("LFA1", client)
    flt = q.get("$filter")
    if flt:
        parts = [p for p in re.split(r"\s+and\s+", flt) if p.strip()]
        for part in parts:
            m = _FILTER.match(part)
            if m is None or m.group(1) not in VENDOR_PROPS:
                raise _ODataError(400, "/IWBEP/CM_MGW_RT/022", f"Invalid filter expression: '{part.strip()}'")
            fld, value = VENDOR_PROPS[m.group(1)], m.group(2).replace("''", "'")
            if fld == "LIFNR" and value.isdigit():
                value = alpha_in(value)
            rows = [r for r in rows if str(r.get(fld, "") or "").rstrip() == value]
    total = len(rows)

    def num(name: str) -> int | None:
        v = q.get(name)
        if v is None:
            return None
        if not v.isdigit():
            raise _ODataError(400, "/IWBEP/CM_MGW_RT/023", f"Invalid value '{v}' for {name}")
        return int(v)

    skip = (num("$skip") or 0) + (num("$skiptoken") or 0)
    top = num("$top")
    end = total if top is None else min(total, (num("$skip") or 0) + top)
    page_end = min(end, skip + gw.page_size)
    d: dict[str, Any] = {"results": [_entity(base, r) for r in rows[skip:page_end]]}
    if q.get("$inlinecount") == "allpages":
        d["__count"] = str(total)
    if page_end < end:
        params = [f"$skiptoken={page_end - (num('$skip') or 0)}"]
        for name in ("$filter", "$top", "$skip", "sap-client", "$format"):
            if q.get(name) is not None:
                params.append(f"{name}={quote(str(q.get(name)), safe='')}")
        d["__next"] = f"{base}/VendorSet?" + "&".join(params)
    return JSONResponse({"d": d})
