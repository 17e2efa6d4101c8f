"""Processes started by tests: where the CLI is, stopping workers."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import weakref
from pathlib import Path
from typing import IO, Any

from ml_connector.core.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
#: The CLI as a module of this interpreter (no console script needed).
CLI = [sys.executable, "-m", "ml_connector.cli"]
#: The installed console script and interpreter (agent and control-plane processes).
BIN = Path(sys.executable).parent / "ml-connector"
PY = sys.executable

__all__ = ["BIN", "CLI", "PY", "ROOT", "DrainedPopen", "free_port", "output_report", "stop", "stop_all"]

#: The children a test still holds: a failed wait reports what they said (weak: no test keeps them alive).
_started: weakref.WeakSet[DrainedPopen] = weakref.WeakSet()


class DrainedPopen(subprocess.Popen[str]):
    """A child whose stdout and stderr are read as they come and kept.

    A pipe that nobody reads blocks the child once it holds 64 KiB: a worker that logs enough would
    hang (every thread waits on the logging lock) and look like a worker that never came up.
    `communicate()` returns everything said, as with plain pipes."""

    def __init__(self, args: list[str], **kwargs: Any) -> None:
        super().__init__(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
        self.said: dict[str, list[str]] = {"stdout": [], "stderr": []}
        assert self.stdout is not None and self.stderr is not None
        self._readers = [threading.Thread(target=self._drain, args=(stream, self.said[name]), daemon=True)
                         for name, stream in (("stdout", self.stdout), ("stderr", self.stderr))]
        for t in self._readers:
            t.start()
        _started.add(self)

    @staticmethod
    def _drain(stream: IO[str], sink: list[str]) -> None:
        try:
            for line in stream:
                sink.append(line)
        except ValueError:  # closed under us
            pass

    def communicate(self, input: str | None = None, timeout: float | None = None) -> tuple[str, str]:
        if input is not None:
            raise ValueError("DrainedPopen takes no input")
        self.wait(timeout)
        for t in self._readers:
            t.join(10)
        return "".join(self.said["stdout"]), "".join(self.said["stderr"])


def output_report(tail: int = 40) -> str:
    """What each child a test still holds said last: for the message of a wait that timed out."""
    parts = []
    for p in list(_started):
        state = "running" if p.poll() is None else f"exited {p.returncode}"
        args = p.args if isinstance(p.args, list) else [str(p.args)]
        head = f"--- pid {p.pid} ({' '.join(map(str, args[2:6]))}): {state}"
        lines = [*p.said["stderr"][-tail:], "(stdout)\n", *p.said["stdout"][-10:]]
        parts.append("\n".join([head, *(ln.rstrip("\n") for ln in lines)]))
    return "\n".join(parts)


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
