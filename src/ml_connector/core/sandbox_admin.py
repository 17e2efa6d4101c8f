"""The admin routes every emulator serves on loopback: `GET|POST /_sandbox/faults`, `GET|POST
/_sandbox/config` and `GET /_sandbox/stats`.

One router factory, so that every emulator answers these the same way: a JSON object in, the new
switches out; a body that is not a JSON object, an unknown switch or a bad value answers 400 with
`{"error": ...}` naming it. Each emulator passes its own getters and setters (its state knows its
switches); the routes themselves know no system.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

Getter = Callable[[], dict[str, Any]]
Setter = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Switches:
    """One group of admin switches: how to read them and how to apply a JSON object to them."""

    get: Getter
    set: Setter



async def _object_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"the body is not valid JSON: {exc}") from exc
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ValueError("expected a JSON object")
    return body


def _error(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        # A KeyError's str() is the repr of the key: say what it means.
        return f"unknown switch {exc}"
    return str(exc)


def _pair(router: APIRouter, path: str, switches: Switches) -> None:
    @router.get(path)
    async def read() -> dict[str, Any]:
        return switches.get()

    @router.post(path)
    async def write(request: Request) -> Response:
        try:
            return JSONResponse(switches.set(await _object_body(request)))
        except (ValueError, TypeError, KeyError) as exc:
            return JSONResponse({"error": _error(exc)}, status_code=400)


def admin_router(*, faults: Switches, stats: Getter, config: Switches | None = None) -> APIRouter:
    """The `/_sandbox/faults`, `/_sandbox/stats` and (where the emulator has one) `/_sandbox/config`
    routes of one emulator."""
    router = APIRouter()
    _pair(router, "/_sandbox/faults", faults)
    if config is not None:
        _pair(router, "/_sandbox/config", config)

    @router.get("/_sandbox/stats")
    async def read_stats() -> dict[str, Any]:
        return stats()

    return router
