"""SAP ECC SOAP-RFC client (`/sap/bc/soap/rfc`) and the agent-channel glue.

* `SoapRfcClient.call(fm, params, tables=...)` posts one SOAP-RFC request and
  returns the reply as a dict (see `soap.parse_response`), or raises a typed
  `RfcError` (errors.py).
* Budgets: one `ConcurrencyCap` and one calls-per-second `RollingWindowLimiter`
  per SAP system (base URL + client), shared by every client of that system in
  the process.
* Retries: exponential backoff with full jitter for retriable errors. A request
  that may already have been processed (read timeout, connection dropped after
  sending, 502/504, unreadable reply) is retried only for idempotent (read-only)
  function modules; for any other FM the error is raised with `uncertain=True`
  and the caller resolves it by a lookup. Retriable ABAP runtime errors
  (SYSTEM_FAILURE) of non-idempotent FMs are treated the same way: a wrapper FM
  may have committed before it dumped.
* Logon: the first call logs on with HTTP Basic; the ICF security session it issues
  (`SAP_SESSIONID_<SID>_<CLIENT>`, `MYSAPSSO2` where tickets are on: provider.yaml `sessions`) is
  kept in a process-wide cache keyed by host + client + user (+ a digest of the password, so a wrong
  password never rides on someone else's session) and sent instead of credentials until it has been
  idle `sessions.idle_seconds` or SAP refuses it (401): then the call logs on again, once. A 401
  answers before anything runs, so the re-sent call is safe for any function module. A server that
  issues no session (SICF NO_SESSION_MANAGEMENT) gets Basic on every call, as before. Application
  cookies (`sap-contextid`, a stateful ABAP session) stay with the client instance, never shared.
* `RfcCaller` is the transport-agnostic interface the table reader and flows use;
  `ChannelRfcCaller` sends calls through the agent channel, and `make_handler`
  is the agent side that serves them with a `SoapRfcClient`.

Channel encoding of a call: `ChannelRequest(system, function=fm, params=P)` where
P is the parameters with every scalar in ABAP character form (dates YYYYMMDD,
see `soap.normalize_params`) plus the key `"__tables__"`: the list of TABLES
parameters to declare so that the server returns them.
"""

from __future__ import annotations

import fnmatch
import hashlib
import http.cookiejar
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from ml_connector.core import calls
from ml_connector.core.channel import AgentChannel, ChannelError, ChannelRequest
from ml_connector.core.ratelimit import Budgets

from .call_policy import CallPolicy, system_key
from .errors import ERROR_CLASSES, CommunicationError, LogonError, rfc_error_from_fault
from .facts import ecc_facts
from .soap import (
    SOAP_ACTION,
    TABLES_KEY,
    build_envelope,
    declared_tables,
    normalize_params,
    parse_fault,
    parse_response,
    split_tables_param,
)

SOAP_PATH = ecc_facts().transport.paths.rfc
_REALM_RE = re.compile(r'realm="([^"]*)"', re.I)


class RfcCaller(Protocol):
    """Anything that can call an RFC-enabled function module."""

    def call(self, fm: str, params: dict[str, Any] | None = None, *,
             tables: Sequence[str] = ()) -> dict[str, Any]: ...


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """httpx keeps no cookie of its own: the client decides what each request carries."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


@dataclass
class _Session:
    """A security session of one (host, client, user): its logon cookies and when it was last used."""

    cookies: dict[str, str]
    last_used: float
    uses: int = 0


@dataclass
class SessionCache:
    """ICF security sessions by (base URL, client, user, password digest), shared in the process."""

    idle_seconds: float
    clock: Callable[[], float] = time.monotonic
    _sessions: dict[tuple[str, str, str, str], _Session] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: tuple[str, str, str, str]) -> _Session | None:
        with self._lock:
            s = self._sessions.get(key)
            if s is not None and self.clock() - s.last_used >= self.idle_seconds:
                del self._sessions[key]  # SAP would have ended it (http/security_session_timeout)
                return None
            return s

    def put(self, key: tuple[str, str, str, str], cookies: dict[str, str]) -> None:
        with self._lock:
            self._sessions[key] = _Session(dict(cookies), self.clock())

    def cookies_of(self, s: _Session) -> dict[str, str]:
        with self._lock:
            return dict(s.cookies)

    def update(self, s: _Session, cookies: dict[str, str]) -> None:
        with self._lock:
            s.cookies.update(cookies)

    def touch(self, key: tuple[str, str, str, str], s: _Session) -> None:
        with self._lock:
            s.last_used = self.clock()
            s.uses += 1

    def drop(self, key: tuple[str, str, str, str], s: _Session) -> None:
        """Forget `s` (refused by SAP) unless another thread already replaced it."""
        with self._lock:
            if self._sessions.get(key) is s:
                del self._sessions[key]

    def clear(self) -> None:
        with self._lock:
            self._sessions.clear()


SESSIONS = SessionCache(ecc_facts().sessions.idle_seconds)


def _is_logon_cookie(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in ecc_facts().sessions.cookies)


class SoapRfcClient:
    """A synchronous SOAP-RFC client for one SAP system and client (MANDT)."""

    def __init__(
        self,
        base_url: str,
        client: str | int,
        user: str,
        password: str,
        *,
        language: str | None = None,
        calls_per_second: int | None = None,
        max_concurrency: int | None = None,
        timeout: float | httpx.Timeout = 60.0,
        idempotent_functions: Sequence[str] | Callable[[str], bool] | None = None,
        backoff_base: float | None = None,
        backoff_max: float | None = None,
        max_attempts: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        transport: httpx.BaseTransport | None = None,
        verify: bool | str = True,
        budgets: Budgets | None = None,
        sessions: SessionCache | None = SESSIONS,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = str(client).zfill(3)
        if not re.fullmatch(r"\d{3}", self.client):
            raise ValueError(f"SAP client must be three digits, got {client!r}")
        self.user = user
        self._password = password
        self.language = language
        # The budget is shared with every other client (any transport) of this SAP system.
        self.policy = CallPolicy(
            system_key(self.base_url, self.client), calls_per_second=calls_per_second,
            max_concurrency=max_concurrency, backoff_base=backoff_base, backoff_max=backoff_max,
            max_attempts=max_attempts, idempotent_functions=idempotent_functions, sleep=sleep, rng=rng,
            budgets=budgets)
        self.calls_per_second = self.policy.calls_per_second
        self.max_concurrency = self.policy.max_concurrency
        self.backoff_base = self.policy.backoff_base
        self.backoff_max = self.policy.backoff_max
        self.max_attempts = self.policy.max_attempts
        self.budget_key = self.policy.budget_key
        params = {"sap-client": self.client}
        if language:
            params["sap-language"] = language
        # None: log on with Basic on every call (no session kept)
        self.sessions = sessions
        digest = hashlib.sha256(f"{user.upper()}\0{password}".encode()).hexdigest()[:16]
        self._session_key = (self.base_url, self.client, user.upper(), digest)
        self._basic = httpx.BasicAuth(user, password)
        self._app_cookies: dict[str, str] = {}  # sap-contextid & co.: this instance's own
        self._cookie_lock = threading.Lock()
        self.logons = 0  # Basic logons this instance made
        self._http = httpx.Client(
            base_url=self.base_url,
            params=params,
            cookies=httpx.Cookies(http.cookiejar.CookieJar(policy=_NoCookies())),
            headers={
                "Content-Type": ecc_facts().transport.content_type,
                "Accept": "text/xml",
                "SOAPAction": SOAP_ACTION,
            },
            timeout=timeout,
            transport=transport,
            verify=verify,
            follow_redirects=False,
            event_hooks=calls.http_hooks(),  # each POST is one of the run's calls (a re-logon too)
        )

    def __repr__(self) -> str:
        return f"SoapRfcClient(base_url={self.base_url!r}, client={self.client!r}, user={self.user!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SoapRfcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def is_idempotent(self, fm: str) -> bool:
        return self.policy.is_idempotent(fm)

    @property
    def cookies(self) -> httpx.Cookies:
        """The cookies the next call would carry (the kept security session and this client's own)."""
        jar = httpx.Cookies()
        s = self.sessions.get(self._session_key) if self.sessions is not None else None
        with self._cookie_lock:
            for k, v in {**(self.sessions.cookies_of(s) if s and self.sessions else {}), **self._app_cookies}.items():
                jar.set(k, v)
        return jar

    # ------------------------------------------------------------------ calling

    def call(self, fm: str, params: dict[str, Any] | None = None, *,
             tables: Sequence[str] = ()) -> dict[str, Any]:
        body = build_envelope(fm, params, tables_wanted=tables)
        declared = declared_tables(params, tables)
        return self.policy.run(fm, lambda: self._once(fm, body, declared))

    def _send(self, body: bytes) -> httpx.Response:
        """POST with the kept security session if there is one; a session SAP refuses (401) is
        dropped and the call logs on with Basic, once. A Basic logon's session is kept."""
        sessions = self.sessions
        s = sessions.get(self._session_key) if sessions is not None else None
        with self._cookie_lock:
            app = dict(self._app_cookies)
        if s is not None and sessions is not None:
            resp = self._http.post(SOAP_PATH, content=body,
                                   headers=self._cookie_header({**sessions.cookies_of(s), **app}))
            if resp.status_code != 401:
                sessions.touch(self._session_key, s)
                self._keep(resp, logon=False)
                return resp
            sessions.drop(self._session_key, s)  # expired or ended in SAP: log on again, once
        self.logons += 1
        resp = self._http.post(SOAP_PATH, content=body, auth=self._basic, headers=self._cookie_header(app))
        self._keep(resp, logon=True)
        return resp

    @staticmethod
    def _cookie_header(cookies: dict[str, str]) -> dict[str, str]:
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())} if cookies else {}

    def _keep(self, resp: httpx.Response, *, logon: bool) -> None:
        """Keep what SAP set: logon cookies in the shared cache (after an accepted logon), the rest here."""
        if resp.status_code == 401:
            return
        logon_cookies: dict[str, str] = {}
        for header in resp.headers.get_list("set-cookie"):
            name, _, rest = header.partition("=")
            name, value = name.strip(), rest.split(";", 1)[0].strip()
            if not name:
                continue
            if _is_logon_cookie(name):
                if value:  # an emptied cookie (a logoff) is not kept: the next call logs on
                    logon_cookies[name] = value
            else:
                with self._cookie_lock:
                    if value:
                        self._app_cookies[name] = value
                    else:
                        self._app_cookies.pop(name, None)
        if self.sessions is not None and logon_cookies:
            s = self.sessions.get(self._session_key)
            if logon or s is None:
                self.sessions.put(self._session_key, logon_cookies)
            else:
                self.sessions.update(s, logon_cookies)  # a new session opened by the ticket, a renewed ticket

    def _once(self, fm: str, body: bytes, declared: list[str]) -> dict[str, Any]:
        with self.policy.slot():
            try:
                resp = self._send(body)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                raise CommunicationError(f"cannot connect to {self.base_url}: {type(exc).__name__}: {exc}",
                                         key="RFC_COMMUNICATION_FAILURE") from None
            except (httpx.TimeoutException, httpx.RemoteProtocolError, httpx.ReadError,
                    httpx.WriteError) as exc:
                raise CommunicationError(
                    f"{fm}: connection to {self.base_url} failed after the request was sent "
                    f"({type(exc).__name__}: {exc}); the call may have been processed",
                    key="RFC_COMMUNICATION_FAILURE", uncertain=True) from None
            except httpx.TransportError as exc:
                raise CommunicationError(f"{fm}: transport error {type(exc).__name__}: {exc}",
                                         key="RFC_COMMUNICATION_FAILURE", uncertain=True) from None
        return self._interpret(fm, resp, declared)

    def _interpret(self, fm: str, resp: httpx.Response, declared: list[str]) -> dict[str, Any]:
        status = resp.status_code
        if status == 200:
            return parse_response(fm, resp.content, tables=declared)
        if status == 401:
            challenge = resp.headers.get("www-authenticate", "")
            m = _REALM_RE.search(challenge)
            realm = m.group(1) if m else ""
            where = f"realm {realm}" if realm else f"{self.base_url} client {self.client}"
            raise LogonError(f"Name or password is incorrect, or user {self.user!r} cannot log on to "
                             f"client {self.client} ({where})", key="RFC_LOGON_FAILURE")
        if status == 500:
            raise parse_fault(status, resp.content)
        if status == 403:
            raise LogonError(f"HTTP 403 Forbidden for {SOAP_PATH} (client {self.client}): user "
                             f"{self.user!r} lacks authorization or the service is blocked",
                             key="HTTP_403", raw=resp.content)
        if status == 404:
            raise CommunicationError(f"HTTP 404 for {SOAP_PATH}: the SICF service may be inactive",
                                     key="SERVICE_NOT_FOUND", raw=resp.content, retriable=False)
        if status in self.policy.retry.statuses:  # refused before processing (429, 503)
            raise CommunicationError(f"HTTP {status}: {fm} refused by the server, try later",
                                     key=f"HTTP_{status}", raw=resp.content)
        if status in (502, 504):  # a gateway may have forwarded the request
            raise CommunicationError(f"HTTP {status} from a gateway for {fm}; the call may have been "
                                     f"processed", key=f"HTTP_{status}", raw=resp.content, uncertain=True)
        raise CommunicationError(f"unexpected HTTP {status} for {fm}", key=f"HTTP_{status}",
                                 raw=resp.content, uncertain=True, retriable=False)

    # ------------------------------------------------------------------ helpers

    def ping(self) -> float:
        """RFC_PING round trip in seconds."""
        start = time.perf_counter()
        self.call("RFC_PING")
        return time.perf_counter() - start

    def system_info(self) -> dict[str, Any]:
        """RFC_SYSTEM_INFO's RFCSI_EXPORT structure."""
        result = self.call("RFC_SYSTEM_INFO")
        info = result.get("RFCSI_EXPORT")
        return info if isinstance(info, dict) else {}


class ChannelRfcCaller:
    """An `RfcCaller` that sends every call through the agent channel to `system`.

    Faults come back re-typed as the same `RfcError` subclasses; faults from
    outside the RFC taxonomy (e.g. UnknownSystem) raise `ChannelError`."""

    def __init__(self, channel: AgentChannel, system: str) -> None:
        self.channel = channel
        self.system = system

    def __repr__(self) -> str:
        return f"ChannelRfcCaller(system={self.system!r})"

    def call(self, fm: str, params: dict[str, Any] | None = None, *,
             tables: Sequence[str] = ()) -> dict[str, Any]:
        payload = normalize_params(params)
        payload[TABLES_KEY] = list(tables)
        response = self.channel.call(ChannelRequest(system=self.system, function=fm, params=payload))
        if response.ok:
            return response.result or {}
        fault = response.fault
        if fault is None:
            raise CommunicationError(f"{fm}: agent answered not-ok without a fault", key="INVALID_RESPONSE")
        if fault.type in ERROR_CLASSES:
            raise rfc_error_from_fault(fault)
        raise ChannelError(fault)


def make_handler(client: RfcCaller) -> Callable[[str, dict[str, Any]], dict[str, Any]]:
    """The agent-side handler: the inverse of `ChannelRfcCaller`."""

    def handle(function: str, params: dict[str, Any]) -> dict[str, Any]:
        p, tables = split_tables_param(params)
        return client.call(function, p, tables=tables)

    return handle
