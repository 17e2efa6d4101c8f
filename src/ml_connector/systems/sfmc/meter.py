"""API calls counted against the account's yearly allowance (by edition, provider.yaml `allowance`).

Counts are kept per UTC day in a small JSON file under the data directory, merged under an
exclusive file lock, so every process of an installation adds to the same numbers. The burn rate
is the last 7 days' average extrapolated to a year.
"""

from __future__ import annotations

import fcntl
import json
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path


@dataclass(frozen=True)
class Burn:
    allowance: int
    used_this_year: int
    per_day_7d: float
    projected_year: int

    @property
    def share(self) -> float:
        return self.projected_year / self.allowance if self.allowance else 0.0

    def text(self) -> str:
        return (f"{self.used_this_year:,} API calls this year of {self.allowance:,}; "
                f"{self.per_day_7d:,.0f}/day over 7 days → {self.projected_year:,}/year ({self.share:.1%})")


class ApiMeter:
    def __init__(self, path: Path | None, allowance: int, *, flush_every: int = 50,
                 today: type[date] = date) -> None:
        self.path = path
        self.allowance = allowance
        self.flush_every = flush_every
        self._pending = 0
        self.total = 0  # calls counted by this process
        self._lock = threading.Lock()
        self._today = today

    def add(self, n: int = 1) -> None:
        with self._lock:
            self._pending += n
            self.total += n
            flush = self._pending >= self.flush_every
        if flush:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            n, self._pending = self._pending, 0
        if not n or self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+", encoding="utf-8") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.seek(0)
            try:
                days: dict[str, int] = json.loads(fh.read() or "{}")
            except ValueError:
                days = {}
            key = datetime.now(UTC).date().isoformat()
            days[key] = int(days.get(key, 0)) + n
            cutoff = (datetime.now(UTC).date() - timedelta(days=400)).isoformat()
            days = {d: c for d, c in days.items() if d >= cutoff}
            fh.seek(0)
            fh.truncate()
            fh.write(json.dumps(days, sort_keys=True))

    def days(self) -> dict[str, int]:
        self.flush()
        if self.path is None or not self.path.exists():
            return {}
        try:
            return {str(k): int(v) for k, v in json.loads(self.path.read_text(encoding="utf-8") or "{}").items()}
        except ValueError:
            return {}

    def burn(self) -> Burn:
        days = self.days()
        today = datetime.now(UTC).date()
        year = sum(c for d, c in days.items() if d.startswith(str(today.year)))
        week = sum(c for d, c in days.items() if d > (today - timedelta(days=7)).isoformat())
        per_day = week / 7
        return Burn(self.allowance, year, per_day, int(per_day * 365))
