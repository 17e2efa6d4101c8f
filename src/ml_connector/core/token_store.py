"""OAuth tokens in the database, encrypted, refreshed by one worker at a time.

`DbTokenStore.refresh()`:
  1. in-process single-flight: one thread per key goes on, the others wait and then
     reuse what it stored (threads of one process never queue on the database);
  2. a cross-process lock: on Postgres the row `token:<key>` of mlc_locks is inserted
     if missing and then locked with SELECT … FOR UPDATE; on SQLite the write
     transaction (BEGIN IMMEDIATE, issued by core/db.py) is the lock;
  3. inside the lock the stored token is RE-READ; if it is fresh and is not the one
     the caller saw rejected (`force_if`), it is returned;
  4. otherwise `fetch()` (or `fetch(current)`) is called while the lock is held (so only
     one process fetches), and the new token (with its refresh token, if any) is stored
     (refresh_count + 1) and returned.

Note: on SQLite the write lock is held during `fetch()`, so other writers wait for
the token endpoint (bounded by busy_timeout, 30 s); keep fetch timeouts below that.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from ml_connector.core.db import Database
from ml_connector.core.models import LockRow, TokenRow, utcnow
from ml_connector.core.tokens import Token
from ml_connector.core.vault import Vault, VaultError, register_secret_value, token_secret_name

log = logging.getLogger(__name__)


class DbTokenStore:
    """TokenStore (core/tokens.py) backed by mlc_tokens, shared by every process."""

    def __init__(self, db: Database, vault: Vault) -> None:
        self.db = db
        self.vault = vault
        self._cache: dict[str, Token] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def __repr__(self) -> str:
        return f"DbTokenStore(tokens={len(self._cache)})"

    # -- reading

    def load(self, key: str) -> Token | None:
        """The stored token for `key`, from memory while it has not expired."""
        cached = self._cache.get(key)
        if cached is not None and cached.expires_at > time.time():
            return cached
        with self.db.sessions() as s:
            tok = self._read(s, key)
        self._remember(key, tok)
        return tok

    def refresh_count(self, key: str) -> int:
        """How many times the token of `key` was fetched and stored (0 if never)."""
        with self.db.sessions() as s:
            n = s.scalar(select(TokenRow.refresh_count).where(TokenRow.connection == key))
        return int(n or 0)

    def delete(self, key: str) -> None:
        """Forget the token of `key` (e.g. after its credentials changed)."""
        with self._key_lock(key), self.db.session() as s:
            row = s.get(TokenRow, key)
            if row is not None:
                s.delete(row)
        self._cache.pop(key, None)

    # -- refreshing

    def refresh(self, key: str, margin: float, fetch: Callable[..., Token],
                force_if: str | None = None, with_current: bool = False) -> Token:
        with self._key_lock(key):
            cached = self._cache.get(key)
            if cached is not None and cached.fresh(margin) and cached.access_token != force_if:
                return cached  # another thread of this process refreshed it meanwhile
            with self.db.session() as s:
                self._lock_row(s, key)
                current = self._read(s, key)
                if current is not None and current.fresh(margin) and current.access_token != force_if:
                    self._remember(key, current)
                    return current
                # The newest refresh token is read and replaced under the same lock, in one row
                # write: a rotated refresh token is never lost to a concurrent refresh.
                tok = fetch(current) if with_current else fetch()
                self._store(s, key, tok)
            self._remember(key, tok)
            return tok

    # -- internals

    def _key_lock(self, key: str) -> threading.Lock:
        with self._guard:
            lock = self._locks.get(key)
            if lock is None:
                lock = self._locks[key] = threading.Lock()
            return lock

    def _lock_row(self, s: Session, key: str) -> None:
        name = f"token:{key}"
        if self.db.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert

            s.execute(insert(LockRow).values(name=name).on_conflict_do_nothing(index_elements=["name"]))
            s.execute(select(LockRow.name).where(LockRow.name == name).with_for_update())
        else:
            # SQLite: the session's first statement opens BEGIN IMMEDIATE (core/db.py),
            # which takes the database write lock until commit; make sure it happens now.
            s.execute(select(LockRow.name).where(LockRow.name == name))

    def _read(self, s: Session, key: str) -> Token | None:
        row = s.get(TokenRow, key)
        if row is None:
            return None
        try:
            plain = self.vault.decrypt(token_secret_name(key), row.key_id, row.nonce, row.ciphertext)
            data = json.loads(plain)
            extra = {str(k): str(v) for k, v in (data.get("extra") or {}).items()}
            if data.get("geolocation"):  # stored before `geolocation` became a key of `extra`
                extra.setdefault("geolocation", str(data["geolocation"]))
            return Token(
                access_token=str(data["access_token"]),
                expires_at=float(row.expires_at),
                token_type=str(data.get("token_type", "Bearer")),
                scope=row.scope or "",
                refresh_token=str(data.get("refresh_token") or ""),
                extra=extra,
            )
        except (VaultError, ValueError, KeyError, TypeError) as exc:
            # An unreadable token is only a stale one: fetch a new one.
            log.warning("stored token of %s is unreadable (%s); it will be fetched again",
                        key, exc.__class__.__name__)
            return None

    def _store(self, s: Session, key: str, tok: Token) -> None:
        data: dict[str, object] = {"access_token": tok.access_token, "token_type": tok.token_type}
        if tok.refresh_token:
            data["refresh_token"] = tok.refresh_token
        if tok.extra:
            data["extra"] = dict(tok.extra)
        key_id, nonce, ct = self.vault.encrypt(token_secret_name(key), json.dumps(data))
        register_secret_value(tok.access_token)
        if tok.refresh_token:
            register_secret_value(tok.refresh_token)
        expires = math.floor(tok.expires_at)
        row = s.get(TokenRow, key)
        if row is None:
            s.add(TokenRow(connection=key, key_id=key_id, nonce=nonce, ciphertext=ct, expires_at=expires,
                           scope=tok.scope or "", refreshed_at=utcnow(), refresh_count=1))
        else:
            row.key_id, row.nonce, row.ciphertext = key_id, nonce, ct
            row.expires_at = expires
            row.scope = tok.scope or ""
            row.refreshed_at = utcnow()
            row.refresh_count = (row.refresh_count or 0) + 1

    def _remember(self, key: str, tok: Token | None) -> None:
        if tok is None:
            self._cache.pop(key, None)
        else:
            register_secret_value(tok.access_token)
            if tok.refresh_token:
                register_secret_value(tok.refresh_token)
            self._cache[key] = tok
