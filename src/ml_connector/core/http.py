"""HTTP for every cloud client: one OAuth2 `httpx.Auth` and one retry/rate transport.

`RetryTransport` wraps the real transport of an `httpx.Client`:
  * every attempt first takes a slot of the shared rate budget (core/ratelimit: per process, or
    across processes through Postgres), so in normal operation the provider never answers 429;
  * a 429 waits (Retry-After or a reset header, names from provider facts; else the backoff) and
    penalises the shared budget so every caller holds back, then tries again;
  * 5xx (the statuses of provider facts) and connection errors are retried with exponential
    backoff (jitter per provider facts), a bounded number of times, for idempotent requests only;
    a request that never left (connect error) is always safe to send again;
  * a non-idempotent request that may have reached the provider is never re-sent: the error or the
    answer goes back to the client, which raises its uncertain-write error for a lookup.

`OAuth2Auth` attaches a bearer token and, on a rejection, refreshes once and re-sends. Grants:
client credentials, password, refresh token (a rotated refresh token is stored with the access
token, in one write, under the store's lock). Tokens live in the shared `TokenStore` (one fetch at
a time across processes), are refreshed `refresh_margin` before expiry, a failed refresh backs
off, and each token event is audited without any token value. A refusal of the credential itself
raises `CredentialRefused` at once (never retried): one line naming the connection and what the
provider said.

Errors here survive pickling (DBOS stores a failed step's exception and rebuilds it).
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from typing import Any

import httpx

from ml_connector.core import calls, killpoints
from ml_connector.core.providers import AuthFacts, ProviderFacts, RetryFacts
from ml_connector.core.ratelimit import WindowLimiter
from ml_connector.core.tokens import Token, TokenStore
from ml_connector.core.vault import register_secret_value

log = logging.getLogger(__name__)

#: Request extension: this request may be sent again even if it reached the provider (e.g. a POST
#: whose body carries an idempotency key, or a token request).
IDEMPOTENT = "mlc_idempotent"
#: Request extension: the retries this request may use, instead of the provider's `max_retries`.
MAX_RETRIES = "mlc_max_retries"
NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


# ---------------------------------------------------------------------------------------- errors


def _rebuild(cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]) -> BaseException:
    err = cls.__new__(cls)
    BaseException.__init__(err, *args)
    err.__dict__.update(state)
    return err


class PicklableError(Exception):
    """An exception that pickles whatever its `__init__` takes: rebuilt from its args and
    attributes, without calling `__init__` (DBOS re-raises a failed step's error from pickle)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (type(self), self.args, dict(self.__dict__))


class PermanentError(PicklableError):
    """A failure that another attempt cannot fix (a refused credential): not retried."""

    permanent = True


def should_retry(exc: BaseException) -> bool:
    """For `@DBOS.step(should_retry=...)`: False for an error that says retrying cannot help."""
    return not getattr(exc, "permanent", False)


class OAuthError(PicklableError):
    """The token endpoint failed or refused. Never carries a secret or a token."""

    def __init__(self, message: str, *, connection: str = "", status: int | None = None,
                 error: str | None = None) -> None:
        super().__init__(message)
        self.connection = connection
        self.status = status
        self.error = error


class CredentialRefused(OAuthError, PermanentError):
    """The provider refused the credential (400 invalid_client / invalid_grant, 401 ...)."""


class TokenEndpointError(OAuthError):
    """No token: the endpoint was unreachable, failing (5xx) or answered something unusable
    (`permanent` when another attempt cannot help, e.g. a 404 token URL)."""

    permanent = False


class UncertainWrite(PicklableError):
    """A write may or may not have been applied; resolve it by a lookup, never by a blind re-send."""


def one_line(text: str, limit: int = 300) -> str:
    return " ".join(str(text).split())[:limit]


# ---------------------------------------------------------------------------------------- retry


@dataclass(frozen=True)
class RetryPolicy:
    statuses: frozenset[int]
    idempotent_methods: frozenset[str]
    max_retries: int
    base: float
    factor: float
    cap: float
    jitter: str
    retry_after_headers: tuple[str, ...]
    reset_headers: tuple[str, ...] = ()
    max_wait_429: float | None = None

    @classmethod
    def from_facts(cls, f: RetryFacts, **overrides: Any) -> RetryPolicy:
        """The provider's rule; `overrides` (None values ignored) for a caller's tuning."""
        # $MLC_HTTP_RETRY_SCALE (default 1) scales the waits, as $MLC_STEP_RETRY_SCALE does a step's: how a
        # test runs the provider's attempts (e.g. a token endpoint down) without sleeping through them.
        try:
            scale = float(os.environ.get("MLC_HTTP_RETRY_SCALE", "1"))
        except ValueError:
            scale = 1.0
        scale = scale if scale > 0 else 1.0
        policy = cls(frozenset(f.statuses), frozenset(m.upper() for m in f.idempotent_methods), f.max_retries,
                     f.base * scale, f.factor, f.cap * scale, f.jitter, tuple(f.retry_after_headers),
                     tuple(f.reset_headers), f.max_wait_429)
        return replace(policy, **{k: v for k, v in overrides.items() if v is not None})

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Wait before retry number `attempt` + 1 (attempt 0 = the first retry)."""
        ceiling = float(min(self.cap, self.base * self.factor ** attempt))
        if self.jitter == "full":
            return (rng or random).uniform(0.0, ceiling)
        if self.jitter == "equal":
            return ceiling / 2 + (rng or random).uniform(0.0, ceiling / 2)
        return ceiling

    def is_idempotent(self, request: httpx.Request) -> bool:
        return bool(request.extensions.get(IDEMPOTENT)) or request.method.upper() in self.idempotent_methods


def wait_seconds(resp: httpx.Response, retry_after: tuple[str, ...] | list[str],
                 reset: tuple[str, ...] | list[str] = (), now: Callable[[], float] = time.time) -> float | None:
    """How long the provider asked us to wait: Retry-After-style headers (seconds or an HTTP date),
    then reset headers (a unix time, or seconds when small)."""
    for name in retry_after:
        raw = resp.headers.get(name)
        if not raw:
            continue
        try:
            return max(float(raw), 0.0)
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            continue
        return max(when.timestamp() - now(), 0.0)
    for name in reset:
        raw = resp.headers.get(name)
        try:
            value = float(raw) if raw else None
        except ValueError:
            value = None
        if value is not None:
            return max(value - now(), 0.0) if value > 1e9 else max(value, 0.0)
    return None


class TransportStats:
    """Counters of one RetryTransport (thread-safe), for clients' and benchmarks' reports."""

    def __init__(self) -> None:
        self.requests = 0  # attempts sent
        self.throttled = 0  # 429s seen
        self.retries = 0  # 5xx / connection-error retries
        self.waited_429 = 0.0
        self._lock = threading.Lock()

    def add(self, name: str, by: float = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + by)


class RetryTransport(httpx.BaseTransport):
    """Pacing and retries under an `httpx.Client` (see the module docstring)."""

    def __init__(self, inner: httpx.BaseTransport, policy: RetryPolicy, *, limiter: WindowLimiter | None = None,
                 sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.inner = inner
        self.policy = policy
        self.limiter = limiter
        self._sleep = sleep
        self._rng = rng
        self._clock = clock
        self.stats = TransportStats()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        p = self.policy
        idempotent = p.is_idempotent(request)
        max_retries = int(request.extensions.get(MAX_RETRIES, p.max_retries))
        n429 = nerr = 0
        waited = 0.0
        while True:
            if self.limiter is not None:
                self.limiter.acquire()
            self.stats.add("requests")
            calls.note(request.url.netloc.decode("ascii", "replace"))  # the run's calls (core/calls.py)
            where = f"{request.method} {request.url.path}"
            killpoints.hit("http.sent", where)  # tests only (core/killpoints.py)
            try:
                resp = self.inner.handle_request(request)
                killpoints.hit("http.answered", where)
            except httpx.TransportError as exc:
                # A request that never left may always go again; one that may have arrived only if
                # sending it twice is harmless.
                if (idempotent or isinstance(exc, NEVER_SENT)) and nerr < max_retries:
                    self.stats.add("retries")
                    self._sleep(p.backoff(nerr, self._rng))
                    nerr += 1
                    continue
                raise
            if resp.status_code == 429:
                # Refused before processing: safe to send again, whatever the method.
                delay = wait_seconds(resp, p.retry_after_headers, p.reset_headers, self._clock)
                if delay is None:
                    delay = p.backoff(n429, self._rng)
                if p.max_wait_429 is not None and waited + delay > p.max_wait_429:
                    return resp
                n429 += 1
                waited += delay
                self.stats.add("throttled")
                self.stats.add("waited_429", delay)
                resp.close()
                if self.limiter is not None:
                    self.limiter.penalize(delay)  # the next acquire() waits it out, for every caller
                else:
                    self._sleep(delay)
                continue
            if resp.status_code in p.statuses and idempotent and nerr < max_retries:
                resp.close()
                self.stats.add("retries")
                self._sleep(p.backoff(nerr, self._rng))
                nerr += 1
                continue
            return resp

    def close(self) -> None:
        self.inner.close()


# ---------------------------------------------------------------------------------------- OAuth2

#: Token endpoint answers that mean "this credential (or grant) is refused", RFC 6749 §5.2.
REFUSALS = frozenset({"invalid_client", "invalid_grant", "unauthorized_client", "unsupported_grant_type",
                      "invalid_scope", "invalid_request", "access_denied"})

AuditHook = Callable[[str, str, dict[str, Any]], None]  # (event, outcome, detail)


class OAuth2Auth(httpx.Auth):
    """Bearer tokens from an OAuth2 token endpoint, kept in a shared `TokenStore` under `connection`."""

    requires_response_body = True  # so a provider's non-401 rejection can be recognised

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        connection: str,
        store: TokenStore,
        facts: AuthFacts,
        retry: RetryPolicy,
        provider: str = "the provider",
        grant: str | None = None,
        scope: str | None = None,
        margin: float | None = None,
        username: str | None = None,
        password: str | None = None,
        refresh_token: str | None = None,
        limiter: WindowLimiter | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        audit: AuditHook | None = None,
        rejects: Callable[[httpx.Response], bool] | None = None,
    ) -> None:
        if facts.token_path is None or facts.token_lifetime is None or facts.refresh_margin is None \
                or facts.refresh_backoff is None or facts.client_auth is None:
            raise ValueError(f"{connection}: the provider's auth facts are not an OAuth2 mode ({facts.mode})")
        for secret in (client_secret, password, refresh_token):
            register_secret_value(secret)  # never in a log line or an error text
        self.token_url = token_url
        self.client_id = client_id
        self._secret = client_secret
        self._password = password
        self._refresh_token = refresh_token
        self.connection = connection
        self.key = connection
        self.store = store
        self.provider = provider
        self.grant = grant or {"oauth2_client_credentials": "client_credentials", "oauth2_password": "password",
                               "oauth2_refresh_token": "refresh_token"}[facts.mode]
        self.username = username
        self.scope = scope if scope is not None else " ".join(facts.scopes)
        self.margin = float(margin if margin is not None else facts.refresh_margin)
        self.token_lifetime = float(facts.token_lifetime)
        self.client_auth = facts.client_auth
        self.refresh_backoff = facts.refresh_backoff
        self.timeout = timeout
        self._clock = clock
        self._audit = audit
        self._rejects = rejects
        # The token request is safe to repeat: asking for another token has no other effect.
        self.token_transport = RetryTransport(transport or httpx.HTTPTransport(), retry, limiter=limiter,
                                              sleep=sleep)
        self._http = httpx.Client(timeout=timeout, transport=self.token_transport)
        self._failures = 0
        self._next_try = 0.0
        self._last_error: OAuthError | None = None
        self._events: list[tuple[str, str, dict[str, Any]]] = []
        self._guard = threading.Lock()

    @classmethod
    def for_provider(cls, facts: ProviderFacts, base_url: str, client_id: str, client_secret: str, *,
                     connection: str, store: TokenStore, **kw: Any) -> OAuth2Auth:
        """The auth of a provider from its facts: token URL = API host (`base_url` without the
        provider's `api_prefix`) + `auth.token_path`, the retry rule of `retry`."""
        if facts.auth.token_path is None:
            raise ValueError(f"{connection}: {facts.name} has no OAuth2 token endpoint (auth.mode {facts.auth.mode})")
        host = base_url.rstrip("/")
        if facts.api_prefix and host.endswith(facts.api_prefix):
            host = host[: -len(facts.api_prefix)]
        kw.setdefault("retry", RetryPolicy.from_facts(facts.need_retry()))
        return cls(host + facts.auth.token_path, client_id, client_secret, connection=connection, store=store,
                   facts=facts.auth, **kw)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(token_url={self.token_url!r}, client_id={self.client_id!r}, "
                f"connection={self.connection!r}, grant={self.grant!r}, scope={self.scope!r}, client_secret='***')")

    @property
    def fetches(self) -> int:
        """HTTP calls made to the token endpoint (every attempt)."""
        return self.token_transport.stats.requests

    def close(self) -> None:
        self._http.close()

    # -- the token endpoint -----------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        for secret in (self._secret, self._password, self._refresh_token):
            if secret:
                text = text.replace(secret, "***")
        return one_line(text)

    def _form(self, current: Token | None) -> tuple[str, dict[str, str]]:
        stored_refresh = current.refresh_token if current is not None else ""
        refresh = stored_refresh or self._refresh_token or ""
        if self.grant == "client_credentials":
            form = {"grant_type": "client_credentials"}
        elif self.grant == "password" and not stored_refresh:
            form = {"grant_type": "password", "username": self.username or "", "password": self._password or ""}
        elif refresh:
            form = {"grant_type": "refresh_token", "refresh_token": refresh}
        else:
            raise CredentialRefused(f"{self.connection}: no refresh token to exchange (grant {self.grant})",
                                    connection=self.connection)
        if self.scope:
            form["scope"] = self.scope
        if self.client_auth == "body":
            form.update(client_id=self.client_id, client_secret=self._secret)
        return form["grant_type"], form

    def fetch_token(self, current: Token | None = None) -> Token:
        """One token from the endpoint (retries of 429/5xx/connection errors in the transport)."""
        grant, form = self._form(current)
        try:
            resp = self._http.post(self.token_url, data=form, headers={"Accept": "application/json"},
                                   auth=httpx.BasicAuth(self.client_id, self._secret)
                                   if self.client_auth == "basic" else httpx.USE_CLIENT_DEFAULT,
                                   extensions={IDEMPOTENT: True})
        except httpx.HTTPError as exc:
            raise TokenEndpointError(self._scrub(f"{self.connection}: {self.provider} token request to "
                                                 f"{self.token_url} failed: {type(exc).__name__}: {exc}"),
                                     connection=self.connection) from None
        try:
            body = resp.json()
        except ValueError:
            body = None
        body = body if isinstance(body, dict) else {}
        if resp.status_code == 200 and "access_token" in body:
            return self._token(body, grant, current)
        err = body.get("error") if isinstance(body.get("error"), str) else None
        desc = body.get("error_description")
        said = f"HTTP {resp.status_code}" + (f" {err}" if err else "") + (f": {desc}" if desc else "")
        if not err and not desc and resp.content:
            # The provider's own answer (a gateway's page, an error_v2 body …), short and scrubbed: the
            # audit event and the token.failed alert carry it.
            said += f": {one_line(resp.text, 200)}"
        if resp.status_code == 401 or (resp.status_code in (400, 403) and (err in REFUSALS or err is None)):
            if grant == "refresh_token" and err == "invalid_grant" and self.grant == "password" \
                    and current is not None and current.refresh_token:
                # The stored refresh token is dead (revoked, or rotated by a lost answer): log in again.
                return self.fetch_token(replace(current, refresh_token=""))
            raise CredentialRefused(self._scrub(f"{self.connection}: {self.provider} refused the credential "
                                                f"({said})"), connection=self.connection,
                                    status=resp.status_code, error=err)
        failed = TokenEndpointError(self._scrub(f"{self.connection}: {self.provider} token request to "
                                                f"{self.token_url} failed ({said})"),
                                    connection=self.connection, status=resp.status_code, error=err)
        # Another 4xx (a wrong token URL, say) will not mend by itself: a step must not retry it.
        failed.permanent = 400 <= resp.status_code < 500 and resp.status_code not in (408, 429)
        raise failed

    def _token(self, body: dict[str, Any], grant: str, current: Token | None) -> Token:
        ttype = str(body.get("token_type", "Bearer"))
        if ttype.lower() != "bearer":
            raise TokenEndpointError(f"{self.connection}: {self.provider} token endpoint returned unsupported "
                                     f"token_type {one_line(ttype, 40)!r}", connection=self.connection)
        try:
            lifetime = float(body.get("expires_in") or self.token_lifetime)
        except (TypeError, ValueError):
            lifetime = self.token_lifetime
        # A rotating provider sends a new refresh token with every answer; keep the old one otherwise.
        new_refresh = str(body.get("refresh_token") or (current.refresh_token if current else "")
                          or (self._refresh_token or ""))
        tok = Token(access_token=str(body["access_token"]), expires_at=self._clock() + lifetime,
                    token_type="Bearer", scope=str(body.get("scope", self.scope)), refresh_token=new_refresh)
        self._events.append(("token.refreshed" if current is not None else "token.issued", "ok",
                             {"grant": grant, "expires_in": lifetime, "scope": tok.scope,
                              "refresh_token_rotated": bool(body.get("refresh_token")) and current is not None}))
        return tok

    # -- refreshing -------------------------------------------------------------------------
    def _refresh(self, force_if: str | None = None) -> Token:
        try:
            return self.store.refresh(self.key, self.margin, self.fetch_token, force_if=force_if,
                                      with_current=True)
        finally:
            self._flush_events()

    def _flush_events(self) -> None:
        # After the store's lock is released: on SQLite the lock is the write lock the audit needs.
        with self._guard:
            events, self._events = self._events, []
        if self._audit is None:
            return
        for event, outcome, detail in events:
            try:
                self._audit(event, outcome, {"connection": self.connection, **detail})
            except Exception:  # the audit must not turn a good token into a failed call
                log.exception("could not audit %s of %s", event, self.connection)

    def _failed(self, exc: OAuthError) -> None:
        with self._guard:
            self._failures += 1
            b = self.refresh_backoff
            assert b is not None
            wait = min(b.cap, b.base * 2 ** (self._failures - 1))
            self._next_try = self._clock() + wait
            self._last_error = exc
            self._events.append(("token.failed", "failed", {
                "grant": self.grant, "status": exc.status, "error": exc.error, "message": str(exc),
                "refused": isinstance(exc, CredentialRefused), "next_try_in": wait}))
        self._flush_events()

    def current_token(self, force_if: str | None = None) -> Token:
        """A usable token: the stored one while it is fresh, else a new one (one fetch for all)."""
        now = self._clock()
        tok = self.store.load(self.key)
        if force_if is None and tok is not None and tok.fresh(self.margin, now):
            return tok
        usable = tok if tok is not None and tok.access_token != force_if and tok.expires_at > now else None
        if now < self._next_try:
            if usable is not None:
                return usable  # a refresh failed moments ago; the token still works: no hammering
            last = self._last_error
            if isinstance(last, CredentialRefused):
                raise CredentialRefused(str(last), connection=self.connection, status=last.status, error=last.error)
            raise TokenEndpointError(f"{self.connection}: no token; the last request failed "
                                     f"{self._failures} time(s), next try in {self._next_try - now:.0f} s"
                                     + (f" ({last})" if last else ""), connection=self.connection,
                                     status=last.status if last else None, error=last.error if last else None)
        try:
            new = self._refresh(force_if)
        except OAuthError as exc:
            self._failed(exc)
            if usable is not None and not isinstance(exc, CredentialRefused):
                log.warning("%s: token refresh failed (%s); the current token is used until it expires",
                            self.connection, exc)
                return usable
            raise
        with self._guard:
            self._failures, self._next_try, self._last_error = 0, 0.0, None
        return new

    def is_rejection(self, response: httpx.Response) -> bool:
        return response.status_code == 401 or (self._rejects is not None and self._rejects(response))

    # -- httpx.Auth -------------------------------------------------------------------------
    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        tok = self.current_token()
        request.headers["Authorization"] = f"Bearer {tok.access_token}"
        response = yield request
        if self.is_rejection(response):
            # Revoked or expired behind our back: one forced refresh (shared by every process that
            # saw the same token rejected), one re-send.
            tok = self.current_token(force_if=tok.access_token)
            request.headers["Authorization"] = f"Bearer {tok.access_token}"
            yield request
