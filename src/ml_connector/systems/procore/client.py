"""Procore REST client: companies, projects, cost codes, vendors (+ sync), purchase order
contracts with line items (+ sync), requisitions, direct costs with line items.

Transport stack (outermost first):
- `OAuth2Auth` (core/http.py): DMSA client-credentials tokens in the shared token store, refreshed
  `auth.refresh_margin` before expiry by one process at a time; a 401 forces one refresh and one resend.
- `RetryTransport` (core/http.py): the company's hourly budget (client side), a 429 waited out
  (Retry-After, else X-Rate-Limit-Reset) however long, 5xx retried for idempotent calls.
- `HeaderPacer` (here): reads X-Rate-Limit-Remaining / Reset on every answer and holds the next call
  until the window resets when the budget is spent down to `pacing.reserve` (the hold is also put on
  the shared budget, so every process of the database waits it out); a 503 with Retry-After (load
  shedding) on an idempotent call is waited out and re-sent, never failed. The headers report the
  spike (10 s) or the hourly window, whichever binds first; a reset further away than the spike
  window, or a limit of the hourly budget's size, is the hourly one (Procore's "Handle Rate Limits"),
  kept for `ProcoreClient.hourly_budget()`.

Every request carries `Procore-Company-Id`. Writes that may have arrived but whose answer is unknown
raise `ProcoreUncertainWrite`: the caller looks the record up by origin_id before any resend.
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from ml_connector.core.http import (
    IDEMPOTENT,
    NEVER_SENT,
    OAuth2Auth,
    PicklableError,
    RetryPolicy,
    RetryTransport,
    UncertainWrite,
    wait_seconds,
)
from ml_connector.core.ratelimit import WindowLimiter
from ml_connector.systems.procore.facts import procore_facts

V1 = "/rest/v1.0"


class ProcoreError(PicklableError):
    """Base of the Procore client's errors."""


class ProcoreApiError(ProcoreError):
    """A non-retried error answer ({message} or {errors})."""

    def __init__(self, status: int, message: str, method: str = "", path: str = "") -> None:
        self.status = status
        self.message = message
        super().__init__(f"Procore {method} {path} {status}: {message}".replace("  ", " "))

    @classmethod
    def from_response(cls, resp: httpx.Response, method: str, path: str) -> ProcoreApiError:
        try:
            body = resp.json()
        except ValueError:
            body = None
        message = resp.reason_phrase or f"HTTP {resp.status_code}"
        if isinstance(body, dict):
            if isinstance(body.get("message"), str):
                message = body["message"]
            elif body.get("errors") is not None:
                message = str(body["errors"])[:300]
            elif isinstance(body.get("error"), str):
                message = body["error"]
        elif resp.text:
            message = resp.text[:200]
        return cls(resp.status_code, message, method, path)


class ProcoreUncertainWrite(ProcoreError, UncertainWrite):
    """A write may or may not have been applied; look it up by origin_id, never re-POST blindly."""

    def __init__(self, method: str, path: str, reason: str) -> None:
        super().__init__(f"Procore {method} {path}: outcome unknown ({reason}); look it up before retrying")


@dataclass(frozen=True)
class HourlyReading:
    """Procore's hourly window as the headers last reported it, and this client's request count then."""

    limit: int | None
    remaining: int
    resets_at: float
    sent: int


@dataclass(frozen=True)
class HourlyBudget:
    """What is left of the company's hourly budget, as best known now (`ProcoreClient.hourly_budget`)."""

    remaining: int
    limit: int | None
    resets_at: float | None  # when Procore's hourly window resets (frees budget), by its last hourly headers
    source: str  # "headers" (Procore's own count) or "shared budget" (this installation's requests)


class HeaderPacer(httpx.BaseTransport):
    """Paces to Procore's rate-limit headers (see the module docstring); thread-safe."""

    def __init__(self, inner: httpx.BaseTransport, *, limit: str, remaining: str, reset: str, reserve: int,
                 max_wait: float, spike_window: float = 10.0, hourly_limit: int | None = None,
                 hold: Callable[[float], None] | None = None,
                 retry_after: tuple[str, ...], idempotent: frozenset[str],
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time) -> None:
        self.inner = inner
        self.spike_window = spike_window
        self.hourly_limit = hourly_limit  # the hourly budget the client was configured with, if any
        self._hold = hold  # the shared budget's hold (every process waits), when there is one
        self.sent = 0  # requests sent through this pacer
        self.hourly: HourlyReading | None = None
        self.limit_header = limit
        self.remaining_header = remaining
        self.reset_header = reset
        self.reserve = reserve
        self.max_wait = max_wait
        self.retry_after = retry_after
        self.idempotent = idempotent
        self._sleep = sleep
        self._clock = clock
        self._hold_until = 0.0
        self._lock = threading.Lock()
        self.remaining: int | None = None  # last reported, for reports and benchmarks
        self.limit: int | None = None
        self.paced = 0.0  # seconds waited for a window to reset
        self.shed = 0  # 503s waited out

    def _observe(self, resp: httpx.Response) -> None:
        raw_rem, raw_reset = resp.headers.get(self.remaining_header), resp.headers.get(self.reset_header)
        raw_limit = resp.headers.get(self.limit_header)
        try:
            remaining = int(raw_rem) if raw_rem is not None else None
            reset = float(raw_reset) if raw_reset is not None else None
            limit = int(raw_limit) if raw_limit is not None else None
        except ValueError:
            return
        if remaining is None:
            return
        now = self._clock()
        hold = 0.0
        with self._lock:
            self.remaining, self.limit = remaining, limit
            if reset is not None and self._is_hourly(resp, reset, limit, now):
                self.hourly = HourlyReading(limit, remaining, reset, self.sent)
            if remaining <= self.reserve and reset is not None:
                until = min(reset, now + self.max_wait)
                if until > self._hold_until:
                    self._hold_until = until
                    hold = until - now
        if hold > 0 and self._hold is not None:
            self._hold(hold)

    def _is_hourly(self, resp: httpx.Response, reset: float, limit: int | None, now: float) -> bool:
        """Whether these headers report the hourly window: its reset is further away than the spike
        window (measured from the answer's Date; Date and Reset are whole seconds: two seconds of slack), or
        its limit is the size of the hourly budget."""
        date = resp.headers.get("Date")
        try:
            at = email.utils.parsedate_to_datetime(date).timestamp() if date else now
        except (TypeError, ValueError):
            at = now
        if reset - at > self.spike_window + 2:
            return True
        return limit is not None and self.hourly_limit is not None and limit >= self.hourly_limit

    def hourly_left(self) -> tuple[int, HourlyReading] | None:
        """(requests left in the hourly window by Procore's last hourly headers, less the requests sent
        since, that reading) while that window has not reset; None when no such reading."""
        with self._lock:
            h = self.hourly
            if h is None or h.resets_at <= self._clock():
                return None
            return max(0, h.remaining - (self.sent - h.sent)), h

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        waited = 0.0
        while True:
            with self._lock:
                hold = self._hold_until - self._clock()
            if hold > 0:
                self.paced += hold
                self._sleep(hold)
            with self._lock:
                self.sent += 1
            resp = self.inner.handle_request(request)
            self._observe(resp)
            if resp.status_code != 503:
                return resp
            delay = wait_seconds(resp, self.retry_after, (), self._clock)
            idem = bool(request.extensions.get(IDEMPOTENT)) or request.method.upper() in self.idempotent
            if delay is None or not idem or waited + delay > self.max_wait:
                return resp
            resp.read()
            resp.close()
            self.shed += 1
            waited += delay
            self._sleep(delay)

    def close(self) -> None:
        self.inner.close()


class ProcoreClient:
    def __init__(self, base_url: str, company_id: int, auth: httpx.Auth | None, *,
                 limiter: WindowLimiter | None = None, timeout: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep, transport: httpx.BaseTransport | None = None) -> None:
        f = procore_facts()
        self.base_url = base_url.rstrip("/")
        self.company_id = int(company_id)
        self.per_page = f.paging.per_page
        self.max_batch = f.batch.max_items
        self.policy = RetryPolicy.from_facts(f.need_retry())
        self.limiter = limiter
        self.pacer = HeaderPacer(transport or httpx.HTTPTransport(), limit=f.headers.limit,
                                 remaining=f.headers.remaining,
                                 reset=f.headers.reset, reserve=f.pacing.reserve, max_wait=f.pacing.max_wait,
                                 spike_window=f.pacing.spike_window,
                                 hourly_limit=limiter.limit if limiter is not None else None,
                                 hold=limiter.penalize if limiter is not None else None,
                                 retry_after=tuple(self.policy.retry_after_headers),
                                 idempotent=self.policy.idempotent_methods, sleep=sleep)
        self.transport = RetryTransport(self.pacer, self.policy, limiter=limiter, sleep=sleep)
        self._http = httpx.Client(auth=auth, timeout=timeout, transport=self.transport,
                                  headers={"Accept": "application/json",
                                           f.headers.company: str(self.company_id)})

    def __repr__(self) -> str:
        return f"ProcoreClient(base_url={self.base_url!r}, company_id={self.company_id})"

    @property
    def requests(self) -> int:
        return self.transport.stats.requests

    @property
    def throttled(self) -> int:
        return self.transport.stats.throttled

    def hourly_budget(self) -> HourlyBudget | None:
        """What is left of the company's hourly budget: the lower of Procore's own count (the last
        hourly rate-limit headers, less the requests sent since) and the shared budget's (the
        connection's hourly limit less the requests every process of this installation sent in the
        window: `core/ratelimit.py`, in the database with Postgres). None: neither is known."""
        known: list[HourlyBudget] = []
        if self.limiter is not None and self.limiter.limit > 0:
            used = self.limiter.in_window()
            known.append(HourlyBudget(max(0, self.limiter.limit - used), self.limiter.limit, None, "shared budget"))
        seen = self.pacer.hourly_left()
        if seen is not None:
            left, h = seen
            known.append(HourlyBudget(left, h.limit, h.resets_at, "headers"))
        if not known:
            return None
        low = min(known, key=lambda b: b.remaining)
        # When Procore's window gives budget back is known from its headers only (a reset already past:
        # budget has come back since; the shared budget counts it).
        last = self.pacer.hourly
        return HourlyBudget(low.remaining, low.limit, last.resets_at if last else None, low.source)

    def close(self) -> None:
        self._http.close()
        if isinstance(self._http.auth, OAuth2Auth):
            self._http.auth.close()

    def __enter__(self) -> ProcoreClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one request ------------------------------------------------------------------------
    def request(self, method: str, path_or_url: str, *, params: dict[str, Any] | None = None,
                json: Any = None) -> httpx.Response:
        method = method.upper()
        url = path_or_url if path_or_url.startswith(("http://", "https://")) else self.base_url + path_or_url
        idem = method in self.policy.idempotent_methods
        try:
            resp = self._http.request(method, url, params=params, json=json,
                                      extensions={IDEMPOTENT: True} if idem else None)
        except httpx.TransportError as exc:
            if not idem and not isinstance(exc, NEVER_SENT):
                raise ProcoreUncertainWrite(method, path_or_url.split("?")[0], type(exc).__name__) from exc
            raise ProcoreError(f"Procore {method} {path_or_url.split('?')[0]}: {type(exc).__name__}") from exc
        if resp.status_code >= 500 and not idem:
            raise ProcoreUncertainWrite(method, path_or_url.split("?")[0], f"HTTP {resp.status_code}")
        if resp.status_code >= 400:
            raise ProcoreApiError.from_response(resp, method, path_or_url.split("?")[0])
        return resp

    def _json(self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None) -> Any:
        resp = self.request(method, path, params=params, json=json)
        return resp.json() if resp.content else None

    def iterate(self, path: str, params: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every record of a paged listing: page/per_page, following `Link: rel="next"`."""
        url: str | None = path
        query: dict[str, Any] | None = {**(params or {}), "page": 1, "per_page": self.per_page}
        while url:
            resp = self.request("GET", url, params=query)
            yield from resp.json()
            nxt = resp.links.get("next", {}).get("url")
            url, query = (nxt, None) if nxt else (None, None)

    # -- company, projects, cost codes -----------------------------------------------------
    def companies(self) -> list[dict[str, Any]]:
        return list(self.iterate(f"{V1}/companies"))

    def projects(self, *, active_only: bool = True) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"company_id": self.company_id}
        if active_only:
            params["filters[by_status]"] = "Active"
        return list(self.iterate(f"{V1}/projects", params))

    def cost_codes(self, project_id: int) -> list[dict[str, Any]]:
        return list(self.iterate(f"{V1}/cost_codes", {"project_id": project_id}))

    # -- vendors ---------------------------------------------------------------------------
    def vendors(self, *, origin_id: str | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"company_id": self.company_id}
        if origin_id is not None:
            params["filters[origin_id]"] = origin_id
        return list(self.iterate(f"{V1}/vendors", params))

    def sync_vendors(self, updates: list[dict[str, Any]]) -> dict[str, Any]:
        """PATCH /vendors/sync: upsert by origin_id (≤ batch.max_items); always 200 {entities, errors}."""
        if len(updates) > self.max_batch:
            raise ValueError(f"at most {self.max_batch} vendors per sync, got {len(updates)}")
        return dict(self._json("PATCH", f"{V1}/vendors/sync", json={"company_id": self.company_id,
                                                                      "updates": updates}))

    # -- purchase order contracts ----------------------------------------------------------
    def po_contracts(self, project_id: int, *, origin_id: str | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"project_id": project_id}
        if origin_id is not None:
            params["filters[origin_id]"] = origin_id
        return list(self.iterate(f"{V1}/purchase_order_contracts", params))

    def po_contract(self, project_id: int, contract_id: int) -> dict[str, Any]:
        return dict(self._json("GET", f"{V1}/purchase_order_contracts/{contract_id}",
                               params={"project_id": project_id}))

    def update_po_contract(self, project_id: int, contract_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        """PATCH /purchase_order_contracts/{id} (idempotent: the same fields again change nothing)."""
        return dict(self._json("PATCH", f"{V1}/purchase_order_contracts/{contract_id}",
                               json={"project_id": project_id, "purchase_order_contract": fields}))

    def sync_po_contracts(self, project_id: int, updates: list[dict[str, Any]]) -> dict[str, Any]:
        """PATCH /purchase_order_contracts/sync: upsert by origin_id within the project."""
        return dict(self._json("PATCH", f"{V1}/purchase_order_contracts/sync",
                               json={"project_id": project_id, "updates": updates}))

    def po_line_items(self, project_id: int, contract_id: int) -> list[dict[str, Any]]:
        return list(self.iterate(f"{V1}/purchase_order_contracts/{contract_id}/line_items",
                                 {"project_id": project_id}))

    def sync_po_line_items(self, project_id: int, contract_id: int, updates: list[dict[str, Any]]) -> dict[str, Any]:
        return dict(self._json("PATCH", f"{V1}/purchase_order_contracts/{contract_id}/line_items/sync",
                               json={"project_id": project_id, "updates": updates}))

    # -- requisitions (subcontractor invoices against a commitment) -------------------------
    def requisitions(self, project_id: int, *, commitment_id: int | None = None,
                     origin_id: str | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"project_id": project_id}
        if commitment_id is not None:
            params["filters[commitment_id]"] = commitment_id
        if origin_id is not None:
            params["filters[origin_id]"] = origin_id
        return list(self.iterate(f"{V1}/requisitions", params))

    def create_requisition(self, project_id: int, commitment_id: int, requisition: dict[str, Any]) -> dict[str, Any]:
        """POST (not idempotent: look the origin_id up first, and again after an uncertain answer)."""
        return dict(self._json("POST", f"{V1}/requisitions", json={
            "project_id": project_id, "commitment_id": commitment_id, "requisition": requisition}))

    # -- direct costs ----------------------------------------------------------------------
    def direct_costs(self, project_id: int, *, origin_id: str | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {}
        if origin_id is not None:
            params["filters[origin_id]"] = origin_id
        return list(self.iterate(f"{V1}/projects/{project_id}/direct_costs", params))

    def create_direct_cost(self, project_id: int, item: dict[str, Any]) -> dict[str, Any]:
        """POST (not idempotent: look the origin_id up first, and again after an uncertain answer)."""
        return dict(self._json("POST", f"{V1}/projects/{project_id}/direct_costs", json={"item": item}))

    def direct_cost_line_items(self, project_id: int, direct_cost_id: int) -> list[dict[str, Any]]:
        return list(self.iterate(f"{V1}/projects/{project_id}/direct_costs/{direct_cost_id}/line_items"))

    def create_direct_cost_line_item(self, project_id: int, direct_cost_id: int,
                                     line_item: dict[str, Any]) -> dict[str, Any]:
        return dict(self._json("POST", f"{V1}/projects/{project_id}/direct_costs/{direct_cost_id}/line_items",
                               json={"line_item": line_item}))

    def ping(self) -> float:
        t0 = time.perf_counter()
        f = procore_facts()
        self._json(f.ping.method or "GET", f.ping.path or f"{V1}/companies", params=dict(f.ping.params) or None)
        return time.perf_counter() - t0
