"""Webhooks of the Procore emulator (reference §2.7): hooks and triggers per company, one event per
POST to the hook's `destination_url` with its `destination_headers` sent verbatim (the custom
Authorization header is the only authentication: no HMAC), payload v2.0.

Delivery: 200/204 within `timeout` (5 s) is a success; anything else pauses the hook's queue and
retries with exponential backoff from `backoff_base` (1 s) up to `backoff_cap` (1 h); after
`discard_after` (12 h) of continuous failure the queue is flushed and its events are `discarded`.
Events are delivered at least once, in order per hook. `POST /_sandbox/webhooks` tunes the timings.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

import httpx

#: Resource names (as the hooks' triggers name them) of what the emulator emits.
RESOURCES = ("Company Vendors", "Purchase Order Contracts", "Purchase Order Contract Line Items", "Direct Costs",
             "Direct Cost Line Items")
_ULID_CHARS = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid() -> str:
    """A 26-character ULID (48-bit millisecond time + 80 random bits, Crockford base32)."""
    n = (int(time.time() * 1000) << 80) | secrets.randbits(80)
    return "".join(_ULID_CHARS[(n >> (5 * i)) & 31] for i in reversed(range(26)))


class Webhooks:
    def __init__(self, company_id: int) -> None:
        self.company_id = company_id
        self.lock = threading.RLock()
        self.hooks: dict[int, dict[str, Any]] = {}
        self.triggers: dict[int, dict[str, Any]] = {}
        self.deliveries: dict[int, list[dict[str, Any]]] = {}  # hook id -> delivery records
        self._queues: dict[int, deque[dict[str, Any]]] = {}
        self._seq = 0
        self.timeout = 5.0
        self.backoff_base = 1.0
        self.backoff_cap = 3600.0
        self.discard_after = 12 * 3600.0
        self._wake = threading.Condition(self.lock)
        self._thread: threading.Thread | None = None
        self._stop = False

    def next_id(self) -> int:
        with self.lock:
            self._seq += 1
            return 9_000_000 + self._seq

    def settings(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            for key in ("timeout", "backoff_base", "backoff_cap", "discard_after"):
                if key in body:
                    setattr(self, key, max(0.001, float(body[key])))
            return {k: getattr(self, k) for k in ("timeout", "backoff_base", "backoff_cap", "discard_after")}

    # -- hooks and triggers -----------------------------------------------------------------
    def add_hook(self, hook: dict[str, Any], project_id: int | None) -> dict[str, Any]:
        with self.lock:
            hid = self.next_id()
            rec = {"id": hid, "api_version": hook.get("api_version") or "v2.0", "namespace": hook.get("namespace"),
                   "destination_url": hook["destination_url"],
                   "destination_headers": dict(hook.get("destination_headers") or {}),
                   "owned_by_company_id": None if project_id else self.company_id,
                   "owned_by_project_id": project_id, "owned_by_user_id": 1}
            self.hooks[hid] = rec
            self._queues[hid] = deque()
            self.deliveries[hid] = []
            return self.show(rec)

    @staticmethod
    def show(hook: dict[str, Any]) -> dict[str, Any]:
        """The hook as Procore answers it: the Authorization header masked to its last 5 characters."""
        headers = dict(hook["destination_headers"])
        if "Authorization" in headers:
            headers["Authorization"] = "*" * max(0, len(headers["Authorization"]) - 5) + headers["Authorization"][-5:]
        return {**hook, "destination_headers": headers}

    def add_trigger(self, hid: int, trigger: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            tid = self.next_id()
            rec = {"id": tid, "webhook_hook_id": hid, "resource_name": trigger["resource_name"],
                   "resource_id": None, "event_type": str(trigger["event_type"]).lower(),
                   "company_id": self.company_id, "project_id": None, "user_id": 1}
            self.triggers[tid] = rec
            return rec

    # -- events -------------------------------------------------------------------------------
    def emit(self, resource_name: str, event_type: str, resource_id: int, project_id: int | None = None) -> None:
        """An event happened: queue one delivery per hook with a matching trigger."""
        with self.lock:
            hooks = {t["webhook_hook_id"] for t in self.triggers.values()
                     if t["resource_name"] == resource_name and t["event_type"] == event_type}
            if not hooks:
                return
            for hid in hooks:
                hook = self.hooks.get(hid)
                if hook is None:
                    continue
                event = {"id": self.next_id(), "ulid": ulid(),
                         "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                         "metadata": {"source_user_id": 1, "source_project_id": project_id,
                                      "source_operation_id": None, "source_company_id": self.company_id,
                                      "source_application_id": None},
                         "user_id": 1, "company_id": self.company_id, "project_id": project_id,
                         "api_version": hook["api_version"], "event_type": event_type,
                         "resource_name": resource_name, "resource_id": resource_id}
                self._queues[hid].append({"event": event, "attempts": 0, "failing_since": None,
                                          "next_try": 0.0})
            self._start()
            self._wake.notify_all()

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop = False
            self._thread = threading.Thread(target=self._run, name="procore-webhooks", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        with self.lock:
            self._stop = True
            self._wake.notify_all()

    def _run(self) -> None:
        with httpx.Client() as http:
            while True:
                with self.lock:
                    if self._stop:
                        return
                    now = time.time()
                    ready = [(hid, q[0]) for hid, q in self._queues.items() if q and q[0]["next_try"] <= now]
                    if not ready:
                        waits = [q[0]["next_try"] - now for q in self._queues.values() if q]
                        self._wake.wait(min(waits) if waits else 1.0)
                        continue
                for hid, item in ready:
                    self._deliver(http, hid, item)

    def _deliver(self, http: httpx.Client, hid: int, item: dict[str, Any]) -> None:
        with self.lock:
            hook = self.hooks.get(hid)
        if hook is None:
            return
        started = datetime.now(UTC)
        status, error, body = None, None, None
        try:
            resp = http.post(hook["destination_url"], json=item["event"], timeout=self.timeout,
                             headers={**hook["destination_headers"], "Content-Type": "application/json"})
            status, body = resp.status_code, resp.text[:500]
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        ok = status in (200, 204)
        with self.lock:
            q = self._queues[hid]
            item["attempts"] += 1
            record = {"id": self.next_id(), "event_id": item["event"]["id"], "event": item["event"],
                      "started_at": started.isoformat(), "completed_at": datetime.now(UTC).isoformat(),
                      "response_status": status, "response_body": body, "response_error": error,
                      "outcome": "ok" if ok else "retried"}
            self.deliveries[hid].append(record)
            if ok:
                q.popleft()
                return
            now = time.time()
            item["failing_since"] = item["failing_since"] or now
            if now - item["failing_since"] >= self.discard_after:
                record["outcome"] = "failed"
                for dropped in q:  # the whole queue is flushed
                    self.deliveries[hid].append({"id": self.next_id(), "event_id": dropped["event"]["id"],
                                                 "event": dropped["event"], "outcome": "discarded"})
                q.clear()
                return
            # The exponent is capped: with a tiny base (tests) attempts run into the thousands, and
            # 2 ** 1024 overflows a float and would end this thread.
            step = self.backoff_base * 2 ** min(item["attempts"] - 1, 60)
            item["next_try"] = now + min(self.backoff_cap, step)
