"""Start ASGI apps (emulators, control plane) on loopback in a background thread."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import uvicorn


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class ServerHandle:
    name: str
    host: str
    port: int
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self, timeout: float = 5.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)


def serve_in_thread(app: Any, *, name: str = "app", host: str = "127.0.0.1", port: int = 0,
                    startup_timeout: float = 10.0) -> ServerHandle:
    """Run `app` with uvicorn in a daemon thread; return once it accepts connections."""
    port = port or free_port(host)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            lifespan="off", timeout_keep_alive=30)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"serve-{name}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"{name}: server on {host}:{port} failed to start")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name}: server on {host}:{port} did not start in {startup_timeout}s")
        time.sleep(0.01)
    return ServerHandle(name=name, host=host, port=port, server=server, thread=thread)
