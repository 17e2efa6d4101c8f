"""The SAP ECC sandbox: an HTTP server speaking SOAP-RFC (`POST /sap/bc/soap/rfc`), reference §1.4.

    state = EccSandbox()                      # SID ECD, client 100, user RFC_USER / Sandbox-1234
    handle = serve_in_thread(create_app(state))
    state.faults.update(latency=0.2, max_concurrent=4)

ICM/ICF behaviour reproduced:
- HTTP Basic logon per client: bad/missing credentials or an unknown client give 401 with
  `WWW-Authenticate: Basic realm="SAP NetWeaver Application Server [<SID>/<CLIENT>]"` and an HTML
  page titled "Logon Error Message". Without `sap-client` the instance default client
  (`config.default_client`, '000') is used, where the sandbox user does not exist, so logon fails.
- Every response carries `sap-server: true`, `sap-system: <SID>` and
  `Set-Cookie: sap-usercontext=sap-client=<CLNT>; path=/`; an authenticated response also sets
  `SAP_SESSIONID_<SID>_<CLNT>`: the security session. A later request without credentials logs on
  with that cookie until the session has been idle `config.session_idle_timeout` seconds or was
  ended (`end_sessions`, SM05); `config.security_sessions = False` issues and accepts none.
  `stats.logons` counts Basic logons, `stats.session_logons` requests that logged on by session.
  `config.sso2_tickets` also sets `MYSAPSSO2` after a Basic logon: a request whose session is gone logs
  on with the ticket while it is valid (`config.ticket_validity`), and gets a new session
  (`stats.ticket_logons`).
- One HTTP request = one ABAP session (see functions.py for the LUW rule). With
  `config.stateful_sessions` ([U], reference §1.1/§7 item 1) a response sets `sap-contextid`, and a
  request of the same user that carries it continues that ABAP session: an open LUW (a BAPI's
  update task) survives until a BAPI_TRANSACTION_COMMIT/ROLLBACK in a later request of the same
  session. Requests of one session run one at a time, like a real session.
- The `logon` fault refuses the next Basic logon (401); a request logging on by session while it is
  pending finds its session ended (401) first, as when the user is locked.

Admin endpoints (no auth; the sandbox listens on loopback): `GET|POST /_sandbox/faults`,
`GET /_sandbox/stats`, `POST /_sandbox/stats/reset`, `GET|POST /_sandbox/config`,
`POST /_sandbox/vendors` (create), `POST /_sandbox/vendors/{lifnr}` (update fields),
`POST /_sandbox/vendors/{lifnr}/delete-flag`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextvars
import logging
import secrets
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from ml_connector.core.sandbox_admin import Switches, admin_router

from ..facts import ecc_facts
from . import functions as fns
from .data import EccData
from .functions import (
    REGISTRY,
    AbapException,
    AbapRuntimeError,
    CallContext,
    RfcAuthorizationFailure,
    SandboxConfig,
)
from .soap import (
    SoapParseError,
    build_authorization_fault,
    build_client_fault,
    build_error_fault,
    build_exception_fault,
    parse_request,
)

__all__ = ["EccSandbox", "FaultSwitches", "SandboxConfig", "SandboxUser", "create_app"]

log = logging.getLogger(__name__)

RFC_PATH = "/sap/bc/soap/rfc"
WSDL_PATH = "/sap/bc/soap/wsdl"
FAIL_KINDS = ("system_failure", "http_500", "drop", "logon")
DEMO_USER = ecc_facts().sandbox.demo_user
DEMO_PASSWORD = ecc_facts().sandbox.demo_password  # public sandbox demo credential, not a secret
XML_CT = "text/xml; charset=utf-8"


@dataclass
class SandboxUser:
    name: str
    password: str
    clients: set[str] = field(default_factory=lambda: {ecc_facts().sandbox.client})


class FaultSwitches:
    """Fault injection, settable from Python (`update`) and over HTTP (POST /_sandbox/faults).

    - latency: seconds added to every SOAP-RFC call;
    - fail_next / fail_kind: the next N SOAP-RFC calls fail with 'system_failure' (HTTP 500 fault,
      rfc:Error type SYSTEM_FAILURE), 'http_500' (plain ICM 500 page), 'drop' (connection closed
      without a response) or 'logon' (401);
    - max_concurrent: calls above this many in flight get a SYSTEM_FAILURE fault (no free work
      process); None = unlimited;
    - not_authorized: user -> tables RFC_READ_TABLE refuses with NOT_AUTHORIZED ('*' = all);
    - not_authorized_functions: user -> FMs refused with RFC_AUTHORIZATION_FAILURE.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.latency: float = 0.0
        self.fail_next: int = 0
        self.fail_kind: str = "system_failure"
        self.max_concurrent: int | None = None
        self.not_authorized: dict[str, set[str]] = {}
        self.not_authorized_functions: dict[str, set[str]] = {}

    def update(self, **kw: Any) -> dict[str, Any]:
        with self._lock:
            if kw.pop("reset", False):
                self.__init__()  # type: ignore[misc]
            for key, value in kw.items():
                if key == "latency":
                    self.latency = max(float(value or 0), 0.0)
                elif key == "fail_next":
                    self.fail_next = max(int(value or 0), 0)
                elif key == "fail_kind":
                    if value not in FAIL_KINDS:
                        raise ValueError(f"fail_kind must be one of {FAIL_KINDS}")
                    self.fail_kind = str(value)
                elif key == "max_concurrent":
                    self.max_concurrent = None if value in (None, 0, "") else int(value)
                elif key in ("not_authorized", "not_authorized_functions"):
                    setattr(self, key, {str(u).upper(): {str(t).upper() for t in ts}
                                        for u, ts in (value or {}).items()})
                else:
                    raise ValueError(f"unknown fault switch {key!r}")
        return self.to_dict()

    def reset(self) -> None:
        self.update(reset=True)

    def take(self, kinds: tuple[str, ...]) -> str | None:
        """Consume one pending failure if its kind is in `kinds`."""
        with self._lock:
            if self.fail_next > 0 and self.fail_kind in kinds:
                self.fail_next -= 1
                return self.fail_kind
            return None

    def to_dict(self) -> dict[str, Any]:
        return {"latency": self.latency, "fail_next": self.fail_next, "fail_kind": self.fail_kind,
                "max_concurrent": self.max_concurrent,
                "not_authorized": {u: sorted(t) for u, t in self.not_authorized.items()},
                "not_authorized_functions": {u: sorted(t) for u, t in self.not_authorized_functions.items()}}


class PeakWindow:
    """The most events in any sliding window of `width` seconds, counted exactly.

    The count of any window [s, s + width) is at its largest for a window that starts at one of
    its events, so it is enough to count, at each event t, the events in (t - width, t]. Times
    come from the caller (deterministic in tests); they must not decrease.
    """

    def __init__(self, width: float = 1.0) -> None:
        self.width = width
        self.peak = 0
        self.peak_at: float | None = None  # time of the last event of the first window at the peak
        self._times: deque[float] = deque()

    def add(self, t: float) -> int:
        """Count an event at `t`; returns the events in the window that ends with it."""
        while self._times and self._times[0] <= t - self.width:
            self._times.popleft()
        self._times.append(t)
        n = len(self._times)
        if n > self.peak:
            self.peak, self.peak_at = n, t
        return n


class SandboxStats:
    """What the emulated system felt, per emulator (one emulator = one SAP system)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.requests = 0
        self.calls: Counter[str] = Counter()
        self.in_flight = 0
        self.peak_in_flight = 0
        # Most SOAP-RFC calls that entered processing within any sliding 1-second window (what a
        # call budget of N calls per second must keep at or below N), counted at entry.
        self.window = PeakWindow(1.0)
        self._clock = clock
        self.faults_injected: Counter[str] = Counter()
        self.logons = 0  # Basic logons accepted (each creates a security session when those are on)
        self.session_logons = 0  # requests that logged on with a security session instead
        self.ticket_logons = 0  # requests that logged on with a logon ticket (MYSAPSSO2)
        self.logon_failures = 0
        self.rejected_concurrency = 0
        self.discarded_update_tasks = 0

    @property
    def peak_per_second(self) -> int:
        return self.window.peak

    def started(self) -> None:
        """A call enters processing: in flight and per-window peaks (called on the event loop)."""
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        self.window.add(self._clock())

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "calls": dict(self.calls), "in_flight": self.in_flight,
                "peak_in_flight": self.peak_in_flight, "peak_per_second": self.peak_per_second,
                "peak_window_seconds": self.window.width,
                "faults_injected": dict(self.faults_injected),
                "logons": self.logons, "session_logons": self.session_logons, "ticket_logons": self.ticket_logons,
                "logon_failures": self.logon_failures, "rejected_concurrency": self.rejected_concurrency}


@dataclass
class SessionLuw:
    """What a stateful ABAP session keeps between requests: the update task of its open LUW."""

    pending: list[Any] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class EccSandbox:
    """State of one emulated ECC system: data, switches, faults, users, statistics."""

    def __init__(self, data: EccData | None = None, *, config: SandboxConfig | None = None,
                 users: list[SandboxUser] | None = None, client: str | None = None, vendors: int | None = None,
                 seed: int | None = None, seed_logistics: bool = True, seed_fi: bool = True) -> None:
        facts = ecc_facts().sandbox  # client, vendors and seed unless given
        client = facts.client if client is None else client
        vendors = facts.vendors if vendors is None else vendors
        seed = facts.seed if seed is None else seed
        self.config = config or SandboxConfig()
        self.client = client
        if data is None:
            data = EccData(clients=(client,))
            if vendors:
                data.seed_vendors(vendors, seed, client=client)
            if seed_logistics:  # plants, POs, customers, sales orders, deliveries (seed_logistics.py)
                from .seed_logistics import seed_logistics as _seed_logistics

                _seed_logistics(data, seed=seed, client=client)
        self.data = data
        from . import fi as _fi  # FI/MM posting BAPIs, wrapper FMs and FI tables (sandbox/fi.py)

        self.fi = _fi.install(data, client, seed=seed_fi)
        self.users: dict[str, SandboxUser] = {}
        for u in users if users is not None else [SandboxUser(DEMO_USER, DEMO_PASSWORD, {client})]:
            self.add_user(u.name, u.password, u.clients)
        self.faults = FaultSwitches()
        self.stats = SandboxStats()
        self.registry = REGISTRY
        # security sessions: token -> [user, client, last used (monotonic)]
        self._sessions: OrderedDict[str, list[Any]] = OrderedDict()
        self._contexts: OrderedDict[str, tuple[str, str]] = OrderedDict()  # sap-contextid -> (user, client)
        self._tickets: dict[str, tuple[str, str, float]] = {}  # MYSAPSSO2 -> (user, client, issued)
        self._sessions_lock = threading.Lock()
        self._luws: dict[str, SessionLuw] = {}  # open LUWs of stateful sessions, by session token
        self._luws_lock = threading.Lock()

    # -- users / sessions ----------------------------------------------------------------------

    def add_user(self, name: str, password: str, clients: set[str] | None = None) -> None:
        self.users[name.upper()] = SandboxUser(name.upper(), password, set(clients or {self.client}))

    def clients(self) -> set[str]:
        return {r["MANDT"] for r in self.data.rows("T000", "")}

    def authenticate(self, user: str, password: str, client: str) -> str | None:
        """The (upper-case) user name when the logon to `client` succeeds, else None."""
        if client not in self.clients():
            return None
        u = self.users.get(user.upper())
        if u is None or client not in u.clients or not secrets.compare_digest(u.password, password):
            return None
        return u.name

    @staticmethod
    def _token() -> str:
        return secrets.token_urlsafe(30).replace("-", "A").replace("_", "B") + "%3d"

    def new_session(self, user: str, client: str) -> str:
        """A security session after a Basic logon (its SAP_SESSIONID token)."""
        token = self._token()
        with self._sessions_lock:
            self._sessions[token] = [user, client, time.monotonic()]
            while len(self._sessions) > 10000:
                self._sessions.popitem(last=False)
        return token

    def new_context(self, user: str, client: str) -> str:
        """A stateful ABAP session (its sap-contextid), whose open LUW later requests continue."""
        token = self._token()
        with self._sessions_lock:
            self._contexts[token] = (user, client)
            while len(self._contexts) > 10000:
                old, _ = self._contexts.popitem(last=False)
                with self._luws_lock:
                    self._luws.pop(old, None)
        return token

    def new_ticket(self, user: str, client: str) -> str:
        """A logon ticket (MYSAPSSO2) after a Basic logon."""
        token = "AjExMDAgAA" + self._token()
        with self._sessions_lock:
            self._tickets[token] = (user, client, time.monotonic())
        return token

    def ticket_user(self, token: str, client: str) -> str | None:
        entry = self._tickets.get(token)
        if entry is None or entry[1] != client or time.monotonic() - entry[2] >= self.config.ticket_validity:
            return None
        return entry[0]

    def context_user(self, token: str, client: str) -> str | None:
        entry = self._contexts.get(token)
        return entry[0] if entry and entry[1] == client else None

    def end_sessions(self, user: str | None = None) -> int:
        """End security sessions (all, or one user's), as an administrator does in SM05."""
        with self._sessions_lock:
            gone = [t for t, (u, _, _) in self._sessions.items() if user is None or u == user.upper()]
            for t in gone:
                del self._sessions[t]
        return len(gone)

    def session_luw(self, token: str) -> SessionLuw:
        """The ABAP session state of a stateful session (its open LUW), created on first use."""
        with self._luws_lock:
            luw = self._luws.get(token)
            if luw is None:
                luw = self._luws[token] = SessionLuw()
            return luw

    def open_update_tasks(self) -> int:
        """Queued, uncommitted update-task entries across all stateful sessions."""
        with self._luws_lock:
            return sum(len(luw.pending) for luw in self._luws.values())

    def session_user(self, token: str, client: str) -> str | None:
        """The user of a live security session of `client` (used now: its idle time restarts), else None."""
        with self._sessions_lock:
            entry = self._sessions.get(token)
            if entry is None or entry[1] != client:
                return None
            now = time.monotonic()
            if now - entry[2] >= self.config.session_idle_timeout:
                del self._sessions[token]  # timed out (http/security_session_timeout)
                return None
            entry[2] = now
            return str(entry[0])

    def set_faults(self, **kw: Any) -> dict[str, Any]:
        return self.faults.update(**kw)

    def set_config(self, **kw: Any) -> dict[str, Any]:
        """Change config switches (validated; nothing changes if one is invalid)."""
        candidate = SandboxConfig(**{**self.config.__dict__})
        for key, value in kw.items():
            if key not in SandboxConfig.__dataclass_fields__:
                raise ValueError(f"unknown config switch {key!r}")
            if key == "installed_modules":
                value = {str(v).upper() for v in value}
            setattr(candidate, key, value)
        candidate.validate()
        self.config.__dict__.update(candidate.__dict__)
        if not self.config.stateful_sessions:
            with self._luws_lock:  # sessions become stateless: their open LUWs end uncommitted
                self._luws.clear()
        return self.config.to_dict()


# ---------------------------------------------------------------------------------------------
# HTTP


def _sap_headers(state: EccSandbox, client: str, language: str) -> list[tuple[str, str]]:
    ctx = f"sap-language={language}&sap-client={client}" if language else f"sap-client={client}"
    return [("sap-server", "true"), ("sap-system", state.config.sid),
            ("set-cookie", f"sap-usercontext={ctx}; path=/")]


def _response(state: EccSandbox, body: bytes | str, status: int, client: str, language: str,
              media_type: str = XML_CT, session: str | None = None,
              extra: list[tuple[str, str]] | None = None) -> Response:
    resp = Response(content=body, status_code=status, media_type=media_type)
    for k, v in _sap_headers(state, client, language) + (extra or []):
        resp.headers.append(k, v)
    if session:
        resp.headers.append("set-cookie", f"SAP_SESSIONID_{state.config.sid}_{client}={session}; path=/; "
                                          "HttpOnly")
    return resp


_LOGON_PAGE = """<!DOCTYPE html PUBLIC "-//W3C//DTD HTML 4.01 Transitional//EN">
<html>
<head>
<meta http-equiv="Content-Type" content="text/html; charset=utf-8">
<title>Logon Error Message</title>
</head>
<body>
<h1>Anmeldung fehlgeschlagen / Logon failed</h1>
<p>Was ist passiert? / What has happened?</p>
<p>Der Aufruf der URL http://{host}/sap/bc/soap/rfc wurde aufgrund fehlerhafter Anmeldedaten abgebrochen.<br>
Calling the URL http://{host}/sap/bc/soap/rfc was terminated due to an error in the logon data.</p>
<p>Hinweis / Note: Logon failed (client {client})</p>
<p>Server: {sid}, Client: {client}</p>
</body>
</html>
"""

_ICM_500 = """<html><head><title>500 Internal Server Error</title></head><body>
<h1>500 Internal Server Error</h1><p>Error: -20 ICM_HTTP_INTERNAL_ERROR</p></body></html>
"""


def _logon_failed(state: EccSandbox, client: str, language: str, host: str) -> Response:
    state.stats.logon_failures += 1
    realm = f'Basic realm="SAP NetWeaver Application Server [{state.config.sid}/{client}]"'
    page = _LOGON_PAGE.format(host=host, client=client, sid=state.config.sid)
    return _response(state, page, 401, client, language, "text/html; charset=utf-8",
                     extra=[("www-authenticate", realm)])


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        raw = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = raw.partition(":")
    return (user, password) if sep else None


_GATEWAY_PAGES = {
    502: "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1>"
         "<p>Error: -104 ICM_HTTP_PARTNER_ERROR: the backend closed the connection</p></body></html>\n",
    504: "<html><head><title>504 Gateway Time-out</title></head><body><h1>504 Gateway Time-out</h1>"
         "<p>Error: -5 ICM_HTTP_TIMEOUT</p></body></html>\n",
}
RESPONSE_FAULTS = ("drop", "partial", "http_502", "http_504")


class _ResponseFault:
    """What should happen to the response of the current SOAP-RFC request (set by a function
    module while it runs, e.g. a wrapper's after-commit fault in fi.py)."""

    def __init__(self) -> None:
        self.kind: str | None = None


_RESPONSE_FAULT: contextvars.ContextVar[_ResponseFault | None] = contextvars.ContextVar(
    "sandbox_response_fault", default=None)


def fail_response(kind: str) -> bool:
    """Called while a SOAP-RFC call is processed (any thread of that request): the processing
    completes (whatever it committed stays committed) but its response is lost - 'drop' (the
    connection is closed before any byte), 'partial' (status line, headers and part of the body,
    then the connection is closed), 'http_502' / 'http_504' (a gateway answers instead).
    False when no HTTP request is being served (the caller must fail some other way)."""
    if kind not in RESPONSE_FAULTS:
        raise ValueError(f"response fault must be one of {RESPONSE_FAULTS}")
    holder = _RESPONSE_FAULT.get()
    if holder is None:
        return False
    holder.kind = kind
    return True


def _abort_connection(send: Any, *, graceful: bool = False) -> None:
    """Close the client's TCP connection under uvicorn (abort = RST, graceful = flush, then FIN)."""
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise ConnectionAbortedError("sandbox fault: connection dropped")
    if graceful:
        transport.close()
    else:
        transport.abort()
    cycle.disconnected = True  # type: ignore[union-attr]


class _SandboxApp(FastAPI):
    """FastAPI with raw-ASGI tricks: the 'drop' fault closes the TCP connection before any byte
    of a response is written (uvicorn would otherwise answer 500 for an app that sends nothing);
    a response fault requested by a function module (`fail_response`) drops, truncates or
    replaces the response after the call was processed."""

    sandbox: EccSandbox

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if not (scope.get("type") == "http" and scope.get("path") == RFC_PATH and scope.get("method") == "POST"):
            await super().__call__(scope, receive, send)
            return
        if self.sandbox.faults.take(("drop",)):
            self.sandbox.stats.requests += 1
            self.sandbox.stats.faults_injected["drop"] += 1
            _abort_connection(send)
            return
        holder = _ResponseFault()
        token = _RESPONSE_FAULT.set(holder)
        try:
            await super().__call__(scope, receive, self._faulty_send(send, holder))
        finally:
            _RESPONSE_FAULT.reset(token)

    def _faulty_send(self, send: Any, holder: _ResponseFault) -> Any:
        done = False

        async def send_(message: Any) -> None:
            nonlocal done
            kind = holder.kind
            if done:
                return  # the response was dropped, truncated or replaced: swallow the rest
            if kind is None:
                await send(message)
                return
            if kind == "partial" and message["type"] == "http.response.start":
                await send(message)  # status line and headers (with the full Content-Length) go out
                return
            done = True
            self.sandbox.stats.faults_injected[f"response_{kind}"] += 1
            if kind == "drop":
                _abort_connection(send)
            elif kind == "partial":
                body = bytes(message.get("body", b""))
                await send({"type": "http.response.body", "body": body[:len(body) // 2], "more_body": True})
                _abort_connection(send, graceful=True)
            else:
                status = int(kind.removeprefix("http_"))
                page = _GATEWAY_PAGES[status].encode()
                await send({"type": "http.response.start", "status": status,
                            "headers": [(b"content-type", b"text/html; charset=utf-8"),
                                        (b"content-length", str(len(page)).encode())]})
                await send({"type": "http.response.body", "body": page, "more_body": False})

        return send_


def create_app(state: EccSandbox) -> FastAPI:
    app = _SandboxApp(title="ml-connector SAP ECC sandbox", docs_url=None, redoc_url=None, openapi_url=None)
    app.sandbox = state

    @app.post(RFC_PATH)
    async def soap_rfc(request: Request) -> Response:
        cfg = state.config
        state.stats.requests += 1
        client = request.query_params.get("sap-client") or cfg.default_client
        language = (request.query_params.get("sap-language") or "").upper()
        host = request.headers.get("host", "localhost")

        creds = _basic_credentials(request.headers.get("authorization"))
        user: str | None = None
        session: str | None = None
        token = request.cookies.get(f"SAP_SESSIONID_{cfg.sid}_{client}")
        context = request.cookies.get("sap-contextid")
        ticket = request.cookies.get("MYSAPSSO2") if cfg.sso2_tickets else None
        logon_cookies: list[tuple[str, str]] = []
        if creds is not None:
            if state.faults.take(("logon",)):
                state.stats.faults_injected["logon"] += 1
                return _logon_failed(state, client, language, host)
            user = state.authenticate(creds[0], creds[1], client)
            if user is not None:
                state.stats.logons += 1
                if cfg.security_sessions:
                    session = state.new_session(user, client)
                if cfg.sso2_tickets:
                    logon_cookies.append(("set-cookie", f"MYSAPSSO2={state.new_ticket(user, client)}; path=/; "
                                                        "HttpOnly"))
        elif request.headers.get("authorization") is None and (token or ticket) and cfg.security_sessions:
            if state.faults.fail_next > 0 and state.faults.fail_kind == "logon":
                state.end_sessions()  # a refused user's sessions end too; the fault waits for the logon
                ticket = None
            user = state.session_user(token, client) if token else None
            if user is not None:
                state.stats.session_logons += 1
            elif ticket:
                user = state.ticket_user(ticket, client)
                if user is not None:  # the ticket logs on and opens a new security session
                    state.stats.ticket_logons += 1
                    session = state.new_session(user, client)
        if user is None:
            return _logon_failed(state, client, language, host)
        abap_session: str | None = None  # the ABAP session whose LUW this request continues (stateful)
        if cfg.stateful_sessions:
            abap_session = context if context and state.context_user(context, client) == user \
                else state.new_context(user, client)

        injected = state.faults.take(("system_failure", "http_500"))
        if injected:
            state.stats.faults_injected[injected] += 1
            if injected == "http_500":
                return _response(state, _ICM_500, 500, client, language, "text/html; charset=utf-8")
            return _response(state, build_error_fault(
                "SYSTEM_FAILURE", "Sandbox fault injection: SYSTEM_FAILURE"), 500, client, language,
                session=session)

        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > cfg.max_request_bytes:
            return _response(state, "Request Entity Too Large", 413, client, language, "text/plain")

        state.stats.started()
        try:
            cap = state.faults.max_concurrent
            if cap is not None and state.stats.in_flight > cap:
                state.stats.rejected_concurrency += 1
                state.stats.faults_injected["max_concurrent"] += 1
                return _response(state, build_error_fault(
                    "SYSTEM_FAILURE", "No free dialog work process (resource bottleneck)"), 500, client,
                    language, session=session)
            if state.faults.latency > 0:
                await asyncio.sleep(state.faults.latency)
            body = await request.body()
            if len(body) > cfg.max_request_bytes:
                return _response(state, "Request Entity Too Large", 413, client, language, "text/plain")
            status, payload = await anyio.to_thread.run_sync(_dispatch, state, body, user, client,
                                                             language or "E", abap_session)
            extra = logon_cookies + ([("set-cookie", f"sap-contextid={abap_session}; path=/sap/bc/soap/rfc; "
                                                      "HttpOnly")] if abap_session else [])
            return _response(state, payload, status, client, language, session=session, extra=extra)
        finally:
            state.stats.in_flight -= 1

    @app.get(WSDL_PATH)
    async def wsdl(request: Request) -> Response:
        client = request.query_params.get("sap-client") or state.config.default_client
        creds = _basic_credentials(request.headers.get("authorization"))
        if creds is None or state.authenticate(creds[0], creds[1], client) is None:
            return _logon_failed(state, client, "", request.headers.get("host", "localhost"))
        name = (request.query_params.get("services") or "").upper()
        fm = REGISTRY.get(name, state.config)
        if fm is None:
            return _response(state, f"Function module {name} not found", 404, client, "", "text/plain")
        return _response(state, _wsdl(fm), 200, client, "")

    # -- admin -------------------------------------------------------------------------------

    # Getters read `state.*` when called: /_sandbox/stats/reset replaces `state.stats`.
    app.include_router(admin_router(
        faults=Switches(lambda: state.faults.to_dict(), lambda body: state.faults.update(**body)),
        config=Switches(lambda: state.config.to_dict(), lambda body: state.set_config(**body)),
        stats=lambda: state.stats.to_dict()))

    @app.post("/_sandbox/stats/reset")
    async def reset_stats() -> dict[str, Any]:
        state.stats = SandboxStats()
        return state.stats.to_dict()


    @app.post("/_sandbox/vendors")
    async def create_vendor(request: Request) -> Response:
        try:
            body = dict(await request.json())
            client = str(body.pop("client", state.client))
            lifnr = state.data.create_vendor(client=client, **{k.lower() if k.upper() in
                                                                ("NAME1", "LAND1", "LIFNR", "BUKRS") else k: v
                                                                for k, v in body.items()})
        except (KeyError, ValueError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"lifnr": lifnr, "changenr": state.data.changenr(client)}, status_code=201)

    @app.post("/_sandbox/vendors/{lifnr}")
    async def update_vendor(lifnr: str, request: Request) -> Response:
        try:
            body = dict(await request.json())
            client = str(body.pop("client", state.client))
            bukrs = body.pop("bukrs", None) or body.pop("BUKRS", None)
            changenr = state.data.update_vendor(lifnr, bukrs=bukrs, client=client, **body)
        except KeyError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"lifnr": lifnr, "changenr": changenr})

    @app.post("/_sandbox/vendors/{lifnr}/delete-flag")
    async def delete_flag(lifnr: str, request: Request) -> Response:
        raw = await request.body()
        body: dict[str, Any] = {}
        if raw.strip():
            try:
                body = dict(await request.json())
            except (ValueError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        client = str(body.get("client", state.client))
        try:
            changenr = state.data.flag_vendor_for_deletion(lifnr, bukrs=body.get("bukrs"), client=client)
        except KeyError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        return JSONResponse({"lifnr": lifnr, "changenr": changenr})

    # IDoc XML-HTTP inbound, outbound IDocs, Gateway OData (sandbox/idoc_xml.py, outbound.py, gateway.py)
    from .gateway import gateway_router
    from .idoc_xml import idoc_xml_router
    from .outbound import outbound_router

    app.include_router(idoc_xml_router(state))
    app.include_router(outbound_router(state))
    app.include_router(gateway_router(state))
    from .fi import add_routes as _fi_routes  # /_sandbox/fi/... (sandbox/fi.py)

    _fi_routes(app, state)
    return app


def _dispatch(state: EccSandbox, body: bytes, user: str, client: str, language: str,
              abap_session: str | None = None) -> tuple[int, bytes]:
    """Parse, run and render one SOAP-RFC call (in a worker thread); returns (status, body).
    With `abap_session` (stateful sessions) the call runs in that session's open LUW."""
    if abap_session is None:
        return _dispatch_in(state, body, user, client, language, None)
    luw = state.session_luw(abap_session)
    with luw.lock:  # one request at a time per ABAP session
        return _dispatch_in(state, body, user, client, language, luw)


def _dispatch_in(state: EccSandbox, body: bytes, user: str, client: str, language: str,
                 luw: SessionLuw | None) -> tuple[int, bytes]:
    cfg = state.config
    try:
        req = parse_request(body, max_bytes=cfg.max_request_bytes)
    except SoapParseError as exc:
        return 500, build_client_fault(str(exc))
    state.stats.calls[req.function] += 1
    fm = state.registry.get(req.function, cfg)
    if fm is None:
        e = fns.fu_not_found(req.function)
        return 500, build_exception_fault(req.function, e.name, e.message, shape=cfg.exception_shape)
    if fm.name in state.faults.not_authorized_functions.get(user, set()):
        return 500, build_authorization_fault()
    ctx = CallContext(request=req, data=state.data, config=cfg, user=user, client=client, language=language,
                      forbidden_tables=frozenset(state.faults.not_authorized.get(user, set())))
    if luw is not None:
        ctx.stateful = True
        ctx._update_task = luw.pending  # the session's open LUW, shared across its requests
    try:
        return 200, fns.call(fm, ctx)
    except AbapException as exc:
        return 500, build_exception_fault(fm.name, exc.name, exc.message, shape=cfg.exception_shape)
    except AbapRuntimeError as exc:
        return 500, build_error_fault(exc.error_type, exc.text)
    except RfcAuthorizationFailure as exc:
        return 500, build_authorization_fault(exc.text)
    except SoapParseError as exc:
        return 500, build_error_fault("CX_ST_MATCH_ELEMENT", str(exc))
    except Exception as exc:  # a sandbox bug: make it visible, never mistakable for SYSTEM_FAILURE
        log.exception("sandbox: %s failed", fm.name)
        return 500, build_error_fault("SANDBOX_INTERNAL_ERROR", f"{type(exc).__name__}: {exc}")


def _wsdl(fm: fns.FunctionModule) -> str:
    """A plausible per-FM WSDL (document/literal, `xsd:all` children, like /sap/bc/soap/wsdl)."""
    from .soap import RFC_NS, abap_to_element_name

    name = abap_to_element_name(fm.name)

    def elements(direction: tuple[str, ...]) -> str:
        parts = []
        for p in fm.params:
            if p.direction not in direction:
                continue
            typ = "xsd:string" if p.kind == "scalar" else f"s0:{abap_to_element_name(p.abap_type)}"
            opt = ' minOccurs="0"' if p.optional or p.direction == "tables" else ""
            parts.append(f'<xsd:element name="{p.name}" type="{typ}"{opt}/>')
        return "".join(parts)

    types = sorted({abap_to_element_name(p.abap_type) for p in fm.params if p.kind != "scalar"})
    complex_types = "".join(
        f'<xsd:complexType name="{t}"><xsd:sequence><xsd:element name="item" minOccurs="0" '
        f'maxOccurs="unbounded" type="xsd:anyType"/></xsd:sequence></xsd:complexType>' for t in types)
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" '
        f'xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        f'xmlns:s0="{RFC_NS}" targetNamespace="{RFC_NS}">'
        f'<wsdl:types><xsd:schema elementFormDefault="unqualified" targetNamespace="{RFC_NS}">'
        f"{complex_types}"
        f'<xsd:element name="{name}"><xsd:complexType><xsd:all>{elements(("import", "changing", "tables"))}'
        f"</xsd:all></xsd:complexType></xsd:element>"
        f'<xsd:element name="{name}.Response"><xsd:complexType><xsd:all>'
        f'{elements(("export", "changing", "tables"))}</xsd:all></xsd:complexType></xsd:element>'
        "</xsd:schema></wsdl:types>"
        f'<wsdl:message name="{name}Input"><wsdl:part name="parameters" element="s0:{name}"/></wsdl:message>'
        f'<wsdl:message name="{name}Output"><wsdl:part name="parameters" element="s0:{name}.Response"/>'
        "</wsdl:message>"
        f'<wsdl:portType name="{name}PortType"><wsdl:operation name="{name}">'
        f'<wsdl:input message="s0:{name}Input"/><wsdl:output message="s0:{name}Output"/>'
        "</wsdl:operation></wsdl:portType>"
        "</wsdl:definitions>"
    )
