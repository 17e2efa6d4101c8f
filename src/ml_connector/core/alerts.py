"""Alerts to operators: webhooks (JSON or Slack incoming-webhook) for events that need a person.

Knows no external system. The code where an event happens (agent/service.py: an agent goes
offline or comes back; core/engine.py: a sync run failed) builds an `Alert` and

1. `admit(session, alert)` inside the transaction that made the state change: at most one
   alert per (event, subject) per interval, counted in the database (mlc_alert_throttle) so
   that every control-plane process shares it; only the process whose transaction made the
   transition admits, so no two processes send the same alert;
2. after the commit, `dispatch(alert)`: a background thread POSTs it to every webhook with a
   short timeout and a few retries with backoff, so that the sweep or the engine never waits
   for a slow receiver. Each outcome is audited (`alert.sent` / `alert.failed`) with the
   receiver's host only: webhook URLs (Slack's carry their credential in the path) and the
   secret header's value appear in no log, error or audit row.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from ml_connector.core import audit
from ml_connector.core.db import Database
from ml_connector.core.models import AlertThrottleRow

log = logging.getLogger(__name__)

#: The events an alert can be configured for.
ALERT_EVENTS = ("agent.offline", "agent.online", "run.failed")
DEFAULT_INTERVAL = 900.0  # one alert per (event, subject) per 15 min: a flapping agent must not spam
DEFAULT_TIMEOUT = 5.0
DEFAULT_ATTEMPTS = 3
DEFAULT_BACKOFF = 1.0  # seconds before the 2nd attempt, doubled for each further one


@dataclass(frozen=True)
class Webhook:
    """A receiver: `url` in the configuration, or `url_secret` naming the vault secret holding it."""

    url: str | None = None
    url_secret: str | None = None
    format: str = "json"  # json | slack
    header_name: str | None = None
    header_secret: str | None = None  # vault secret with the header's value


@dataclass
class Alert:
    event: str
    subject: str  # what the alert is about (an agent id, flow/stream): the throttle key with `event`
    message: str
    at: float = field(default_factory=time.time)
    site: str | None = None
    agent_id: str | None = None
    agent_name: str | None = None
    flow: str | None = None
    stream: str | None = None
    run_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    suppressed: int = 0  # alerts for (event, subject) held back by the throttle since the last one

    def text(self) -> str:
        more = f" ({self.suppressed} more since the last alert, held back)" if self.suppressed else ""
        return f"[ml-connector] {self.message}{more}"

    def payload(self) -> dict[str, Any]:
        return {"event": self.event, "subject": self.subject, "message": self.text(),
                "time": datetime.fromtimestamp(self.at, UTC).isoformat().replace("+00:00", "Z"),
                "timestamp": self.at, "site": self.site, "agent_id": self.agent_id,
                "agent_name": self.agent_name, "flow": self.flow, "stream": self.stream, "run_id": self.run_id,
                "suppressed": self.suppressed, "details": self.details}

    def body(self, fmt: str) -> dict[str, Any]:
        return {"text": self.text()} if fmt == "slack" else self.payload()


@dataclass(frozen=True)
class AlertSettings:
    interval: float = DEFAULT_INTERVAL
    timeout: float = DEFAULT_TIMEOUT
    attempts: int = DEFAULT_ATTEMPTS
    backoff: float = DEFAULT_BACKOFF


def duration_text(seconds: float) -> str:
    """'45 s', '12 min', '3 h 5 min', '2 d 4 h' (for messages)."""
    s = int(max(seconds, 0))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


class _Failed(Exception):
    """A delivery that will not succeed by retrying (e.g. a secret missing from the vault)."""


class Alerter:
    def __init__(self, db: Database, vault: Any, webhooks: list[Webhook], *,
                 events: list[str] | tuple[str, ...] = ALERT_EVENTS, settings: AlertSettings | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.db = db
        self.vault = vault
        self.webhooks = list(webhooks)
        self.events = frozenset(events)
        self.settings = settings or AlertSettings()
        self._transport = transport
        self._queue: queue.Queue[Alert | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def wants(self, event: str) -> bool:
        return bool(self.webhooks) and event in self.events

    # ------------------------------------------------------------------ throttle

    def admit(self, session: Session, alert: Alert) -> bool:
        """Whether to send `alert` (call inside the transaction that made the change it reports).
        At most one per (event, subject) per interval, over all processes sharing the database;
        one held back is audited `alert.suppressed` and counted into the next one sent."""
        if not self.wants(alert.event):
            return False
        key = f"{alert.event}|{alert.subject}"[:400]
        if self.db.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            session.execute(pg_insert(AlertThrottleRow).values(key=key, last_at=0.0, suppressed=0)
                            .on_conflict_do_nothing())
            row = session.scalars(select(AlertThrottleRow).where(AlertThrottleRow.key == key)
                                  .with_for_update()).one()
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            session.execute(sqlite_insert(AlertThrottleRow).values(key=key, last_at=0.0, suppressed=0)
                            .on_conflict_do_nothing())
            row = session.scalars(select(AlertThrottleRow).where(AlertThrottleRow.key == key)).one()
        if row.last_at > alert.at - self.settings.interval:
            row.suppressed = (row.suppressed or 0) + 1
            audit.record(session, "alert.suppressed", outcome="suppressed", source=alert.agent_id,
                         flow=alert.flow, stream=alert.stream, run_id=alert.run_id,
                         detail={"alert_event": alert.event, "subject": alert.subject,
                                 "last_sent_at": row.last_at, "interval_seconds": self.settings.interval})
            return False
        alert.suppressed = row.suppressed or 0
        row.last_at, row.suppressed = alert.at, 0
        return True

    # ------------------------------------------------------------------ delivery

    def dispatch(self, alert: Alert) -> None:
        """Hand an admitted alert to the background sender (returns at once)."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="alert-sender", daemon=True)
                self._thread.start()
        self._queue.put(alert)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every dispatched alert was delivered or given up; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._queue.all_tasks_done.wait(left)
        return True

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is queued (bounded by one full retry cycle per alert), then stop."""
        if self._thread is None:
            return
        s = self.settings
        budget = s.attempts * s.timeout + s.backoff * (2 ** max(s.attempts - 1, 0))
        if not self.flush(timeout if timeout is not None else budget * max(len(self.webhooks), 1) + 1):
            log.warning("alerts: %d alert(s) not delivered before shutdown", self._queue.qsize())
        self._stop.set()
        self._queue.put(None)
        self._thread.join(2.0)
        self._thread = None

    def _run(self) -> None:
        with httpx.Client(timeout=self.settings.timeout, transport=self._transport,
                          follow_redirects=False) as client:
            while True:
                alert = self._queue.get()
                try:
                    if alert is None:
                        return
                    for hook in self.webhooks:
                        try:
                            self._deliver(client, hook, alert)
                        except Exception:  # one receiver's problem must not stop the others
                            log.exception("alerts: delivering %s failed unexpectedly", alert.event)
                finally:
                    self._queue.task_done()

    def _deliver(self, client: httpx.Client, hook: Webhook, alert: Alert) -> None:
        host = "?"
        attempts = 0
        problem = ""
        status: int | None = None
        try:
            url = hook.url or self._secret(hook.url_secret, "url_secret")
            host = urlsplit(url).hostname or "?"
            headers = {"User-Agent": "ml-connector-alerts"}
            if hook.header_name:
                headers[hook.header_name] = self._secret(hook.header_secret, "secret_header.value_secret")
            body = alert.body(hook.format)
            for attempt in range(1, self.settings.attempts + 1):
                attempts = attempt
                try:
                    resp = client.post(url, json=body, headers=headers)
                    status = resp.status_code
                    if 200 <= status < 300:
                        self._audit_outcome(alert, hook, host, True, attempts, status, "")
                        return
                    problem = f"HTTP {status}"
                    if 400 <= status < 500 and status not in (408, 429):
                        break  # the receiver refuses this request: repeating it will not help
                except httpx.HTTPError as exc:
                    # The exception text can carry the URL (a Slack URL is its own credential): type only.
                    problem = f"{type(exc).__name__} (no answer within {self.settings.timeout:g} s or refused)" \
                        if isinstance(exc, httpx.TimeoutException) else type(exc).__name__
                if attempt < self.settings.attempts and self._stop.wait(self.settings.backoff * 2 ** (attempt - 1)):
                    problem += "; shutting down"
                    break
        except _Failed as exc:
            problem = str(exc)
        self._audit_outcome(alert, hook, host, False, attempts, status, problem)

    def _secret(self, name: str | None, what: str) -> str:
        if not name or self.vault is None or not self.vault.exists(name):
            raise _Failed(f"{what}: the secret {name!r} is not in the vault; "
                          f"store it with `ml-connector secrets set {name}`")
        return str(self.vault.get(name))

    def _audit_outcome(self, alert: Alert, hook: Webhook, host: str, ok: bool, attempts: int,
                       status: int | None, problem: str) -> None:
        detail = {"alert_event": alert.event, "subject": alert.subject, "host": host, "format": hook.format,
                  "attempts": attempts, "status": status}
        if not ok:
            detail["error"] = problem
            log.warning("alerts: %s for %s could not be delivered to %s after %d attempt(s): %s",
                        alert.event, alert.subject, host, attempts, problem)
        try:
            with self.db.session() as s:
                audit.record(s, "alert.sent" if ok else "alert.failed", outcome="ok" if ok else "failed",
                             source=alert.agent_id, target=host, flow=alert.flow, stream=alert.stream,
                             run_id=alert.run_id, detail=detail)
        except Exception:
            log.exception("alerts: auditing the delivery of %s failed", alert.event)


def alerter_from_config(cfg: Any, db: Database, vault: Any) -> Alerter | None:
    """The Alerter of the configuration's `alerts:` section (None when there is none)."""
    if cfg is None or not getattr(cfg, "webhooks", None):
        return None
    hooks = [Webhook(url=w.url, url_secret=w.url_secret, format=w.format,
                     header_name=w.secret_header.name if w.secret_header else None,
                     header_secret=w.secret_header.value_secret if w.secret_header else None)
             for w in cfg.webhooks]
    return Alerter(db, vault, hooks, events=tuple(cfg.events),
                   settings=AlertSettings(interval=cfg.interval, timeout=cfg.timeout, attempts=cfg.attempts,
                                          backoff=cfg.backoff))
