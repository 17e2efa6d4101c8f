"""Separate OS processes for the remote agent tests: control plane, agents, a lossy relay between
them, and the world (SAP sandbox process, control plane, agents) a test module builds and tears down."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.processes import BIN, PY, free_port
from tests.support.sandboxes import sap_stats
from tests.support.waiting import wait_http

CP_ENV = {"MLC_AGENT_LEASE": "8", "MLC_AGENT_OFFLINE_AFTER": "3", "MLC_AGENT_SWEEP": "0.5",
          "MLC_AGENT_DB_POLL": "0.05", "MLC_AGENT_HOLD_MAX": "2"}


class ControlPlane:
    def __init__(self, workdir: Path, site: str = "plant1", host: str = "127.0.0.1",
                 env: dict[str, str] | None = None, *, connections: dict[str, Any] | None = None,
                 database_url: str | None = None) -> None:
        """`connections`: the control plane's connections (their limits pace the agents' calls);
        `database_url`: e.g. a Postgres database shared with other control-plane processes."""
        self.env = {**CP_ENV, **(env or {})}
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://{host}:{self.port}"
        self.config = self.dir / "ml-connector.yaml"
        engine: dict[str, Any] = {"data_dir": "./data", "agent": "remote", "agent_site": site}
        if database_url:
            engine["database_url"] = database_url
        self.config.write_text(yaml.safe_dump({
            "engine": engine, "server": {"host": host, "port": self.port},
            **({"connections": connections} if connections else {})}), encoding="utf-8")
        self.db_url = database_url or f"sqlite:///{self.dir / 'data' / 'ml-connector.sqlite'}"
        self.log = self.dir / "cp.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen([PY, "-m", "ml_connector.server.agents.serve", "-c", str(self.config)],
                                         stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **self.env})
        wait_http(self.url + "/health")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    def cli(self, *args: str) -> str:
        out = subprocess.run([str(BIN), *args, "-c", str(self.config)], capture_output=True, text=True, timeout=60,
                             env={**os.environ, **self.env})
        assert out.returncode == 0, out.stderr
        return out.stdout

    def token(self, site: str = "plant1") -> str:
        return self.cli("agents", "issue-token", "--site", site, "--ttl", "5m").strip().splitlines()[-1]


class DropProxy:
    """An HTTP relay between agents and the control plane that can lose answers in transit.

    `drop_poll_answers(n)`: the next n poll answers that carry calls are swallowed after the
    control plane has sent them (its claim is committed); the agent's connection is closed
    without a response, as when a NAT or load balancer drops it."""

    def __init__(self, target: str, host: str = "127.0.0.1") -> None:
        self.target = target
        self.port = free_port()
        self.url = f"http://{host}:{self.port}"
        self.dropped: list[list[str]] = []
        self._to_drop = 0
        # While set, result posts are answered 503 (the control plane unreachable for them) and
        # counted; every other request is relayed.
        self.refuse_results = False
        self.refused_results = 0
        self._lock = threading.Lock()
        self._http = httpx.Client(base_url=target, timeout=120)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/api/agent/results" and proxy.refuse_results:
                    with proxy._lock:
                        proxy.refused_results += 1
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "content-length", "connection")}
                resp = proxy._http.request(self.command, self.path, content=body, headers=headers)
                if self.path == "/api/agent/poll" and resp.status_code == 200 and proxy._take(resp):
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_response(resp.status_code)
                self.send_header("Content-Type", resp.headers.get("content-type", "application/json"))
                self.send_header("Content-Length", str(len(resp.content)))
                self.end_headers()
                self.wfile.write(resp.content)

            do_GET = do_POST = _relay  # noqa: N815 (http.server naming)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a relay cut short (a dropped answer, or close() mid-request) is expected here

        self._server = Server((host, self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def drop_poll_answers(self, n: int) -> None:
        with self._lock:
            self._to_drop = n

    def _take(self, resp: httpx.Response) -> bool:
        ids = [str(e["call"]["id"]) for e in resp.json().get("calls") or []]
        with self._lock:
            if not ids or self._to_drop <= 0:
                return False
            self._to_drop -= 1
            self.dropped.append(ids)
            return True

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._http.close()


class AgentProc:
    def __init__(self, workdir: Path, cp_url: str, sap: dict[str, Any], *, hold: str = "1s",
                 extra_functions: list[str] | None = None, aliases: tuple[str, ...] = ()) -> None:
        """`aliases`: more agent system names for the same SAP sandbox (same settings as sap_ecc)."""
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = self.dir / "agent.yaml"
        system = {
            "type": "sap_ecc", "base_url": sap["base_url"], "client": sap["client"], "user": sap["user"],
            "password_secret": "sap_pw",
            "allow": {"functions": ["RFC_PING", "RFC_SYSTEM_INFO", "STFC_CONNECTION", "RFC_READ_TABLE",
                                    *(extra_functions or [])],
                      "tables": ["LFA1", "LFB1", "BKPF"]}}
        self.config.write_text(yaml.safe_dump({
            "control_plane": cp_url, "site": "plant1", "data_dir": "./data",
            "poll": {"hold": hold, "backoff_scale": 0.02, "max_concurrent": 4, "heartbeat": "0.5s",
                     "request_timeout": "5s"},
            "systems": {name: system for name in ("sap_ecc", *aliases)}}), encoding="utf-8")
        self.log = self.dir / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.agent_id = ""

    def cli(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([str(BIN), "agent", *args, "-c", str(self.config)], capture_output=True, text=True,
                             input=stdin, timeout=60)
        if check:
            assert out.returncode == 0, out.stderr
        return out

    def setup(self, token: str, cp_url: str, password: str) -> None:
        self.cli("secrets", "set", "sap_pw", "--stdin", stdin=password + "\n")
        out = self.cli("pair", "--token", token, "--control-plane", cp_url)
        self.agent_id = json.loads(out.stdout.strip().splitlines()[-1])["agent_id"]

    def start(self, prefix: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen([*(prefix or []), str(BIN), "agent", "-c", str(self.config)],
                                         stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def audit(self) -> list[dict[str, Any]]:
        p = self.dir / "data" / "agent-audit.jsonl"
        return [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []


class World:
    """What an agent test's world holds: the SAP sandbox process, a control plane, its database,
    the agents (and a proxy between them, if any). Subclasses build them; this tears them down."""

    sandbox: subprocess.Popen[str]
    sap: dict[str, Any]
    cp: ControlPlane
    db: Any  # ml_connector.core.db.Database

    def __init__(self) -> None:
        self.agents: list[AgentProc] = []
        self.proxy: DropProxy | None = None

    def close(self) -> None:
        for a in self.agents:
            a.kill()
        if self.proxy is not None:
            self.proxy.close()
        self.cp.kill()
        self.sandbox.send_signal(signal.SIGKILL)
        self.sandbox.wait(10)
        self.db.dispose()

    def executed(self, fm: str = "STFC_CONNECTION") -> int:
        """How many times the SAP sandbox ran `fm`."""
        return int(sap_stats(self.sap)["calls"].get(fm, 0))

    def audit(self, event: str) -> list[Any]:
        """The control plane's audit rows of `event`, oldest first."""
        from sqlalchemy import select

        from ml_connector.core.models import AuditRow

        with self.db.session() as s:
            return list(s.scalars(select(AuditRow).where(AuditRow.event == event).order_by(AuditRow.id)))
