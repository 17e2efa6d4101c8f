"""JSON log lines (an option: `MLC_LOG_FORMAT=json`; human-readable text stays the default).

One JSON object per line with the time, level, logger and message, and the correlation ids a log
aggregator groups by: `run_id` (the DBOS workflow the line was logged from: a sync run, a delivery or
a replay) and whatever `flow`, `stream`, `record` or `run_id` the call passes in `extra`; else the `flow`,
`stream` and `record` of the work being done on this thread (`correlate`: the engine names the record it
maps, writes or checks, so a client's or target's own log line about it carries its id). The text is the
message after the redacting filter (core/redact.py), so no secret reaches the line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

CORRELATION_FIELDS = ("run_id", "flow", "stream", "record")

_context: ContextVar[dict[str, str] | None] = ContextVar("mlc_log_context", default=None)
#: The record being worked on (`flow:source key`), set per record in hot loops (cheaper than `correlate`).
RECORD: ContextVar[str | None] = ContextVar("mlc_log_record", default=None)


@contextmanager
def correlate(**ids: str | None) -> Iterator[None]:
    """Log lines of this thread name these ids (flow, stream, record) meanwhile, nested over the outer ones."""
    outer = _context.get()
    token = _context.set({**(outer or {}), **{k: str(v) for k, v in ids.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def _workflow_id() -> str | None:
    try:
        from dbos import DBOS

        wid = DBOS.workflow_id
    except Exception:  # outside DBOS, or DBOS not launched: no run to name
        return None
    return str(wid) if wid else None


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        ctx = _context.get() or {}
        for name in CORRELATION_FIELDS:
            value = getattr(record, name, None)
            if value is None:
                value = ctx.get(name) if name != "record" else (RECORD.get() or ctx.get(name))
            if value is not None:
                line[name] = str(value)
        if "run_id" not in line:
            wid = _workflow_id()
            if wid:
                line["run_id"] = wid
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def use_json_logs(level: str) -> None:
    """Log JSON lines to standard error at `level` (the CLI calls it for MLC_LOG_FORMAT=json)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
