"""SAP Concur company-level OAuth 2.0 as Concur documents it (cloud-apis.md §3.1-3.2).

- The first grant is the password grant with `credtype=authtoken`: username = the company UUID,
  password = the company request token (valid 24 h), asked at the configured base (the GLZ).
- Every answer names the company's datacenter (`geolocation`). It is stored with the token
  (`Token.extra["geolocation"]`: one write, under the token store's lock, together with the
  rotated refresh token), and every later call - the refresh grant included - goes there, never
  elsewhere.
- Refresh tokens rotate: each refresh answer carries a new one, stored newest-first atomically by
  the token store. A refresh token that died (rotated by an answer lost in a crash) makes the
  generic `OAuth2Auth` fall back to the company grant once.
- Ahead of expiry (`refresh_margin`) and once on a 401, as `OAuth2Auth` does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import replace
from typing import Any

import httpx

from ml_connector.core.http import AuditHook, OAuth2Auth, PermanentError, RetryPolicy
from ml_connector.core.ratelimit import WindowLimiter
from ml_connector.core.tokens import Token, TokenStore
from ml_connector.systems.concur.facts import concur_facts

#: The key of `Token.extra` holding the datacenter's base URL.
GEOLOCATION = "geolocation"


def geolocation(tok: Token | None) -> str:
    """The datacenter base URL a token answer named ("" if none)."""
    return tok.extra.get(GEOLOCATION, "") if tok is not None else ""


class ConcurRoutingError(PermanentError):
    """A request addressed outside the company's datacenter (never sent)."""


class ConcurCompanyAuth(OAuth2Auth):
    def __init__(self, base_url: str, client_id: str, client_secret: str, *, company_uuid: str,
                 request_token: str, store: TokenStore, key: str, limiter: WindowLimiter | None = None,
                 transport: httpx.BaseTransport | None = None, timeout: float = 30.0,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                 audit: AuditHook | None = None, backoff_base: float | None = None) -> None:
        f = concur_facts()
        assert f.auth.token_path is not None  # an OAuth2 mode (checked by the schema)
        self.base_url = base_url.rstrip("/")
        self.token_path = f.auth.token_path
        self.credtype = f.company_grant.credtype
        super().__init__(self.base_url + self.token_path, client_id, client_secret, connection=key, store=store,
                         facts=f.auth, retry=RetryPolicy.from_facts(f.need_retry(), base=backoff_base),
                         provider="SAP Concur", grant="password", username=company_uuid, password=request_token,
                         limiter=limiter, transport=transport, timeout=timeout, clock=clock, sleep=sleep,
                         audit=audit)

    # -- the token endpoint -----------------------------------------------------------------
    def _form(self, current: Token | None) -> tuple[str, dict[str, str]]:
        grant, form = super()._form(current)
        if grant == "password":
            form["credtype"] = self.credtype
        return grant, form

    def fetch_token(self, current: Token | None = None) -> Token:
        # A refresh goes to the datacenter of the token it refreshes; the company grant to the base.
        geo = geolocation(current) if current is not None and current.refresh_token else ""
        self.token_url = (geo or self.base_url) + self.token_path
        return super().fetch_token(current)

    def _token(self, body: dict[str, Any], grant: str, current: Token | None) -> Token:
        tok = super()._token(body, grant, current)
        geo = str(body.get("geolocation") or geolocation(current) or "").rstrip("/")
        return replace(tok, extra={**tok.extra, GEOLOCATION: geo} if geo else tok.extra)

    # -- routing ----------------------------------------------------------------------------
    def home(self) -> str:
        """The company's datacenter base URL (from the stored token; a token is fetched if needed)."""
        return geolocation(self.current_token()) or self.base_url

    def route(self, request: httpx.Request, tok: Token) -> None:
        """Send `request` to the token's datacenter: a URL on the configured base is moved there;
        one already there stays; any other is refused (a URL of another datacenter)."""
        geo = geolocation(tok) or self.base_url
        url = str(request.url)
        if url == geo or url.startswith(geo + "/"):
            return
        if url.startswith(self.base_url + "/"):
            new = httpx.URL(geo + url[len(self.base_url):])
            request.url = new
            request.headers["Host"] = new.netloc.decode("ascii")
            return
        raise ConcurRoutingError(f"{self.connection}: refusing to send {request.method} {request.url.path} to "
                                 f"{request.url.scheme}://{request.url.netloc.decode('ascii')}: the company's "
                                 f"datacenter is {geo}")

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        tok = self.current_token()
        self.route(request, tok)
        request.headers["Authorization"] = f"Bearer {tok.access_token}"
        response = yield request
        if self.is_rejection(response):
            # Expired or revoked behind our back: one forced refresh, one re-send.
            tok = self.current_token(force_if=tok.access_token)
            self.route(request, tok)
            request.headers["Authorization"] = f"Bearer {tok.access_token}"
            yield request
