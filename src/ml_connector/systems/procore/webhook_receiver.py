"""Procore's webhooks received by the control plane: hints that a stream should run.

Per request (`POST <connections.<name>.webhooks.path>`): the Authorization header must equal, byte for
byte (constant-time compare), the value configured on the hook (`webhooks.authorization_secret` in
the vault) -> 401 otherwise; Procore sends no HMAC, that header is its only authentication. The
event (JSON, v2.0 payload) is stored in `mlc_procore_webhook_events` (migration 0014) in one
transaction, keyed by its `ulid` (its `id` when there is none): a redelivery is a duplicate, stored
once, still acknowledged. Only after the commit is the answer 200 (Procore waits 5 s; nothing slow
happens before it), so a failed write is a 503 that Procore retries. Then, after the answer, the
streams whose Procore target declares the event's resource (`WEBHOOK_RESOURCES`) are started with
the engine's deterministic run id (a burst of events while a run is pending joins that run).
The event is a hint: the run reads SAP and Procore itself; nothing in the payload is trusted.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import JSONResponse
from sqlalchemy import JSON, DateTime, Integer, String, UniqueConstraint, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from ml_connector.core.db import Database
from ml_connector.core.models import Base, utcnow

log = logging.getLogger(__name__)

MAX_BYTES = 256_000  # a v2.0 event is well under 2 KB


class ProcoreWebhookEventRow(Base):
    """One received Procore webhook event; (connection, event_key) is its dedupe key."""

    __tablename__ = "mlc_procore_webhook_events"
    __table_args__ = (UniqueConstraint("connection", "event_key", name="uq_mlc_procore_webhook_events_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    connection: Mapped[str] = mapped_column(String(100))
    event_key: Mapped[str] = mapped_column(String(64))
    resource_name: Mapped[str] = mapped_column(String(100))
    event_type: Mapped[str] = mapped_column(String(30))
    resource_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    project_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    run_ids: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)  # the runs it started


class BadEvent(ValueError):
    pass


@dataclass(frozen=True)
class StoredEvent:
    id: int
    key: str
    resource_name: str
    duplicate: bool


def event_key(event: dict[str, Any]) -> str:
    """Procore's unique id of the event: its ulid (v2.0), else its numeric id."""
    key = event.get("ulid") or event.get("id")
    if key is None or str(key).strip() == "" or len(str(key)) > 64:
        raise BadEvent("event: no 'ulid' or 'id' (or longer than 64 characters)")
    return str(key)


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)[:40]


class WebhookEventStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def store(self, connection: str, event: dict[str, Any]) -> StoredEvent:
        key = event_key(event)
        resource = str(event.get("resource_name") or "")
        if not resource:
            raise BadEvent("event: no 'resource_name'")
        try:
            with self.db.session() as s:
                row = ProcoreWebhookEventRow(connection=connection, event_key=key, resource_name=resource[:100],
                                             event_type=str(event.get("event_type") or "")[:30],
                                             resource_id=_opt(event.get("resource_id")),
                                             project_id=_opt(event.get("project_id")), payload=event)
                s.add(row)
                s.flush()
                return StoredEvent(row.id, key, resource, False)
        except IntegrityError:  # stored before (a redelivery, possibly concurrent)
            with self.db.session() as s:
                found = s.scalars(select(ProcoreWebhookEventRow).where(
                    ProcoreWebhookEventRow.connection == connection,
                    ProcoreWebhookEventRow.event_key == key)).one()
                return StoredEvent(found.id, key, found.resource_name, True)

    def mark_started(self, event_id: int, run_ids: list[str]) -> None:
        with self.db.session() as s:
            row = s.get(ProcoreWebhookEventRow, event_id)
            if row is not None:
                row.run_ids = run_ids

    def list(self, connection: str | None = None, *, limit: int = 100) -> list[dict[str, Any]]:
        with self.db.session() as s:
            q = select(ProcoreWebhookEventRow).order_by(ProcoreWebhookEventRow.id).limit(limit)
            if connection:
                q = q.where(ProcoreWebhookEventRow.connection == connection)
            return [{"id": r.id, "connection": r.connection, "event_key": r.event_key,
                     "resource_name": r.resource_name, "event_type": r.event_type, "resource_id": r.resource_id,
                     "project_id": r.project_id, "run_ids": r.run_ids} for r in s.scalars(q)]


class HeaderSecret:
    """The expected Authorization value from a callable (the vault), re-read at most every `ttl`
    seconds so that a rotated secret takes effect."""

    def __init__(self, source: Callable[[], str], *, ttl: float = 60.0) -> None:
        self._source = source
        self._ttl = ttl
        self._cached: tuple[float, str] | None = None
        self._lock = threading.Lock()

    def check(self, given: str | None) -> bool:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > self._ttl:
                try:
                    self._cached = (now, self._source())
                except Exception as exc:  # e.g. the secret is not set: refuse every request, say why
                    log.warning("Procore webhooks: the authorization secret cannot be read (%s)",
                                type(exc).__name__)
                    return False
            expected = self._cached[1]
        return bool(given) and bool(expected) and secrets.compare_digest(
            (given or "").encode("utf-8"), expected.encode("utf-8"))


def affected_streams(rt: Any, connection: str, resource_name: str) -> list[tuple[str, str]]:
    """(flow, stream) of every configured stream writing to `connection` whose target declares the resource."""
    out: list[tuple[str, str]] = []
    for name, fcfg in rt.config.flows.items():
        if fcfg.target != connection:
            continue
        streams = rt.flow(name).streams()
        for sname in fcfg.streams:
            stream = streams.get(sname)
            if stream is not None and resource_name in getattr(stream.target, "WEBHOOK_RESOURCES", ()):
                out.append((name, sname))
    return out


def start_runs(rt: Any, store: WebhookEventStore, connection: str, stored: StoredEvent) -> list[str]:
    """Start the affected streams' runs (deterministic ids); failures are logged, the event stays stored."""
    from ml_connector.core import engine

    run_ids: list[str] = []
    for flow, stream in affected_streams(rt, connection, stored.resource_name):
        try:
            run_ids.append(engine.start_sync(flow, stream))
        except Exception as exc:  # the hint is lost for now; the schedule still runs the stream
            log.warning("Procore webhook %s: could not start %s/%s: %s", stored.key, flow, stream,
                        type(exc).__name__)
    store.mark_started(stored.id, run_ids)
    return run_ids


def webhook_router(rt: Any, connection: str, path: str, secret: HeaderSecret,
                   store: WebhookEventStore | None = None) -> APIRouter:
    router = APIRouter()
    events = store or WebhookEventStore(rt.db)

    def answer(status: int, **body: Any) -> JSONResponse:
        return JSONResponse(body, status_code=status)

    @router.post(path, include_in_schema=True, tags=["procore"])
    async def receive(request: Request, background: BackgroundTasks) -> JSONResponse:
        if not secret.check(request.headers.get("authorization")):
            return answer(401, error="unauthorized")
        raw = await request.body()
        if len(raw) > MAX_BYTES:
            return answer(413, error=f"event larger than {MAX_BYTES} bytes")
        try:
            event = json.loads(raw)
            if not isinstance(event, dict):
                raise BadEvent("event: a JSON object is expected")
            stored = await anyio.to_thread.run_sync(events.store, connection, event)
        except (ValueError, BadEvent) as exc:
            return answer(400, error=str(exc) if isinstance(exc, BadEvent) else "event: invalid JSON")
        except Exception as exc:  # not stored: not acknowledged, Procore retries
            log.error("Procore webhook not stored: %s", type(exc).__name__)
            return answer(503, error="not stored, retry")
        if not stored.duplicate:
            background.add_task(anyio.to_thread.run_sync, start_runs, rt, events, connection, stored)
        return answer(200, ulid=stored.key, duplicate=stored.duplicate)

    return router


def drift_router(rt: Any) -> APIRouter:
    """`GET /api/procore/drift/{flow}`: the drift report of a flow writing to Procore, as JSON (behind
    the operators' API guard, viewer role). The flow computes it (`procore_drift()`); 404 for a flow
    that is not configured or offers none."""
    from fastapi import Depends

    from ml_connector.server.api_auth import admin_guard
    from ml_connector.server.roles import api_role

    router = APIRouter(dependencies=[Depends(admin_guard(rt.db, rt.config.server)), Depends(api_role("viewer"))])

    @router.get("/api/procore/drift/{flow}", tags=["procore"])
    async def drift(flow: str) -> JSONResponse:
        if flow not in rt.config.flows:
            return JSONResponse({"error": f"no flow {flow!r}"}, status_code=404)
        compute = getattr(rt.flow(flow), "procore_drift", None)
        if compute is None:
            return JSONResponse({"error": f"flow {flow!r} has no Procore drift report"}, status_code=404)
        return JSONResponse(await anyio.to_thread.run_sync(compute))

    return router
