"""Where OAuth access tokens live between requests and processes.

A token is kept in the database (encrypted) and refreshed ahead of its expiry by
one worker at a time across processes: take a database lock, re-read, and only
fetch a new token if the one stored is still stale (Nango's design, in SQL).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Token:
    access_token: str
    expires_at: float  # unix seconds
    token_type: str = "Bearer"
    scope: str = ""
    refresh_token: str = ""  # the newest one, when the grant issues them (rotated on each refresh)
    #: Provider data that comes with the token and is valid for its life (Marketing Cloud's instance
    #: URLs, Concur's `geolocation`: where later calls and the refresh go), stored with it in the
    #: same write so that another process reusing the token has it too.
    extra: dict[str, str] = field(default_factory=dict)

    def fresh(self, margin: float, now: float | None = None) -> bool:
        return (now if now is not None else time.time()) < self.expires_at - margin

    def __repr__(self) -> str:  # never print the secret
        return f"Token(expires_at={self.expires_at}, scope={self.scope!r})"


class TokenStore(Protocol):
    def load(self, key: str) -> Token | None:
        """The stored token for `key` (a connection name), or None."""

    def refresh(self, key: str, margin: float, fetch: Callable[..., Token],
                force_if: str | None = None, with_current: bool = False) -> Token:
        """Under a lock shared by every process: re-read; if the stored token is
        fresh (and is not `force_if`, a token the caller saw rejected), return
        it; else call `fetch()` (`fetch(current)` with `with_current`, so that a
        refresh grant uses the newest refresh token), store and return the new one."""


class MemoryTokenStore:
    """A process-local store for tests and the sandbox; the DB store replaces it."""

    def __init__(self) -> None:
        self._tokens: dict[str, Token] = {}
        self._lock = threading.Lock()

    def load(self, key: str) -> Token | None:
        return self._tokens.get(key)

    def refresh(self, key: str, margin: float, fetch: Callable[..., Token],
                force_if: str | None = None, with_current: bool = False) -> Token:
        with self._lock:
            cur = self._tokens.get(key)
            if cur is not None and cur.fresh(margin) and cur.access_token != force_if:
                return cur
            tok = fetch(cur) if with_current else fetch()
            self._tokens[key] = tok
            return tok
