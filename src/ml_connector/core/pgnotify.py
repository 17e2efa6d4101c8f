"""One Postgres LISTEN connection per process and database, shared by every waiter.

Processes that share a Postgres database learn of each other's changes through
NOTIFY (sent in the transaction that makes the change, so it is delivered on commit
and never for a rolled-back change). A thread holds the LISTEN connection and hands
each notification to a callback; waiters never open connections of their own.

Notifications are a shortcut, not the source of truth: while the connection is down
(terminated, network cut, server restart) nothing is delivered, so waiters keep their
timer and re-read the database. The thread reconnects with backoff and calls
`on_reconnect` once listening again: anything committed during the gap was not
notified, so every waiter should look again.

The thread runs while someone uses it (`hold()`), and stops once nobody has for
`idle_after` seconds, or at once when it cannot connect and nobody is waiting (a
dropped test database does not leave a thread retrying forever).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

#: Prefix of the listener connection's application_name (pg_stat_activity shows who it is).
APP_NAME = "mlc-listener"


class PgListener:
    def __init__(self, conninfo: str, *, on_notify: Callable[[str, str], None],
                 on_reconnect: Callable[[], None] | None = None, label: str = "",
                 tick: float = 0.25, idle_after: float = 60.0, retry: tuple[float, float] = (0.1, 5.0),
                 liveness_every: float = 30.0) -> None:
        """`tick`: how often the thread looks up from waiting (new channels, stop, idle);
        `liveness_every`: a silent connection is checked with `SELECT 1` this often (a
        half-open TCP connection delivers nothing and raises nothing)."""
        self._conninfo = conninfo
        self._on_notify = on_notify
        self._on_reconnect = on_reconnect
        self.label = label  # for logs: host/database, never the password
        self.tick = tick
        self.idle_after = idle_after
        self.retry = retry
        self.liveness_every = liveness_every
        self._lock = threading.Lock()
        self._channels: set[str] = set()
        self._listening: frozenset[str] = frozenset()
        self._users = 0
        self._last_used = time.monotonic()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.backend_pid: int | None = None
        self.connects = 0
        self.failures = 0
        self.notifications = 0
        self._recent: deque[tuple[str, str]] = deque(maxlen=2000)

    # ------------------------------------------------------------------ use

    def listen(self, channel: str) -> None:
        """Add a channel (picked up within `tick`); starts the thread if needed."""
        with self._lock:
            self._channels.add(channel)
            self._ensure_running()

    def listening(self, channel: str) -> bool:
        """Whether notifications on `channel` are being received now."""
        return self.backend_pid is not None and channel in self._listening

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Keep the listener running while inside (a waiter)."""
        with self._lock:
            self._users += 1
            self._ensure_running()
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                self._last_used = time.monotonic()

    def recent(self) -> list[tuple[str, str]]:
        """The latest notifications received (channel, payload), oldest first (tests, diagnostics)."""
        with self._lock:
            return list(self._recent)

    def stats(self) -> dict[str, Any]:
        return {"connected": self.backend_pid is not None, "backend_pid": self.backend_pid,
                "connects": self.connects, "failures": self.failures, "notifications": self.notifications,
                "channels": sorted(self._listening)}

    def stop(self, wait: float = 5.0) -> None:
        """Stop for good (closes the connection, within `tick`; waits up to `wait` seconds)."""
        self._stop.set()
        with self._lock:
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(wait)

    # ------------------------------------------------------------------ thread

    def _ensure_running(self) -> None:  # under self._lock
        if self._thread is None and not self._stop.is_set():
            self._last_used = time.monotonic()
            self._thread = threading.Thread(target=self._run, name=f"{APP_NAME}", daemon=True)
            self._thread.start()

    def _should_exit(self, connected: bool) -> bool:
        """Whether the thread may end now (nobody needs it); if so it is marked gone atomically."""
        with self._lock:
            idle = self._users == 0 and (not connected or time.monotonic() - self._last_used >= self.idle_after)
            if self._stop.is_set() or idle:
                self._thread = None
                return True
            return False

    def _run(self) -> None:
        delay = self.retry[0]
        outage_logged = False
        while True:
            connects = self.connects
            try:
                self._serve()
                return  # stopped or idle
            except (psycopg.Error, OSError) as exc:
                self.backend_pid, self._listening = None, frozenset()
                if self._stop.is_set():  # the connection went away while we were stopping
                    with self._lock:
                        self._thread = None
                    return
                self.failures += 1
                if self.connects > connects:  # it was up and dropped: a new outage
                    delay, outage_logged = self.retry[0], False
                if not outage_logged:
                    # Once per outage; waiters fall back to their timers meanwhile.
                    log.warning("Postgres notifications from %s interrupted (%s); waiters poll the database "
                                "until the listener reconnects", self.label, type(exc).__name__)
                    outage_logged = True
            if self._should_exit(connected=False) or self._stop.wait(delay):
                with self._lock:
                    self._thread = None
                return
            delay = min(delay * 2, self.retry[1])

    def _serve(self) -> None:
        with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=10,
                             application_name=f"{APP_NAME} pid={os.getpid()}",
                             keepalives=1, keepalives_idle=30, keepalives_interval=10, keepalives_count=3) as conn:
            listening: set[str] = set()
            self._listen_new(conn, listening)
            self.backend_pid = conn.info.backend_pid
            self.connects += 1
            if self.connects > 1:
                log.warning("Postgres notifications from %s restored", self.label)
            if self._on_reconnect is not None:
                self._on_reconnect()  # changes during the gap were not notified: waiters look again
            last_heard = time.monotonic()
            while not self._should_exit(connected=True):
                self._listen_new(conn, listening)
                for n in conn.notifies(timeout=self.tick):
                    last_heard = time.monotonic()
                    self.notifications += 1
                    with self._lock:
                        self._recent.append((n.channel, n.payload))
                    try:
                        self._on_notify(n.channel, n.payload)
                    except Exception:
                        log.exception("notification handler failed")
                if time.monotonic() - last_heard >= self.liveness_every:
                    conn.execute("SELECT 1")
                    last_heard = time.monotonic()
            self.backend_pid, self._listening = None, frozenset()

    def _listen_new(self, conn: psycopg.Connection[Any], listening: set[str]) -> None:
        with self._lock:
            new = sorted(self._channels - listening)
        for channel in new:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            listening.add(channel)
        if new:
            self._listening = frozenset(listening)
