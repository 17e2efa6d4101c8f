"""Coalesced audit of refused requests: a flood of bad requests neither grows the audit table
without bound nor writes to the database per request.

At most one row per (client, source, reason) per `window`, carrying the number of refusals it
stands for. The first refusal of a key is written at once (count 1). Refusals within `window`
of that row are only counted; the next row for the key (the first refusal after the window,
or the background flush when the window ends) carries their number (`count`), when they began
(`since`) and the latest one's request. Rows of one key are thus at least `window` apart.
Keys are bounded (`max_keys`); refusals of further keys share one count per reason under
client "*". Keys are bounded per real peer as well (the socket's address, `peer`): one peer
opens at most `max_keys_per_peer` keys, its further refusals share one key (peer, no source,
reason). So a single connection that varies what it claims (a forwarded address from a
trusted proxy, an agent id) costs O(1) rows per window. Counted per process.

Used for the operators' API (`api.auth.rejected`, server/api_auth.py) and the agents'
endpoints (`agent.auth.rejected`, server/agents/service.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ml_connector.core import audit
from ml_connector.core.clock import SYSTEM_CLOCK, Clock
from ml_connector.core.db import Database

log = logging.getLogger(__name__)

#: Refusals of one key within this many seconds of its last audit row share the next row.
REFUSAL_AUDIT_WINDOW = 60.0
#: Keys tracked at once; refusals of further keys are counted under client "*".
REFUSAL_AUDIT_KEYS = 1024
#: Keys one real peer may open; its further refusals are counted under (peer, None, reason).
REFUSAL_AUDIT_KEYS_PER_PEER = 8

#: (client, source or None, reason)
_Key = tuple[str, str | None, str]
#: An audit row of refusals: key, count, since (wall clock, or None), latest request.
_Row = tuple[_Key, int, float | None, dict[str, Any]]


@dataclass
class _RefusalCount:
    last_row_at: float  # when the last row for this key was written (clock.monotonic())
    pending: int = 0  # refusals since then, not yet in a row
    first_pending_at: float = 0.0  # wall clock of the first of them
    detail: dict[str, Any] | None = None  # the latest of them (method, path, token id, ...)
    peer: str = ""  # the real peer that opened the key


class CoalescedRefusals:
    """Audit rows `event` (outcome `outcome`) for refused requests, coalesced (module doc).

    `describe(client, source, reason, detail, count)`: the warning logged with each row. `clock`:
    windows run on its monotonic time, `since` is its wall time, the flusher sleeps on it."""

    def __init__(self, db: Database, event: str, *, outcome: str = "failed",
                 describe: Callable[[str, str | None, str, dict[str, Any], int], str] | None = None,
                 window: float = REFUSAL_AUDIT_WINDOW, max_keys: int = REFUSAL_AUDIT_KEYS,
                 max_keys_per_peer: int = REFUSAL_AUDIT_KEYS_PER_PEER,
                 clock: Clock = SYSTEM_CLOCK, background: bool = True) -> None:
        self.db = db
        self.event = event
        self.outcome = outcome
        self.describe = describe or _describe
        self.window = window
        self.max_keys = max_keys
        self.max_keys_per_peer = max_keys_per_peer
        self._peer_keys: dict[str, set[_Key]] = {}
        self.clock = clock
        self.background = background
        self._keys: dict[_Key, _RefusalCount] = {}
        self._lock = threading.Lock()
        self._flusher: threading.Thread | None = None

    def refused(self, client: str, reason: str, detail: dict[str, Any], *, source: str | None = None,
                peer: str | None = None) -> None:
        """`peer`: the socket's address when `client` is one a proxy reported (default: `client`)."""
        now = self.clock.monotonic()
        peer = client if peer is None else peer
        rows: list[_Row] = []
        with self._lock:
            rows += self._due(now)
            key: _Key = (client, source, reason)
            if key not in self._keys:
                opened = self._peer_keys.get(peer, set())
                if len(opened) >= self.max_keys_per_peer:
                    key = (peer, None, reason)  # one peer varying what it claims: one count per reason
                if key not in self._keys and len(self._keys) >= self.max_keys:
                    key = ("*", None, reason)  # bounded memory: further keys share one count per reason
            entry = self._keys.get(key)
            if entry is None or now - entry.last_row_at >= self.window:
                pending = entry.pending if entry else 0
                since = entry.first_pending_at if entry and pending else None
                rows.append((key, pending + 1, since, detail))
                if entry is None:
                    self._peer_keys.setdefault(peer, set()).add(key)
                self._keys[key] = _RefusalCount(last_row_at=now, peer=entry.peer if entry else peer)
            else:
                if entry.pending == 0:
                    entry.first_pending_at = self.clock.now()
                entry.pending += 1
                entry.detail = detail
                self._start_flusher()
        self._write(rows)

    def flush(self) -> int:
        """Write the rows whose window has ended (the background flusher calls this); how many."""
        with self._lock:
            rows = self._due(self.clock.monotonic())
        self._write(rows)
        return len(rows)

    def _due(self, now: float) -> list[_Row]:
        rows: list[_Row] = []
        for key, entry in list(self._keys.items()):
            if now - entry.last_row_at < self.window:
                continue
            if entry.pending and entry.detail is not None:
                rows.append((key, entry.pending, entry.first_pending_at, entry.detail))
                self._keys[key] = _RefusalCount(last_row_at=now, peer=entry.peer)
            else:
                del self._keys[key]  # quiet for a whole window: forget it
                opened = self._peer_keys.get(entry.peer)
                if opened is not None:
                    opened.discard(key)
                    if not opened:
                        del self._peer_keys[entry.peer]
        return rows

    def _write(self, rows: list[_Row]) -> None:
        for (client, source, reason), count, since, detail in rows:
            try:
                with self.db.session() as s:  # committed on its own: the refusal must not roll it back
                    audit.record(s, self.event, outcome=self.outcome, source=source,
                                 detail={**detail, "reason": reason, "client": client, "count": count,
                                         **({"since": since} if since is not None else {})})
            except Exception:  # the refusal stands even when its audit cannot be written
                log.exception("could not audit refused requests (%s)", self.event)
            log.warning("%s", self.describe(client, source, reason, detail, count))

    def _start_flusher(self) -> None:
        if not self.background or (self._flusher is not None and self._flusher.is_alive()):
            return

        def loop() -> None:
            while True:
                self.clock.sleep(max(self.window / 4, 0.05))
                self.flush()
                with self._lock:
                    if not any(e.pending for e in self._keys.values()):
                        self._flusher = None
                        return

        self._flusher = threading.Thread(target=loop, name=f"refusal-audit-{self.event}", daemon=True)
        self._flusher.start()


def _describe(client: str, source: str | None, reason: str, detail: dict[str, Any], count: int) -> str:
    return (f"refused {detail.get('method')} {detail.get('path')} from {client}: {reason}"
            + (f" ({count} refusals since the last report)" if count > 1 else ""))
