"""Processes started by tests: where the CLI is, stopping workers."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from ml_connector.core.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
#: The CLI as a module of this interpreter (no console script needed).
CLI = [sys.executable, "-m", "ml_connector.cli"]
#: The installed console script and interpreter (agent and control-plane processes).
BIN = Path(sys.executable).parent / "ml-connector"
PY = sys.executable

__all__ = ["BIN", "CLI", "PY", "ROOT", "free_port", "stop", "stop_all"]


def stop_all(procs: list[subprocess.Popen[str]], handles: dict[str, Any] | None = None) -> None:
    """Stop the worker processes (SIGINT, then SIGKILL after 20 s) and the sandboxes."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
    for h in (handles or {}).values():
        h.stop()


def stop(proc: subprocess.Popen[Any]) -> None:
    """SIGINT, then SIGKILL if it has not exited within 20 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
