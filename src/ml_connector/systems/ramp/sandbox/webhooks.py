"""Outbound webhooks of the Ramp sandbox: signed deliveries with Ramp's retry schedule.

cloud-apis.md §1.7 and Ramp's webhooks guide (R2): a thin JSON event `{id, type, created_at,
business_id, object: {id}}` POSTed to the subscription's endpoint with `X-Ramp-Webhook-Signature` =
hex HMAC-SHA256 of the raw body keyed with the subscription's secret. 2xx is delivered; 3xx and 4xx
other than 429 fail at once; 429, 5xx and timeouts (10 s) are retried with exponential backoff and
jitter starting at 0-60 s, under the same event id, up to `webhook_max_attempts` (10) attempts.
`webhook_retry_scale` shrinks the delays (tests: 0.001), so a run need not wait hours.

One daemon thread per sandbox sends due deliveries, never holding the sandbox lock during HTTP.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import json
import random
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from ml_connector.systems.ramp.sandbox.state import RampSandbox

#: R1's enum, plus the guide's `bills.ready_to_sync` / `purchase_orders.ready_to_sync` ([verified, inconsistent]).
EVENT_TYPES = ("bills.approved", "bills.created", "bills.paid", "bills.rejected", "bills.ready_to_sync",
               "purchase_orders.created", "purchase_orders.updated", "purchase_orders.ready_to_sync",
               "reimbursements.ready_for_review", "reimbursements.ready_to_sync", "tests.test_event",
               "transactions.authorized", "transactions.cleared", "transactions.ready_for_review",
               "transactions.ready_to_sync", "webhooks.verification")
#: [verified R1, R2] subscribing to a resource's events needs that resource's read scope.
EVENT_SCOPES = {"bills": "bills:read", "purchase_orders": "purchase_orders:read",
                "reimbursements": "reimbursements:read", "transactions": "transactions:read"}
SIGNATURE_HEADER = "X-Ramp-Webhook-Signature"


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookDispatcher:
    """Due deliveries in a heap; a lazily started daemon thread sends them."""

    def __init__(self, st: RampSandbox) -> None:
        self.st = st
        self.cv = threading.Condition()
        self.heap: list[tuple[float, int, str]] = []
        self._n = 0
        self._thread: threading.Thread | None = None
        self._stop = False
        self._rng = random.Random()

    # ---- queue ---------------------------------------------------------------------------
    def schedule(self, delivery_id: str, due: float) -> None:
        with self.cv:
            self._n += 1
            heapq.heappush(self.heap, (due, self._n, delivery_id))
            if self._thread is None or not self._thread.is_alive():
                self._stop = False
                self._thread = threading.Thread(target=self._run, name="ramp-webhooks", daemon=True)
                self._thread.start()
            self.cv.notify()

    def clear(self) -> None:
        with self.cv:
            self.heap.clear()

    def stop(self, timeout: float = 5.0) -> None:
        with self.cv:
            self._stop = True
            self.cv.notify()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)

    def delay(self, failed_attempts: int) -> float:
        """Backoff before the next attempt after `failed_attempts` failures: uniform jitter in
        [0, first_delay * 2^(n-1)], times the scale switch."""
        st = self.st
        window = st.webhook_first_delay * (2 ** max(failed_attempts - 1, 0))
        return self._rng.uniform(0, window) * st.webhook_retry_scale

    # ---- the sender ----------------------------------------------------------------------
    def _run(self) -> None:
        with httpx.Client(follow_redirects=False) as client:
            while True:
                with self.cv:
                    while not self._stop:
                        now = time.time()
                        if self.heap and self.heap[0][0] <= now:
                            break
                        self.cv.wait(None if not self.heap else max(self.heap[0][0] - now, 0.0))
                    if self._stop:
                        return
                    _, _, did = heapq.heappop(self.heap)
                try:
                    self._attempt(client, did)
                except Exception as exc:  # never let one delivery kill the sender
                    with self.st.lock:
                        d = self.st.webhook_deliveries.get(did)
                        if d is not None:
                            d["status"], d["error"] = "failed", f"sandbox error: {exc!r}"

    def _attempt(self, client: httpx.Client, did: str) -> None:
        st = self.st
        with st.lock:
            d = st.webhook_deliveries.get(did)
            if d is None or d["status"] != "pending":
                return
            sub = st.webhooks.get(d["webhook_id"])
            if sub is None:
                d["status"] = "cancelled"  # the subscription was deleted meanwhile
                return
            body = d["body"].encode()
            headers = {"Content-Type": "application/json", "User-Agent": "Ramp-Webhooks (sandbox)",
                       **{str(k): str(v) for k, v in (sub.get("additional_headers") or {}).items()},
                       SIGNATURE_HEADER: sign(sub["secret"], body)}
            url, timeout = sub["endpoint_url"], st.webhook_timeout
        started = time.time()
        code: int | None = None
        err: str | None = None
        try:
            code = client.post(url, content=body, headers=headers, timeout=timeout).status_code
        except httpx.TimeoutException:
            err = "timeout"
        except httpx.HTTPError as exc:
            err = f"{type(exc).__name__}: {exc}"
        with st.lock:
            d = st.webhook_deliveries.get(did)
            if d is None or d["status"] != "pending":
                return
            d["attempts"].append({"attempt": len(d["attempts"]) + 1, "at": started, "status_code": code,
                                  "error": err, "duration_ms": round((time.time() - started) * 1000, 1)})
            retry = code is None or code == 429 or code >= 500
            if code is not None and 200 <= code < 300:
                d["status"], d["next_attempt_at"] = "delivered", None
            elif retry and len(d["attempts"]) < st.webhook_max_attempts:
                due = time.time() + self.delay(len(d["attempts"]))
                d["next_attempt_at"] = due
                self.schedule(did, due)
            else:
                d["status"], d["next_attempt_at"] = "failed", None


def new_secret() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex


def event_body(event: dict[str, Any]) -> str:
    """The raw bytes sent (and signed), identical on every retry."""
    return json.dumps(event, separators=(",", ":"), sort_keys=False)
