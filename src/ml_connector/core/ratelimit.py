"""Rate budgets: a rolling-window limiter and a concurrency cap, both thread-safe.

A budget is keyed by (provider, credential or egress IP); callers share one
instance per key through `budget()`, so every client in the process that talks
to the same API from the same egress draws from the same window.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager


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
        waited = 0.0
        while True:
            delay = self.reserve()
            if delay <= 0:
                return waited
            self._sleep(delay)
            waited += delay

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
_budgets_lock = threading.Lock()


def budget(provider: str, key: str, limit: int, period: float) -> RollingWindowLimiter:
    """The process-wide limiter for (provider, credential or egress IP)."""
    with _budgets_lock:
        lim = _budgets.get((provider, key))
        if lim is None or lim.limit != limit or lim.period != period:
            lim = RollingWindowLimiter(limit, period)
            _budgets[(provider, key)] = lim
        return lim


def reset_budgets() -> None:
    with _budgets_lock:
        _budgets.clear()
