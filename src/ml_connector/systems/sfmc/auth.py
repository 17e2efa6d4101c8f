"""Marketing Cloud server-to-server OAuth: the generic `core.http.OAuth2Auth` with SFMC's token call.

The token request is JSON (`grant_type`, `client_id`, `client_secret`, optional `account_id`,
`scope`) to the tenant's auth base URI; the answer names the REST and SOAP instance URLs, kept
with the token (`Token.extra`) in the shared token store, so every process that reuses the token
also knows where to send its calls. The token is used for its whole life (20 minutes; the answer's
`expires_in` says 1080, two minutes early: provider.yaml `token.reported_early`); one that is
rejected (REST 401, SOAP fault "Token Expired") is replaced once by one request for all processes.
"""

from __future__ import annotations

from typing import Any

import httpx

from ml_connector.core.http import (
    IDEMPOTENT,
    CredentialRefused,
    OAuth2Auth,
    RetryPolicy,
    TokenEndpointError,
    one_line,
)
from ml_connector.core.tokens import Token
from ml_connector.systems.sfmc.facts import sfmc_facts


def is_auth_rejection(response: httpx.Response) -> bool:
    """REST: 401 (errorcode 0). SOAP: HTTP 500 with a Security fault "Token Expired" / invalid token."""
    if response.status_code == 401:
        return True
    if response.status_code == 500 and "xml" in response.headers.get("content-type", ""):
        text = response.content[:4000].decode("utf-8", "replace")
        return "Security" in text and ("Token Expired" in text or "Invalid token" in text)
    return False


class SfmcAuth(OAuth2Auth):
    def __init__(self, auth_base: str, client_id: str, client_secret: str, *, account_id: str | None = None,
                 **kw: Any) -> None:
        f = sfmc_facts()
        assert f.auth.token_path is not None
        kw.setdefault("retry", RetryPolicy.from_facts(f.need_retry()))
        super().__init__(auth_base.rstrip("/") + f.auth.token_path, client_id, client_secret, facts=f.auth,
                         provider="Marketing Cloud", rejects=is_auth_rejection, **kw)
        self.account_id = account_id
        self.reported_early = f.token.reported_early

    def fetch_token(self, current: Token | None = None) -> Token:
        body: dict[str, Any] = {"grant_type": "client_credentials", "client_id": self.client_id,
                                "client_secret": self._secret}
        if self.account_id:
            body["account_id"] = int(self.account_id) if self.account_id.isdigit() else self.account_id
        if self.scope:
            body["scope"] = self.scope
        try:
            resp = self._http.post(self.token_url, json=body, headers={"Accept": "application/json"},
                                   extensions={IDEMPOTENT: True})
        except httpx.HTTPError as exc:
            raise TokenEndpointError(self._scrub(f"{self.connection}: Marketing Cloud token request to "
                                                 f"{self.token_url} failed: {type(exc).__name__}: {exc}"),
                                     connection=self.connection) from None
        try:
            data = resp.json()
        except ValueError:
            data = None
        data = data if isinstance(data, dict) else {}
        if resp.status_code == 200 and data.get("access_token"):
            rest, soap = data.get("rest_instance_url"), data.get("soap_instance_url")
            if not rest or not soap:
                raise TokenEndpointError(f"{self.connection}: the token answer names no rest_instance_url / "
                                         "soap_instance_url", connection=self.connection)
            try:
                life = float(data.get("expires_in") or 0) + self.reported_early
            except (TypeError, ValueError):
                life = 0.0
            life = life if life > self.reported_early else self.token_lifetime
            tok = Token(access_token=str(data["access_token"]), expires_at=self._clock() + life,
                        scope=str(data.get("scope", "")),
                        extra={"rest_instance_url": str(rest), "soap_instance_url": str(soap)})
            self._events.append(("token.refreshed" if current is not None else "token.issued", "ok",
                                 {"grant": "client_credentials", "expires_in": life, "scope": tok.scope}))
            return tok
        err = data.get("error") if isinstance(data.get("error"), str) else None
        said = f"HTTP {resp.status_code}" + (f" {err}" if err else "") + \
            (f": {data['error_description']}" if data.get("error_description") else "")
        if resp.status_code in (400, 401, 403):
            raise CredentialRefused(self._scrub(f"{self.connection}: Marketing Cloud refused the credential "
                                                f"({said})"), connection=self.connection,
                                    status=resp.status_code, error=err)
        failed = TokenEndpointError(self._scrub(f"{self.connection}: Marketing Cloud token request failed "
                                                f"({one_line(said)})"), connection=self.connection,
                                    status=resp.status_code, error=err)
        failed.permanent = 400 <= resp.status_code < 500 and resp.status_code not in (408, 429)
        raise failed
