"""Wake-ups of held agent polls and of callers waiting for a call's result.

In one process (SQLite, or the API and the callers together) the change itself wakes
the waiters: `SIGNAL` (held polls, any queue change) and `RESULTS` (the callers of one
call id). Across processes on Postgres the transaction that queues a call or stores a
result also sends a NOTIFY:

* `site_channel(site)`, payload the call id: a call was queued, put back in the queue, or
  answered (an answer frees pacing budget, server/agents/pacing.py, so held polls claim again);
* `RESULT_CHANNEL`, payload the call id: the call is done.

Each process has one listener connection per database (core/pgnotify.py) that turns
those into the same in-process wake-ups. Waiters keep their timers (MLC_AGENT_DB_POLL
for polls, the channel's poll interval for callers): a missed notification costs what
waiting cost before notifications existed, never a call.

MLC_AGENT_NOTIFY=0 turns notifications off (timers only), e.g. behind a connection pooler
in transaction mode, where LISTEN does not work; the bench compares both.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ml_connector.core.db import Database, dbos_url
from ml_connector.core.pgnotify import PgListener

RESULT_CHANNEL = "mlc_agent_results"
SITE_CHANNEL_PREFIX = "mlc_agent_site_"


def site_channel(site: str) -> str:
    # Hashed: a site name may hold characters or a length (63 bytes) a channel name cannot.
    return SITE_CHANNEL_PREFIX + hashlib.sha256(site.encode("utf-8")).hexdigest()[:16]


class Signal:
    """A version counter with a condition: bumped on every queue change in this process."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.version = 0

    def notify(self) -> None:
        with self._cond:
            self.version += 1
            self._cond.notify_all()

    def wait(self, seen: int, timeout: float) -> int:
        with self._cond:
            if self.version == seen:
                self._cond.wait(timeout)
            return self.version


class ResultWaiters:
    """Events of the callers waiting for a call id (several callers may wait for one id)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[str, list[threading.Event]] = {}

    @contextmanager
    def waiting(self, call_id: str) -> Iterator[threading.Event]:
        ev = threading.Event()
        with self._lock:
            self._events.setdefault(call_id, []).append(ev)
        try:
            yield ev
        finally:
            with self._lock:
                evs = self._events.get(call_id, [])
                if ev in evs:
                    evs.remove(ev)
                if not evs:
                    self._events.pop(call_id, None)

    def fire(self, call_id: str) -> bool:
        with self._lock:
            evs = list(self._events.get(call_id, ()))
        for ev in evs:
            ev.set()
        return bool(evs)

    def fire_all(self) -> None:
        with self._lock:
            evs = [ev for group in self._events.values() for ev in group]
        for ev in evs:
            ev.set()


SIGNAL = Signal()
RESULTS = ResultWaiters()

_listeners: dict[str, PgListener] = {}
_listeners_lock = threading.Lock()


#: Notifications received by this process's listeners, by kind (tests, diagnostics).
COUNTS = {"result": 0, "site": 0}


def _on_notify(channel: str, payload: str) -> None:  # on the listener thread
    if channel == RESULT_CHANNEL:
        COUNTS["result"] += 1
        RESULTS.fire(payload)
    else:
        COUNTS["site"] += 1
        SIGNAL.notify()


def _on_reconnect() -> None:
    SIGNAL.notify()
    RESULTS.fire_all()


def enabled(db: Database | Session) -> bool:
    """Whether changes are notified across processes: Postgres, unless MLC_AGENT_NOTIFY=0."""
    dialect = db.dialect if isinstance(db, Database) else db.get_bind().dialect.name
    return dialect == "postgresql" and os.environ.get("MLC_AGENT_NOTIFY", "1").strip() != "0"


def listener(db: Database) -> PgListener | None:
    """This process's listener for `db` (None on SQLite, one process per database there, or
    with notifications turned off)."""
    if not enabled(db):
        return None
    url = db.engine.url
    key = url.render_as_string(hide_password=False)
    with _listeners_lock:
        found = _listeners.get(key)
        if found is None:
            found = _listeners[key] = PgListener(
                dbos_url(key), on_notify=_on_notify, on_reconnect=_on_reconnect,
                label=f"{url.host}:{url.port or 5432}/{url.database}")
        return found


@contextmanager
def result_wait(db: Database, call_id: str) -> Iterator[tuple[threading.Event, bool]]:
    """Wait for `call_id`'s result: the event, and whether a notification will set it
    (False: in this process only, or the listener is not up)."""
    pg = listener(db)
    if pg is None:
        with RESULTS.waiting(call_id) as ev:
            yield ev, False
        return
    pg.listen(RESULT_CHANNEL)
    with pg.hold(), RESULTS.waiting(call_id) as ev:
        yield ev, pg.listening(RESULT_CHANNEL)


@contextmanager
def site_watch(db: Database, site: str) -> Iterator[PgListener | None]:
    """While inside, notifications of `site`'s queue wake SIGNAL waiters of this process."""
    pg = listener(db)
    if pg is None:
        yield None
        return
    pg.listen(site_channel(site))
    with pg.hold():
        yield pg


def notify_queued(s: Session, site: str, call_id: str) -> None:
    """In the transaction that queues `call_id` (or frees budget of `site`): held polls of the
    site in other processes are notified on commit."""
    if enabled(s):
        s.execute(select(func.pg_notify(site_channel(site), call_id)))


def notify_done(s: Session, site: str, call_id: str) -> None:
    """In the transaction that completes `call_id`: its waiting callers and the site's held
    polls (the call no longer counts against the budget in flight) are notified on commit."""
    if enabled(s):
        s.execute(select(func.pg_notify(RESULT_CHANNEL, call_id), func.pg_notify(site_channel(site), call_id)))


def stats(db: Database) -> dict[str, Any]:
    """The listener's state and counters (`GET /api/agents/dispatch`)."""
    pg = listener(db)
    if pg is None:
        return {"notifications": "in-process", "listener": None}
    return {"notifications": "postgres", "listener": pg.stats(),
            "received": {"result": COUNTS["result"], "site": COUNTS["site"]}}
