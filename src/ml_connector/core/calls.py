"""The calls a run makes, per system: counted while an engine step runs, kept in the audit trail.

The engine opens `counting()` around each step that talks to systems (reading a page, delivering a
batch) and records what was counted as one `run.calls` event of the run ({system: calls}). The
transports note each request they send (`note`): the shared HTTP transport by host (the console names
the connection whose URL has that host), an agent channel by the system it calls. A call made on
another thread than the step's (a pool of the client's own) is not counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

_current: ContextVar[Counter[str] | None] = ContextVar("mlc_calls", default=None)


def note(system: str, n: int = 1) -> None:
    """One call (or `n`) to `system` sent by the step running on this thread, if one counts."""
    tally = _current.get()
    if tally is not None:
        tally[system] += n


@contextmanager
def counting() -> Iterator[Counter[str]]:
    tally: Counter[str] = Counter()
    token = _current.set(tally)
    try:
        yield tally
    finally:
        _current.reset(token)


def record(db: Any, tally: Counter[str], *, flow: str, stream: str, run_id: str, step: str) -> None:
    """Keep a step's count in the audit trail (nothing when it made no call)."""
    if not tally:
        return
    from ml_connector.core import audit

    with db.session() as s:
        audit.record(s, "run.calls", flow=flow, stream=stream, run_id=run_id,
                     detail={"step": step, "calls": dict(tally)})


def host_names(connections: dict[str, Any]) -> dict[str, str]:
    """host[:port] → connection name, from every URL in the connections' settings (for `note` by host)."""
    out: dict[str, str] = {}

    def walk(value: Any, name: str) -> None:
        if isinstance(value, dict):
            for v in value.values():
                walk(v, name)
        elif isinstance(value, list):
            for v in value:
                walk(v, name)
        elif isinstance(value, str) and value.startswith(("http://", "https://")):
            host = urlsplit(value).netloc.rpartition("@")[2]
            if host:
                out.setdefault(host, name)

    for name, cfg in connections.items():
        walk(cfg.model_dump() if hasattr(cfg, "model_dump") else dict(cfg), name)
    return out


def totals(events: list[Any], connections: dict[str, Any]) -> dict[str, int]:
    """{system or connection: calls} summed over a run's `run.calls` events."""
    names = host_names(connections)
    out: Counter[str] = Counter()
    for ev in events:
        for system, n in (ev.detail or {}).get("calls", {}).items():
            out[names.get(system, system)] += int(n)
    return dict(sorted(out.items()))
