"""A clock the test moves: no sleeping through windows, leases or timeouts."""

from __future__ import annotations

import threading

from ml_connector.core.clock import Clock


class FakeClock(Clock):
    """`ml_connector.core.clock.Clock` at a time the test sets. `sleep` advances it at once.

    Also callable (the monotonic reading) for components that take `clock: Callable[[], float]`."""

    def __init__(self, start: float = 1000.0, wall: float = 1_750_000_000.0) -> None:
        self._t = start
        self._wall_offset = wall - start
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
