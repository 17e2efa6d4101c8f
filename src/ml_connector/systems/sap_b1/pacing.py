"""Pacing of the calls to one Business One company database.

Every client of one company database (Service Layer root + CompanyDB) in a process - the agent's
handler, a direct or embedded client, several of them - shares one budget: calls per second and
calls in flight at once (process-wide, `core.ratelimit`; with `budgets_for(db)` on Postgres shared by
every process of the database). The numbers come from provider.yaml `rate_limit` (a conservative
default: SAP publishes none) or the connection's / agent system's `limits`. Keyed by company
database, not by server: two company databases of one Service Layer are two budgets, as each is
its own set of sessions and locks in B1.

The control plane paces what it hands out to the agents by the same key (`registry` pacing of
`sap_b1`), so several agents of a site serving one company database stay within one budget too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ml_connector.core.ratelimit import IN_PROCESS, Budgets, SlotCap, WindowLimiter
from ml_connector.systems.sap_b1.facts import b1_facts

PROVIDER = "sap_b1"


def company_key(root: str, company_db: str) -> str:
    """The budget key of one company database of one Service Layer."""
    return f"{root.rstrip('/')}|{company_db}"


def limits_of(limits: Any) -> tuple[int, int]:
    """(calls per second, max concurrent) of a settings' `limits` (None: provider.yaml's)."""
    rate = b1_facts().need_rate_limit()
    cps = int(getattr(limits, "calls_per_second", 0) or rate.limit)
    conc = int(getattr(limits, "max_concurrent", 0) or rate.max_concurrent or 1)
    return cps, conc


class CompanyPacing:
    """The call budget of one company database: a slot per call (a concurrency slot, then its place in
    the calls-per-second window, so the window's time stamp is when the call is sent)."""

    def __init__(self, key: str, *, calls_per_second: int, max_concurrent: int,
                 budgets: Budgets | None = None) -> None:
        if calls_per_second < 1 or max_concurrent < 1:
            raise ValueError(f"sap_b1 {key}: calls_per_second and max_concurrent must be at least 1")
        budgets = budgets or IN_PROCESS
        self.key = key
        self.calls_per_second = calls_per_second
        self.max_concurrent = max_concurrent
        self._cap: SlotCap = budgets.cap(PROVIDER, key, max_concurrent)
        self._window: WindowLimiter = budgets.window(PROVIDER, key, calls_per_second,
                                                     float(b1_facts().need_rate_limit().period))

    def __repr__(self) -> str:
        return f"CompanyPacing({self.key!r}, {self.calls_per_second}/s, {self.max_concurrent} at once)"

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._cap.slot():
            self._window.acquire()
            yield


def pacing_for(root: str, company_db: str, limits: Any = None, budgets: Budgets | None = None) -> CompanyPacing:
    cps, conc = limits_of(limits)
    return CompanyPacing(company_key(root, company_db), calls_per_second=cps, max_concurrent=conc, budgets=budgets)
