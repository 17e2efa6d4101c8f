"""Who needs an operator token, every operator route guarded, and the agent's URL rules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ml_connector.agent.runner import TransportRefused, check_control_plane_url
from ml_connector.core.net import is_loopback_host
from ml_connector.core.runtime import Runtime
from ml_connector.server.api_auth import LAST_USED_RESOLUTION, create_token, list_tokens, revoke_token, verify_token
from ml_connector.server.app import create_app
from tests.support.api import concrete_path, runtime_with_server
from tests.support.clock import FakeClock
from tests.support.control_plane import agent_settings


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("LOCALHOST.", True), ("cp.localhost", True), ("0.0.0.0", False), ("::", False), ("10.0.0.5", False),
    ("169.254.78.1", False), ("localhost.example.com", False), ("127.0.0.1.nip.io", False), ("", False)])
def test_loopback_is_decided_from_the_text(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


@pytest.fixture()
def exposed(tmp_path: Path) -> Iterator[tuple[Runtime, FastAPI, TestClient]]:
    rt = runtime_with_server(tmp_path, "{host: 0.0.0.0, port: 8080}")  # not bound here; only the decision is under test
    app = create_app(rt)
    with TestClient(app) as client:
        yield rt, app, client
    rt.db.dispose()


def test_every_operator_route_needs_a_token_when_not_on_loopback(
        exposed: tuple[Runtime, FastAPI, TestClient]) -> None:
    rt, app, client = exposed
    paths: dict[str, dict[str, Any]] = app.openapi()["paths"]  # every route, however it was included
    operator = {p: ops for p, ops in paths.items() if p.startswith("/api/") and not p.startswith("/api/agent/")}
    assert {"/api/flows", "/api/runs", "/api/failures", "/api/replay", "/api/agents"} <= set(operator)
    for path, ops in operator.items():
        for method in ops:
            resp = client.request(method.upper(), concrete_path(path), json={})
            assert resp.status_code == 401, (method, path)
            assert ops[method]["security"] == [{"ApiToken": []}]
    _, token = create_token(rt.db, "ci")
    assert client.get("/api/flows", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert client.get("/health").status_code == 200


def test_loopback_server_is_open_unless_proxied_or_configured(tmp_path: Path) -> None:
    rt = runtime_with_server(tmp_path / "a", "{host: 127.0.0.1, port: 8080}")
    with TestClient(create_app(rt)) as client:
        assert client.get("/api/flows").status_code == 200
        # a reverse proxy on the same host makes a loopback listener public
        assert client.get("/api/flows", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 401
        assert client.get("/api/flows", headers={"Forwarded": "for=203.0.113.9"}).status_code == 401
    rt.db.dispose()
    rt = runtime_with_server(tmp_path / "b", "{host: 127.0.0.1, port: 8080, api_auth: token}")
    with TestClient(create_app(rt)) as client:
        assert client.get("/api/flows").status_code == 401
    rt.db.dispose()


def test_token_checks(tmp_path: Path) -> None:
    rt = runtime_with_server(tmp_path, "{host: 127.0.0.1}")
    token_id, token = create_token(rt.db, "ops")
    caller, reason, tid = verify_token(rt.db, token)
    assert caller is not None and caller.name == "ops" and reason == "ok" and tid == token_id
    assert verify_token(rt.db, token + "x")[1] == "bad_secret"
    assert verify_token(rt.db, token.replace(token_id, "f" * 16))[1] == "unknown_token"
    assert verify_token(rt.db, "Bearer " + token)[1] == "malformed_token"
    assert revoke_token(rt.db, "ops") == [token_id]
    assert verify_token(rt.db, token)[1] == "revoked_token"
    rt.db.dispose()


def test_last_use_is_stored_at_most_once_per_resolution(tmp_path: Path, fake_clock: FakeClock) -> None:
    rt = runtime_with_server(tmp_path, "{host: 127.0.0.1}")
    token_id, token = create_token(rt.db, "ops", clock=fake_clock)
    created = fake_clock.now()

    def last_used() -> float | None:
        return next(t["last_used_at"] for t in list_tokens(rt.db) if t["id"] == token_id)

    assert last_used() is None
    assert verify_token(rt.db, token, fake_clock)[1] == "ok"
    assert last_used() == created  # the first use is stored
    fake_clock.advance(LAST_USED_RESOLUTION)
    assert verify_token(rt.db, token, fake_clock)[1] == "ok"
    assert last_used() == created  # not a write per request
    fake_clock.advance(1)
    assert verify_token(rt.db, token, fake_clock)[1] == "ok"
    assert last_used() == created + LAST_USED_RESOLUTION + 1
    fake_clock.advance(5)
    assert revoke_token(rt.db, "ops", clock=fake_clock) == [token_id]
    assert next(t["revoked_at"] for t in list_tokens(rt.db) if t["id"] == token_id) == fake_clock.now()
    rt.db.dispose()


@pytest.mark.parametrize("url", ["https://cp.example.com", "https://cp.example.com/", "http://127.0.0.1:8080",
                                 "http://localhost:8080", "http://[::1]:8080"])
def test_agent_accepts_https_and_loopback_http(url: str) -> None:
    assert check_control_plane_url(url, agent_settings()) == url.rstrip("/")


@pytest.mark.parametrize("url", ["http://cp.example.com", "http://10.0.0.5:8080", "http://0.0.0.0:8080",
                                 "http://127.0.0.1.nip.io", "ftp://cp.example.com", "cp.example.com", "https://"])
def test_agent_refuses_other_urls(url: str) -> None:
    with pytest.raises(TransportRefused):
        check_control_plane_url(url, agent_settings())


def test_insecure_http_needs_the_explicit_opt_in(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(TransportRefused, match="allow_insecure_http"):
        check_control_plane_url("http://10.0.0.5:8080", agent_settings())
    assert check_control_plane_url("http://10.0.0.5:8080", agent_settings(allow_insecure_http=True)) == "http://10.0.0.5:8080"
    assert "INSECURE" in caplog.text


@pytest.mark.parametrize("header", [
    ("Via", "1.1 proxy.example"), ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "cp.example"),
    ("True-Client-IP", "203.0.113.9"), ("CF-Connecting-IP", "203.0.113.9"), ("X-Client-IP", "203.0.113.9"),
    ("X-Cluster-Client-IP", "203.0.113.9"), ("Fastly-Client-IP", "203.0.113.9"), ("X-Real-IP", "203.0.113.9"),
    ("X-Forwarded-Port", "443"), ("X-Original-Forwarded-For", "203.0.113.9"), ("X-Forwarded-Anything", "1")])
def test_any_proxy_header_makes_a_loopback_server_need_a_token(tmp_path: Path, header: tuple[str, str]) -> None:
    rt = runtime_with_server(tmp_path, "{host: 127.0.0.1, port: 8080}")
    with TestClient(create_app(rt)) as client:
        assert client.get("/api/flows").status_code == 200
        assert client.get("/api/flows", headers=dict([header])).status_code == 401
    rt.db.dispose()


def _rejected_clients(rt: Runtime) -> list[str]:
    from sqlalchemy import select

    from ml_connector.core.models import AuditRow

    with rt.db.session() as s:
        return [r.detail["client"] for r in s.scalars(select(AuditRow).where(AuditRow.event == "api.auth.rejected"))]


def test_forwarded_addresses_are_believed_only_from_trusted_proxies(tmp_path: Path) -> None:
    # TestClient's peer is "testclient": not an address, so never a trusted proxy
    rt = runtime_with_server(tmp_path / "a", "{host: 127.0.0.1, port: 8080}")
    with TestClient(create_app(rt), client=("127.0.0.1", 5000)) as client:
        for i in range(1500):  # a flood of spoofed addresses from one peer
            assert client.get("/api/flows", headers={"X-Forwarded-For": f"198.51.{i // 250}.{i % 250}"}
                              ).status_code == 401
    assert _rejected_clients(rt) == ["127.0.0.1"]  # the real peer, once (coalesced)
    rt.db.dispose()

    rt = runtime_with_server(tmp_path / "b", "{host: 127.0.0.1, port: 8080, trusted_proxies: [127.0.0.1/32, '::1']}")
    with TestClient(create_app(rt), client=("127.0.0.1", 5000)) as client:
        assert client.get("/api/flows", headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.9"}).status_code == 401
        assert client.get("/api/flows", headers={"Forwarded": 'for="[2001:db8::7]:4711";proto=https'}
                          ).status_code == 401
        # a proxy chain: the right-most address that is not a trusted proxy is the client
        assert client.get("/api/flows", headers={"X-Forwarded-For": "192.0.2.1, 127.0.0.1"}).status_code == 401
        for i in range(1500):  # varied addresses through the trusted proxy: bounded per real peer
            client.get("/api/flows", headers={"X-Forwarded-For": f"198.51.{i // 250}.{i % 250}"})
    clients = _rejected_clients(rt)
    assert clients[:3] == ["203.0.113.9", "2001:db8::7", "192.0.2.1"]
    assert len(clients) <= 10, clients
    rt.db.dispose()


def test_trusted_proxies_are_validated(tmp_path: Path) -> None:
    from ml_connector.config import ConfigError

    with pytest.raises(ConfigError, match="trusted_proxies"):
        runtime_with_server(tmp_path, "{host: 127.0.0.1, port: 8080, trusted_proxies: [proxy.example]}")


def test_startup_line_says_whether_a_token_is_needed(tmp_path: Path) -> None:
    from ml_connector.server.listen import plan, startup_line

    rt = runtime_with_server(tmp_path / "a", "{host: 127.0.0.1, port: 8080}")
    assert "open WITHOUT a token" in startup_line(rt, plan(rt))
    rt.db.dispose()
    rt = runtime_with_server(tmp_path / "b", "{host: 127.0.0.1, port: 8080, api_auth: token}")
    line = startup_line(rt, plan(rt))
    assert line.startswith("control plane listening on http://127.0.0.1:8080") and "needs a bearer token" in line
    rt.db.dispose()
