"""The control plane's HTTP API: health, flows, runs, failures, review, replay (OpenAPI at /openapi.json).

Two kinds of callers share the listener: operators (the JSON API, bearer token, see
server/api_auth.py) and agents (`/api/agent/*`, Ed25519-signed requests). `/health`
is open.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from ml_connector import __version__
from ml_connector.core import audit, calls, flow_pause, outbox
from ml_connector.core.flow import RunDeferred
from ml_connector.core.models import RunRow
from ml_connector.core.redact import redact
from ml_connector.core.runtime import Runtime


class Health(BaseModel):
    status: str
    version: str
    database: str


class FlowInfo(BaseModel):
    name: str
    pair: str
    source: str
    target: str
    streams: list[str]
    schedule: str | None


class RunInfo(BaseModel):
    run_id: str
    flow: str
    stream: str
    mode: str
    status: str
    counts: dict[str, Any]
    error: str | None = None
    started_at: datetime
    finished_at: datetime | None = None
    #: Calls the run made, per system or connection (core/calls.py); retries count, each one a call.
    calls: dict[str, int] = {}
    #: Calls made since by replays and re-checks of the run's records, per system, kept apart.
    replay_calls: dict[str, int] = {}


class FailureInfo(BaseModel):
    id: int
    flow: str
    stream: str
    record: str
    op: str
    state: str
    attempts: int
    error: str | None


class ReviewInfo(BaseModel):
    """A document marked for review (core/review.py)."""

    id: int
    flow: str
    stream: str
    record: str
    document: str
    party: str = Field(description="The vendor (or customer, employee) it concerns")
    amount: str
    waits_for: str = Field(description="table:value of the missing mapping or master record")
    table: str
    value: str
    reason: str
    since: datetime
    hint: str


class SyncRequest(BaseModel):
    stream: str | None = None
    full: bool = False
    force: bool = False  # start even a run the flow defers now (a large full comparison in business hours)


class SyncStarted(BaseModel):
    run_ids: list[str]


class ReplayRequest(BaseModel):
    ids: list[int] = Field(default_factory=list, description="Outbox ids from /api/failures; empty = all")


class ReplayResult(BaseModel):
    replayed: int
    outcome: dict[str, int]


def _schedule_text(f: Any) -> str | None:
    sched = getattr(f, "schedule", None)
    if sched is None:
        return None
    return f"cron {sched.cron}" if sched.cron else f"every {int(sched.seconds)}s"


def create_app(rt: Runtime) -> FastAPI:
    from ml_connector.server.api_auth import admin_guard
    from ml_connector.server.roles import api_actor, api_role

    api = FastAPI(title="ml-connector control plane", version=__version__,
                  description="Flows, runs, failures and replay of ml-connector. The operators' endpoints "
                              "need `Authorization: Bearer <token>` (`ml-connector api-tokens create NAME`) "
                              "unless the server is bound to loopback only; the agents' endpoints "
                              "(/api/agent/*) are authenticated by the agent's signature instead.")
    # Every operator endpoint hangs off this router, so none can be added without the guard.
    admin_dep = [Depends(admin_guard(rt.db, rt.config.server))]
    admin = APIRouter(dependencies=admin_dep)

    @api.get("/health", response_model=Health)
    def health() -> Health:
        with rt.db.session() as s:
            s.execute(select(1))
        return Health(status="ok", version=__version__, database=rt.db.dialect)

    @admin.get("/api/flows", response_model=list[FlowInfo])
    def flows() -> list[FlowInfo]:
        return [FlowInfo(name=n, pair=f.pair, source=f.source, target=f.target, streams=list(f.streams),
                         schedule=_schedule_text(f)) for n, f in rt.config.flows.items()]

    @admin.post("/api/flows/{flow}/sync", response_model=SyncStarted, status_code=202,
                dependencies=[Depends(api_role("operator"))])
    def start_sync(flow: str, req: SyncRequest, request: Request) -> SyncStarted:
        from ml_connector.core import engine

        if flow not in rt.config.flows:
            raise HTTPException(404, f"no flow named {flow!r}")
        streams = [req.stream] if req.stream else list(rt.config.flows[flow].streams)
        try:
            flow_pause.check(rt, flow)
        except flow_pause.FlowPaused as exc:  # paused after repeated failed runs, until resumed
            raise HTTPException(409, str(exc)) from None
        with rt.db.session() as s:
            audit.record(s, "api.sync", flow=flow, detail={"user": api_actor(request), "streams": streams,
                                                            "full": req.full})
        try:
            return SyncStarted(run_ids=[engine.start_sync(flow, s, full=req.full, force=req.force) for s in streams])
        except KeyError as exc:
            raise HTTPException(404, str(exc.args[0])) from None
        except RunDeferred as exc:  # e.g. a large full comparison during business hours
            raise HTTPException(409, {"error": "deferred", "message": str(exc)}) from None

    @admin.get("/api/runs", response_model=list[RunInfo])
    def runs(limit: int = 50, flow: str | None = None) -> list[RunInfo]:
        with rt.db.session() as s:
            q = select(RunRow).order_by(RunRow.started_at.desc()).limit(min(limit, 500))
            if flow:
                q = q.where(RunRow.flow == flow)
            rows = list(s.scalars(q))
            made = calls.of_runs(s, [r.run_id for r in rows], rt.config.connections)
            return [_run(r, made.get(r.run_id)) for r in rows]

    @admin.get("/api/runs/{run_id}", response_model=RunInfo)
    def run(run_id: str) -> RunInfo:
        with rt.db.session() as s:
            r = s.get(RunRow, run_id)
            if r is None:
                raise HTTPException(404, f"no run {run_id!r}")
            return _run(r, calls.of_runs(s, [run_id], rt.config.connections).get(run_id))

    @admin.get("/api/failures", response_model=list[FailureInfo])
    def failures(flow: str | None = None) -> list[FailureInfo]:
        with rt.db.session() as s:
            return [FailureInfo(id=r.id, flow=r.flow, stream=r.stream, record=r.source_key, op=r.op,
                                state=r.state, attempts=r.attempts,
                                error=redact(r.last_error) if r.last_error else None)
                    for r in outbox.failures(s, flow=flow)]

    @admin.get("/api/journey/{ref:path}")
    def record_journey(ref: str) -> list[dict[str, Any]]:
        """Every event of one record (a source id, a target document, a reference): see `ml-connector journey`."""
        from ml_connector.core.journey import journey

        with rt.db.session() as s:
            steps = journey(s, ref)
        if not steps:
            raise HTTPException(404, f"nothing is known about {ref!r}")
        return [json.loads(redact(json.dumps(st, default=str))) for st in steps]

    @admin.get("/api/review", response_model=list[ReviewInfo])
    def review_list(flow: str | None = None) -> list[ReviewInfo]:
        from dataclasses import asdict

        from ml_connector.core import review

        with rt.db.session() as s:
            return [ReviewInfo(**asdict(i)) for i in review.items(s, rt.config.flows, flow=flow)]

    @admin.post("/api/replay", response_model=ReplayResult, dependencies=[Depends(api_role("operator"))])
    def replay(req: ReplayRequest, request: Request) -> ReplayResult:
        from ml_connector.core import engine

        ids = req.ids
        if not ids:
            with rt.db.session() as s:
                ids = [r.id for r in outbox.failures(s, limit=100000)]
        if not ids:
            return ReplayResult(replayed=0, outcome={})
        with rt.db.session() as s:
            audit.record(s, "api.replay", detail={"user": api_actor(request), "ids": ids[:1000]})
        return ReplayResult(replayed=len(ids), outcome=engine.replay(ids))

    api.include_router(admin)
    from ml_connector.server.flow_api import install_flow_routers

    install_flow_routers(api, rt, admin_dep)  # a flow module's own endpoints, /api/flows/<flow>/...
    from ml_connector.server.console import install_console

    install_console(api, rt, admin_dep)  # the operators' web pages at / and /metrics (server/console/)
    # Endpoints the systems add (e.g. SAP ECC's IDoc receiver when `server.idoc` is configured).
    from ml_connector.core import registry

    for entry in registry.entries():
        for router in entry.routers(rt) if entry.routers is not None else ():
            api.include_router(router)

    from ml_connector.server.agent_api import agent_router
    # the remote agent's API (/api/agent/*, signed) and the operators' /api/agents (admin_dep)
    api.include_router(agent_router(rt, admin=admin_dep))
    from ml_connector.server.forwarded import ClientAddress, TrustedProxies

    # Forwarded client addresses are believed only from server.trusted_proxies (server/forwarded.py).
    api.add_middleware(ClientAddress, trusted=TrustedProxies(getattr(rt.config.server, "trusted_proxies", [])))
    return api


def _run(r: RunRow, made: tuple[dict[str, int], dict[str, int]] | None = None) -> RunInfo:
    own, later = made or ({}, {})
    return RunInfo(run_id=r.run_id, flow=r.flow, stream=r.stream, mode=r.mode, status=r.status,
                   counts=dict(r.counts), error=redact(r.error) if r.error else None,
                   started_at=r.started_at, finished_at=r.finished_at, calls=own, replay_calls=later)
