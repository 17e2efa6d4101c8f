"""Rate budgets: a rolling-window limiter and a concurrency cap, both thread-safe.

A budget is keyed by (provider, credential or egress IP); callers share one
instance per key through `budget()`, so every client in the process that talks
to the same API from the same egress draws from the same window.

With a Postgres database several worker processes (on several hosts) send
through one egress, so an in-process window would let N processes send N times
the limit. `budgets_for(db)` then hands out `PgRollingWindowLimiter` and
`PgConcurrencyCap`, which keep the window and the cap in the database and count
on the database's clock. With SQLite only one worker process runs, and the
in-process budgets are used.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import text

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from ml_connector.core.db import Database

log = logging.getLogger(__name__)


class WindowLimiter(Protocol):
    """What callers use of a rolling-window limiter (in-process or shared through the database)."""

    limit: int
    period: float

    def reserve(self) -> float: ...

    def acquire(self) -> float: ...

    def penalize(self, seconds: float) -> None: ...

    def in_window(self) -> int: ...


class SlotCap(Protocol):
    """What callers use of a concurrency cap."""

    limit: int

    def slot(self) -> AbstractContextManager[None]: ...


def wait_for_slot(reserve: Callable[[], float], sleep: Callable[[float], None]) -> float:
    """Call `reserve` until it grants a slot (returns 0), sleeping the waits it names; the total wait."""
    waited = 0.0
    while True:
        delay = reserve()
        if delay <= 0:
            return waited
        sleep(delay)
        waited += delay


class RollingWindowLimiter:
    """At most `limit` acquisitions in any rolling window of `period` seconds.

    Proactive pacing: `acquire()` blocks until a slot is free instead of letting
    the server answer 429. `limit <= 0` disables the limiter.
    """

    def __init__(
        self,
        limit: int,
        period: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limit = limit
        self.period = period
        self._clock = clock
        self._sleep = sleep
        self._stamps: deque[float] = deque()
        self._lock = threading.Lock()
        self._penalty_until = 0.0

    def _prune(self, now: float) -> None:
        edge = now - self.period
        while self._stamps and self._stamps[0] <= edge:
            self._stamps.popleft()

    def reserve(self) -> float:
        """Take a slot if one is free now; otherwise return how long to wait."""
        if self.limit <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            if now < self._penalty_until:
                return self._penalty_until - now
            self._prune(now)
            if len(self._stamps) < self.limit:
                self._stamps.append(now)
                return 0.0
            return max(self._stamps[0] + self.period - now, 0.001)

    def acquire(self) -> float:
        """Block until a slot is taken; return the seconds spent waiting."""
        return wait_for_slot(self.reserve, self._sleep)

    def penalize(self, seconds: float) -> None:
        """After a 429, hold every caller back for `seconds` (server-imposed pause)."""
        with self._lock:
            self._penalty_until = max(self._penalty_until, self._clock() + seconds)

    def in_window(self) -> int:
        with self._lock:
            self._prune(self._clock())
            return len(self._stamps)


class ConcurrencyCap:
    """A cap on calls in flight at once (e.g. SAP dialog work processes)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._sem = threading.BoundedSemaphore(limit) if limit > 0 else None

    @contextmanager
    def slot(self) -> Iterator[None]:
        if self._sem is None:
            yield
            return
        self._sem.acquire()
        try:
            yield
        finally:
            self._sem.release()


_budgets: dict[tuple[str, str], RollingWindowLimiter] = {}
_caps: dict[tuple[str, str], ConcurrencyCap] = {}
_budgets_lock = threading.Lock()


def budget(provider: str, key: str, limit: int, period: float) -> RollingWindowLimiter:
    """The process-wide limiter for (provider, credential or egress IP)."""
    with _budgets_lock:
        lim = _budgets.get((provider, key))
        if lim is None or lim.limit != limit or lim.period != period:
            lim = RollingWindowLimiter(limit, period)
            _budgets[(provider, key)] = lim
        return lim


def concurrency_cap(provider: str, key: str, limit: int) -> ConcurrencyCap:
    """The process-wide concurrency cap for (provider, key)."""
    with _budgets_lock:
        cap = _caps.get((provider, key))
        if cap is None or cap.limit != limit:
            cap = ConcurrencyCap(limit)
            _caps[(provider, key)] = cap
        return cap


def usage(budgets: Budgets | None = None) -> list[tuple[str, str, int, int]]:
    """(provider, key, calls in the current window, limit) of every rate budget this process
    uses (those of `budgets` when it is shared through the database), for alerts and metrics."""
    if isinstance(budgets, DatabaseBudgets):
        # Every budget any process of the database uses (its limit recorded in mlc_rate_budgets), not
        # only those this process has called through: the console and the alert sweep see the workers'.
        with budgets._lock:
            mine = {(p, k): lim for (p, k), lim in budgets._windows.items()}
        found = shared_usage(budgets.engine)
        seen = {(p, k) for p, k, _, _ in found}
        return found + [(p, k, lim.in_window(), lim.limit) for (p, k), lim in mine.items() if (p, k) not in seen]
    with _budgets_lock:
        local = list(_budgets.items())
    return [(p, k, lim.in_window(), lim.limit) for (p, k), lim in local]


def reset_budgets() -> None:
    with _budgets_lock:
        _budgets.clear()
        _caps.clear()


# ---- budgets shared by every process of one Postgres database ---------------------------

#: Advisory-lock key spaces (the two-int4 form; the one-bigint form, used by the migration
#: lock, is a separate space): windows serialize on (WINDOW_LOCKS, hashtext(key)), cap slots
#: are held as (CAP_LOCKS, hashtext(key#n)). A hash collision only makes two budgets wait
#: for each other, never lets one exceed its limit.
WINDOW_LOCKS = 0x6D6C6331  # "mlc1"
CAP_LOCKS = 0x6D6C6332  # "mlc2"

_PRUNE_AND_COUNT = text("""
WITH now AS MATERIALIZED (SELECT clock_timestamp() AS t),
pruned AS (DELETE FROM mlc_rate_grants g USING now WHERE g.budget = :budget AND g.until <= now.t)
SELECT now.t,
       (SELECT hold_until FROM mlc_rate_holds WHERE budget = :budget),
       (SELECT count(*) FROM mlc_rate_grants g WHERE g.budget = :budget AND g.until > now.t),
       (SELECT min(g.until) FROM mlc_rate_grants g WHERE g.budget = :budget AND g.until > now.t)
FROM now
""")
_GRANT = text("INSERT INTO mlc_rate_grants (budget, until) "
              "VALUES (:budget, CAST(:now AS timestamptz) + make_interval(secs => :period))")
_HOLD = text("""
INSERT INTO mlc_rate_holds (budget, hold_until)
VALUES (:budget, clock_timestamp() + make_interval(secs => :seconds))
ON CONFLICT (budget) DO UPDATE SET hold_until = GREATEST(mlc_rate_holds.hold_until, EXCLUDED.hold_until)
""")
_IN_WINDOW = text("SELECT count(*) FROM mlc_rate_grants WHERE budget = :budget AND until > clock_timestamp()")
# LIMIT 1 stops the scan at the first slot whose lock was free, so at most one lock is taken.
_TRY_SLOT = text("""
SELECT n FROM generate_series(0, :limit - 1) AS n
WHERE pg_try_advisory_lock(:ns, hashtext(:budget || '#' || n::text))
LIMIT 1
""")
_FREE_SLOT = text("SELECT pg_advisory_unlock(:ns, hashtext(:budget || '#' || CAST(:n AS int)::text))")


class PgRollingWindowLimiter:
    """`RollingWindowLimiter` kept in Postgres: at most `limit` grants in any rolling window
    of `period` seconds, across every process of the database.

    A grant is a row of `mlc_rate_grants` that counts until `until` (grant time + period).
    Each `reserve()` is one short transaction serialized per budget by an advisory lock:
    prune the expired grants, count, grant if below the limit. Times are the database's
    `clock_timestamp()`, so hosts with skewed clocks agree. A 429 penalty is a shared
    `hold_until` (`mlc_rate_holds`). One grant per call, no local batches: a batch granted
    ahead would have to stay counted for its whole lease plus the period, wasting budget
    when unused, and one small transaction is cheap beside the HTTP call it gates.
    """

    def __init__(self, engine: Engine, budget: str, limit: int, period: float, *,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError(f"a shared rate budget needs Postgres, not {engine.dialect.name}")
        self.engine = engine
        self.budget = budget
        self.limit = limit
        self.period = period
        self._sleep = sleep
        # One waiting thread per process polls the database; the others queue behind it here.
        self._turn = threading.Lock()

    def reserve(self) -> float:
        """Take a slot if one is free now; otherwise return how long to wait."""
        if self.limit <= 0:
            return 0.0
        args = {"budget": self.budget}
        with self.engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:ns, hashtext(:budget))"),
                         {"ns": WINDOW_LOCKS, **args})
            now, hold, live, first = conn.execute(_PRUNE_AND_COUNT, args).one()
            if hold is not None and hold > now:
                return float((hold - now).total_seconds())
            if live < self.limit:
                conn.execute(_GRANT, {"now": now, "period": float(self.period), **args})
                return 0.0
            return max(float((first - now).total_seconds()), 0.001)

    def acquire(self) -> float:
        """Block until a slot is taken; return the seconds spent waiting."""
        with self._turn:
            return wait_for_slot(self.reserve, self._sleep)

    def penalize(self, seconds: float) -> None:
        """After a 429, hold every caller of every process back for `seconds`."""
        with self.engine.begin() as conn:
            conn.execute(_HOLD, {"budget": self.budget, "seconds": float(seconds)})

    def in_window(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(_IN_WINDOW, {"budget": self.budget}).scalar_one())


class PgConcurrencyCap:
    """A concurrency cap across every process of the database: a call holds one of `limit`
    session advisory locks (CAP_LOCKS, key#n) for its duration. A crashed process's
    locks die with its connection, so no slot is ever leaked."""

    def __init__(self, engine: Engine, budget: str, limit: int, *, poll: float = 0.02,
                 poll_max: float = 0.25, sleep: Callable[[float], None] = time.sleep) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError(f"a shared concurrency cap needs Postgres, not {engine.dialect.name}")
        self.engine = engine
        self.budget = budget
        self.limit = limit
        self._poll, self._poll_max = poll, poll_max
        self._sleep = sleep
        # At most `limit` threads of this process hold a connection and poll for a slot.
        self._local = ConcurrencyCap(limit)

    @contextmanager
    def slot(self) -> Iterator[None]:
        if self.limit <= 0:
            yield
            return
        args = {"ns": CAP_LOCKS, "budget": self.budget}
        with self._local.slot(), \
                self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            delay = self._poll
            while True:
                n = conn.execute(_TRY_SLOT, {"limit": self.limit, **args}).scalar()
                if n is not None:
                    break
                self._sleep(delay)
                delay = min(delay * 2, self._poll_max)
            try:
                yield
            finally:
                try:
                    conn.execute(_FREE_SLOT, {"n": n, **args})
                except Exception:
                    # The lock must not go back to the pool with the connection: closing
                    # the session releases it.
                    conn.invalidate()
                    raise


class Budgets:
    """Where rate budgets live: this process (the default; SQLite runs one worker process)."""

    shared = False

    def window(self, provider: str, key: str, limit: int, period: float) -> WindowLimiter:
        return budget(provider, key, limit, period)

    def cap(self, provider: str, key: str, limit: int) -> SlotCap:
        return concurrency_cap(provider, key, limit)


class DatabaseBudgets(Budgets):
    """Budgets kept in a Postgres database, shared by every process that uses it. One
    instance per (provider, key) in this process, so its threads queue locally first."""

    shared = True

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._windows: dict[tuple[str, str], PgRollingWindowLimiter] = {}
        self._caps: dict[tuple[str, str], PgConcurrencyCap] = {}
        self._lock = threading.Lock()

    def window(self, provider: str, key: str, limit: int, period: float) -> WindowLimiter:
        with self._lock:
            lim = self._windows.get((provider, key))
            if lim is None or lim.limit != limit or lim.period != period:
                lim = PgRollingWindowLimiter(self.engine, f"{provider}|{key}", limit, period)
                self._windows[(provider, key)] = lim
                _record_limit(self.engine, lim.budget, limit, period)
            return lim

    def cap(self, provider: str, key: str, limit: int) -> SlotCap:
        with self._lock:
            cap = self._caps.get((provider, key))
            if cap is None or cap.limit != limit:
                cap = PgConcurrencyCap(self.engine, f"{provider}|{key}", limit)
                self._caps[(provider, key)] = cap
            return cap


_RECORD_LIMIT = text("""
INSERT INTO mlc_rate_budgets (budget, "limit", period, seen_at) VALUES (:budget, :limit, :period, clock_timestamp())
ON CONFLICT (budget) DO UPDATE SET "limit" = EXCLUDED."limit", period = EXCLUDED.period, seen_at = EXCLUDED.seen_at
""")
_SHARED_USAGE = text("""
SELECT b.budget, b."limit", (SELECT count(*) FROM mlc_rate_grants g WHERE g.budget = b.budget
                                                                     AND g.until > clock_timestamp())
FROM mlc_rate_budgets b ORDER BY b.budget
""")


def _record_limit(engine: Engine, budget: str, limit: int, period: float) -> None:
    """Say in the database which limit this budget has, for the processes that only read it."""
    try:
        with engine.begin() as conn:
            conn.execute(_RECORD_LIMIT, {"budget": budget, "limit": int(limit), "period": float(period)})
    except Exception:  # a database without migration 0016 yet: the budget still works, unreported
        log.warning("could not record the limit of rate budget %s", budget, exc_info=True)


def shared_usage(engine: Engine) -> list[tuple[str, str, int, int]]:
    """(provider, key, calls in the current window, limit) of every budget shared through `engine`'s
    database, whichever process uses it."""
    with engine.connect() as conn:
        rows = conn.execute(_SHARED_USAGE).all()
    out = []
    for budget_, limit, used in rows:
        provider, _, key = str(budget_).partition("|")
        out.append((provider, key, int(used), int(limit)))
    return out


IN_PROCESS = Budgets()
_shared: weakref.WeakKeyDictionary[Engine, DatabaseBudgets] = weakref.WeakKeyDictionary()


def budgets_for(db: Database | None) -> Budgets:
    """The budgets for a runtime's database: shared through it when it is Postgres (any
    number of worker processes), in this process otherwise."""
    if db is None or db.dialect != "postgresql":
        return IN_PROCESS
    with _budgets_lock:
        found = _shared.get(db.engine)
        if found is None:
            found = _shared[db.engine] = DatabaseBudgets(db.engine)
        return found
