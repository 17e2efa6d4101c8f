"""A tiny system added through the registry only (docs/adding-a-system.md): proves that a system
needs no change outside its own package.

`ENTRY` is what `systems/<name>/__init__.py` declares; a test registers it for its process with
`registry.register(ENTRY)` (an installed package would name it under the `ml_connector.systems`
entry points instead).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Literal

import httpx
from fastapi import FastAPI, Header, HTTPException
from pydantic import Field

from ml_connector.core.registry import Emulator, SystemEntry
from ml_connector.core.settings import Duration, SecretName, SettingsModel

NAME = "example"
DEMO_KEY = "example-demo-key"  # the emulator's public demo credential, not a secret


class ExampleConnection(SettingsModel):
    """A connection of type `example`: a base URL and an API key kept in the vault."""

    type: Literal["example"]
    base_url: str = Field(min_length=1)
    api_key_secret: SecretName
    timeout: Duration = 10.0


class ExampleClient:
    def __init__(self, base_url: str, api_key: str, timeout: float) -> None:
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers={"X-Api-Key": api_key}, timeout=timeout)

    def items(self) -> list[dict[str, Any]]:
        resp = self.http.get("/items")
        resp.raise_for_status()
        return list(resp.json()["items"])

    def ping(self) -> float:
        t0 = time.perf_counter()
        self.http.get("/ping").raise_for_status()
        return time.perf_counter() - t0

    def close(self) -> None:
        self.http.close()


def connect(rt: Any, name: str, cfg: ExampleConnection) -> ExampleClient:
    return ExampleClient(cfg.base_url, rt.vault.get(cfg.api_key_secret), float(cfg.timeout))


def ping(rt: Any, name: str, cfg: ExampleConnection) -> str:
    seconds = rt.connection(name).ping()
    return f"authenticated; GET /ping in {seconds * 1000:.0f} ms"


# ------------------------------------------------------------------------------ emulator


class ExampleState:
    def __init__(self, seed: int) -> None:
        self.lock = threading.Lock()
        self.items: list[dict[str, Any]] = [{"id": i, "name": f"item {i}"} for i in range(1, seed + 1)]


def create_app(state: ExampleState) -> FastAPI:
    app = FastAPI(title="example system emulator")

    def check(key: str | None) -> None:
        if key != DEMO_KEY:
            raise HTTPException(401, "bad API key")

    @app.get("/ping")
    def _ping(x_api_key: str | None = Header(default=None)) -> dict[str, str]:
        check(x_api_key)
        return {"status": "ok"}

    @app.get("/items")
    def _items(x_api_key: str | None = Header(default=None)) -> dict[str, Any]:
        check(x_api_key)
        with state.lock:
            return {"items": list(state.items)}

    return app


def snapshot(state: ExampleState) -> dict[str, Any]:
    with state.lock:
        return {"items": list(state.items)}


def restore(state: ExampleState, snap: dict[str, Any]) -> None:
    state.items = list(snap["items"])


def example(base_url: str) -> str:
    return f"""\
  {NAME}:
    type: {NAME}
    base_url: {base_url}
    api_key_secret: {NAME}_api_key     # ml-connector secrets set {NAME}_api_key
"""


ENTRY = SystemEntry(
    name=NAME,
    settings=ExampleConnection,
    connect=connect,
    ping=ping,
    example=example,
    emulator=Emulator(default_port=8090, new_state=ExampleState, create_app=create_app,
                      info=lambda state, url: {"base_url": url, "api_key": DEMO_KEY, "items": len(state.items)},
                      snapshot=snapshot, restore=restore, started_by_default=False),
)
