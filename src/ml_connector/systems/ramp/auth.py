"""Ramp OAuth 2.0 client credentials: the generic `core.http.OAuth2Auth` with Ramp's facts.

The token lives in a `TokenStore` under the connection name, is refreshed ahead of expiry
(provider.yaml `auth.refresh_margin`) by one worker at a time, and a rejected token (401, or the
reported 404 DEVELOPER_7002) triggers exactly one forced refresh and one resend. A refused client
id/secret raises `CredentialRefused` at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from ml_connector.core.http import AuditHook, OAuth2Auth, OAuthError, RetryPolicy
from ml_connector.core.ratelimit import WindowLimiter
from ml_connector.core.tokens import TokenStore
from ml_connector.systems.ramp.facts import ramp_facts

#: The errors of Ramp's token endpoint (CredentialRefused for a refused credential).
RampAuthError = OAuthError


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


class RampClientCredentialsAuth(OAuth2Auth):
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
        audit: AuditHook | None = None,
    ) -> None:
        f = ramp_facts()
        retry = RetryPolicy.from_facts(f.need_retry(), max_retries=max_retries, base=backoff_base, cap=backoff_cap)
        super().__init__(token_url, client_id, client_secret, connection=key, store=store, facts=f.auth,
                         retry=retry, provider="Ramp", scope=scope, margin=margin, limiter=limiter,
                         transport=transport, timeout=timeout, clock=clock, sleep=sleep, audit=audit,
                         rejects=is_auth_rejection)

    @classmethod
    def for_base_url(cls, base_url: str, client_id: str, client_secret: str,
                     **kw: Any) -> RampClientCredentialsAuth:
        """Auth for the API host `base_url` (e.g. https://demo-api.ramp.com)."""
        f = ramp_facts()
        base = base_url.rstrip("/")
        if base.endswith(f.api_prefix):
            base = base[: -len(f.api_prefix)]
        assert f.auth.token_path is not None  # an OAuth2 mode (checked by the schema)
        return cls(base + f.auth.token_path, client_id, client_secret, **kw)
