"""The operators' HTTP API in tests: an app behind the admin guard, a runtime from a server section."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.testclient import TestClient

from ml_connector.config import parse_config
from ml_connector.core.db import Database
from ml_connector.core.models import AuditRow
from ml_connector.core.runtime import Runtime
from ml_connector.server.api_auth import RefusalAudit, admin_guard
from tests.support.databases import audit_rows


def guarded_app(db: Database, refusals: RefusalAudit) -> TestClient:
    """One operator route (GET /api/flows) behind the admin guard of a non-loopback server."""
    app = FastAPI()
    router = APIRouter(dependencies=[Depends(admin_guard(db, SimpleNamespace(api_auth="token", host="0.0.0.0"),
                                                         refusals=refusals))])

    @router.get("/api/flows")
    def flows() -> list[Any]:
        return []

    app.include_router(router)
    return TestClient(app)


def runtime_with_server(tmp_path: Path, server: str) -> Runtime:
    """A runtime whose configuration has only an engine and the `server` section (YAML flow text)."""
    text = f"engine: {{data_dir: ./data}}\nserver: {server}\n"
    cfg = parse_config(text, config_dir=tmp_path)
    return Runtime(cfg, tmp_path / "ml-connector.yaml")


def concrete_path(path: str) -> str:
    """An OpenAPI path with every {parameter} filled in."""
    return re.sub(r"\{[^}]+\}", "x", path)


def api_refusal_rows(db: Database) -> list[AuditRow]:
    """The audit rows of refused operator requests, oldest first."""
    return audit_rows(db, "api.auth.rejected")
