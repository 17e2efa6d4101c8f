"""The agent's durable local state: which call ids it has started and finished, the
results not yet acknowledged by the control plane, and an append-only audit file.

A call id is executed at most once: `begin()` records it (fsync'd, synchronous=FULL)
before the call reaches SAP; a call found 'started' after a crash is answered with
an uncertain fault, never run again; a 'done' call re-sends its stored result.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from ml_connector.core.redact import redact


class LocalStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS agent_calls ("
            " id TEXT PRIMARY KEY, system TEXT NOT NULL, function TEXT NOT NULL,"
            " state TEXT NOT NULL, response TEXT, acked INTEGER NOT NULL DEFAULT 0,"
            " received_at REAL NOT NULL, done_at REAL, acked_at REAL)")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def begin(self, call_id: str, system: str, function: str) -> tuple[str, str | None]:
        """('new', None) when this id was never seen (now recorded as started);
        else (state, stored response JSON)."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO agent_calls (id, system, function, state, received_at) "
                "VALUES (?, ?, ?, 'started', ?)", (call_id, system, function, time.time()))
            if cur.rowcount == 1:
                return "new", None
            row = self._db.execute("SELECT state, response FROM agent_calls WHERE id = ?", (call_id,)).fetchone()
            return str(row[0]), row[1]

    def finish(self, call_id: str, response_json: str) -> None:
        with self._lock:
            self._db.execute("UPDATE agent_calls SET state = 'done', response = ?, done_at = ? WHERE id = ?",
                             (response_json, time.time(), call_id))

    def ack(self, call_id: str) -> None:
        with self._lock:
            self._db.execute("UPDATE agent_calls SET acked = 1, acked_at = ? WHERE id = ?", (time.time(), call_id))

    def interrupted(self) -> list[tuple[str, str, str]]:
        """Calls started but never finished (the agent died while running them)."""
        with self._lock:
            rows = self._db.execute("SELECT id, system, function FROM agent_calls WHERE state = 'started'")
            return [(str(a), str(b), str(c)) for a, b, c in rows.fetchall()]

    def unacked(self) -> list[tuple[str, str]]:
        with self._lock:
            rows = self._db.execute("SELECT id, response FROM agent_calls WHERE state = 'done' AND acked = 0 "
                                    "ORDER BY done_at")
            return [(str(a), str(b)) for a, b in rows.fetchall()]

    def held(self) -> list[str]:
        """Ids received and not yet acknowledged by the control plane (running, interrupted, or
        result not delivered): what the agent reports as held on each poll."""
        with self._lock:
            rows = self._db.execute("SELECT id FROM agent_calls WHERE acked = 0")
            return [str(r[0]) for r in rows.fetchall()]

    def get(self, call_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT state, response, acked FROM agent_calls WHERE id = ?",
                                   (call_id,)).fetchone()
        return None if row is None else {"state": row[0], "response": row[1], "acked": bool(row[2])}

    def prune(self, older_than: float) -> int:
        with self._lock:
            cur = self._db.execute("DELETE FROM agent_calls WHERE acked = 1 AND acked_at < ?", (older_than,))
            return int(cur.rowcount)


class AuditFile:
    """Append-only JSON lines: refusals, tampered calls, executions, auth errors."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()

    def record(self, event: str, **detail: Any) -> None:
        line = redact(json.dumps({"at": time.time(), "event": event, **detail}, default=str, sort_keys=True))
        with self._lock, open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def events(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(x) for x in self.path.read_text(encoding="utf-8").splitlines() if x.strip()]
