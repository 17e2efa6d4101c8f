"""The control plane's listener secured, every party a separate OS process over loopback:
HTTPS with a throwaway CA, agents that verify it (or refuse it), agents that refuse plain
http:// to a non-loopback host before sending anything, and the operators' JSON API behind
bearer tokens while the agents' signed endpoints stay as they are.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import select

from ml_connector.agent import protocol as proto
from ml_connector.core.channel import ChannelRequest
from ml_connector.core.models import AuditRow
from ml_connector.server.agents.channel import RemoteAgentChannel
from tests.support import (
    BIN,
    PY,
    free_port,
    wait_for,
)
from tests.support.tls import (
    TlsWorld,
    Trap,
    agent_cmd,
    cp_cli,
    make_pki,
    set_agent_config,
    wait_https,
)

# Separate OS processes (SAP sandbox, control plane, agents): `make test`, not `make test-fast`.
pytestmark = pytest.mark.slow

# --------------------------------------------------------------------------- a throwaway PKI


# --------------------------------------------------------------------------- processes


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsWorld]:
    e = TlsWorld(tmp_path_factory.mktemp("tls"))
    try:
        yield e
    finally:
        e.close()


# --------------------------------------------------------------------------- HTTPS


def test_agent_pairs_and_serves_calls_over_https_with_its_ca_bundle(env: TlsWorld) -> None:
    assert env.cp.url.startswith("https://127.0.0.1:")
    assert f"control plane listening on {env.cp.url}" in env.cp.log.read_text()
    # the port speaks TLS only: a plain-HTTP request gets no answer
    with pytest.raises(httpx.HTTPError):
        httpx.get(env.cp.url.replace("https://", "http://") + "/health", timeout=3)

    agent = env.agent("agent-ok")
    shutil.copy(env.pki["ca"], agent.dir / "cp-ca.pem")
    set_agent_config(agent, tls_verify="cp-ca.pem")  # relative to agent.yaml
    agent.setup(env.cp.token(), env.cp.url, env.sap["password"])
    agent.start()
    ch = RemoteAgentChannel(env.db, "plant1", timeout=60)
    r = ch.call(ChannelRequest(system="sap_ecc", function="STFC_CONNECTION", params={"REQUTEXT": "over tls"}))
    assert r.ok and r.result is not None and r.result["ECHOTEXT"] == "over tls"

    # the running agent verifies too: with the default trust store it cannot talk to this control
    # plane, and says why and what to configure (it keeps retrying: the certificate may be fixed)
    agent.kill()
    set_agent_config(agent, tls_verify=True)
    agent.start()
    log = wait_for(lambda: "certificate verify failed" in agent.log.read_text() and agent.log.read_text(),
                   timeout=30, what="the certificate error in the agent's log")
    assert env.cp.url in log and "tls_verify: /path/to/ca.pem" in log
    assert agent.proc is not None and agent.proc.poll() is None
    agent.kill()


def test_default_verification_refuses_a_private_ca_at_pairing(env: TlsWorld) -> None:
    agent = env.agent("agent-default-trust")
    out = agent.cli("pair", "--token", env.cp.token(), "--control-plane", env.cp.url, check=False)
    assert out.returncode == 1
    assert f"control plane at {env.cp.url}" in out.stderr and "certificate verify failed" in out.stderr
    assert "tls_verify" in out.stderr
    assert not (agent.dir / "data" / "identity.json").exists()


def test_pairing_can_pin_the_control_plane_key(env: TlsWorld) -> None:
    def issue() -> tuple[str, str]:
        out = cp_cli(env.cp, "agents", "issue-token", "--site", "plant1", "--ttl", "5m")
        assert out.returncode == 0, out.stderr
        fingerprint = next(w for w in out.stderr.split() if w.startswith("SHA256:"))
        return out.stdout.strip().splitlines()[-1], fingerprint

    token, fingerprint = issue()
    agent = env.agent("agent-pinned")
    set_agent_config(agent, tls_verify=str(env.pki["ca"]))
    wrong = "SHA256:" + "0" * 64
    out = agent.cli("pair", "--token", token, "--control-plane", env.cp.url, "--control-plane-key", wrong,
                    check=False)
    assert out.returncode == 1 and f"presented key {fingerprint}, not the expected {wrong}" in out.stderr
    assert not (agent.dir / "data" / "identity.json").exists()
    token, fingerprint = issue()
    out = agent.cli("pair", "--token", token, "--control-plane", env.cp.url, "--control-plane-key", fingerprint)
    assert (agent.dir / "data" / "identity.json").exists()


def test_missing_ca_bundle_is_named(env: TlsWorld) -> None:
    agent = env.agent("agent-missing-ca")
    set_agent_config(agent, tls_verify="nope/ca.pem")
    out = agent.cli("pair", "--token", "mlcpt_x", "--control-plane", env.cp.url, check=False)
    assert out.returncode == 2
    assert "tls_verify: CA bundle not found" in out.stderr and str(agent.dir / "nope" / "ca.pem") in out.stderr


# --------------------------------------------------------------------------- plain http


def test_plain_http_to_a_non_loopback_host_is_refused_before_any_request(env: TlsWorld) -> None:
    remote = "http://cp.example.test:8080"
    trap = Trap()
    try:
        agent = env.agent("agent-http")
        set_agent_config(agent, control_plane=remote)
        out = agent_cmd(agent, "pair", "--token", "mlcpt_x", env=trap.env())
        assert out.returncode == 2, out.stderr
        assert f"refusing the control plane URL {remote}" in out.stderr and "allow_insecure_http" in out.stderr
        assert not (agent.dir / "data" / "agent.key").exists()  # nothing generated, nothing sent

        # the running agent checks as well (an identity paired elsewhere, pointing at http://)
        data = agent.dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        proto.write_private_key(data / "agent.key", proto.generate_key())
        (data / "identity.json").write_text(json.dumps({
            "agent_id": "agt_test", "site": "plant1", "control_plane": remote,
            "control_plane_public_key": proto.public_key_text(proto.generate_key())}), encoding="utf-8")
        out = agent_cmd(agent, "run", env=trap.env())
        assert out.returncode == 2, out.stderr
        assert f"refusing the control plane URL {remote}" in out.stderr
        assert trap.connections == 0

        # the opt-in: the same agent now does send (to the trap), with a loud warning
        set_agent_config(agent, allow_insecure_http=True)
        out = agent_cmd(agent, "pair", "--token", "mlcpt_x", "--force", env=trap.env())
        assert out.returncode == 1 and "cannot reach the control plane" in out.stderr
        assert "INSECURE" in out.stderr and "allow_insecure_http: true" in out.stderr
        assert trap.connections >= 1
    finally:
        trap.close()


# --------------------------------------------------------------------------- the operators' API


def test_admin_api_needs_a_valid_token_and_agents_keep_their_own_auth(env: TlsWorld) -> None:
    http = httpx.Client(base_url=env.cp.url, verify=env.cp.verify, timeout=10)
    admin_paths = ["/api/flows", "/api/runs", "/api/failures", "/api/agents", "/api/runs/nope"]
    assert http.get("/health").status_code == 200  # open
    for path in admin_paths:
        r = http.get(path)
        assert r.status_code == 401, path
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert "api-tokens create" in r.json()["detail"]["message"]
    assert http.post("/api/replay", json={}).status_code == 401
    assert http.post("/api/flows/x/sync", json={}).status_code == 401

    forged = "mlcat_0123456789abcdef_" + "A" * 43
    for bad in (forged, "not-a-token"):
        assert http.get("/api/flows", headers={"Authorization": f"Bearer {bad}"}).status_code == 401

    created = cp_cli(env.cp, "api-tokens", "create", "ops-script")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("mlcat_") and token not in created.stderr
    token_id = token.split("_")[1]
    auth = {"Authorization": f"Bearer {token}"}
    for path in admin_paths[:-1]:
        assert http.get(path, headers=auth).status_code == 200, path
    assert http.get("/api/runs/nope", headers=auth).status_code == 404  # past the guard
    assert any(a["site"] == "plant1" for a in http.get("/api/agents", headers=auth).json())
    # the right id with a wrong secret
    wrong_secret = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert http.get("/api/flows", headers={"Authorization": f"Bearer {wrong_secret}"}).status_code == 401
    # a second active token of the same name is refused; names and ids are listed, never values
    assert cp_cli(env.cp, "api-tokens", "create", "ops-script").returncode == 2
    listing = cp_cli(env.cp, "api-tokens", "list", "--json")
    rows = json.loads(listing.stdout)
    assert [(r["id"], r["name"], r["state"]) for r in rows] == [(token_id, "ops-script", "active")]
    assert token.split("_", 2)[2] not in listing.stdout

    # the agents' endpoints take no admin token: an unsigned poll is refused by the agent auth
    r = http.post("/api/agent/poll", json={"hold": 0}, headers=auth)
    assert r.status_code == 401 and r.json()["detail"]["error"] == "missing_headers"

    spec = http.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["ApiToken"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "mlcat_<id>_<secret>",
        "description": spec["components"]["securitySchemes"]["ApiToken"]["description"]}
    assert spec["paths"]["/api/flows"]["get"]["security"] == [{"ApiToken": []}]
    assert spec["paths"]["/api/agents"]["get"]["security"] == [{"ApiToken": []}]
    assert "security" not in spec["paths"]["/api/agent/poll"]["post"]
    assert "security" not in spec["paths"]["/health"]["get"]

    revoked = cp_cli(env.cp, "api-tokens", "revoke", token_id)
    assert revoked.returncode == 0 and token_id in revoked.stdout
    assert http.get("/api/flows", headers=auth).status_code == 401
    assert cp_cli(env.cp, "api-tokens", "revoke", token_id).returncode == 1  # nothing active left
    http.close()

    reasons = [a.detail["reason"] for a in env.audit("api.auth.rejected")]
    assert {"missing_token", "unknown_token", "malformed_token", "bad_secret", "revoked_token"} <= set(reasons)
    assert all(a.outcome == "failed" for a in env.audit("api.auth.rejected"))
    assert {a.detail.get("token_id") for a in env.audit("api.auth.rejected")} >= {token_id}
    assert [a.detail["token_id"] for a in env.audit("api.token.created")] == [token_id]
    assert [a.detail["token_id"] for a in env.audit("api.token.revoked")] == [token_id]
    # no token (nor a rejected one) in the audit trail, the log, or the database files
    secrets_seen = [token, token.split("_", 2)[2], wrong_secret, forged]
    with env.db.session() as s:
        trail = json.dumps([[a.event, a.detail] for a in s.scalars(select(AuditRow))])
    log = env.cp.log.read_text()
    assert "refused GET /api/flows" in log
    db_bytes = b"".join(p.read_bytes() for p in (env.cp.dir / "data").glob("ml-connector.sqlite*"))
    for secret in secrets_seen:
        assert secret not in trail and secret not in log and secret.encode() not in db_bytes


# --------------------------------------------------------------------------- TLS settings


def test_tls_setting_problems_name_the_file_line_and_field(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki", key_password=b"key-pass-123")
    cfg = tmp_path / "ml-connector.yaml"

    def serve(server: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        cfg.write_text(yaml.safe_dump({"engine": {"data_dir": "./data"}, "server": server}, sort_keys=False),
                       encoding="utf-8")
        return subprocess.run([PY, "-m", "ml_connector.server.agents.serve", "-c", str(cfg)], capture_output=True,
                              text=True, timeout=60)

    out = serve({"host": "127.0.0.1", "port": 1, "tls": {"cert_file": "pki/missing.pem", "key_file": "pki/server.key"}})
    assert out.returncode == 2
    assert f"{cfg}:7: server.tls.cert_file: file not found: {tmp_path / 'pki' / 'missing.pem'}" in out.stderr
    # an encrypted key without its passphrase: refused, with the hint (and no terminal prompt)
    out = serve({"host": "127.0.0.1", "port": 1, "tls": {"cert_file": "pki/server.pem", "key_file": "pki/server.key"}})
    assert out.returncode == 2 and f"{cfg}:6: server.tls: cannot load cert_file" in out.stderr
    assert "key_password_secret" in out.stderr
    # a passphrase named but not stored
    out = serve({"host": "127.0.0.1", "port": 1, "tls": {"cert_file": "pki/server.pem", "key_file": "pki/server.key",
                                                          "key_password_secret": "tls_key_pass"}})
    assert out.returncode == 2 and "server.tls.key_password_secret: secret tls_key_pass is not set" in out.stderr
    # a passphrase in the file itself is refused outright
    out = serve({"host": "127.0.0.1", "port": 1, "tls": {"cert_file": "pki/server.pem", "key_file": "pki/server.key",
                                                          "key_password": "key-pass-123"}})
    assert out.returncode == 2 and "key-pass-123" not in out.stderr and "key_password_secret" in out.stderr

    # stored in the vault: `ml-connector run` serves HTTPS with the encrypted key
    cfg.write_text(yaml.safe_dump({"engine": {"data_dir": "./data"}, "server": {
        "host": "127.0.0.1", "port": 1,
        "tls": {"cert_file": "pki/server.pem", "key_file": "pki/server.key",
                "key_password_secret": "tls_key_pass"}}}, sort_keys=False), encoding="utf-8")
    subprocess.run([str(BIN), "secrets", "set", "tls_key_pass", "--stdin", "-c", str(cfg)], input="key-pass-123",
                   capture_output=True, text=True, timeout=60, check=True)
    port = free_port()
    text = cfg.read_text(encoding="utf-8").replace("port: 1\n", f"port: {port}\n")
    cfg.write_text(text, encoding="utf-8")
    log = tmp_path / "run.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([str(BIN), "run", "-c", str(cfg)], stdout=fh, stderr=subprocess.STDOUT,
                                env={**os.environ, "COLUMNS": "200"})
    try:
        wait_https(f"https://127.0.0.1:{port}/health", pki["ca"])
        assert f"control plane listening on https://127.0.0.1:{port}" in log.read_text()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    assert "key-pass-123" not in log.read_text()
