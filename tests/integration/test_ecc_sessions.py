"""SAP session reuse over loopback: the SOAP-RFC client logs on once and rides the ICF security session.

The emulator issues `SAP_SESSIONID_<SID>_<CLIENT>` after a Basic logon, accepts it instead of
credentials until it idles out or is ended (SM05), and counts Basic logons (`stats.logons`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from ml_connector.core import calls
from ml_connector.core.channel import InProcessChannel
from ml_connector.core.db import Database
from ml_connector.core.ratelimit import reset_budgets
from ml_connector.core.servers import ServerHandle, serve_in_thread
from ml_connector.systems.sap_ecc import _agent_handler
from ml_connector.systems.sap_ecc.client import SESSIONS, ChannelRfcCaller, SessionCache, SoapRfcClient
from ml_connector.systems.sap_ecc.sandbox.app import DEMO_PASSWORD, DEMO_USER, EccSandbox, create_app
from tests.support.databases import audit_rows

OTHER, OTHER_PASSWORD = "RFC_OTHER", "Other-5678"


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[EccSandbox, ServerHandle]]:
    state = EccSandbox(vendors=5, seed_logistics=False)
    state.add_user(OTHER, OTHER_PASSWORD)
    handle = serve_in_thread(create_app(state), name="ecc-sessions")
    try:
        yield state, handle
    finally:
        handle.stop()


@pytest.fixture()
def sap(server: tuple[EccSandbox, ServerHandle]) -> Iterator[tuple[EccSandbox, str]]:
    state, handle = server
    reset_budgets()
    state.stats.logons = state.stats.session_logons = state.stats.ticket_logons = state.stats.logon_failures = 0
    yield state, handle.url
    state.faults.reset()
    state.set_config(security_sessions=True, session_idle_timeout=1800.0, sso2_tickets=False)
    state.end_sessions()


def client(url: str, cache: SessionCache | None, user: str = DEMO_USER, password: str = DEMO_PASSWORD
           ) -> SoapRfcClient:
    return SoapRfcClient(url, "100", user, password, sessions=cache, calls_per_second=50, timeout=10.0,
                         sleep=lambda s: None)


def test_one_logon_for_many_calls(sap: tuple[EccSandbox, str]) -> None:
    state, url = sap
    c = client(url, SessionCache(idle_seconds=600))
    for _ in range(100):
        c.call("RFC_PING")
    assert state.stats.logons == 1 and c.logons == 1
    assert state.stats.session_logons == 99


def test_expired_session_logs_on_again_once_and_the_call_succeeds(sap: tuple[EccSandbox, str]) -> None:
    state, url = sap
    state.set_config(session_idle_timeout=0.2)
    c = client(url, SessionCache(idle_seconds=600))  # the client does not know SAP's shorter timeout
    c.call("RFC_PING")
    c.call("RFC_PING")
    time.sleep(0.3)
    assert c.call("RFC_SYSTEM_INFO")["RFCSI_EXPORT"]["RFCSYSID"].strip() == "ECD"
    assert state.stats.logons == 2 and state.stats.logon_failures == 1  # the refused session, once
    c.call("RFC_PING")
    assert state.stats.logons == 2


def test_a_run_counts_the_re_logon_after_an_expired_session_as_one_more_call(sap: tuple[EccSandbox, str],
                                                                           db: Database) -> None:
    state, url = sap
    state.set_config(session_idle_timeout=0.2)
    c = client(url, SessionCache(idle_seconds=600))
    calls.drain()  # counts an earlier test left waiting in this process are not this one's
    before = state.stats.requests
    with calls.counting(db, "run-1", "f", "s", "page"):
        c.call("RFC_PING")
        time.sleep(0.3)
        c.call("RFC_PING")  # the session is refused (401) and the call logs on again: two requests
    assert state.stats.logon_failures == 1
    host = url.split("://", 1)[1].rstrip("/")
    assert [r.detail["calls"] for r in audit_rows(db, calls.EVENT)] == [{host: state.stats.requests - before}]
    assert state.stats.requests - before == 3


def test_session_ended_in_sap_logs_on_again(sap: tuple[EccSandbox, str]) -> None:
    state, url = sap
    c = client(url, SessionCache(idle_seconds=600))
    c.call("RFC_PING")
    assert state.end_sessions(DEMO_USER) == 1  # SM05
    c.call("RFC_PING")
    c.call("RFC_PING")
    assert state.stats.logons == 2 and c.logons == 2


def test_two_users_never_share_a_session(sap: tuple[EccSandbox, str]) -> None:
    state, url = sap
    cache = SessionCache(idle_seconds=600)
    a, b, a2 = client(url, cache), client(url, cache, OTHER, OTHER_PASSWORD), client(url, cache)
    for _ in range(5):
        for c in (a, b, a2):
            c.call("RFC_PING")
    assert (a.logons, b.logons, a2.logons) == (1, 1, 0)  # a2 is the same SAP user as a: it shares
    tokens = {c.user: c.cookies["SAP_SESSIONID_ECD_100"] for c in (a, b)}
    assert tokens[DEMO_USER] != tokens[OTHER]
    assert state.session_user(tokens[DEMO_USER], "100") == DEMO_USER
    assert state.session_user(tokens[OTHER], "100") == OTHER
    assert state.session_user(tokens[DEMO_USER], "200") is None  # bound to its client too


def test_without_security_sessions_every_call_logs_on(sap: tuple[EccSandbox, str]) -> None:
    state, url = sap
    state.set_config(security_sessions=False)
    c = client(url, SessionCache(idle_seconds=600))
    for _ in range(5):
        c.call("RFC_PING")
    assert state.stats.logons == 5 and state.stats.session_logons == 0
    assert "SAP_SESSIONID_ECD_100" not in c.cookies


def test_through_the_agent_the_session_lives_on_the_agent_side(sap: tuple[EccSandbox, str]) -> None:
    state, url = sap
    SESSIONS.clear()
    system: Any = SimpleNamespace(transport="soap_rfc", base_url=url, client="100", user=DEMO_USER,
                                  language=None, calls_per_second=50, max_concurrent=4, timeout=10.0,
                                  tls_verify=True)
    channel = InProcessChannel()
    channel.register("sap", _agent_handler(system, DEMO_PASSWORD))
    caller = ChannelRfcCaller(channel, "sap")
    for _ in range(40):
        caller.call("RFC_PING")
    state.end_sessions()
    caller.call("RFC_PING")
    assert state.stats.logons == 2 and state.stats.session_logons == 39


def test_a_logon_ticket_outlives_the_session_and_saves_the_logon(sap: tuple[EccSandbox, str]) -> None:
    state, url = sap
    state.set_config(sso2_tickets=True, session_idle_timeout=0.2)
    c = client(url, SessionCache(idle_seconds=600))
    c.call("RFC_PING")
    first = c.cookies["SAP_SESSIONID_ECD_100"]
    assert c.cookies["MYSAPSSO2"]
    time.sleep(0.3)  # the session timed out in SAP; the ticket is still valid
    c.call("RFC_PING")
    c.call("RFC_PING")
    assert (state.stats.logons, state.stats.ticket_logons, state.stats.session_logons) == (1, 1, 1)
    assert c.cookies["SAP_SESSIONID_ECD_100"] != first  # the ticket opened a new session, now kept
