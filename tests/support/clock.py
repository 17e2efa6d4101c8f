"""A clock the test moves: no sleeping through windows, leases or timeouts."""

from __future__ import annotations

import threading
import time

from ml_connector.core.clock import Clock


class FakeClock(Clock):
    """`ml_connector.core.clock.Clock` at a time the test sets. `sleep` advances it at once.

    Also callable (the monotonic reading) for components that take `clock: Callable[[], float]`."""

    def __init__(self, start: float = 1000.0, wall: float | None = None) -> None:
        self._t = start
        # A day in the past by default: wall times it hands out are plausible and not in the future.
        self._wall_offset = (time.time() - 86400 if wall is None else wall) - start
        self._lock = threading.Lock()
        self.slept: list[float] = []

    def monotonic(self) -> float:
        with self._lock:
            return self._t

    def now(self) -> float:
        with self._lock:
            return self._t + self._wall_offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._t += seconds

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(max(seconds, 0.0))

    def __call__(self) -> float:
        return self.monotonic()
