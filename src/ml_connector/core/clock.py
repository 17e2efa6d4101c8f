"""An injectable clock: components that read the time or wait take a `Clock`, so that tests drive
time (tests/support/clock.py FakeClock) instead of sleeping through it."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock time, seconds since the epoch (what is stored and compared across processes)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (intervals and deadlines within a process)."""
        ...

    def sleep(self, seconds: float) -> None:
        ...


class SystemClock:
    """The real time of this host."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


#: The default of every component that takes a clock.
SYSTEM_CLOCK: Clock = SystemClock()
