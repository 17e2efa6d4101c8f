"""A fake Ramp token endpoint (httpx.MockTransport) and auth/client factories on it, for the Ramp auth unit tests."""

from __future__ import annotations

from typing import Any

import httpx

from ml_connector.core.tokens import MemoryTokenStore
from ml_connector.systems.ramp.auth import RampClientCredentialsAuth

SECRET = "s3cr3t-value-never-printed"
TOKEN_URL = "https://demo-api.ramp.com/developer/v1/token"


class FakeRamp:
    """Token endpoint + one data endpoint; rejects tokens listed in `bad`."""

    def __init__(self, *, token_status: int = 200, expires_in: int = 864000) -> None:
        self.token_status = token_status
        self.expires_in = expires_in
        self.issued: list[str] = []
        self.bad: set[str] = set()
        self.token_requests: list[httpx.Request] = []
        self.data_requests: list[httpx.Request] = []
        self.data_auth: list[str] = []  # Authorization as sent (the request object is reused)
        self.reject_with_404 = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/developer/v1/token":
            self.token_requests.append(request)
            if self.token_status != 200:
                return httpx.Response(self.token_status, json={"error": "invalid_client",
                                                               "error_description": "bad client"})
            tok = f"ramp_tok_{len(self.issued) + 1}"
            self.issued.append(tok)
            return httpx.Response(200, json={"access_token": tok, "token_type": "bearer",
                                             "expires_in": self.expires_in, "scope": "accounting:read"})
        self.data_requests.append(request)
        self.data_auth.append(request.headers.get("authorization", ""))
        tok = request.headers.get("authorization", "").removeprefix("Bearer ")
        if tok not in self.issued or tok in self.bad:
            if self.reject_with_404:
                return httpx.Response(404, json={"error_v2": {"error_code": "DEVELOPER_7002",
                                                              "message": "bad token"}})
            return httpx.Response(401, json={"error_v2": {"error_code": "DEVELOPER_7002", "message": "no"}})
        return httpx.Response(200, json={"ok": True, "token": tok})


def make(fake: FakeRamp, store: MemoryTokenStore | None = None, **kw: Any) -> RampClientCredentialsAuth:
    return RampClientCredentialsAuth(TOKEN_URL, "cid", SECRET, store=store or MemoryTokenStore(), key="conn1",
                                     transport=httpx.MockTransport(fake), **kw)


def client(fake: FakeRamp, auth: RampClientCredentialsAuth) -> httpx.Client:
    return httpx.Client(auth=auth, transport=httpx.MockTransport(fake), base_url="https://demo-api.ramp.com")
