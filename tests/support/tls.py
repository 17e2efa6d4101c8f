"""TLS for the control plane in tests: a throwaway PKI, an HTTPS control-plane process, its world, and a
trap proxy that counts what an agent sends."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ml_connector.core.db import Database
from tests.support.agents import CP_ENV, AgentProc, ControlPlane, World
from tests.support.processes import BIN, PY
from tests.support.sandboxes import start_sandbox
from tests.support.waiting import wait_for


def cert_name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_pki(out: Path, *, key_password: bytes | None = None) -> dict[str, Path]:
    """A CA and a server certificate for localhost / 127.0.0.1 signed by it (PEM files in `out`)."""
    out.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (x509.CertificateBuilder().subject_name(cert_name("mlc test CA")).issuer_name(cert_name("mlc test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False),
                         critical=True)
          .add_extension(ca_ski, critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(cert_name("localhost")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .sign(ca_key, hashes.SHA256()))
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(key_password) if key_password else serialization.NoEncryption())
    paths = {"ca": out / "ca.pem", "cert": out / "server.pem", "key": out / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc))
    return paths


def wait_https(url: str, ca: Path, timeout: float = 60.0) -> None:
    verify = ssl.create_default_context(cafile=str(ca))
    wait_for(lambda: https_health(url, verify), timeout=timeout, what=f"{url} to answer")


def https_health(url: str, verify: ssl.SSLContext) -> bool:
    try:
        return httpx.get(url, timeout=1, verify=verify).status_code == 200
    except httpx.HTTPError:
        return False


class TlsControlPlane(ControlPlane):
    """The harness's control plane process, serving HTTPS with `pki`'s certificate."""

    def __init__(self, workdir: Path, pki: dict[str, Path], server: dict[str, Any]) -> None:
        super().__init__(workdir)
        self.ca = pki["ca"]
        self.verify = ssl.create_default_context(cafile=str(self.ca))
        self.url = self.url.replace("http://", "https://")
        cfg = yaml.safe_load(self.config.read_text(encoding="utf-8"))
        cfg["server"].update(server, tls={"cert_file": str(pki["cert"]), "key_file": str(pki["key"])})
        self.config.write_text(yaml.safe_dump(cfg), encoding="utf-8")

    def start(self) -> None:
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen([PY, "-m", "ml_connector.server.agents.serve", "-c", str(self.config)],
                                         stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **self.env_vars()})
        wait_https(self.url + "/health", self.ca)

    def env_vars(self) -> dict[str, str]:
        return dict(getattr(self, "env", CP_ENV))


class TlsWorld(World):
    """The SAP sandbox process and an HTTPS control plane (operators' API behind tokens); agents on demand."""

    def __init__(self, tmp: Path) -> None:
        super().__init__()
        self.tmp = tmp
        self.pki = make_pki(tmp / "pki")
        self.sandbox, self.sap = start_sandbox()
        # api_auth: token -- the operators' API needs a token even on loopback (as behind a proxy)
        self.cp = TlsControlPlane(tmp / "cp", self.pki, server={"api_auth": "token"})
        self.cp.start()
        self.db = Database(self.cp.db_url)

    def agent(self, name: str, **kw: Any) -> AgentProc:
        a = AgentProc(self.tmp / name, self.cp.url, self.sap, **kw)
        self.agents.append(a)
        return a


def set_agent_config(agent: AgentProc, **values: Any) -> None:
    cfg = yaml.safe_load(agent.config.read_text(encoding="utf-8"))
    agent.config.write_text(yaml.safe_dump({**cfg, **values}), encoding="utf-8")


class Trap:
    """A TCP listener that counts connections: set as the HTTP proxy of an agent process, it sees
    every request the agent sends, whatever host the URL names."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "http_proxy", "https_proxy",
                                                                         "all_proxy")}
        return {**env, "HTTP_PROXY": self.url, "HTTPS_PROXY": self.url, "ALL_PROXY": self.url}

    def close(self) -> None:
        self.sock.close()


def agent_cmd(agent: AgentProc, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), "agent", *args, "-c", str(agent.config)], capture_output=True, text=True,
                          timeout=60, env=env)


def cp_cli(cp: TlsControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), *args, "-c", str(cp.config)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "200"})
