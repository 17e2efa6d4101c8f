"""core.http: the OAuth2 auth flow and the retry/rate transport, against httpx.MockTransport."""

from __future__ import annotations

import random
import time
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from ml_connector.core.http import (
    CredentialRefused,
    OAuth2Auth,
    RetryPolicy,
    RetryTransport,
    TokenEndpointError,
    wait_seconds,
)
from ml_connector.core.providers import AuthFacts, Backoff
from ml_connector.core.ratelimit import RollingWindowLimiter
from ml_connector.core.tokens import MemoryTokenStore, Token
from tests.support.ramp_scripts import scripted_transport

TOKEN_URL = "https://idp.example.com/oauth/token"
SECRET = "client-secret-never-shown"
PASSWORD = "user-password-never-shown"

POLICY = RetryPolicy(statuses=frozenset({500, 502, 503, 504}), idempotent_methods=frozenset({"GET", "PUT"}),
                     max_retries=3, base=1.0, factor=2.0, cap=8.0, jitter="none",
                     retry_after_headers=("Retry-After",), reset_headers=("X-RateLimit-Reset",))


def facts(mode: str = "oauth2_client_credentials", client_auth: str = "basic") -> AuthFacts:
    return AuthFacts(mode=mode, token_path="/oauth/token", client_auth=client_auth,  # type: ignore[arg-type]
                     token_lifetime=3600, refresh_margin=300, refresh_backoff=Backoff(base=10, cap=60),
                     scopes=["read", "write"])


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Idp:
    """A token endpoint with rotating refresh tokens, plus one API endpoint."""

    def __init__(self) -> None:
        self.forms: list[dict[str, list[str]]] = []
        self.auth_headers: list[str] = []
        self.n = 0
        self.live_refresh: str | None = None
        self.status = 200
        self.error = "invalid_client"
        self.refuse_tokens: set[str] = set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            form = parse_qs(request.content.decode())
            self.forms.append(form)
            self.auth_headers.append(request.headers.get("authorization", ""))
            if self.status != 200:
                return httpx.Response(self.status, json={"error": self.error, "error_description": "nope"})
            if form["grant_type"] == ["refresh_token"] and form["refresh_token"] != [self.live_refresh]:
                return httpx.Response(400, json={"error": "invalid_grant", "error_description": "stale"})
            self.n += 1
            self.live_refresh = f"rt-{self.n}"
            return httpx.Response(200, json={"access_token": f"at-{self.n}", "token_type": "bearer",
                                             "expires_in": 3600, "refresh_token": self.live_refresh})
        tok = request.headers.get("authorization", "").removeprefix("Bearer ")
        if tok in self.refuse_tokens:
            return httpx.Response(401, json={})
        return httpx.Response(200, json={"token": tok})


def make_auth(idp: Idp, store: MemoryTokenStore | None = None, clock: Clock | None = None,
              events: list[tuple[str, str, dict[str, Any]]] | None = None, **kw: Any) -> OAuth2Auth:
    return OAuth2Auth(TOKEN_URL, "cid", SECRET, connection="idp-conn", store=store or MemoryTokenStore(),
                      facts=kw.pop("facts", facts()), retry=POLICY, provider="IdP",
                      transport=httpx.MockTransport(idp), clock=clock or time.time, sleep=lambda s: None,
                      audit=(lambda e, o, d: events.append((e, o, d))) if events is not None else None, **kw)


def api(idp: Idp, auth: OAuth2Auth) -> httpx.Client:
    return httpx.Client(auth=auth, transport=httpx.MockTransport(idp), base_url="https://api.example.com")


# ---- OAuth2 -------------------------------------------------------------------------------------
def test_client_credentials_basic_and_body() -> None:
    idp = Idp()
    with api(idp, make_auth(idp)) as c:
        assert c.get("/x").json()["token"] == "at-1"
    assert idp.forms[0] == {"grant_type": ["client_credentials"], "scope": ["read write"]}
    assert idp.auth_headers[0].startswith("Basic ")
    idp2 = Idp()
    with api(idp2, make_auth(idp2, facts=facts(client_auth="body"))) as c:
        c.get("/x")
    assert idp2.forms[0]["client_secret"] == [SECRET] and idp2.auth_headers[0] == ""


def test_password_grant_then_rotating_refresh_tokens_newest_always_stored() -> None:
    idp, store, clock = Idp(), MemoryTokenStore(), Clock()
    events: list[tuple[str, str, dict[str, Any]]] = []
    auth = make_auth(idp, store, clock, events, facts=facts("oauth2_password"), username="u", password=PASSWORD)
    with api(idp, auth) as c:
        assert c.get("/x").json()["token"] == "at-1"
        assert idp.forms[0]["grant_type"] == ["password"] and idp.forms[0]["password"] == [PASSWORD]
        assert store.load("idp-conn").refresh_token == "rt-1"  # type: ignore[union-attr]
        clock.now += 3600 - 200  # inside the 300 s margin: proactive refresh with the stored refresh token
        assert c.get("/x").json()["token"] == "at-2"
        assert idp.forms[1] == {"grant_type": ["refresh_token"], "refresh_token": ["rt-1"],
                                "scope": ["read write"]}
        assert store.load("idp-conn").refresh_token == "rt-2"  # type: ignore[union-attr]
        clock.now += 3600 - 200
        assert c.get("/x").json()["token"] == "at-3"
        assert idp.forms[2]["refresh_token"] == ["rt-2"]  # the rotated one, never a stale one
    assert [e for e, _, _ in events] == ["token.issued", "token.refreshed", "token.refreshed"]
    for _, _, detail in events:
        text = repr(detail)
        assert "at-" not in text and "rt-" not in text and PASSWORD not in text and SECRET not in text
        assert detail["connection"] == "idp-conn"


def test_dead_refresh_token_falls_back_to_password_login() -> None:
    idp, store, clock = Idp(), MemoryTokenStore(), Clock()
    auth = make_auth(idp, store, clock, facts=facts("oauth2_password"), username="u", password=PASSWORD)
    with api(idp, auth) as c:
        c.get("/x")
        idp.live_refresh = "revoked-elsewhere"
        clock.now += 3600
        assert c.get("/x").json()["token"] == "at-2"
    assert [f["grant_type"] for f in idp.forms] == [["password"], ["refresh_token"], ["password"]]


def test_refresh_token_grant_uses_the_configured_token_first() -> None:
    idp = Idp()
    idp.live_refresh = "configured-rt"
    auth = make_auth(idp, facts=facts("oauth2_refresh_token"), refresh_token="configured-rt")
    with api(idp, auth) as c:
        assert c.get("/x").json()["token"] == "at-1"
    assert idp.forms[0]["refresh_token"] == ["configured-rt"]


@pytest.mark.parametrize(("status", "error"), [(401, "invalid_client"), (400, "invalid_client"),
                                               (400, "invalid_grant"), (400, "invalid_scope")])
def test_refused_credential_fails_at_once_in_one_line(status: int, error: str) -> None:
    idp = Idp()
    idp.status, idp.error = status, error
    events: list[tuple[str, str, dict[str, Any]]] = []
    auth = make_auth(idp, events=events)
    t0 = time.monotonic()
    with api(idp, auth) as c, pytest.raises(CredentialRefused) as ei:
        c.get("/x")
    assert time.monotonic() - t0 < 1.0
    assert len(idp.forms) == 1  # never retried
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith("idp-conn: IdP refused the credential")
    assert f"HTTP {status} {error}" in msg and SECRET not in msg
    assert (ei.value.status, ei.value.error, ei.value.connection) == (status, error, "idp-conn")
    assert events[-1][0] == "token.failed" and events[-1][2]["refused"] is True


def test_token_endpoint_5xx_retried_then_backs_off_and_keeps_a_valid_token() -> None:
    idp, store, clock = Idp(), MemoryTokenStore(), Clock()
    events: list[tuple[str, str, dict[str, Any]]] = []
    auth = make_auth(idp, store, clock, events)
    with api(idp, auth) as c:
        c.get("/x")
        idp.status = 503
        clock.now += 3600 - 100  # proactive refresh due, the token is still valid for 100 s
        assert c.get("/x").json()["token"] == "at-1"  # the refresh failed: the valid token is used
        assert len(idp.forms) == 1 + 4  # 1 + max_retries attempts in the transport
        assert events[-1][0] == "token.failed" and events[-1][2]["next_try_in"] == 10
        c.get("/x")
        assert len(idp.forms) == 5  # within the backoff: no new request to the endpoint
        clock.now += 101  # expired, still within the 10 s backoff? no: 101 s later, backoff over
        with pytest.raises(TokenEndpointError) as ei:
            c.get("/x")
        assert "HTTP 503" in str(ei.value)
        with pytest.raises(TokenEndpointError) as ei2:  # inside the doubled backoff: said, not sent
            c.get("/x")
        assert "next try in" in str(ei2.value) and len(idp.forms) == 9
        idp.status = 200
        clock.now += 21
        assert c.get("/x").json()["token"] == "at-2"


def test_rejected_token_refreshes_once_shared_by_force_if() -> None:
    idp, store = Idp(), MemoryTokenStore()
    a1, a2 = make_auth(idp, store), make_auth(idp, store)
    with api(idp, a1) as c1, api(idp, a2) as c2:
        c1.get("/x")
        idp.refuse_tokens.add("at-1")
        assert c1.get("/x").json()["token"] == "at-2"
        assert c2.get("/x").json()["token"] == "at-2"  # the store already holds the new one
    assert idp.n == 2


# ---- retry transport ----------------------------------------------------------------------------


def client(inner: httpx.BaseTransport, sleeps: list[float], policy: RetryPolicy = POLICY,
           **kw: Any) -> tuple[httpx.Client, RetryTransport]:
    t = RetryTransport(inner, policy, sleep=sleeps.append, **kw)
    return httpx.Client(transport=t, base_url="https://api.example.com"), t


def test_429_retry_after_seconds_date_and_reset_header() -> None:
    now = 1_700_000_000.0
    r = httpx.Response(429, headers={"Retry-After": "Tue, 14 Nov 2023 22:13:40 GMT"})
    assert wait_seconds(r, ["Retry-After"], now=lambda: now) == pytest.approx(20.0)
    r = httpx.Response(429, headers={"X-RateLimit-Reset": str(now + 7)})
    assert wait_seconds(r, ["Retry-After"], ["X-RateLimit-Reset"], now=lambda: now) == pytest.approx(7.0)
    r = httpx.Response(429, headers={"X-RateLimit-Reset": "3"})
    assert wait_seconds(r, ["Retry-After"], ["X-RateLimit-Reset"]) == 3.0
    inner, seen = scripted_transport(httpx.Response(429, headers={"Retry-After": "4"}),
                           httpx.Response(429), httpx.Response(201, json={}))
    sleeps: list[float] = []
    c, t = client(inner, sleeps)
    assert c.post("/w", json={}).status_code == 201  # a 429 was refused before processing: sent again
    assert sleeps == [4.0, 2.0] and len(seen) == 3 and t.stats.throttled == 2


def test_429_penalizes_the_shared_limiter() -> None:
    now = [0.0]
    waits: list[float] = []

    def lsleep(s: float) -> None:
        waits.append(s)
        now[0] += s

    lim = RollingWindowLimiter(100, 10, clock=lambda: now[0], sleep=lsleep)
    inner, _ = scripted_transport(httpx.Response(429, headers={"Retry-After": "5"}), httpx.Response(200))
    sleeps: list[float] = []
    c, _t = client(inner, sleeps, limiter=lim)
    c.get("/r")
    assert sleeps == [] and waits == [5.0] and lim.in_window() == 2


def test_5xx_and_connection_errors_retried_for_idempotent_requests_with_full_jitter() -> None:
    policy = RetryPolicy(**{**POLICY.__dict__, "jitter": "full"})
    inner, seen = scripted_transport(httpx.Response(503), httpx.ReadError("reset"), httpx.Response(502),
                                     httpx.Response(200))
    sleeps: list[float] = []
    c, t = client(inner, sleeps, policy, rng=random.Random(7))
    assert c.get("/r").status_code == 200
    assert len(seen) == 4 and t.stats.retries == 3
    assert all(0 <= s <= cap for s, cap in zip(sleeps, [1.0, 2.0, 4.0], strict=True))
    assert len(set(sleeps)) == 3  # jittered, not the bare series


def test_attempts_are_bounded() -> None:
    inner, seen = scripted_transport(httpx.Response(503))
    c, _ = client(inner, [])
    assert c.get("/r").status_code == 503 and len(seen) == 4
    inner, seen = scripted_transport(httpx.ReadError("reset"))
    c, _ = client(inner, [])
    with pytest.raises(httpx.ReadError):
        c.put("/r", json={})
    assert len(seen) == 4


@pytest.mark.parametrize("failure", [httpx.Response(500), httpx.Response(503), httpx.ReadTimeout("slow"),
                                     httpx.RemoteProtocolError("dropped")])
def test_a_write_that_may_have_arrived_is_never_sent_again(failure: httpx.Response | Exception) -> None:
    inner, seen = scripted_transport(failure, httpx.Response(201))
    c, _ = client(inner, [])
    if isinstance(failure, Exception):
        with pytest.raises(type(failure)):
            c.post("/w", json={})
    else:
        assert c.post("/w", json={}).status_code == failure.status_code
    assert len(seen) == 1


def test_a_write_that_never_left_or_is_marked_idempotent_is_sent_again() -> None:
    inner, seen = scripted_transport(httpx.ConnectError("refused"), httpx.Response(201))
    c, _ = client(inner, [])
    assert c.post("/w", json={}).status_code == 201 and len(seen) == 2
    inner, seen = scripted_transport(httpx.Response(503), httpx.Response(201))
    c, _ = client(inner, [])
    assert c.post("/w", json={"key": "k"}, extensions={"mlc_idempotent": True}).status_code == 201
    assert len(seen) == 2


def test_max_wait_429_gives_the_429_back() -> None:
    policy = RetryPolicy(**{**POLICY.__dict__, "max_wait_429": 5.0})
    inner, seen = scripted_transport(httpx.Response(429))
    sleeps: list[float] = []
    c, _ = client(inner, sleeps, policy)
    assert c.get("/r").status_code == 429 and sleeps == [1.0, 2.0] and len(seen) == 3


def test_token_is_never_in_repr() -> None:
    tok = Token("at-secret-value", 1.0, refresh_token="rt-secret-value")
    assert "secret" not in repr(tok)
    auth = make_auth(Idp())
    assert SECRET not in repr(auth) and "***" in repr(auth)


def test_a_wrong_token_url_is_permanent_but_not_a_refused_credential() -> None:
    idp = Idp()
    idp.status, idp.error = 404, "not_found"
    with api(idp, make_auth(idp)) as c, pytest.raises(TokenEndpointError) as ei:
        c.get("/x")
    assert not isinstance(ei.value, CredentialRefused) and ei.value.permanent is True
    assert "token request to https://idp.example.com/oauth/token failed (HTTP 404 not_found" in str(ei.value)
    assert len(idp.forms) == 1
    idp2 = Idp()
    idp2.status = 503
    with api(idp2, make_auth(idp2)) as c, pytest.raises(TokenEndpointError) as ei2:
        c.get("/x")
    assert ei2.value.permanent is False and len(idp2.forms) == 4


def test_for_provider_builds_the_token_url_and_policy_from_facts() -> None:
    from ml_connector.core.providers import facts as provider_facts
    from ml_connector.core.vault import known_secret_values

    ramp = provider_facts("ramp")
    a = OAuth2Auth.for_provider(ramp, "https://demo-api.ramp.com/developer/v1/", "cid", "for-provider-secret-1",
                                connection="r", store=MemoryTokenStore())
    assert a.token_url == "https://demo-api.ramp.com/developer/v1/token"
    assert a.token_transport.policy.max_retries == ramp.need_retry().max_retries
    assert a.margin == ramp.auth.refresh_margin and a.scope == " ".join(ramp.auth.scopes)
    assert "for-provider-secret-1" in known_secret_values()  # redacted from logs from now on
    with pytest.raises(ValueError, match="sap_b1 has no OAuth2 token endpoint"):
        OAuth2Auth.for_provider(provider_facts("sap_b1"), "https://b1", "u", "p", connection="b",
                                store=MemoryTokenStore())
