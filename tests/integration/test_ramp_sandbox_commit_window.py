"""Issue 16 item 15: the Ramp emulator commits a write before its simulated latency, so a client that
gives up (or dies) while waiting for the answer finds the write applied, as with the real service."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from ml_connector.core.servers import ServerHandle, serve_in_thread
from ml_connector.systems.ramp.sandbox.app import create_app
from ml_connector.systems.ramp.sandbox.state import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, RampSandbox

V = "/developer/v1/accounting/vendors"


@pytest.fixture
def sandbox() -> Iterator[tuple[RampSandbox, ServerHandle]]:
    st = RampSandbox()
    h = serve_in_thread(create_app(st), name="ramp-commit-window")
    try:
        yield st, h
    finally:
        h.stop()


def _token(h: ServerHandle) -> str:
    r = httpx.post(h.url + "/developer/v1/token", auth=(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET),
                   data={"grant_type": "client_credentials", "scope": "accounting:read accounting:write"})
    r.raise_for_status()
    return str(r.json()["access_token"])


def test_write_is_committed_before_the_latency(sandbox: tuple[RampSandbox, ServerHandle]) -> None:
    st, h = sandbox
    headers = {"Authorization": "Bearer " + _token(h)}
    httpx.post(h.url + "/_sandbox/faults", json={"latency": 2.0}).raise_for_status()
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(h.url + V, headers=headers, timeout=httpx.Timeout(5.0, read=0.5),
                   json={"vendors": [{"id": "V-COMMIT-1", "name": "Committed before the answer"}]})
    # The client gave up after 0.5 s, long before the 2 s answer: the vendor is there already.
    assert time.monotonic() - started < 1.5
    assert st.stats()["vendors"] == 1
    assert "V-COMMIT-1" in st.vendors.by_remote


def test_read_latency_still_comes_first(sandbox: tuple[RampSandbox, ServerHandle]) -> None:
    _st, h = sandbox
    headers = {"Authorization": "Bearer " + _token(h)}
    httpx.post(h.url + "/_sandbox/faults", json={"latency": 0.3}).raise_for_status()
    started = time.monotonic()
    r = httpx.get(h.url + V, headers=headers, timeout=5.0)
    assert r.status_code == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    r = httpx.post(h.url + V, headers=headers, timeout=5.0, json={"vendors": [{"id": "V-2", "name": "Two"}]})
    assert r.status_code < 300, r.text
    assert time.monotonic() - started >= 0.3  # the answer of a write is delayed too
