"""Ramp OAuth 2.0 client-credentials auth as an `httpx.Auth`.

The token lives in a `TokenStore` under the connection name, is refreshed ahead of
expiry (provider.yaml `auth.refresh_margin`) by one worker at a time, and a 401 on a
data call triggers exactly one forced refresh and one resend.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import Any

import httpx

from ml_connector.core.providers import fact
from ml_connector.core.ratelimit import WindowLimiter
from ml_connector.core.tokens import Token, TokenStore
from ml_connector.systems.ramp.client import retry_after_seconds


class RampAuthError(Exception):
    """The token endpoint refused or could not be reached. Never carries the secret."""

    def __init__(self, message: str, *, status: int | None = None, error: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = error


def _default_scope() -> str:
    return " ".join(fact("ramp", "auth", "scopes", default=["accounting:read", "accounting:write"]))


def is_auth_rejection(response: httpx.Response) -> bool:
    """401, or the reported 404 DEVELOPER_7002 for a bad/revoked token [unverified]."""
    if response.status_code == 401:
        return True
    if response.status_code == 404:
        try:
            body = response.json()
        except ValueError:
            return False
        err = body.get("error_v2") if isinstance(body, dict) else None
        return isinstance(err, dict) and err.get("error_code") == "DEVELOPER_7002"
    return False


class RampClientCredentialsAuth(httpx.Auth):
    requires_response_body = True  # to recognise 404 DEVELOPER_7002 as an auth rejection

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        store: TokenStore,
        key: str,
        scope: str | None = None,
        margin: float | None = None,
        timeout: float = 30.0,
        limiter: WindowLimiter | None = None,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        max_retries: int | None = None,
        backoff_base: float | None = None,
        backoff_cap: float | None = None,
    ) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self._secret = client_secret
        self.store = store
        self.key = key
        self.scope = scope if scope is not None else _default_scope()
        self.margin = float(margin if margin is not None else fact("ramp", "auth", "refresh_margin",
                                                                    default=86400))
        self.timeout = timeout
        self.limiter = limiter
        self._transport = transport
        self._clock = clock
        self._sleep = sleep
        self.max_retries = int(max_retries if max_retries is not None
                               else fact("ramp", "backoff", "max_retries", default=5))
        self.backoff_base = float(backoff_base if backoff_base is not None
                                  else fact("ramp", "backoff", "base", default=1.0))
        self.backoff_cap = float(backoff_cap if backoff_cap is not None
                                 else fact("ramp", "backoff", "cap", default=30.0))
        self._retry_after_headers: list[str] = list(
            fact("ramp", "retry_after_headers", default=["Retry-After"]))
        self.fetches = 0  # HTTP calls to the token endpoint

    @classmethod
    def for_base_url(cls, base_url: str, client_id: str, client_secret: str,
                     **kw: Any) -> RampClientCredentialsAuth:
        """Auth for the API host `base_url` (e.g. https://demo-api.ramp.com)."""
        path = str(fact("ramp", "auth", "token_path", default="/developer/v1/token"))
        prefix = str(fact("ramp", "api_prefix", default="/developer/v1"))
        base = base_url.rstrip("/")
        if base.endswith(prefix):
            base = base[: -len(prefix)]
        return cls(base + path, client_id, client_secret, **kw)

    def __repr__(self) -> str:
        return (f"RampClientCredentialsAuth(token_url={self.token_url!r}, client_id={self.client_id!r}, "
                f"key={self.key!r}, scope={self.scope!r}, client_secret='***')")

    # -- token --------------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def fetch_token(self) -> Token:
        """POST the token endpoint (Basic client auth, form body); raise RampAuthError on failure.

        The token endpoint may count toward the rate limit: a 429 waits (backoff or
        Retry-After) and retries without bound; 5xx and transport errors retry a bounded
        number of times (asking for another token is harmless).
        """
        n429 = 0
        nerr = 0
        while True:
            if self.limiter is not None:
                self.limiter.acquire()
            self.fetches += 1
            try:
                with httpx.Client(timeout=self.timeout, transport=self._transport) as http:
                    resp = http.post(self.token_url, auth=httpx.BasicAuth(self.client_id, self._secret),
                                     data={"grant_type": "client_credentials", "scope": self.scope},
                                     headers={"Accept": "application/json"})
            except httpx.HTTPError as exc:
                if isinstance(exc, httpx.TransportError) and nerr < self.max_retries:
                    self._sleep(self._backoff(nerr))
                    nerr += 1
                    continue
                raise RampAuthError(self._scrub(f"Ramp token request to {self.token_url} failed: "
                                                f"{type(exc).__name__}: {exc}")) from None
            if resp.status_code == 429:
                delay = retry_after_seconds(resp, self._retry_after_headers)
                if delay is None:
                    delay = self._backoff(n429)
                n429 += 1
                if self.limiter is not None:
                    self.limiter.penalize(delay)
                else:
                    self._sleep(delay)
                continue
            if resp.status_code >= 500 and nerr < self.max_retries:
                self._sleep(self._backoff(nerr))
                nerr += 1
                continue
            return self._parse_token(resp)

    def _backoff(self, attempt: int) -> float:
        return float(min(self.backoff_cap, self.backoff_base * 2.0 ** attempt))

    def _parse_token(self, resp: httpx.Response) -> Token:
        try:
            body = resp.json()
        except ValueError:
            body = None
        if resp.status_code != 200 or not isinstance(body, dict) or "access_token" not in body:
            err = body.get("error") if isinstance(body, dict) else None
            desc = body.get("error_description") if isinstance(body, dict) else None
            if not isinstance(err, str):
                err = None
            msg = f"Ramp token request failed: HTTP {resp.status_code}"
            if err:
                msg += f" {err}"
            if desc:
                msg += f": {desc}"
            raise RampAuthError(self._scrub(msg), status=resp.status_code, error=err)
        ttype = str(body.get("token_type", "Bearer"))
        if ttype.lower() != "bearer":
            raise RampAuthError(f"Ramp token endpoint returned unsupported token_type {ttype!r}")
        lifetime = float(body.get("expires_in") or fact("ramp", "auth", "token_lifetime", default=864000))
        return Token(access_token=str(body["access_token"]), expires_at=self._clock() + lifetime,
                     token_type="Bearer", scope=str(body.get("scope", self.scope)))

    def current_token(self) -> Token:
        tok = self.store.load(self.key)
        if tok is None or not tok.fresh(self.margin, self._clock()):
            tok = self.store.refresh(self.key, self.margin, self.fetch_token)
        return tok

    def revoke(self) -> None:
        """Revoke the stored token at Ramp (best effort)."""
        tok = self.store.load(self.key)
        if tok is None:
            return
        url = self.token_url.rstrip("/") + "/revoke"
        try:
            with httpx.Client(timeout=self.timeout, transport=self._transport) as http:
                http.post(url, auth=httpx.BasicAuth(self.client_id, self._secret),
                          data={"token": tok.access_token, "token_type_hint": "access_token"})
        except httpx.HTTPError as exc:
            raise RampAuthError(self._scrub(f"Ramp token revoke failed: {type(exc).__name__}")) from None

    # -- httpx.Auth ---------------------------------------------------------------------
    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        tok = self.current_token()
        request.headers["Authorization"] = f"Bearer {tok.access_token}"
        response = yield request
        if is_auth_rejection(response):
            tok = self.store.refresh(self.key, self.margin, self.fetch_token, force_if=tok.access_token)
            request.headers["Authorization"] = f"Bearer {tok.access_token}"
            if self.limiter is not None:
                self.limiter.acquire()
            yield request
