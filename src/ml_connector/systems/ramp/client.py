"""Ramp Developer API client for the accounting chart-of-accounts flow.

Pacing and retries are the shared `core.http.RetryTransport`, with Ramp's facts:
- every request first takes a slot from the shared rolling-window limiter (proactive
  pacing: in normal operation Ramp never has to answer 429);
- a 429 never fails the caller: the limiter is penalised by the backoff (1, 2, 4 … s,
  capped; `Retry-After` wins if Ramp ever sends it) and the request is retried;
- 5xx and connection errors are retried a bounded number of times for idempotent
  calls (GET, PATCH, DELETE). A POST whose outcome is unknown (the request may have
  reached Ramp: read timeout, dropped connection, 5xx) raises `RampUncertainWrite`;
  chart-of-accounts uploads are all-or-nothing and not idempotent, so the caller
  resolves it by looking the ids up, never by a blind re-POST. POSTs that carry their
  own idempotency (fields by id, sync reports by key) are marked so and retried.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from ml_connector.core.http import (
    IDEMPOTENT,
    MAX_RETRIES,
    NEVER_SENT,
    OAuth2Auth,
    PicklableError,
    RetryPolicy,
    RetryTransport,
    UncertainWrite,
)
from ml_connector.core.ratelimit import WindowLimiter
from ml_connector.systems.ramp.facts import ramp_facts


class RampError(PicklableError):
    """Base of the Ramp client's errors."""


class RampApiError(RampError):
    """A non-retried error answer, parsed from `error_v2` (or the legacy `error`)."""

    def __init__(self, status: int, error_code: str | None, message: str,
                 additional_info: Any = None, trace_id: str | None = None) -> None:
        self.status = status
        self.error_code = error_code
        self.message = message
        self.additional_info = additional_info
        self.trace_id = trace_id
        super().__init__(f"Ramp API {status} {error_code or ''}: {message}"
                         + (f" (x-trace-id {trace_id})" if trace_id else ""))

    @classmethod
    def from_response(cls, resp: httpx.Response) -> RampApiError:
        trace = resp.headers.get("x-trace-id")
        try:
            body = resp.json()
        except ValueError:
            body = None
        code: str | None = None
        info: Any = None
        message = resp.reason_phrase or f"HTTP {resp.status_code}"
        if isinstance(body, dict):
            v2 = body.get("error_v2")
            legacy = body.get("error")
            if isinstance(v2, dict):
                code = v2.get("error_code")
                message = str(v2.get("message") or message)
                info = v2.get("additional_info")
            elif legacy is not None:
                message = legacy if isinstance(legacy, str) else str(legacy)
                info = legacy if isinstance(legacy, dict) else None
                desc = body.get("error_description")
                if isinstance(desc, str):
                    message = f"{message}: {desc}"
            elif isinstance(body.get("message"), str):
                message = body["message"]
        elif resp.text:
            message = resp.text[:200]
        return cls(resp.status_code, code, message, info, trace)


class RampUncertainWrite(RampError, UncertainWrite):
    """A write may or may not have been applied; resolve by lookup, not by re-POST."""

    def __init__(self, method: str, path: str, reason: str, status: int | None = None) -> None:
        self.method = method
        self.path = path
        self.status = status
        super().__init__(f"Ramp {method} {path}: outcome unknown ({reason}); look the ids up before retrying")


class RampTransportError(RampError):
    """Connection-level failure after the bounded retries of an idempotent call."""


class RampClient:
    def __init__(
        self,
        base_url: str,
        auth: httpx.Auth | None,
        *,
        limiter: WindowLimiter | None = None,
        timeout: float = 30.0,
        max_429_wait: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_retries: int | None = None,
        backoff_base: float | None = None,
        backoff_cap: float | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        f = ramp_facts()
        prefix = f.api_prefix
        base = base_url.rstrip("/")
        self.api_url = base if base.endswith(prefix) else base + prefix
        self.base_url = self.api_url[: -len(prefix)]
        self.limiter = limiter
        self.timeout = timeout
        self.policy = RetryPolicy.from_facts(f.need_retry(), max_retries=max_retries, base=backoff_base,
                                             cap=backoff_cap, max_wait_429=max_429_wait)
        self.max_batch = f.batch.max_items
        self.page_size = f.paging.max_page_size  # listings: the fewest requests
        self.lookup_page_size = f.paging.min_page_size  # lookups by id: one match at most
        self.transport = RetryTransport(transport or httpx.HTTPTransport(), self.policy, limiter=limiter,
                                        sleep=sleep)
        self._http = httpx.Client(auth=auth, timeout=timeout, transport=self.transport,
                                  headers={"Accept": "application/json"})

    # counters for benchmarks and tests: every attempt, 429s seen, 5xx / transport retries
    @property
    def requests(self) -> int:
        return self.transport.stats.requests

    @property
    def throttled(self) -> int:
        return self.transport.stats.throttled

    @property
    def retries(self) -> int:
        return self.transport.stats.retries

    @property
    def waited_429(self) -> float:
        return self.transport.stats.waited_429

    def __repr__(self) -> str:
        return f"RampClient(api_url={self.api_url!r})"

    def close(self) -> None:
        self._http.close()
        if isinstance(self._http.auth, OAuth2Auth):
            self._http.auth.close()  # its own client for the token endpoint

    def __enter__(self) -> RampClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one request ------------------------------------------------------------------------
    def request(self, method: str, path_or_url: str, *, params: dict[str, Any] | None = None,
                json: Any = None, idempotent: bool | None = None, attempts: int | None = None) -> httpx.Response:
        """Send one call (paced and retried by the transport); raise the typed error of a failure.
        `idempotent=True` marks a write that is safe to send twice (its body carries its key);
        `attempts` bounds the sends of this call (default: provider.yaml retry.max_retries + 1)."""
        method = method.upper()
        url = path_or_url if path_or_url.startswith(("http://", "https://")) else self.api_url + path_or_url
        idem = method in self.policy.idempotent_methods if idempotent is None else idempotent
        ext: dict[str, Any] = {IDEMPOTENT: True} if idem else {}
        if attempts is not None:
            ext[MAX_RETRIES] = max(1, attempts) - 1
        try:
            resp = self._http.request(method, url, params=params, json=json, extensions=ext or None)
        except httpx.TransportError as exc:
            # A write that may have arrived stays uncertain, even one that was safe to send again.
            if method not in self.policy.idempotent_methods and not isinstance(exc, NEVER_SENT):
                raise RampUncertainWrite(method, path_or_url, type(exc).__name__) from exc
            raise RampTransportError(f"Ramp {method} {path_or_url}: {type(exc).__name__} "
                                     f"after {self.policy.max_retries + 1} attempts") from exc
        status = resp.status_code
        if status >= 500 and method not in self.policy.idempotent_methods:
            raise RampUncertainWrite(method, path_or_url, f"HTTP {status}", status=status)
        if status >= 400:
            raise RampApiError.from_response(resp)
        return resp

    def _json(self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None,
              idempotent: bool | None = None, attempts: int | None = None) -> Any:
        resp = self.request(method, path, params=params, json=json, idempotent=idempotent, attempts=attempts)
        return resp.json() if resp.content else None

    def _iter(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        url: str | None = path
        params = {**params, "page_size": params.get("page_size") or self.page_size}
        query: dict[str, Any] | None = {k: v for k, v in params.items() if v is not None}
        while url:
            body = self._json("GET", url, params=query)
            yield from body.get("data", [])
            url = (body.get("page") or {}).get("next")
            query = None  # page.next carries start and the original filters

    @staticmethod
    def _flag(v: bool | None) -> str | None:
        return None if v is None else ("true" if v else "false")

    def _check_batch(self, items: list[dict[str, Any]]) -> None:
        if not 1 <= len(items) <= self.max_batch:
            raise ValueError(f"Ramp batch uploads take 1..{self.max_batch} items, got {len(items)}")

    @staticmethod
    def _patch_body(name: str | None, code: str | None, reactivate: bool | None) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if name is not None:
            body["name"] = name
        if code is not None:
            body["code"] = code  # "" clears the code
        if reactivate:
            body["reactivate"] = True
        return body

    # -- accounting vendors -------------------------------------------------------------
    def iter_accounting_vendors(self, remote_id: str | None = None, is_active: bool | None = None,
                                page_size: int | None = None,
                                is_synced: bool | None = None) -> Iterator[dict[str, Any]]:
        return self._iter("/accounting/vendors", {"remote_id": remote_id, "is_active": self._flag(is_active),
                                                  "is_synced": self._flag(is_synced), "page_size": page_size})

    def get_accounting_vendor_by_remote_id(self, remote_id: str) -> dict[str, Any] | None:
        for v in self.iter_accounting_vendors(remote_id=remote_id, page_size=self.lookup_page_size):
            if v.get("id") == remote_id:
                return v
        return None

    def get_accounting_vendor(self, ramp_id: str) -> dict[str, Any]:
        out: dict[str, Any] = self._json("GET", f"/accounting/vendors/{ramp_id}")
        return out

    def create_accounting_vendors(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        self._check_batch(items)
        out: dict[str, Any] = self._json("POST", "/accounting/vendors", json={"vendors": items})
        return out

    def update_accounting_vendor(self, ramp_id: str, *, name: str | None = None, code: str | None = None,
                                 reactivate: bool | None = None) -> dict[str, Any]:
        out: dict[str, Any] = self._json("PATCH", f"/accounting/vendors/{ramp_id}",
                                         json=self._patch_body(name, code, reactivate))
        return out

    def deactivate_accounting_vendor(self, ramp_id: str) -> None:
        self.request("DELETE", f"/accounting/vendors/{ramp_id}")

    # -- GL accounts --------------------------------------------------------------------
    def iter_gl_accounts(self, remote_id: str | None = None, is_active: bool | None = None,
                         page_size: int | None = None) -> Iterator[dict[str, Any]]:
        return self._iter("/accounting/accounts", {"remote_id": remote_id, "is_active": self._flag(is_active),
                                                   "page_size": page_size})

    def get_gl_account_by_remote_id(self, remote_id: str) -> dict[str, Any] | None:
        for a in self.iter_gl_accounts(remote_id=remote_id, page_size=self.lookup_page_size):
            if a.get("id") == remote_id:
                return a
        return None

    def create_gl_accounts(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        self._check_batch(items)
        out: dict[str, Any] = self._json("POST", "/accounting/accounts", json={"gl_accounts": items})
        return out

    def update_gl_account(self, ramp_id: str, *, name: str | None = None, code: str | None = None,
                          reactivate: bool | None = None) -> dict[str, Any]:
        out: dict[str, Any] = self._json("PATCH", f"/accounting/accounts/{ramp_id}",
                                         json=self._patch_body(name, code, reactivate))
        return out

    def deactivate_gl_account(self, ramp_id: str) -> None:
        self.request("DELETE", f"/accounting/accounts/{ramp_id}")

    # -- accounting custom fields and options -------------------------------------------
    def upsert_accounting_field(self, field_id: str, name: str, *, input_type: str = "SINGLE_CHOICE",
                                display_name: str | None = None, is_splittable: bool | None = None,
                                is_required_for: list[str] | None = None) -> dict[str, Any]:
        """POST /accounting/fields: idempotent on `id` (an existing field is returned and reactivated),
        so a retry after an uncertain outcome is safe."""
        body: dict[str, Any] = {"id": field_id, "name": name, "input_type": input_type}
        if display_name is not None:
            body["display_name"] = display_name
        if is_splittable is not None:
            body["is_splittable"] = is_splittable
        if is_required_for is not None:
            body["is_required_for"] = is_required_for
        # Idempotent on id: the transport may send it again after a lost answer.
        try:
            out: dict[str, Any] = self._json("POST", "/accounting/fields", json=body, idempotent=True)
        except RampUncertainWrite as exc:  # no answer after every retry; sending it again later is safe
            raise RampTransportError(f"Ramp POST /accounting/fields: no answer after retries ({exc})") from exc
        return out

    def iter_accounting_fields(self, remote_id: str | None = None, is_active: bool | None = None,
                               page_size: int | None = None) -> Iterator[dict[str, Any]]:
        return self._iter("/accounting/fields", {"remote_id": remote_id, "is_active": self._flag(is_active),
                                                 "page_size": page_size})

    def iter_field_options(self, field_id: str, remote_id: str | None = None, is_active: bool | None = None,
                           page_size: int | None = None) -> Iterator[dict[str, Any]]:
        return self._iter("/accounting/field-options", {"field_id": field_id, "remote_id": remote_id,
                                                        "is_active": self._flag(is_active),
                                                        "page_size": page_size})

    def get_field_option_by_remote_id(self, field_id: str, remote_id: str) -> dict[str, Any] | None:
        for o in self.iter_field_options(field_id, remote_id=remote_id, page_size=self.lookup_page_size):
            if o.get("id") == remote_id:
                return o
        return None

    def create_field_options(self, field_id: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        """All or nothing, not idempotent: resolve an uncertain outcome by lookup."""
        self._check_batch(items)
        out: dict[str, Any] = self._json("POST", "/accounting/field-options",
                                         json={"field_id": field_id, "options": items})
        return out

    def update_field_option(self, ramp_id: str, *, value: str | None = None, code: str | None = None,
                            reactivate: bool | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if value is not None:
            body["value"] = value
        if code is not None:
            body["code"] = code
        if reactivate:
            body["reactivate"] = True
        out: dict[str, Any] = self._json("PATCH", f"/accounting/field-options/{ramp_id}", json=body)
        return out

    def deactivate_field_option(self, ramp_id: str) -> None:
        self.request("DELETE", f"/accounting/field-options/{ramp_id}")

    # -- bills and sync reports ---------------------------------------------------------
    def list_bills_page(self, *, sync_ready: bool | None = None, sync_status: str | None = None,
                        entity_id: str | None = None, page_size: int | None = None, start: str | None = None,
                        payment_status: str | None = None, approval_status: str | None = None,
                        ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of bills and the id to start the next page after (None at the end)."""
        params = {"sync_ready": self._flag(sync_ready), "sync_status": sync_status, "entity_id": entity_id,
                  "page_size": page_size or self.page_size, "start": start, "payment_status": payment_status,
                  "approval_status": approval_status}
        body = self._json("GET", "/bills", params={k: v for k, v in params.items() if v is not None})
        data: list[dict[str, Any]] = list(body.get("data", []))
        more = bool((body.get("page") or {}).get("next"))
        return data, (str(data[-1]["id"]) if more and data else None)

    def iter_bills(self, *, sync_ready: bool | None = None, sync_status: str | None = None,
                   entity_id: str | None = None, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        return self._iter("/bills", {"sync_ready": self._flag(sync_ready), "sync_status": sync_status,
                                     "entity_id": entity_id, "page_size": page_size})

    def get_bill(self, bill_id: str) -> dict[str, Any]:
        out: dict[str, Any] = self._json("GET", f"/bills/{bill_id}")
        return out

    def get_purchase_order(self, po_id: str) -> dict[str, Any]:
        """One purchase order (purchase_orders:read; Ramp Plus), with its line items."""
        out: dict[str, Any] = self._json("GET", f"/purchase-orders/{po_id}")
        return out

    def post_accounting_sync(self, idempotency_key: str, sync_type: str, *,
                             successful: list[dict[str, Any]] | None = None,
                             failed: list[dict[str, Any]] | None = None, attempts: int = 3) -> dict[str, Any]:
        """POST /accounting/syncs (§1.8). The idempotency key is in the body, so an uncertain outcome
        (5xx, dropped connection) is sent again with the same key by the transport, `attempts` times
        in all; then RampUncertainWrite is raised (the report is re-sent on replay)."""
        body: dict[str, Any] = {"idempotency_key": idempotency_key, "sync_type": sync_type}
        if successful:
            body["successful_syncs"] = successful
        if failed:
            body["failed_syncs"] = failed
        out: dict[str, Any] = self._json("POST", "/accounting/syncs", json=body, idempotent=True,
                                         attempts=attempts)
        return out

    # -- Bill Pay vendors (not accounting vendors; linked by accounting_vendor_remote_id) ----
    def iter_billpay_vendors(self, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        return self._iter("/vendors", {"page_size": page_size})

    def link_billpay_vendor(self, vendor_id: str, remote_id: str) -> dict[str, Any]:
        """PATCH /vendors/{id} accounting_vendor_remote_id (idempotent: it sets a value)."""
        out: dict[str, Any] = self._json("PATCH", f"/vendors/{vendor_id}",
                                         json={"accounting_vendor_remote_id": remote_id})
        return out

    # -- webhooks (§1.7) ------------------------------------------------------------------
    def create_webhook(self, endpoint_url: str, event_types: list[str],
                       additional_headers: dict[str, str] | None = None) -> dict[str, Any]:
        """POST /webhooks: the subscription with its `secret` (only in this answer)."""
        body: dict[str, Any] = {"endpoint_url": endpoint_url, "event_types": event_types}
        if additional_headers:
            body["additional_headers"] = additional_headers
        out: dict[str, Any] = self._json("POST", "/webhooks", json=body)
        return out

    def verify_webhook(self, webhook_id: str, challenge: str) -> dict[str, Any]:
        out: dict[str, Any] = self._json("POST", f"/webhooks/{webhook_id}/verify", json={"challenge": challenge},
                                         idempotent=True)
        return out

    def list_webhooks(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = self._json("GET", "/webhooks")
        return out

    def delete_webhook(self, webhook_id: str) -> None:
        self.request("DELETE", f"/webhooks/{webhook_id}")

    # -- misc ---------------------------------------------------------------------------
    def get_business(self) -> dict[str, Any]:
        out: dict[str, Any] = self._json("GET", "/business")
        return out

    def ping(self) -> float:
        """The provider.yaml ping call; returns its round-trip seconds (raises on failure)."""
        ping = ramp_facts().ping
        method, path, params = str(ping.method), str(ping.path), dict(ping.params) or None
        prefix = ramp_facts().api_prefix
        t0 = time.perf_counter()
        self.request(method, self.base_url + path if path.startswith(prefix) else path, params=params)
        return time.perf_counter() - t0
