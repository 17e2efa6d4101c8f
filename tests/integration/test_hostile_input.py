"""Hostile input against a real control-plane process (uvicorn, loopback): oversized bodies are
refused before they are read, and forwarded addresses do not choose what the audit records.
(issue 16, items 7 and 8)"""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select as sa_select

from ml_connector.agent import protocol as proto
from ml_connector.core.db import Database
from ml_connector.core.models import AuditRow
from tests.integration.test_agent_harness import ControlPlane

MB = 1024 * 1024
TOTAL = 50 * MB


@pytest.fixture()
def cp(tmp_path: Path) -> Iterator[ControlPlane]:
    plane = ControlPlane(tmp_path / "cp")
    plane.start()
    try:
        yield plane
    finally:
        plane.kill()


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _send_big(port: int, path: str, headers: dict[str, str], *, chunked: bool) -> tuple[int, int]:
    """POST a 50 MB body, streamed from one 64 KB buffer; (status, bytes sent when the answer came)."""
    s = socket.create_connection(("127.0.0.1", port))
    try:
        head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Content-Type: application/json",
                *(f"{k}: {v}" for k, v in headers.items()),
                "Transfer-Encoding: chunked" if chunked else f"Content-Length: {TOTAL}"]
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        piece = b"x" * 65536
        frame = f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece
        sent, answer = 0, b""
        s.setblocking(False)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            readable, writable, _ = select.select([s], [s] if sent < TOTAL else [], [], 1.0)
            if readable:
                answer = s.recv(65536)
                break
            if writable:
                try:
                    sent += s.send(frame)
                except BlockingIOError:
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    s.setblocking(True)
                    s.settimeout(5)
                    answer = s.recv(65536)
                    break
        assert answer.startswith(b"HTTP/1.1 "), answer[:200]
        return int(answer.split()[1]), sent
    finally:
        s.close()


def _pair(cp: ControlPlane) -> tuple[str, Any]:
    key = proto.generate_key()
    r = httpx.post(cp.url + "/api/agent/pair", json={"token": cp.token(), "public_key": proto.public_key_text(key)})
    assert r.status_code == 200, r.text
    return str(r.json()["agent_id"]), key


def test_oversized_bodies_are_refused_before_they_are_read(cp: ControlPlane) -> None:
    assert cp.proc is not None
    agent_id, key = _pair(cp)
    rss_before = _rss_kb(cp.proc.pid)
    cases = [
        # signed headers of a known agent, 50 MB declared: refused on the declared length
        ("/api/agent/results", proto.sign_headers(key, agent_id, "POST", "/api/agent/results", b"", now=time.time()),
         False, 413),
        # the same streamed without a length: refused once it passes the route's limit
        ("/api/agent/poll", proto.sign_headers(key, agent_id, "POST", "/api/agent/poll", b"", now=time.time()),
         True, 413),
        ("/api/agent/pair", {}, True, 413),
        ("/api/agent/pair", {}, False, 413),
        # no credentials at all, a streamed body: refused on the headers, nothing read
        ("/api/agent/events", {}, True, 401),
    ]
    for path, headers, chunked, status in cases:
        got, sent = _send_big(cp.port, path, headers, chunked=chunked)
        assert got == status, (path, chunked, got)
        # the answer came while most of the body was still unsent
        assert sent < TOTAL // 2, (path, chunked, sent)
    grown = (_rss_kb(cp.proc.pid) - rss_before) / 1024
    assert grown < 25, f"control plane memory grew by {grown:.0f} MB"
    # and it still serves
    assert httpx.get(cp.url + "/health").status_code == 200


def test_spoofed_forwarded_addresses_do_not_flood_the_audit(cp: ControlPlane) -> None:
    with httpx.Client(base_url=cp.url) as c:
        for i in range(1500):
            spoofed = {"X-Forwarded-For": f"198.51.{i // 250}.{i % 250}"}
            assert c.post("/api/agent/poll", content=b"{}", headers=spoofed).status_code == 401
            assert c.get("/api/flows", headers=spoofed).status_code == 401  # proxied: a token is needed
            # an unauthenticated caller choosing a new agent id per request
            assert c.post("/api/agent/poll", content=b"{}", headers={
                **spoofed, "X-MLC-Agent": f"agt_{i:016x}", "X-MLC-Timestamp": str(int(time.time())),
                "X-MLC-Nonce": "0" * 32, "X-MLC-Signature": "AAAA"}).status_code == 401
    db = Database(cp.db_url)
    try:
        with db.session() as s:
            rows = list(s.scalars(sa_select(AuditRow).where(AuditRow.event.in_(
                ["agent.auth.rejected", "api.auth.rejected"]))))
    finally:
        db.dispose()
    assert len(rows) <= 12, len(rows)
    clients = {r.detail["client"] for r in rows}
    assert clients == {"127.0.0.1"}, clients  # the real peer, never a spoofed address
    assert "198.51" not in json.dumps([r.detail for r in rows])


def test_startup_line_says_the_api_is_open_without_a_token(cp: ControlPlane) -> None:
    log = cp.log.read_text()
    assert f"control plane listening on {cp.url}; operators' API open WITHOUT a token" in log
    assert "requests with a proxy header need one" in log
