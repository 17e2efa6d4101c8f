"""The remote agent's HTTP API on the control plane (the agent only ever connects out).

    POST /api/agent/pair       {token, public_key, name, hostname, version}
                               -> {agent_id, site, control_plane_public_key, server_time}
    POST /api/agent/poll       signed; {hold, max, busy: [call ids], held: [call ids], instance} -> {calls:
                               [envelope], server_time, lease_seconds}; held up to `hold` seconds (capped)
                               until work arrives. Calls this agent process (instance) claimed but does
                               not list in `held` are queued again.
    POST /api/agent/heartbeat  signed; {busy: [call ids], held: [call ids]} -> {extended, server_time,
                               lease_seconds}: renews the leases of every call the agent holds (running,
                               or finished with its result not yet stored here)
    POST /api/agent/results    signed; {response: ChannelResponse} -> 200 {stored, duplicate} after commit
    POST /api/agent/events     signed; {event, detail} -> 200 (audited: tampered calls, refusals)
    GET  /api/agents           the agents, their state (online/offline/revoked) and work in flight
    GET  /api/agents/dispatch  this process's Postgres notification listener (connected, counters)

Refusals answer 4xx with {"detail": {"error": CODE, "message", "retriable", "server_time", ...}}.

Bodies are bounded before they are read (BODY_LIMITS; 413 `body_too_large`): a declared
Content-Length above the route's limit is refused at once, a streamed body as soon as it
passes the limit. A signed request's headers (agent, timestamp, nonce, signature) are
checked first, so a request that cannot be authentic is refused without its body being read.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError

from ml_connector.agent import protocol as proto
from ml_connector.core.channel import ChannelResponse
from ml_connector.server.agents import wakeups
from ml_connector.server.agents.pacing import Pacing
from ml_connector.server.agents.service import SIGNAL, AgentIdentity, AgentService, AuthError
from ml_connector.server.forwarded import peer_of


class PairRequest(BaseModel):
    token: str = Field(min_length=1, max_length=200)
    public_key: str = Field(min_length=1, max_length=100)
    name: str = ""
    hostname: str = ""
    version: str = ""


class PollRequest(BaseModel):
    hold: float = Field(default=50.0, ge=0, le=600)
    max: int = Field(default=1, ge=0, le=100)
    busy: list[str] = Field(default_factory=list)
    # Every call id the agent has received and not yet seen stored here (running, or result
    # not yet acknowledged). None from agents that predate it: no reconciliation then.
    held: list[str] | None = Field(default=None, max_length=10_000)
    # The polling agent process (random per start): `held` speaks only for calls it claimed.
    instance: str | None = Field(default=None, min_length=8, max_length=64)


class HeartbeatRequest(BaseModel):
    busy: list[str] = Field(default_factory=list)
    # Every call the agent holds, running or with a result not yet delivered: a finished call's
    # lease must not run out while its result waits on the agent. Older agents send only busy.
    held: list[str] = Field(default_factory=list, max_length=10_000)


class ResultRequest(BaseModel):
    response: ChannelResponse


class EventRequest(BaseModel):
    event: str = Field(max_length=60)
    detail: dict[str, Any] = Field(default_factory=dict)


def _env_bytes(name: str, default: int) -> int:
    try:
        return max(1024, int(os.environ.get(name, default)))
    except ValueError:
        return default


#: The largest body each endpoint reads (bytes). A poll or heartbeat lists at most 10,000 call
#: ids; a result carries an SAP answer (MLC_AGENT_MAX_RESULT_BYTES, 32 MB by default).
BODY_LIMITS: dict[str, int] = {
    "pair": 8 * 1024,
    "poll": 2 * 1024 * 1024,
    "heartbeat": 2 * 1024 * 1024,
    "results": _env_bytes("MLC_AGENT_MAX_RESULT_BYTES", 32 * 1024 * 1024),
    "events": 64 * 1024,
}


def _too_large(route: str, limit: int) -> HTTPException:
    return HTTPException(413, detail={
        "error": "body_too_large", "retriable": False, "server_time": time.time(), "limit": limit,
        "message": f"request body too large: /api/agent/{route} accepts at most {limit} bytes"})


def check_declared_length(request: Request, route: str, limit: int) -> None:
    """Refuse a declared Content-Length above `limit` before anything is read."""
    declared = request.headers.get("content-length")
    if declared is None:
        return
    try:
        n = int(declared)
    except ValueError:
        raise HTTPException(400, detail={"error": "bad_request", "retriable": False, "server_time": time.time(),
                                         "message": "Content-Length is not a number"}) from None
    if n > limit:
        raise _too_large(route, limit)


async def read_body(request: Request, route: str, limit: int) -> bytes:
    """The body, read chunk by chunk and refused (413) as soon as it passes `limit` bytes."""
    check_declared_length(request, route, limit)
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > limit:
            raise _too_large(route, limit)
    return bytes(buf)


def request_target(request: Request) -> str:
    """The signed part of the URL: the path and the query string as sent (protocol.request_target)."""
    return proto.request_target(request.url.path, request.scope.get("query_string", b"").decode("latin-1"))


def _renewable(busy: list[str], held: list[str] | None) -> list[str]:
    return sorted(set(busy) | set(held or []))


def _http(exc: AuthError) -> HTTPException:
    return HTTPException(exc.status, detail=exc.body())


def agent_router(rt: Any, service: AgentService | None = None, admin: list[Any] | None = None) -> APIRouter:
    """`admin`: the dependencies that authenticate operators (for `/api/agents`); the agents'
    own endpoints take no admin token, only their signature."""
    svc = service or AgentService(rt.db, rt.vault, pacing=Pacing.from_config(rt.config),
                                  alerts=getattr(rt, "alerts", None))
    svc.start_sweeper()
    router = APIRouter()

    def signed_for(route: str) -> Callable[[Request], Awaitable[tuple[AgentIdentity, bytes]]]:
        async def signed(request: Request) -> tuple[AgentIdentity, bytes]:
            from starlette.concurrency import run_in_threadpool

            limit = BODY_LIMITS[route]

            # Cheapest first: the declared size, then the headers (and the agent's row), then the
            # body (bounded), then the signature over it.
            check_declared_length(request, route, limit)
            client = request.client.host if request.client else ""
            try:
                pending = await run_in_threadpool(svc.precheck, request.method, request_target(request),
                                                  request.headers, client, peer_of(request))
                body = await read_body(request, route, limit)
                ident = await run_in_threadpool(svc.verify, pending, body)
            except AuthError as exc:
                raise _http(exc) from None
            return ident, body

        return signed

    # The body is read by hand (bounded); its schema is still documented.
    @router.post("/api/agent/pair", openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": PairRequest.model_json_schema()}}}})
    async def pair(request: Request) -> dict[str, Any]:
        from starlette.concurrency import run_in_threadpool

        body = await read_body(request, "pair", BODY_LIMITS["pair"])
        try:
            req = PairRequest.model_validate_json(body)
        except ValidationError as exc:
            raise RequestValidationError(exc.errors()) from None
        try:
            result: dict[str, Any] = await run_in_threadpool(
                lambda: svc.pair(req.token, req.public_key, name=req.name, hostname=req.hostname,
                                 version=req.version, client=request.client.host if request.client else "",
                                 peer=peer_of(request)))
            return result
        except AuthError as exc:
            raise _http(exc) from None

    poll_generation: dict[str, int] = {}
    gen_lock = threading.Lock()

    @router.post("/api/agent/poll")
    async def poll(request: Request,
                   auth: tuple[AgentIdentity, bytes] = Depends(signed_for("poll"))) -> dict[str, Any]:
        from starlette.concurrency import run_in_threadpool

        ident, body = auth
        req = PollRequest.model_validate_json(body or b"{}")
        await run_in_threadpool(svc.extend, ident, _renewable(req.busy, req.held))
        if req.held is not None and req.instance:  # before this poll claims: its own claims are not "lost"
            await run_in_threadpool(svc.release_unheld, ident, req.held, req.instance)
        # One held poll per agent: a newer poll (the agent restarted, or its old
        # connection hangs half-open) supersedes the older one, which then claims nothing.
        with gen_lock:
            gen = poll_generation.get(ident.agent_id, 0) + 1
            poll_generation[ident.agent_id] = gen
        deadline = time.monotonic() + min(req.hold, svc.settings.hold_max)
        # Calls queued (or answered: pacing budget freed) by other processes wake the wait by
        # notification on Postgres; the db_poll timer stays as the fallback.
        with wakeups.site_watch(svc.db, ident.site):
            while True:
                # Never claim work for a poller that is gone: the call would sit in a
                # dead socket until its lease ran out.
                if await request.is_disconnected() or poll_generation.get(ident.agent_id) != gen:
                    return {"calls": [], "server_time": time.time(), "lease_seconds": svc.settings.lease}
                seen = SIGNAL.version
                calls = await run_in_threadpool(svc.claim, ident, req.max, req.instance)
                if calls is None:
                    raise _http(AuthError("revoked", f"agent {ident.agent_id} was revoked; pair a new agent"))
                remaining = deadline - time.monotonic()
                if calls or remaining <= 0:
                    return {"calls": calls, "server_time": time.time(), "lease_seconds": svc.settings.lease}
                await run_in_threadpool(SIGNAL.wait, seen, min(svc.settings.db_poll, remaining))

    @router.post("/api/agent/heartbeat")
    def heartbeat(auth: tuple[AgentIdentity, bytes] = Depends(signed_for("heartbeat"))) -> dict[str, Any]:
        ident, body = auth
        req = HeartbeatRequest.model_validate_json(body or b"{}")
        return {"extended": svc.extend(ident, _renewable(req.busy, req.held)), "server_time": time.time(),
                "lease_seconds": svc.settings.lease}

    @router.post("/api/agent/results")
    def results(auth: tuple[AgentIdentity, bytes] = Depends(signed_for("results"))) -> dict[str, Any]:
        ident, body = auth
        req = ResultRequest.model_validate_json(body)
        try:
            out = svc.store_result(ident, req.response)
        except AuthError as exc:
            raise _http(exc) from None
        return {**out, "server_time": time.time()}

    @router.post("/api/agent/events")
    def events(auth: tuple[AgentIdentity, bytes] = Depends(signed_for("events"))) -> dict[str, Any]:
        ident, body = auth
        req = EventRequest.model_validate_json(body)
        svc.report(ident, req.event, req.detail)
        return {"recorded": True, "server_time": time.time()}

    @router.get("/api/agents", dependencies=admin or [])
    def agents() -> list[dict[str, Any]]:
        return svc.list_agents()

    @router.get("/api/agents/dispatch", dependencies=admin or [])
    def dispatch() -> dict[str, Any]:
        """How this process learns of other processes' calls and results (counters for metrics)."""
        return wakeups.stats(svc.db)

    return router
