"""SAP Business One Service Layer client (reference §6).

- `B1SessionAuth`: an `httpx.Auth` that logs in (POST <root>/Login), sends both cookies B1SESSION and
  ROUTEID on every request (parsed leniently from Set-Cookie: B1SESSION has no Path and a trailing
  `;`), logs in again before the sliding inactivity timeout runs out, and on a 401 logs in once more
  and replays the request. Callers never see a session.
- `ServiceLayerApi`: everything above one request - server-driven paging (`odata.nextLink` /
  `@odata.nextLink`, resolved against the service root, otherwise opaque), creates, updates, and
  posting JournalEntries exactly once (look up the external id before posting and after an
  uncertain answer).
- `ServiceLayerClient` sends over HTTP; `ChannelServiceLayerClient` sends the same serializable
  request through the agent channel (the password stays on the agent). Flows use either.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import httpx

from ml_connector.core.channel import AgentChannel, ChannelError, ChannelRequest
from ml_connector.core.http import NEVER_SENT, RetryPolicy, RetryTransport
from ml_connector.core.vault import register_secret_value
from ml_connector.systems.sap_b1.errors import (
    ERROR_CLASSES,
    B1CommunicationError,
    B1Error,
    B1LoginError,
    B1RequestError,
    B1SessionError,
    error_from_fault,
    parse_error,
)
from ml_connector.systems.sap_b1.facts import b1_facts
from ml_connector.systems.sap_b1.pacing import CompanyPacing
from ml_connector.systems.sap_b1.sessions import SessionStore, StoredSession

log = logging.getLogger(__name__)

METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")
#: Headers a caller may set on a Service Layer request (the session cookies are the client's own).
ALLOWED_HEADER = re.compile(r"^(prefer|b1s-[a-z]+|if-match)$", re.IGNORECASE)
#: A path relative to the service root: an entity set / action, an optional key, optional segments.
_PATH = re.compile(r"^(?P<resource>\$?[A-Za-z_][A-Za-z0-9_]*)(?:\((?P<key>[^()/?#]*)\))?"
                   r"(?P<rest>(?:/[A-Za-z_$][\w$]*)*)$")
SESSION_RESOURCES = ("Login", "Logout")


def parse_set_cookies(headers: httpx.Headers) -> dict[str, str]:
    """name -> value of every Set-Cookie, tolerant of what strict jars drop (no Path, trailing ';',
    attributes in any case)."""
    out: dict[str, str] = {}
    for line in headers.get_list("set-cookie"):
        first = line.split(";", 1)[0].strip()
        name, sep, value = first.partition("=")
        if sep and name.strip():
            out[name.strip()] = value.strip().strip('"')
    return out


def split_path(path: str) -> tuple[str, str]:
    """(path without query, query string) of a path relative to the service root."""
    base, _, qs = path.partition("?")
    return base, qs


def resource_of(path: str) -> str:
    """The entity set or action a root-relative path addresses ('JournalEntries(5)/Cancel' ->
    'JournalEntries'). Raises B1RequestError for anything that is not such a path (absolute URLs,
    '..', another root)."""
    base, _ = split_path(path)
    m = _PATH.match(base)
    if not m:
        raise B1RequestError(f"invalid Service Layer path {base!r}: expected <EntitySet>[(<key>)][/<segment>...] "
                             "relative to the service root")
    return m.group("resource")


def odata_quote(value: str) -> str:
    """A string literal for $filter: single quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


def key_literal(key: int | str) -> str:
    return str(key) if isinstance(key, int) else odata_quote(str(key))


def encode_query(query: Mapping[str, Any] | None) -> str:
    # %20, not '+', for spaces: OData servers read '+' literally.
    return "&".join(f"{quote(str(k), safe='$')}={quote(str(v), safe=chr(39) + '(),$:/@')}"
                    for k, v in (query or {}).items())


@dataclass
class SlResponse:
    """One answer, serializable: status, JSON body (None for 204), the headers callers need."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "body": self.body, "headers": self.headers}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SlResponse:
        return cls(int(data.get("status", 0)), data.get("body"), dict(data.get("headers") or {}))


@dataclass
class JournalPosting:
    jdt_num: int
    number: int | None
    created: bool  # False: it was already there (found by its external id)
    entry: dict[str, Any]


# ------------------------------------------------------------------------------------------ session


@dataclass
class _Session:
    cookies: dict[str, str]
    timeout_s: float
    last_used: float
    generation: int


class B1SessionAuth(httpx.Auth):
    """Service Layer session handling as an httpx auth flow (see the module docstring)."""

    requires_response_body = True

    #: seconds between two writes of a kept session's last-use time (sessions.py)
    SAVE_EVERY = 60.0

    def __init__(self, root: str, company_db: str, user: str, password: str, *, language: int | None = None,
                 clock: Callable[[], float] = time.monotonic, store: SessionStore | None = None) -> None:
        self.store = store
        self._saved_at: float | None = None
        self._owner = hashlib.sha256(f"{root}\0{company_db}\0{user}\0{password}".encode()).hexdigest()
        self.root = root.rstrip("/")
        self.company_db = company_db
        self.user = user
        self._password = password
        register_secret_value(password)  # never in a log or an error text
        self.language = language
        self.clock = clock
        self.margin = b1_facts().session.relogin_margin_seconds
        self.login_path = b1_facts().service.login
        self.logout_path = b1_facts().service.logout
        self._session: _Session | None = None
        self._generation = 0
        self._lock = threading.Lock()
        self.logins = 0

    def __repr__(self) -> str:
        return f"B1SessionAuth(root={self.root!r}, company_db={self.company_db!r}, user={self.user!r})"

    def _fresh(self) -> _Session | None:
        s = self._session
        if s is None or not self._usable(s):
            return None
        return s

    def _usable(self, s: _Session) -> bool:
        # Sliding inactivity timeout: log in again shortly before it would run out.
        return self.clock() - s.last_used < max(s.timeout_s - self.margin, s.timeout_s / 2)

    def _adopt(self, stale: _Session | None) -> _Session | None:
        """The session kept in the store (by an earlier run or another process), if still usable
        and not the one the server just refused."""
        if self.store is None:
            return None
        kept = self.store.load()
        if kept is None or kept.owner != self._owner or (stale is not None and kept.cookies == stale.cookies):
            return None
        # stored in unix time, used in this auth's clock
        s = _Session(dict(kept.cookies), kept.timeout_s, self.clock() - (time.time() - kept.last_used),
                     self._generation + 1)
        if not self._usable(s):
            return None
        self._generation += 1
        self._session, self._saved_at = s, self.clock()
        log.info("Service Layer session of %s@%s reused from the store", self.user, self.company_db)
        return s

    def keep(self, session: _Session | None = None) -> None:
        """Store the session with its last-use time (no-op without a store)."""
        s = session or self._session
        if self.store is None or s is None:
            return
        try:
            self.store.save(StoredSession(dict(s.cookies), s.timeout_s, time.time() - (self.clock() - s.last_used),
                                          self._owner))
            self._saved_at = self.clock()
        except Exception as exc:  # the session still works in this process; the next run logs in
            log.warning("could not store the Service Layer session: %s", type(exc).__name__)

    def _login_request(self) -> httpx.Request:
        body: dict[str, Any] = {"CompanyDB": self.company_db, "UserName": self.user, "Password": self._password}
        if self.language is not None:
            body["Language"] = self.language
        return httpx.Request("POST", f"{self.root}/{self.login_path}", json=body)

    def _login(self, stale: _Session | None) -> Generator[httpx.Request, httpx.Response, _Session]:
        with self._lock:
            current = self._session
            if current is not None and current is not stale and self._fresh() is current:
                return current  # another thread logged in meanwhile
            adopted = self._adopt(stale)
            if adopted is not None:
                return adopted
            started = self.clock()
            resp = yield self._login_request()
            if resp.status_code != 200:
                err = parse_error(resp.status_code, resp.content)
                if isinstance(err, B1CommunicationError):
                    raise err
                raise B1LoginError(f"Service Layer login as {self.user!r} to company {self.company_db!r} refused: "
                                   f"{err.message}", status=resp.status_code, code=err.code, lang=err.lang)
            cookies = parse_set_cookies(resp.headers)
            session_cookie = b1_facts().session.cookies[0]  # B1SESSION; ROUTEID names the node
            if session_cookie not in cookies:
                try:
                    sid = resp.json().get("SessionId")
                except ValueError:
                    sid = None
                if not sid:
                    raise B1LoginError(f"Service Layer login answered 200 without a {session_cookie} cookie "
                                       "or SessionId", status=resp.status_code)
                cookies[session_cookie] = str(sid)
            try:
                minutes = float(resp.json().get("SessionTimeout"))
            except (ValueError, TypeError, AttributeError):
                minutes = b1_facts().session.timeout_minutes
            self._generation += 1
            self._session = _Session({k: cookies[k] for k in b1_facts().session.cookies if k in cookies},
                                     minutes * 60.0, started, self._generation)
            self.logins += 1
            self.keep(self._session)
            log.info("Service Layer session opened for %s@%s (timeout %.0f min)", self.user, self.company_db, minutes)
            return self._session

    @staticmethod
    def _apply(request: httpx.Request, session: _Session) -> None:
        request.headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in session.cookies.items())

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        session = self._fresh()
        if session is None:
            session = yield from self._login(self._session)
        self._apply(request, session)
        sent = self.clock()
        response = yield request
        if response.status_code == 401:
            # Expired or unknown on the server (restart, timeout, other node): one new login, one replay.
            session = yield from self._login(session)
            self._apply(request, session)
            sent = self.clock()
            response = yield request
        if response.status_code != 401:
            session.last_used = max(session.last_used, sent)  # the server's timeout restarted then
            if self.store is not None and (self._saved_at is None or self.clock() - self._saved_at >= self.SAVE_EVERY):
                self.keep(session)

    def logout_request(self) -> httpx.Request | None:
        with self._lock:
            s, self._session = self._session, None
        if s is None:
            return None
        req = httpx.Request("POST", f"{self.root}/{self.logout_path}")
        self._apply(req, s)
        return req

    def forget(self) -> None:
        with self._lock:
            self._session = None


# ------------------------------------------------------------------------------------------ the API


class ServiceLayerApi:
    """Operations above one request; subclasses implement `request`."""

    page_size: int | None = None

    def request(self, method: str, path: str, *, query: Mapping[str, Any] | None = None, body: Any = None,
                headers: Mapping[str, str] | None = None) -> SlResponse:
        raise NotImplementedError

    # -- reads

    def get_entity(self, entity_set: str, key: int | str, *, select: str | None = None) -> dict[str, Any]:
        resp = self.request("GET", f"{entity_set}({key_literal(key)})", query={"$select": select} if select else None)
        return _strip(resp.body)

    def pages(self, path: str, query: Mapping[str, Any] | None = None, *,
              page_size: int | None = None) -> Iterator[list[dict[str, Any]]]:
        """Each page of a collection, following the server's next links until there is none."""
        size = page_size if page_size is not None else self.page_size
        headers = {b1_facts().paging.page_size_header: str(size)} \
            if size is not None else None
        next_path: str | None = path
        q: Mapping[str, Any] | None = query
        seen: set[str] = set()
        while next_path is not None:
            resp = self.request("GET", next_path, query=q, headers=headers)
            body = resp.body if isinstance(resp.body, dict) else {}
            value = body.get("value")
            if not isinstance(value, list):
                raise B1Error(f"GET {split_path(next_path)[0]}: the answer has no 'value' list", status=resp.status)
            yield [_strip(v) for v in value]
            link = next((body[k] for k in b1_facts().paging.next_link if body.get(k)), None)
            if not link:
                return
            next_path = self.relative(str(link))
            if next_path in seen:
                raise B1Error(f"GET {split_path(path)[0]}: the server repeated the next link {link!r}")
            seen.add(next_path)
            q = None  # the link carries every option (opaque)

    def get_all(self, path: str, query: Mapping[str, Any] | None = None, *,
                page_size: int | None = None) -> list[dict[str, Any]]:
        return [row for page in self.pages(path, query, page_size=page_size) for row in page]

    def relative(self, link: str) -> str:
        """A next link resolved against the service root, as a root-relative path."""
        root = self.service_root().rstrip("/") + "/"
        absolute = urljoin(root, link)
        if not absolute.startswith(root):
            raise B1Error(f"next link {link!r} points outside the service root {root}")
        return absolute[len(root):]

    def service_root(self) -> str:
        # Only the path matters for resolving links; the channel client has no host of its own.
        return "http://service-layer" + b1_facts().service.default_root

    # -- writes

    def create(self, entity_set: str, body: Mapping[str, Any], *, return_no_content: bool = False) -> SlResponse:
        headers = {"Prefer": "return-no-content"} if return_no_content else None
        return self.request("POST", entity_set, body=dict(body), headers=headers)

    def update(self, entity_set: str, key: int | str, body: Mapping[str, Any]) -> None:
        self.request("PATCH", f"{entity_set}({key_literal(key)})", body=dict(body))

    # -- JournalEntries, exactly once

    def find_journal_entries(self, external_id: str, *, field_name: str | None = None) -> list[dict[str, Any]]:
        fname = field_name or b1_facts().journal_entries.idempotency_field
        es = b1_facts().journal_entries.entity_set
        key = b1_facts().journal_entries.key
        return self.get_all(es, {"$filter": f"{fname} eq {odata_quote(external_id)}",
                                 "$select": f"{key},Number,{fname}", "$orderby": key})

    def post_journal_entry_once(self, entry: Mapping[str, Any], external_id: str) -> JournalPosting:
        """Post `entry` unless a journal entry with `external_id` in the idempotency field exists.
        B1 has no idempotency key [V]; the id is looked up before posting and again after an
        uncertain answer (never re-posted blindly). An uncertain answer that the lookup cannot
        resolve is raised (B1CommunicationError, uncertain=True) for a later lookup."""
        fname = b1_facts().journal_entries.idempotency_field
        max_len = b1_facts().journal_entries.idempotency_field_max_length
        if not external_id or len(external_id) > max_len:
            raise B1RequestError(f"journal entry external id must be 1-{max_len} characters, got {external_id!r}")
        if entry.get(fname) not in (None, "", external_id):
            raise B1RequestError(f"journal entry field {fname} is {entry.get(fname)!r}, but the external id is "
                                 f"{external_id!r}: {fname} carries the id")
        body = {**entry, fname: external_id}
        found = self.find_journal_entries(external_id)
        if found:
            return self._posting(found, created=False)
        try:
            resp = self.create(b1_facts().journal_entries.entity_set, body)
        except B1CommunicationError as exc:
            if not exc.uncertain:
                raise
            found = self.find_journal_entries(external_id)
            if found:
                log.info("journal entry %s: the answer was lost, the lookup found it (JdtNum %s)",
                         external_id, found[0].get("JdtNum"))
                return self._posting(found, created=False)
            raise
        return self._posting([_strip(resp.body)], created=True)

    @staticmethod
    def _posting(rows: list[dict[str, Any]], *, created: bool) -> JournalPosting:
        if len(rows) > 1:
            log.warning("%d journal entries carry the same external id (JdtNum %s): using the first",
                        len(rows), ", ".join(str(r.get("JdtNum")) for r in rows))
        row = rows[0]
        number = row.get("Number")
        return JournalPosting(int(row["JdtNum"]), int(number) if number is not None else None, created, row)

    def ping(self) -> float:
        t0 = time.perf_counter()
        ping = b1_facts().ping
        self.request(str(ping.method), str(ping.path), query=dict(ping.params) or None)
        return time.perf_counter() - t0


def _strip(row: Any) -> dict[str, Any]:
    """An entity without OData annotations."""
    if not isinstance(row, dict):
        return {}
    return {k: v for k, v in row.items() if not (k.startswith("odata.") or k.startswith("@odata."))}


def check_request(method: str, path: str, headers: Mapping[str, str] | None) -> str:
    """Validate a serializable request; returns its resource. Raises B1RequestError."""
    if method not in METHODS:
        raise B1RequestError(f"method {method!r} is not one of {', '.join(METHODS)}")
    resource = resource_of(path)
    if resource in SESSION_RESOURCES:
        raise B1RequestError(f"{resource} is done by the client itself (sessions are its own)")
    for name in headers or {}:
        if not ALLOWED_HEADER.match(name):
            raise B1RequestError(f"header {name!r} may not be set on a Service Layer request "
                                 "(allowed: Prefer, If-Match, B1S-*)")
    return resource


# ------------------------------------------------------------------------------------------ direct


def service_root_of(base_url: str) -> str:
    """The service root: base_url itself when it names /b1s/vN, else base_url + the default root."""
    url = base_url.rstrip("/")
    if re.search(r"/b1s/v\d+$", urlsplit(url).path):
        return url
    return url + b1_facts().service.default_root


class ServiceLayerClient(ServiceLayerApi):
    """The Service Layer over HTTP, with one persistent session (re-established when needed)."""

    def __init__(self, base_url: str, company_db: str, user: str, password: str, *, timeout: float = 60.0,
                 verify: bool | str = True, page_size: int | None = None, retry_base: float | None = None,
                 clock: Callable[[], float] = time.monotonic, transport: httpx.BaseTransport | None = None,
                 sessions: SessionStore | None = None, pacing: CompanyPacing | None = None) -> None:
        self.root = service_root_of(base_url)
        # The company database's call budget (pacing.py), shared by every client of it in the process.
        self.pacing = pacing
        self.auth = B1SessionAuth(self.root, company_db, user, password, clock=clock, store=sessions)
        self.page_size = page_size
        # Retries and 429 waits in the shared transport (provider.yaml `retry`): only GETs are sent
        # again once they may have reached B1.
        self.policy = RetryPolicy.from_facts(b1_facts().need_retry(), base=retry_base)
        self.transport = RetryTransport(transport or httpx.HTTPTransport(verify=verify), self.policy)
        # No cookie jar of httpx's: the auth flow owns the session cookies.
        self._http = httpx.Client(timeout=timeout, auth=self.auth, transport=self.transport,
                                  cookies=None, follow_redirects=False)

    def __repr__(self) -> str:
        return f"ServiceLayerClient(root={self.root!r})"

    def service_root(self) -> str:
        return self.root

    def login(self) -> None:
        """Open the session now (the auth flow would do it on the first request)."""
        self.ping()

    def logout(self) -> None:
        req = self.auth.logout_request()
        if req is None:
            return
        try:
            resp = self._http.send(req, auth=None)
            if resp.status_code not in (204, 200, 401):
                log.info("Service Layer logout answered %s", resp.status_code)
        except httpx.HTTPError as exc:
            log.info("Service Layer logout failed: %s", type(exc).__name__)

    def close(self) -> None:
        if self.auth.store is not None:
            self.auth.keep()  # kept for the next run (sessions.py), not logged out
        else:
            self.logout()
        self._http.close()

    def request(self, method: str, path: str, *, query: Mapping[str, Any] | None = None, body: Any = None,
                headers: Mapping[str, str] | None = None) -> SlResponse:
        method = method.upper()
        check_request(method, path, headers)
        base, qs = split_path(path)
        extra = encode_query(query)
        url = f"{self.root}/{base}" + (f"?{qs}&{extra}" if qs and extra else f"?{qs or extra}" if qs or extra else "")
        idempotent = method in self.policy.idempotent_methods
        try:
            with self.pacing.slot() if self.pacing is not None else nullcontext():
                resp = self._http.request(method, url, json=body if body is not None else None,
                                          headers=dict(headers or {}))
        except B1Error:
            raise
        except httpx.HTTPError as exc:
            # A connect error or a connect timeout never reached B1; anything later may have.
            sent = not isinstance(exc, NEVER_SENT)
            raise B1CommunicationError(f"{method} {base}: {type(exc).__name__}: {exc}",
                                       uncertain=sent and not idempotent) from None
        if resp.status_code < 400:
            return self._answer(resp)
        # A gateway page on a write: B1 may have committed behind it.
        uncertain = not idempotent and resp.status_code in (502, 504)
        err = parse_error(resp.status_code, resp.content, uncertain=uncertain)
        if isinstance(err, B1SessionError):  # after one re-login: give up, say so
            err = B1SessionError(f"{method} {base}: {err.message} (even after a new login)",
                                 status=err.status, code=err.code, lang=err.lang)
        raise err

    @staticmethod
    def _answer(resp: httpx.Response) -> SlResponse:
        body: Any = None
        if resp.content:
            try:
                body = resp.json()
            except ValueError:
                raise B1Error(f"the Service Layer answered {resp.status_code} with a body that is not JSON",
                              status=resp.status_code) from None
        keep = {k: resp.headers[k] for k in ("Location", "Preference-Applied", "ETag") if k in resp.headers}
        return SlResponse(resp.status_code, body, keep)


# ------------------------------------------------------------------------------------------ channel

#: ChannelRequest.function of a Service Layer call: "<METHOD> <resource>", e.g. "GET JournalEntries".
def channel_function(method: str, path: str) -> str:
    return f"{method.upper()} {resource_of(path)}"


class ChannelServiceLayerClient(ServiceLayerApi):
    """The same API, every request sent through the agent channel to system `system`; faults come
    back as the same B1Error subclasses (allow-list refusals raise ChannelError)."""

    def __init__(self, channel: AgentChannel, system: str, *, page_size: int | None = None) -> None:
        self.channel = channel
        self.system = system
        self.page_size = page_size

    def __repr__(self) -> str:
        return f"ChannelServiceLayerClient(system={self.system!r})"

    def request(self, method: str, path: str, *, query: Mapping[str, Any] | None = None, body: Any = None,
                headers: Mapping[str, str] | None = None) -> SlResponse:
        method = method.upper()
        check_request(method, path, headers)
        params = {"method": method, "path": path, "query": {str(k): str(v) for k, v in (query or {}).items()},
                  "body": body, "headers": dict(headers or {})}
        response = self.channel.call(ChannelRequest(system=self.system, function=channel_function(method, path),
                                                    params=params))
        if response.ok:
            return SlResponse.from_dict(response.result or {})
        fault = response.fault
        if fault is None:
            raise B1CommunicationError(f"{method} {path}: the agent answered not-ok without a fault")
        if fault.type in ERROR_CLASSES:
            raise error_from_fault(fault)
        if fault.type == "CommunicationError":  # the agent channel's own (lost agent, timeout)
            raise B1CommunicationError(fault.message, uncertain=bool(fault.details.get("uncertain", True)))
        raise ChannelError(fault)


def make_handler(client: ServiceLayerApi) -> Callable[[str, dict[str, Any]], dict[str, Any]]:
    """The agent-side handler: the inverse of `ChannelServiceLayerClient`."""

    def handle(function: str, params: dict[str, Any]) -> dict[str, Any]:
        method = str(params.get("method", "")).upper()
        path = str(params.get("path", ""))
        if function != channel_function(method, path):
            raise B1RequestError(f"call {function!r} does not match its request {method} {path}")
        query = params.get("query") or None
        headers = params.get("headers") or None
        if query is not None and not isinstance(query, dict):
            raise B1RequestError("query must be an object")
        if headers is not None and not isinstance(headers, dict):
            raise B1RequestError("headers must be an object")
        resp = client.request(method, path, query=query, body=params.get("body"), headers=headers)
        if isinstance(resp.body, dict):
            # Next links made root-relative here, where the real service root (v1 or v2) is known.
            for k in b1_facts().paging.next_link:
                if isinstance(resp.body.get(k), str):
                    resp.body[k] = client.relative(resp.body[k])
        return resp.to_dict()

    return handle
