"""Scale-out: the caller of agent calls is not the process the agent polls (a worker of
`ml-connector run --no-server` beside `python -m ml_connector.server.agents.serve`). On Postgres
both learn of the other's changes by LISTEN/NOTIFY instead of waiting for a timer:

* this test's process queues calls and waits for their results (RemoteAgentChannel);
* the control plane is its own process, serving the agent's held poll;
* the agent is its own process; the SAP sandbox too.

No timing is measured: the test checks the mechanism (this process's listener received
the result notification of every call; the control plane's listener received its site's
notifications), and that terminating both listener connections loses no call, including
one that is running at SAP while they are down.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import select

from ml_connector.core.channel import ChannelRequest, ChannelResponse
from ml_connector.core.db import Database
from ml_connector.core.pgnotify import APP_NAME
from ml_connector.server.agents import wakeups
from ml_connector.server.agents.channel import RemoteAgentChannel
from ml_connector.server.agents.models import AgentCallRow
from tests.scaleout.conftest import PG
from tests.support import sap_faults, wait_for
from tests.support.scaleout import NotifySite, results_received

pytestmark = [pytest.mark.scaleout,
              pytest.mark.skipif(not PG, reason="MLC_TEST_PG_URL not set (make test starts Postgres)")]

SITE = "plant1"
N = 15


@pytest.fixture()
def site(tmp_path: Path, pg_database: str) -> Iterator[NotifySite]:
    s = NotifySite(tmp_path, pg_database)
    try:
        yield s
    finally:
        s.close()


def test_cross_process_calls_are_woken_by_notifications_and_survive_a_killed_listener(site: NotifySite) -> None:
    assert site.db is not None
    listener = wakeups.listener(site.db)
    assert listener is not None
    assert site.call("warm-up").ok  # starts this process's listener
    wait_for(lambda: listener.listening(wakeups.RESULT_CHANNEL), what="this process listening for results")
    wait_for(lambda: (d := site.dispatch()["listener"]) is not None and d["connected"]
             and wakeups.site_channel(SITE) in d["channels"], what="the control plane listening to its site")
    site_before = site.dispatch()["received"]["site"]

    ids = [f"seq-{i:02d}" for i in range(N)]
    for cid in ids:
        r = site.call(cid)
        assert r.ok, r.fault
    # Every result reached this process as a notification (received on the listener thread,
    # possibly just after the call returned), and the control plane received the site's
    # notifications of every queued call and of every result (budget freed).
    wait_for(lambda: set(ids) <= results_received(site), what="result notifications of every call")
    wait_for(lambda: site.dispatch()["received"]["site"] >= site_before + 2 * N,
             what="site notifications in the control plane")

    # Kill both listener connections while a call is running at SAP: its result is stored
    # while nobody listens (or just after a reconnect); it must still be delivered.
    sap_faults(site.sap, latency=1.0)
    out: dict[str, ChannelResponse] = {}
    slow = threading.Thread(target=lambda: out.update(r=site.call("slow-during-kill")))
    slow.start()

    def claimed() -> bool:
        assert site.db is not None
        with site.db.session() as s:
            state = s.scalars(select(AgentCallRow.state).where(AgentCallRow.id == "slow-during-kill")).first()
        return state == "claimed"

    wait_for(claimed, what="the slow call at the agent")
    connects_here, connects_cp = listener.connects, site.dispatch()["listener"]["connects"]
    assert site.terminate_listeners() == 2  # this process's and the control plane's
    after_kill = [f"after-kill-{i:02d}" for i in range(3)]
    sap_faults(site.sap, latency=0.0)
    for cid in after_kill:  # queued while the listeners are down or reconnecting
        assert site.call(cid).ok
    slow.join(90)
    assert not slow.is_alive() and out["r"].ok, out

    # Both listeners reconnect by themselves, and notifications flow again.
    wait_for(lambda: listener.connects > connects_here and listener.listening(wakeups.RESULT_CHANNEL),
             what="this process's listener back")
    wait_for(lambda: site.dispatch()["listener"]["connects"] > connects_cp
             and site.dispatch()["listener"]["connected"], what="the control plane's listener back")
    again = [f"again-{i:02d}" for i in range(5)]
    for cid in again:
        assert site.call(cid).ok
    wait_for(lambda: set(again) <= results_received(site), what="result notifications after the reconnect")
    with site.db.session() as s:
        rows = s.scalars(select(AgentCallRow).where(AgentCallRow.site == SITE)).all()
    assert {r.state for r in rows} == {"done"} and {r.attempts for r in rows} == {1}  # each call ran once
    assert len(rows) == 1 + N + 1 + len(after_kill) + len(again)


def test_a_result_stored_without_a_notification_still_reaches_the_caller(pg_database: str) -> None:
    """Notifications are never the only way: a result whose NOTIFY never came (written here by
    plain SQL, as if the notification were lost) is found by the caller's timer."""
    db = Database(pg_database)
    db.migrate()
    listener = wakeups.listener(db)
    assert listener is not None
    try:
        ch = RemoteAgentChannel(db, SITE, timeout=60, poll_interval=0.2)
        out: dict[str, ChannelResponse] = {}
        t = threading.Thread(target=lambda: out.update(r=ch.call(ChannelRequest(id="quiet", system="sap_ecc",
                                                                                function="RFC_PING"))))
        t.start()

        def queued() -> bool:
            with db.session() as s:
                return s.get(AgentCallRow, "quiet") is not None

        wait_for(lambda: queued() and listener.listening(wakeups.RESULT_CHANNEL), what="the call queued")
        with psycopg.connect(pg_database, autocommit=True) as conn:
            answer = ChannelResponse(id="quiet", ok=True, result={"n": 1}).model_dump_json()
            conn.execute("UPDATE mlc_agent_calls SET state = 'done', ok = true, response = %s, completed_at = 1 "
                         "WHERE id = 'quiet'", [answer])
        t.join(30)
        assert not t.is_alive() and out["r"].ok and out["r"].result == {"n": 1}
        assert "quiet" not in {p for c, p in listener.recent() if c == wakeups.RESULT_CHANNEL}  # no notification
    finally:
        listener.stop()
        db.dispose()


def test_listener_delivers_reconnects_after_termination_and_stops_when_idle(pg_database: str) -> None:
    from ml_connector.core.pgnotify import PgListener

    got: list[tuple[str, str]] = []
    reconnects: list[int] = []
    listener = PgListener(pg_database, on_notify=lambda c, p: got.append((c, p)),
                          on_reconnect=lambda: reconnects.append(1), idle_after=0.0, retry=(0.05, 0.5))

    def send(payload: str) -> None:
        with psycopg.connect(pg_database, autocommit=True) as conn:
            conn.execute("SELECT pg_notify('mlc_test_channel', %s)", [payload])

    with listener.hold():
        listener.listen("mlc_test_channel")
        wait_for(lambda: listener.listening("mlc_test_channel"), what="listening")
        send("one")
        wait_for(lambda: ("mlc_test_channel", "one") in got, what="the first notification")
        pid = listener.backend_pid
        with psycopg.connect(pg_database, autocommit=True) as conn:
            assert conn.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone() == (True,)
        wait_for(lambda: listener.connects == 2 and listener.listening("mlc_test_channel"), what="reconnected")
        assert listener.backend_pid != pid and listener.failures == 1 and len(reconnects) == 2
        send("two")
        wait_for(lambda: ("mlc_test_channel", "two") in got, what="a notification after the reconnect")
    # nobody holds it any more: the thread ends and closes its connection
    def connections() -> int:
        with psycopg.connect(pg_database, autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                               "AND application_name LIKE %s", [APP_NAME + "%"]).fetchone()
        return int(row[0]) if row else -1

    wait_for(lambda: not listener.stats()["connected"] and connections() == 0, what="the idle listener stopped")
