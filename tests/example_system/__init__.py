"""A tiny system added through the registry only (docs/adding-a-system.md): proves that a system
and a flow need no change outside their own modules.

`ENTRY` is what `systems/<name>/__init__.py` declares; a test registers it for its process with
`registry.register(ENTRY)` (an installed package would name it under the `ml_connector.systems`
entry points instead); `tests/example_system/launch.py` does the same for a CLI subprocess.

The system: a shop with "items" (read by `sources.ItemsSource`, paged by a change sequence) and
a catalog of "records" (written by `targets.CatalogRecordsTarget`, create-then-lookup by external
id). Its emulator has one fault switch: `drop_after_commit`, the next N record creates are applied
and then the connection is dropped without an answer.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Literal

import httpx
from fastapi import Body, FastAPI, Header, HTTPException, Query
from pydantic import Field

from ml_connector.core.http import PicklableError, RetryPolicy, RetryTransport, UncertainWrite, one_line
from ml_connector.core.providers import facts
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


# ------------------------------------------------------------------------------ client


class ExampleError(PicklableError):
    """The example API refused a call (4xx) or failed (5xx): nothing was applied."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class ExampleUncertainWrite(UncertainWrite):
    """A create may or may not have been applied (the answer was lost): look it up, never re-send."""


def retry_policy() -> RetryPolicy:
    """The retry rule of the example's provider.yaml: reads and PATCH are sent again, a POST that may
    have arrived never is (RetryTransport)."""
    return RetryPolicy.from_facts(facts(NAME).need_retry())


class ExampleClient:
    def __init__(self, base_url: str, api_key: str, timeout: float) -> None:
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers={"X-Api-Key": api_key}, timeout=timeout,
                                 transport=RetryTransport(httpx.HTTPTransport(), retry_policy()))

    def _json(self, resp: httpx.Response) -> Any:
        if resp.status_code >= 400:
            raise ExampleError(f"{resp.request.method} {resp.request.url.path}: HTTP {resp.status_code} "
                               f"{one_line(resp.text)}", resp.status_code)
        return resp.json()

    def items(self) -> list[dict[str, Any]]:
        return list(self._json(self.http.get("/items"))["items"])

    def items_page(self, after: int, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """Items changed after change number `after`, oldest change first; and whether more follow."""
        body = self._json(self.http.get("/items", params={"after": after, "limit": limit}))
        return list(body["items"]), bool(body["has_more"])

    def create_record(self, record: dict[str, Any]) -> dict[str, Any]:
        try:
            resp = self.http.post("/records", json=record)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout):
            raise  # never sent: nothing was applied
        except httpx.TransportError as exc:
            raise ExampleUncertainWrite(f"POST /records for {record.get('external_id')}: "
                                        f"{type(exc).__name__}: {exc}") from None
        if resp.status_code >= 500:
            raise ExampleUncertainWrite(f"POST /records for {record.get('external_id')}: HTTP {resp.status_code}")
        return dict(self._json(resp))

    def find_record(self, external_id: str) -> dict[str, Any] | None:
        found = self._json(self.http.get("/records", params={"external_id": external_id}))["records"]
        return dict(found[0]) if found else None

    def update_record(self, record_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        return dict(self._json(self.http.patch(f"/records/{record_id}", json=fields)))

    def ping(self) -> float:
        t0 = time.perf_counter()
        call = facts(NAME).ping
        self._json(self.http.request(call.method or "GET", call.path or "/", params=call.params))
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
        self.seq = 0  # the change sequence: every item change takes the next number
        self.items: list[dict[str, Any]] = [{"id": i, "name": f"item {i}", "seq": self._next()}
                                            for i in range(1, seed + 1)]
        self.records: dict[int, dict[str, Any]] = {}
        self.record_posts = 0  # POST /records applied (answered or not)
        #: Fault switch: the next N record creates are applied, then the connection drops unanswered.
        self.drop_after_commit = 0

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    def change_item(self, item_id: int, **fields: Any) -> None:
        with self.lock:
            item = next(i for i in self.items if i["id"] == item_id)
            item.update(fields, seq=self._next())

    def add_item(self, name: str, **fields: Any) -> int:
        with self.lock:
            new_id = max((int(i["id"]) for i in self.items), default=0) + 1
            self.items.append({"id": new_id, "name": name, **fields, "seq": self._next()})
            return new_id

    def take_drop(self) -> bool:
        with self.lock:
            if self.drop_after_commit > 0:
                self.drop_after_commit -= 1
                return True
            return False


class _DropAfterCommit:
    """ASGI wrapper: a record create picked by the fault switch is applied, then its connection is
    closed without an answer (the client cannot tell whether it was applied)."""

    def __init__(self, state: ExampleState, app: FastAPI) -> None:
        self.state, self.app = state, app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/records"
                and self.state.take_drop()):
            async def swallow(message: Any) -> None:
                return None

            await self.app(scope, receive, swallow)  # applied; the answer goes nowhere
            transport = getattr(getattr(send, "__self__", None), "transport", None)  # uvicorn's cycle
            if transport is None:
                raise RuntimeError("example emulator: cannot drop the connection on this server")
            transport.close()
            await asyncio.sleep(0.01)
            return
        await self.app(scope, receive, send)


def create_app(state: ExampleState) -> Any:
    app = FastAPI(title="example system emulator")

    def check(key: str | None) -> None:
        if key != DEMO_KEY:
            raise HTTPException(401, "bad API key")

    @app.get("/ping")
    def _ping(x_api_key: str | None = Header(default=None)) -> dict[str, str]:
        check(x_api_key)
        return {"status": "ok"}

    @app.get("/items")
    def _items(x_api_key: str | None = Header(default=None), after: int | None = Query(default=None),
               limit: int = Query(default=100, ge=1, le=1000)) -> dict[str, Any]:
        check(x_api_key)
        with state.lock:
            if after is None:
                return {"items": list(state.items)}
            changed = sorted((i for i in state.items if int(i.get("seq", 0)) > after), key=lambda i: i["seq"])
            return {"items": [dict(i) for i in changed[:limit]], "has_more": len(changed) > limit}

    @app.post("/records", status_code=201)
    def _create(body: dict[str, Any] = Body(...), x_api_key: str | None = Header(default=None)) -> dict[str, Any]:
        check(x_api_key)
        if not body.get("external_id") or not body.get("title"):
            raise HTTPException(422, "external_id and title are required")
        with state.lock:  # NOT idempotent: the same external id twice makes two records
            rid = max(state.records, default=0) + 1
            state.records[rid] = {"active": True, **body, "id": rid}
            state.record_posts += 1
            return dict(state.records[rid])

    @app.get("/records")
    def _records(x_api_key: str | None = Header(default=None),
                 external_id: str | None = Query(default=None)) -> dict[str, Any]:
        check(x_api_key)
        with state.lock:
            return {"records": [dict(r) for r in state.records.values()
                                if external_id is None or r.get("external_id") == external_id]}

    @app.patch("/records/{rid}")
    def _update(rid: int, body: dict[str, Any] = Body(...),
                x_api_key: str | None = Header(default=None)) -> dict[str, Any]:
        check(x_api_key)
        with state.lock:
            if rid not in state.records:
                raise HTTPException(404, f"no record {rid}")
            state.records[rid].update({k: v for k, v in body.items() if k not in ("id", "external_id")})
            return dict(state.records[rid])

    return _DropAfterCommit(state, app)


def snapshot(state: ExampleState) -> dict[str, Any]:
    with state.lock:
        return {"items": list(state.items), "records": dict(state.records), "seq": state.seq}


def restore(state: ExampleState, snap: dict[str, Any]) -> None:
    state.items = list(snap["items"])
    state.records = dict(snap.get("records", {}))
    state.seq = int(snap.get("seq", 0))


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
    provider=NAME,
    facts_package=__name__,  # provider.yaml ships beside this module, not under ml_connector.systems
    emulator=Emulator(default_port=8090, new_state=ExampleState, create_app=create_app,
                      info=lambda state, url: {"base_url": url, "api_key": DEMO_KEY, "items": len(state.items)},
                      snapshot=snapshot, restore=restore, started_by_default=False),
)
