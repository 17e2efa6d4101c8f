"""Alerts to operators: webhooks (JSON or Slack incoming-webhook) and email (SMTP) for events that need
a person.

Knows no external system. The code where an event happens (server/agents/service.py: an agent goes
offline or comes back; core/engine.py: a sync run failed, records parked waiting for a mapping or
master record) builds an `Alert` and

1. `admit(session, alert)` inside the transaction that made the state change: at most one
   alert per (event, subject) per interval, counted in the database (mlc_alert_throttle) so
   that every control-plane process shares it; an admitted alert is stored in the outbox
   (mlc_alert_outbox, one row per webhook) in that same transaction, so a process killed
   after the commit loses nothing;
2. after the commit, `dispatch(alert)` wakes the delivery loop (a thread in each control-plane
   or worker process, also started at start-up for rows a dead process left): it claims due
   rows (a lease; SKIP LOCKED on Postgres, so two processes never send one row at once) and
   POSTs them with a short timeout; a failed send leaves the row pending with a backed-off
   `next_attempt_at`, until the configured attempts are used (state failed). Delivery is at
   least once: the payload's `alert_id` and the `X-Alert-Id` header let receivers dedupe.
   Each outcome is audited (`alert.sent` / `alert.failed`) with the receiver's host only:
   webhook URLs (Slack's carry their credential in the path) and the secret header's value
   appear in no log, error, audit or outbox row (resolved from the vault at send time).

An email channel with `digest` gets no message per alert: its rows wait (state `digest`) and, once a
day at `digest_at` (UTC), those stored before that time are folded into one digest message, a pending
row with a deterministic id (so two processes make it once), delivered like any alert.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from ml_connector.core import audit
from ml_connector.core.clock import SYSTEM_CLOCK, Clock
from ml_connector.core.db import Database
from ml_connector.core.models import AlertOutboxRow, AlertThrottleRow

log = logging.getLogger(__name__)

#: The events an alert can be configured for. A condition's event (core/conditions.py) also sends
#: `<event>.cleared` when the condition ends (`records.failed`: a flow has records whose write failed;
#: `records.parked`: records parked longer than a threshold; `record.parked`, sent by the engine when a
#: page parks records on a missing mapping, throttled per flow/stream, has no `.cleared`;
#: `stream.stale`: no successful run for longer than the stream's freshness target;
#: `sync.gap`: a change in the source not visible in the target within the flow's lag, sent by the flow;
#: `flow.failing`: a flow one failed run before its pause, `flow.paused`: paused at its `pause_after`,
#: core/flow_pause.py; `token.failed`: a connection's token could not be refreshed; `budget.low`: an API
#: rate budget's window used beyond `alerts.budget_threshold`).
ALERT_EVENTS = ("agent.offline", "agent.online", "run.failed", "records.failed", "record.parked", "records.parked",
                "stream.stale", "sync.gap", "flow.failing", "flow.paused", "token.failed", "budget.low")
CLEARED = ".cleared"
DEFAULT_INTERVAL = 900.0  # one alert per (event, subject) per 15 min: a flapping agent must not spam
DEFAULT_TIMEOUT = 5.0
DEFAULT_ATTEMPTS = 3
DEFAULT_BACKOFF = 1.0  # seconds before the 2nd attempt, doubled for each further one
DEFAULT_RETENTION = 30 * 86400.0
PURGE_EVERY = 3600.0  # seconds between two purges of delivered rows by one delivery loop
ALERT_ID_HEADER = "X-Alert-Id"  # the alert's stable id: delivery is at least once, receivers dedupe
POLL_SECONDS = 5.0  # the delivery loop looks for rows other processes left at least this often
LEASE_MARGIN = 10.0  # seconds a claimed row's lease outlasts the longest send


@dataclass(frozen=True)
class Webhook:
    """A receiver: `url` in the configuration, or `url_secret` naming the vault secret holding it."""

    url: str | None = None
    url_secret: str | None = None
    format: str = "json"  # json | slack
    header_name: str | None = None
    header_secret: str | None = None  # vault secret with the header's value


@dataclass(frozen=True)
class EmailChannel:
    """An SMTP receiver: `security` starttls (default, port 587), tls (implicit, port 465) or none (a relay
    on a network you trust); the password is the vault secret `password_secret`, read at send time."""

    host: str
    port: int
    sender: str
    to: tuple[str, ...]
    security: str = "starttls"
    username: str | None = None
    password_secret: str | None = None
    ca_file: str | None = None  # a private CA to trust (default: the system's)
    digest: bool = False  # one daily digest instead of a message per alert
    digest_at: str = "07:00"  # HH:MM UTC


def digest_boundary(now: float, at: str) -> float:
    """The latest daily digest time (HH:MM UTC) at or before `now`."""
    hh, mm = (int(x) for x in at.split(":"))
    t = datetime.fromtimestamp(now, UTC)
    edge = t.replace(hour=hh, minute=mm, second=0, microsecond=0)
    if edge > t:
        edge -= timedelta(days=1)
    return edge.timestamp()


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
    id: str = field(default_factory=lambda: uuid.uuid4().hex)  # stable over retries and restarts

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alert:
        return cls(**data)

    def text(self) -> str:
        more = f" ({self.suppressed} more since the last alert, held back)" if self.suppressed else ""
        return f"[ml-connector] {self.message}{more}"

    def payload(self) -> dict[str, Any]:
        return {"alert_id": self.id, "event": self.event, "subject": self.subject, "message": self.text(),
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
    retention: float = DEFAULT_RETENTION  # seconds a sent or failed row is kept (the audit trail keeps the outcome)


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
                 transport: httpx.BaseTransport | None = None, clock: Clock = SYSTEM_CLOCK,
                 emails: list[EmailChannel] | None = None) -> None:
        self.db = db
        # Wall time of the outbox (due, leases, done, purge). Waits on the loop's threading events
        # stay on the real clock: a test's clock would never wake them.
        self.clock = clock
        self.vault = vault
        self.webhooks = list(webhooks)
        # Outbox rows name their receiver by index: the webhooks first, then the email channels.
        self.emails = list(emails or [])
        self.events = frozenset(events)
        self.settings = settings or AlertSettings()
        self._transport = transport
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()  # set when an alert was stored (or at stop): look for due rows now
        self._progress = threading.Condition()  # notified after each delivery round (for flush)

    def wants(self, event: str) -> bool:
        base = event.removesuffix(CLEARED)
        return bool(self.webhooks or self.emails) and base in self.events

    # ------------------------------------------------------------------ throttle and outbox

    def admit(self, session: Session, alert: Alert) -> bool:
        """Store `alert` for delivery unless throttled (call inside the transaction that made the
        change it reports, so that the alert commits, or not, with the change: a process killed
        after the commit loses nothing). At most one per (event, subject) per interval, over all
        processes sharing the database; one held back is audited `alert.suppressed` and counted
        into the next one sent.

        Suppression happens here, at enqueue, not at send: the decision is taken under the
        throttle row's lock in the transition's own transaction, so every process agrees on it,
        and while a receiver is down a flapping agent does not pile up rows that would all go out
        at once when it returns."""
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
        now = self.clock.now()
        stored = json.dumps(alert.to_dict(), default=str)
        for i in range(len(self.webhooks) + len(self.emails)):  # one row per receiver: each has its own attempts
            # A digest channel's rows wait for the day's digest (folded into one message then).
            state = "digest" if self._digest_channel(i) is not None else "pending"
            session.add(AlertOutboxRow(id=f"{alert.id}:{i}", alert_id=alert.id, hook=i, event=alert.event,
                                       subject=alert.subject[:400], alert=stored, state=state, attempts=0,
                                       next_attempt_at=now, created_at=now))
        return True

    def _digest_channel(self, index: int) -> EmailChannel | None:
        """The email channel at receiver `index` when it takes a daily digest."""
        e = index - len(self.webhooks)
        return self.emails[e] if 0 <= e < len(self.emails) and self.emails[e].digest else None

    def fold_digests(self, now: float | None = None) -> int:
        """Fold each digest channel's waiting alerts stored before its latest digest time into one
        pending digest alert (deterministic id: made once whichever process folds first)."""
        now = self.clock.now() if now is None else now
        made = 0
        for i in range(len(self.webhooks), len(self.webhooks) + len(self.emails)):
            ch = self._digest_channel(i)
            if ch is None:
                continue
            edge = digest_boundary(now, ch.digest_at)
            day = datetime.fromtimestamp(edge, UTC).strftime("%Y-%m-%d %H:%M")
            with self.db.session() as s:
                q = (select(AlertOutboxRow).where(AlertOutboxRow.hook == i, AlertOutboxRow.state == "digest",
                                                  AlertOutboxRow.created_at < edge)
                     .order_by(AlertOutboxRow.created_at, AlertOutboxRow.id))
                if self.db.dialect == "postgresql":
                    q = q.with_for_update(skip_locked=True)
                rows = list(s.scalars(q))
                if not rows:
                    continue
                alerts = [Alert.from_dict(json.loads(r.alert)) for r in rows]
                lines = [f"Daily digest: {len(alerts)} alert(s) until {day} UTC", ""]
                for a in alerts:
                    when = datetime.fromtimestamp(a.at, UTC).strftime("%Y-%m-%d %H:%M")
                    lines.append(f"- {when} {a.event}: {a.text()}")
                digest = Alert(event="digest", subject=f"digest {day}", message="\n".join(lines), at=now,
                               id=uuid.uuid5(uuid.NAMESPACE_URL, f"mlc-digest:{i}:{day}:{rows[0].id}").hex,
                               details={"alerts": len(alerts), "until": day})
                for r in rows:
                    r.state, r.done_at = "digested", now
                s.add(AlertOutboxRow(id=f"{digest.id}:{i}", alert_id=digest.id, hook=i, event="digest",
                                     subject=digest.subject, alert=json.dumps(digest.to_dict(), default=str),
                                     state="pending", attempts=0, next_attempt_at=self.clock.now(),
                                     created_at=self.clock.now()))
                made += 1
        return made

    # ------------------------------------------------------------------ delivery

    def dispatch(self, alert: Alert | None = None) -> None:
        """After the commit of an admitted alert: wake the delivery loop (returns at once)."""
        self.start()
        self._wake.set()

    def start(self) -> None:
        """Run the delivery loop in this process (a control plane calls it at start, so that
        alerts left pending by a process that died are delivered)."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="alert-sender", daemon=True)
                self._thread.start()

    def pending(self) -> int:
        with self.db.read() as s:
            return int(s.scalar(select(func.count()).select_from(AlertOutboxRow)
                                .where(AlertOutboxRow.state == "pending")) or 0)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until no alert is pending (delivered or given up); False on timeout."""
        deadline = time.monotonic() + timeout
        self.start()
        while self.pending():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._wake.set()
            with self._progress:
                self._progress.wait(min(left, 0.05))
        return True

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is pending (bounded by one full retry cycle per webhook), then stop; what
        is still pending stays stored for the next process that runs the loop."""
        if self._thread is None:
            return
        s = self.settings
        budget = s.attempts * s.timeout + s.backoff * (2 ** max(s.attempts - 1, 0))
        if not self.flush(timeout if timeout is not None else budget * max(len(self.webhooks), 1) + 1):
            log.warning("alerts: alert(s) still pending at shutdown; stored, delivered by the next start")
        self._stop.set()
        self._wake.set()
        self._thread.join(2.0 + 4 * s.timeout)
        self._thread = None

    def _lease(self) -> float:
        # Longer than one send can take (httpx applies the timeout to connect, write and read
        # apart): a row is re-claimed after a sender died mid-send, never while it still sends.
        return 4 * self.settings.timeout + LEASE_MARGIN

    def _run(self) -> None:
        with httpx.Client(timeout=self.settings.timeout, transport=self._transport,
                          follow_redirects=False) as client:
            next_purge = time.monotonic()
            while not self._stop.is_set():
                self._wake.clear()
                worked = False
                if time.monotonic() >= next_purge:
                    next_purge = time.monotonic() + PURGE_EVERY
                    try:
                        self.purge()
                    except Exception:  # housekeeping only: delivery goes on
                        log.warning("alerts: purging delivered rows failed", exc_info=True)
                try:
                    if self.emails:
                        self.fold_digests()  # a digest channel's day is over: one message for it
                    claimed = self._claim()
                    if claimed is not None:
                        worked = True
                        self._attempt(client, *claimed)
                except Exception:  # the loop must survive a database hiccup: the rows stay pending
                    log.exception("alerts: the delivery loop failed; retrying")
                finally:
                    with self._progress:
                        self._progress.notify_all()
                if not worked:
                    self._wake.wait(self._idle())

    def purge(self, now: float | None = None) -> int:
        """Delete sent and failed rows older than the retention (pending rows are never purged):
        the outbox stays small; each outcome stays in the append-only audit trail."""
        edge = (self.clock.now() if now is None else now) - self.settings.retention
        with self.db.session() as s:
            res = s.execute(delete(AlertOutboxRow).where(AlertOutboxRow.state.in_(("sent", "failed", "digested")),
                                                         AlertOutboxRow.done_at < edge))
        return int(getattr(res, "rowcount", 0) or 0)

    def _idle(self) -> float:
        """Seconds until the next row is due (capped: rows of other processes and expired leases)."""
        try:
            with self.db.read() as s:
                nxt = s.scalar(select(func.min(func.coalesce(AlertOutboxRow.claimed_until,
                                                             AlertOutboxRow.next_attempt_at)))
                               .where(AlertOutboxRow.state == "pending"))
        except Exception:
            return POLL_SECONDS
        if nxt is None:
            return POLL_SECONDS
        return min(max(float(nxt) - self.clock.now(), 0.01), POLL_SECONDS)

    def _claim(self) -> tuple[str, int, str] | None:
        """A due row, leased to this process in a short transaction (no transaction is held open
        while sending: on SQLite that would block every writer). On Postgres SKIP LOCKED lets two
        processes claim different rows at once; the lease keeps a claimed row from a second sender."""
        now = self.clock.now()
        with self.db.session() as s:
            q = (select(AlertOutboxRow)
                 .where(AlertOutboxRow.state == "pending", AlertOutboxRow.next_attempt_at <= now,
                        or_(AlertOutboxRow.claimed_until.is_(None), AlertOutboxRow.claimed_until < now))
                 .order_by(AlertOutboxRow.next_attempt_at).limit(1))
            if self.db.dialect == "postgresql":
                q = q.with_for_update(skip_locked=True)
            row = s.scalars(q).first()
            if row is None:
                return None
            row.claimed_until = now + self._lease()
            return row.id, row.hook, row.alert

    def _attempt(self, client: httpx.Client, row_id: str, hook_index: int, stored: str) -> None:
        """One send of a claimed row, then its outcome. Attempts are counted only here, after a
        send: a process that dies mid-send leaves the count as it was (the lease runs out)."""
        alert = Alert.from_dict(json.loads(stored))
        host = "?"
        status: int | None = None
        sent = ok = final = False
        problem = ""
        try:
            if hook_index >= len(self.webhooks):
                self._attempt_email(row_id, hook_index - len(self.webhooks), alert)
                return
            hook = self.webhooks[hook_index]
            url = hook.url or self._secret(hook.url_secret, "url_secret")
            host = urlsplit(url).hostname or "?"
            # X-Alert-Id: delivery is at least once (a process can die after the receiver got
            # it, before the row says sent); receivers dedupe on it.
            headers = {"User-Agent": "ml-connector-alerts", ALERT_ID_HEADER: alert.id}
            if hook.header_name:
                headers[hook.header_name] = self._secret(hook.header_secret, "secret_header.value_secret")
            sent = True
            try:
                resp = client.post(url, json=alert.body(hook.format), headers=headers)
                status = resp.status_code
                ok = 200 <= status < 300
                if not ok:
                    problem = f"HTTP {status}"
                    # The receiver refuses this request: repeating it will not help.
                    final = 400 <= status < 500 and status not in (408, 429)
            except httpx.HTTPError as exc:
                # The exception text can carry the URL (a Slack URL is its own credential): type only.
                problem = f"{type(exc).__name__} (no answer within {self.settings.timeout:g} s or refused)" \
                    if isinstance(exc, httpx.TimeoutException) else type(exc).__name__
        except _Failed as exc:
            problem, final = str(exc), True
        self._record(row_id, alert, host, sent, ok, final, status, problem)

    def _attempt_email(self, row_id: str, index: int, alert: Alert) -> None:
        """One email of a claimed row (SMTP with STARTTLS or implicit TLS, login from the vault)."""
        import smtplib
        import ssl
        from email.message import EmailMessage

        if index >= len(self.emails):
            self._record(row_id, alert, "?", False, False, True, None,
                         f"alert receiver #{len(self.webhooks) + index + 1} is no longer in the configuration")
            return
        ch = self.emails[index]
        sent = ok = final = False
        problem = ""
        try:
            password = self._secret(ch.password_secret, "email.password_secret") if ch.username else None
            msg = EmailMessage()
            msg["Subject"] = alert.text().splitlines()[0][:200]  # a digest's first line
            msg["From"] = ch.sender
            msg["To"] = ", ".join(ch.to)
            msg[ALERT_ID_HEADER] = alert.id
            msg.set_content(alert.text() + "\n\n" + json.dumps(alert.payload(), indent=2, default=str))
            ctx = ssl.create_default_context(cafile=ch.ca_file)
            timeout = self.settings.timeout
            sent = True
            try:
                smtp: smtplib.SMTP = (smtplib.SMTP_SSL(ch.host, ch.port, timeout=timeout, context=ctx)
                                      if ch.security == "tls" else smtplib.SMTP(ch.host, ch.port, timeout=timeout))
                with smtp:
                    if ch.security == "starttls":
                        smtp.starttls(context=ctx)
                    if ch.username and password is not None:
                        smtp.login(ch.username, password)
                    smtp.send_message(msg)
                ok = True
            except smtplib.SMTPAuthenticationError as exc:
                problem, final = f"SMTP login refused ({exc.smtp_code})", True
            except smtplib.SMTPResponseException as exc:
                problem = f"SMTP {exc.smtp_code}"
                final = 500 <= exc.smtp_code < 600
            except (OSError, smtplib.SMTPException) as exc:
                problem = type(exc).__name__  # the text could carry addresses or server banners: type only
        except _Failed as exc:
            problem, final = str(exc), True
        self._record(row_id, alert, ch.host, sent, ok, final, None, problem)

    def _record(self, row_id: str, alert: Alert, host: str, sent: bool, ok: bool, final: bool,
                status: int | None, problem: str) -> None:
        now = self.clock.now()
        fmt = "?"
        with self.db.session() as s:
            row = s.get(AlertOutboxRow, row_id)
            if row is None or row.state != "pending":
                return
            if row.hook < len(self.webhooks):
                fmt = self.webhooks[row.hook].format
            elif row.hook < len(self.webhooks) + len(self.emails):
                fmt = "email"
            row.attempts += 1 if sent else 0
            row.claimed_until = None
            if not ok and not final and row.attempts < self.settings.attempts:
                row.next_attempt_at = now + self.settings.backoff * 2 ** max(row.attempts - 1, 0)
                row.last_error = problem[:300]
                return
            row.state, row.done_at, row.last_error = ("sent" if ok else "failed"), now, (problem[:300] or None)
            detail: dict[str, Any] = {"alert_event": alert.event, "subject": alert.subject, "alert_id": alert.id,
                                      "host": host, "format": fmt, "attempts": row.attempts, "status": status}
            if not ok:
                detail["error"] = problem
                log.warning("alerts: %s for %s could not be delivered to %s after %d attempt(s): %s",
                            alert.event, alert.subject, host, row.attempts, problem)
            audit.record(s, "alert.sent" if ok else "alert.failed", outcome="ok" if ok else "failed",
                         source=alert.agent_id, target=host, flow=alert.flow, stream=alert.stream,
                         run_id=alert.run_id, detail=detail)

    def _secret(self, name: str | None, what: str) -> str:
        if not name or self.vault is None or not self.vault.exists(name):
            raise _Failed(f"{what}: the secret {name!r} is not in the vault; "
                          f"store it with `ml-connector secrets set {name}`")
        return str(self.vault.get(name))


def alerter_from_config(cfg: Any, db: Database, vault: Any) -> Alerter | None:
    """The Alerter of the configuration's `alerts:` section (None when there is none)."""
    if cfg is None or not (getattr(cfg, "webhooks", None) or getattr(cfg, "email", None)):
        return None
    hooks = [Webhook(url=w.url, url_secret=w.url_secret, format=w.format,
                     header_name=w.secret_header.name if w.secret_header else None,
                     header_secret=w.secret_header.value_secret if w.secret_header else None)
             for w in cfg.webhooks]
    e = getattr(cfg, "email", None)
    emails = [] if e is None else [EmailChannel(host=e.host, port=e.port, sender=e.sender, to=tuple(e.to),
                                                security=e.security, username=e.username,
                                                password_secret=e.password_secret, ca_file=e.ca_file,
                                                digest=e.digest, digest_at=e.digest_at)]
    return Alerter(db, vault, hooks, events=tuple(cfg.events), emails=emails,
                   settings=AlertSettings(interval=cfg.interval, timeout=cfg.timeout, attempts=cfg.attempts,
                                          backoff=cfg.backoff))
