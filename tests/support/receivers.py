"""HTTP receivers on loopback that record what the code under test sends them."""

from __future__ import annotations

import threading
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ml_connector.core.alerts import Alerter, AlertSettings, Webhook
from ml_connector.core.db import Database
from ml_connector.core.servers import ServerHandle, serve_in_thread
from ml_connector.core.vault import Vault


class Receiver:
    """A webhook receiver on loopback: records each request; answers `status`; a closed `gate`
    holds every request until opened (a slow receiver)."""

    def __init__(self, port: int = 0) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        app = FastAPI()

        @app.post("/{path:path}")
        def hook(path: str, payload: dict[str, Any], request: Request) -> JSONResponse:
            self.entered.set()
            self.gate.wait(30)
            self.requests.append({"path": "/" + path, "headers": dict(request.headers), "json": payload})
            return JSONResponse({"ok": self.status < 300}, status_code=self.status)

        self.handle: ServerHandle = serve_in_thread(app, name="alert-receiver", port=port)

    @property
    def url(self) -> str:
        return self.handle.url

    def close(self) -> None:
        self.gate.set()
        self.handle.stop()


def alerter_for(db: Database, vault: Vault, receiver: Receiver, **settings: Any) -> Alerter:
    """An alerter posting JSON to `receiver` (header secret `alert_token`), quick retries."""
    hook = Webhook(url=f"{receiver.url}/hook", format="json", header_name="X-Alert-Token",
                   header_secret="alert_token")
    return Alerter(db, vault, [hook], settings=AlertSettings(**{"timeout": 5.0, "attempts": 3, "backoff": 0.01,
                                                                "interval": 900.0, **settings}))
