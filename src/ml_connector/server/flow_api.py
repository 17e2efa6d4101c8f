"""Endpoints a flow module adds to the control plane's JSON API.

A flow module (`flows/<pair>.py` or an entry point) may define
`routers(rt, flow) -> list[APIRouter]`: for every configured flow of that pair, its routers are
mounted under `/api/flows/<flow>/` behind the operators' guard (API token, as every `/api/*`
route); each route states the role it needs with `Depends(server.roles.api_role(...))`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, FastAPI


def flow_routers(rt: Any) -> Iterator[tuple[str, APIRouter]]:
    """(flow name, router) of every configured flow whose module defines `routers`."""
    from ml_connector.core import flow_modules

    for name, f in rt.config.flows.items():
        module = flow_modules.module_of(f.pair)  # an entry point, or flows/<pair>.py
        hook = getattr(importlib.import_module(module), "routers", None) if module else None
        for router in hook(rt, name) if hook is not None else ():
            yield name, router


def install_flow_routers(api: FastAPI, rt: Any, guard: list[Any]) -> None:
    for name, router in flow_routers(rt):
        api.include_router(router, prefix=f"/api/flows/{name}", dependencies=guard)
