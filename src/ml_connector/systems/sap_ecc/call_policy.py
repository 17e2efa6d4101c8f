"""How every transport calls one SAP system: the per-system budget and the retry rule.

SOAP-RFC, PyRFC and Gateway OData reach the same application server and the same
scarce dialog work processes, so they share one policy per SAP system (base URL or
host, plus client):

* a calls-per-second budget (10 to 50, configurable) and a concurrency cap, both
  process-wide per system, so two clients of one system never add up past the cap
  (with `budgets` from `core.ratelimit.budgets_for(db)` on Postgres: shared by every
  worker process of the database);
* exponential backoff with full jitter on retriable errors (SYSTEM_FAILURE,
  communication errors refused before processing);
* no blind retry of a call that may have had an effect: a non-idempotent call whose
  outcome is unknown is raised with `uncertain=True`, for the caller to resolve by a
  lookup in SAP (posting.py does it through BKPF).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from ml_connector.core.http import RetryPolicy
from ml_connector.core.ratelimit import IN_PROCESS, Budgets, ConcurrencyCap, SlotCap, WindowLimiter
from ml_connector.core.ratelimit import concurrency_cap as core_concurrency_cap

from .errors import CommunicationError, RfcError
from .facts import ecc_facts

PROVIDER = "sap_ecc"
_RANGE = ecc_facts().need_rate_limit().limit_range or (1, ecc_facts().need_rate_limit().limit)
#: The calls-per-second a configuration may set (provider.yaml rate_limit.limit_range); a module
#: value so that a benchmark can lift the ceiling on purpose.
MIN_CALLS_PER_SECOND, MAX_CALLS_PER_SECOND = _RANGE
#: What SAP counts is calls per second as they arrive, some milliseconds after each took its
#: turn here, and not always the same number of milliseconds. So the budget's window is this
#: much longer than a second (a call delayed at the start of a second and one sent promptly at
#: its end stay within the budget as SAP counts them), and calls are spaced 1 / budget apart
#: rather than sent in bursts whenever the window frees (a burst's calls queue behind each other
#: on the way, which makes the delays unequal). Bench scenario 6 measured 24 calls in one
#: second for a budget of 20 without both; with them, at most the budget, for 3 % of its rate.
SEND_JITTER_GUARD = 0.03

DEFAULT_IDEMPOTENT_FUNCTIONS: frozenset[str] = frozenset({
    "RFC_READ_TABLE", "BBP_RFC_READ_TABLE", "/BODS/RFC_READ_TABLE", "/BODS/RFC_READ_TABLE2",
    "/SAPDS/RFC_READ_TABLE", "/SAPDS/RFC_READ_TABLE2", "RFC_PING", "RFC_SYSTEM_INFO",
    "STFC_CONNECTION",
})
_IDEMPOTENT_PATTERNS = (re.compile(r"^RFC_READ"), re.compile(r"^BAPI_.*_(GETDETAIL|GETLIST)\d*$"))

T = TypeVar("T")


def is_idempotent_default(fm: str) -> bool:
    name = fm.upper()
    return name in DEFAULT_IDEMPOTENT_FUNCTIONS or any(p.match(name) for p in _IDEMPOTENT_PATTERNS)


def concurrency_cap(key: str, limit: int) -> ConcurrencyCap:
    """The process-wide concurrency cap for one SAP system (base URL + client)."""
    return core_concurrency_cap(PROVIDER, key, limit)


def system_key(base_url: str, client: str) -> str:
    """The budget key of one SAP system and client. SOAP-RFC and Gateway OData go through the
    same ICM (base URL), so they share it."""
    return f"{base_url.rstrip('/')}|{client}"


class CallPolicy:
    """Budget, cap and retry rule for the calls to one SAP system."""

    def __init__(
        self,
        budget_key: str,
        *,
        calls_per_second: int | None = None,
        max_concurrency: int | None = None,
        backoff_base: float | None = None,
        backoff_max: float | None = None,
        max_attempts: int | None = None,
        idempotent_functions: Sequence[str] | Callable[[str], bool] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        budgets: Budgets | None = None,
    ) -> None:
        rate = ecc_facts().need_rate_limit()
        cps = calls_per_second if calls_per_second is not None else rate.limit
        if not MIN_CALLS_PER_SECOND <= cps <= MAX_CALLS_PER_SECOND:
            raise ValueError(f"calls_per_second must be between {MIN_CALLS_PER_SECOND} and "
                             f"{MAX_CALLS_PER_SECOND} for an SAP system, got {cps}")
        conc = max_concurrency if max_concurrency is not None else rate.max_concurrent
        if conc is None or conc < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {conc}")
        # Backoff and attempts from provider.yaml `retry` (full jitter; the RFC layer decides what
        # is idempotent, per function module).
        retry = RetryPolicy.from_facts(ecc_facts().need_retry(), base=backoff_base, cap=backoff_max,
                                       max_retries=None if max_attempts is None else max_attempts - 1)
        self.retry = retry
        self.budget_key = budget_key
        self.calls_per_second = cps
        self.max_concurrency = conc
        self.backoff_base = retry.base
        self.backoff_max = retry.cap
        self.max_attempts = retry.max_retries + 1
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if idempotent_functions is None:
            self._is_idempotent: Callable[[str], bool] = is_idempotent_default
        elif callable(idempotent_functions):
            self._is_idempotent = idempotent_functions
        else:
            names = frozenset(f.upper() for f in idempotent_functions)
            self._is_idempotent = lambda fm: fm.upper() in names
        self._sleep = sleep
        self._rng = rng or random.Random()
        budgets = budgets or IN_PROCESS
        self._limiter: WindowLimiter = budgets.window(PROVIDER, budget_key, cps, 1.0 + SEND_JITTER_GUARD)
        self._spacing: WindowLimiter = budgets.window(PROVIDER, budget_key + "|spacing", 1, 1.0 / cps)
        self._cap: SlotCap = budgets.cap(PROVIDER, budget_key, conc)

    def is_idempotent(self, fm: str) -> bool:
        return self._is_idempotent(fm)

    @contextmanager
    def slot(self) -> Iterator[None]:
        """One call's turn: a concurrency slot, then its place in the spacing and in the
        calls-per-second window.

        In this order the window's time stamp is the moment the call is sent. The other way
        round, calls stamped while waiting for a slot were sent in a bunch when slots freed, and
        SAP saw up to 1.5 times the budget within one second (bench scenario 6)."""
        with self._cap.slot():
            self._spacing.acquire()
            self._limiter.acquire()
            yield

    def backoff(self, attempt: int) -> float:
        """The wait after failed attempt number `attempt` (1-based); full jitter per provider.yaml:
        uniform(0, min(max, base * 2**(attempt-1)))."""
        return self.retry.backoff(attempt - 1, self._rng)

    def run(self, fm: str, once: Callable[[], T], *, idempotent: bool | None = None) -> T:
        """Call `once` until it succeeds, retrying retriable errors with backoff.

        A call that may have been processed (error marked uncertain) is retried only when
        idempotent. A retriable ABAP runtime error (SYSTEM_FAILURE) of a non-idempotent call is
        raised as uncertain: a wrapper FM may have committed before it dumped."""
        idem = self.is_idempotent(fm) if idempotent is None else idempotent
        attempt = 0
        while True:
            attempt += 1
            try:
                return once()
            except RfcError as exc:
                if not exc.retriable:
                    raise
                if exc.uncertain and not idem:
                    raise
                if not idem and not isinstance(exc, CommunicationError):
                    exc.uncertain = True
                    raise
                if attempt >= self.max_attempts:
                    raise
                self._sleep(self.backoff(attempt))
