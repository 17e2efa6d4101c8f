"""RampClientCredentialsAuth against an in-process mock transport (no network)."""

from __future__ import annotations

import base64
import time
from urllib.parse import parse_qs

import httpx
import pytest

from ml_connector.core.providers import fact
from ml_connector.core.tokens import MemoryTokenStore, Token
from ml_connector.systems.ramp.auth import RampAuthError, RampClientCredentialsAuth
from tests.support.ramp_fakes import SECRET, TOKEN_URL, FakeRamp, client, make


def test_token_request_shape_and_reuse() -> None:
    fake = FakeRamp()
    auth = make(fake)
    with client(fake, auth) as c:
        assert c.get("/developer/v1/business").json()["token"] == "ramp_tok_1"
        assert c.get("/developer/v1/business").json()["token"] == "ramp_tok_1"
    assert len(fake.token_requests) == 1
    req = fake.token_requests[0]
    assert req.method == "POST"
    assert req.headers["content-type"] == "application/x-www-form-urlencoded"
    assert req.headers["authorization"] == "Basic " + base64.b64encode(f"cid:{SECRET}".encode()).decode()
    form = parse_qs(req.content.decode())
    assert form == {"grant_type": ["client_credentials"], "scope": [" ".join(fact("ramp", "auth", "scopes"))]}
    assert fake.data_auth[0] == "Bearer ramp_tok_1"


def test_defaults_come_from_provider_yaml() -> None:
    auth = make(FakeRamp())
    assert auth.margin == fact("ramp", "auth", "refresh_margin") == 86400
    # the ERP integration's scopes: the bill streams need bills:read, vendor matching vendors:read
    assert auth.scope == " ".join(fact("ramp", "auth", "scopes"))
    assert {"accounting:read", "accounting:write", "bills:read", "vendors:read", "vendors:write",
            "transactions:read", "reimbursements:read"} <= set(auth.scope.split())


def test_refresh_within_margin() -> None:
    fake = FakeRamp()
    store = MemoryTokenStore()
    # stored token with 12 h left: inside the 1-day margin → refreshed before use
    store.refresh("conn1", 0, lambda: Token("ramp_tok_old", time.time() + 12 * 3600))
    fake.issued.append("ramp_tok_old")
    auth = make(fake, store)
    with client(fake, auth) as c:
        assert c.get("/x").json()["token"] == "ramp_tok_2"
    assert auth.fetches == 1
    # with 2 days left it is kept
    store2 = MemoryTokenStore()
    store2.refresh("conn1", 0, lambda: Token("ramp_tok_old", time.time() + 2 * 86400))
    auth2 = make(fake, store2)
    with client(fake, auth2) as c:
        assert c.get("/x").json()["token"] == "ramp_tok_old"
    assert auth2.fetches == 0


@pytest.mark.parametrize("use_404", [False, True])
def test_rejected_token_refreshes_once_and_resends(use_404: bool) -> None:
    fake = FakeRamp()
    fake.reject_with_404 = use_404
    auth = make(fake)
    with client(fake, auth) as c:
        c.get("/x")
        fake.bad.add("ramp_tok_1")  # server-side revocation / expiry the store cannot see
        r = c.post("/y", json={"a": 1})
        assert r.status_code == 200 and r.json()["token"] == "ramp_tok_2"
    assert auth.fetches == 2
    assert fake.data_auth == [
        "Bearer ramp_tok_1", "Bearer ramp_tok_1", "Bearer ramp_tok_2"]
    assert fake.data_requests[-1].content in (b'{"a":1}', b'{"a": 1}')


def test_only_one_retry_when_new_token_also_rejected() -> None:
    fake = FakeRamp()
    auth = make(fake)
    with client(fake, auth) as c:
        c.get("/x")
        fake.bad.update({"ramp_tok_1", "ramp_tok_2", "ramp_tok_3"})
        r = c.get("/x")
    assert r.status_code == 401
    assert auth.fetches == 2
    assert len(fake.data_requests) == 3


def test_store_is_shared_between_auth_instances() -> None:
    fake = FakeRamp()
    store = MemoryTokenStore()
    a1, a2 = make(fake, store), make(fake, store)
    with client(fake, a1) as c1, client(fake, a2) as c2:
        c1.get("/x")
        c2.get("/x")
    assert len(fake.token_requests) == 1


def test_token_failure_is_typed_and_secret_free() -> None:
    fake = FakeRamp(token_status=401)
    auth = make(fake)
    with client(fake, auth) as c, pytest.raises(RampAuthError) as ei:
        c.get("/x")
    assert ei.value.status == 401 and ei.value.error == "invalid_client"
    assert SECRET not in str(ei.value) and SECRET not in repr(ei.value)
    assert SECRET not in repr(auth) and "***" in repr(auth)


def test_connection_failure_is_typed_and_secret_free() -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot connect, secret was {SECRET}")

    sleeps: list[float] = []
    auth = RampClientCredentialsAuth(TOKEN_URL, "cid", SECRET, store=MemoryTokenStore(), key="k",
                                     transport=httpx.MockTransport(boom), sleep=sleeps.append, max_retries=2)
    with pytest.raises(RampAuthError) as ei:
        auth.fetch_token()
    assert auth.fetches == 3 and sleeps == [1.0, 2.0]
    assert SECRET not in str(ei.value)
    assert ei.value.__cause__ is None and ei.value.__suppress_context__


def test_non_bearer_token_type_rejected() -> None:
    def weird(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"access_token": "x", "token_type": "mac", "expires_in": 10})

    auth = RampClientCredentialsAuth(TOKEN_URL, "cid", SECRET, store=MemoryTokenStore(), key="k",
                                     transport=httpx.MockTransport(weird))
    with pytest.raises(RampAuthError):
        auth.fetch_token()


def test_for_base_url() -> None:
    a = RampClientCredentialsAuth.for_base_url("https://demo-api.ramp.com/developer/v1/", "c", SECRET,
                                               store=MemoryTokenStore(), key="k")
    assert a.token_url == TOKEN_URL


def test_token_endpoint_429_waits_and_retries() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) <= 3:
            return httpx.Response(429, json={"error_v2": {"error_code": "X", "message": "slow"}},
                                  headers={"Retry-After": "3"} if len(calls) == 3 else {})
        if len(calls) == 4:
            return httpx.Response(503, text="busy")
        return httpx.Response(200, json={"access_token": "ramp_tok_z", "token_type": "Bearer",
                                         "expires_in": 864000})

    sleeps: list[float] = []
    auth = RampClientCredentialsAuth(TOKEN_URL, "cid", SECRET, store=MemoryTokenStore(), key="k",
                                     transport=httpx.MockTransport(handler), sleep=sleeps.append)
    tok = auth.fetch_token()
    assert tok.access_token == "ramp_tok_z" and time.time() + 863000 < tok.expires_at
    assert sleeps == [1.0, 2.0, 3.0, 1.0]
