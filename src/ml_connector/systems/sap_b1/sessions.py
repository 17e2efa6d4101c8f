"""Service Layer sessions kept across processes and runs (a login costs seconds on a real Service
Layer, and every login holds a licence seat until it times out).

`TokenSessionStore` keeps one session per (Service Layer, company database, user) in the token
store (encrypted with the vault key, shared by every process): its cookies (B1SESSION, ROUTEID),
its inactivity timeout and when it was last used (unix time). `B1SessionAuth` adopts a stored
session while its sliding timeout is not about to run out, stores each session it opens, and
refreshes the last-use time at most once a minute and when its client closes (a client with a
store does not log out: the next run goes on with the session).
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from typing import Any, Protocol

from ml_connector.core.tokens import Token
from ml_connector.core.vault import register_secret_value
from ml_connector.systems.sap_b1.facts import b1_facts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredSession:
    cookies: dict[str, str]
    timeout_s: float
    last_used: float  # unix seconds
    #: digest of the credentials that opened it (stored encrypted): changed credentials log in afresh,
    #: so a ping still proves the password
    owner: str = ""


class SessionStore(Protocol):
    def load(self) -> StoredSession | None: ...

    def save(self, session: StoredSession) -> None: ...


class TokenSessionStore:
    """A `SessionStore` in a token store (core/tokens.py `TokenStore`; `DbTokenStore` in a runtime)."""

    def __init__(self, tokens: Any, connection: str, root: str, company_db: str, user: str) -> None:
        self.tokens = tokens
        # The key names the connection; the digest makes a changed URL, database or user start afresh.
        digest = hashlib.sha256(f"{root}|{company_db}|{user}".encode()).hexdigest()[:16]
        self.key = f"b1session:{connection}:{digest}"

    def __repr__(self) -> str:
        return f"TokenSessionStore(key={self.key!r})"

    def load(self) -> StoredSession | None:
        try:
            tok = self.tokens.load(self.key)
        except Exception as exc:  # a session we cannot read is a login, not a failure
            log.warning("stored Service Layer session unreadable (%s): logging in", type(exc).__name__)
            return None
        if tok is None or not tok.access_token:
            return None
        extra = dict(tok.extra)
        try:
            timeout_s, last_used = float(extra.pop("timeout_s")), float(extra.pop("last_used"))
            owner = extra.pop("owner", "")
        except (KeyError, ValueError):
            return None
        register_secret_value(tok.access_token)
        return StoredSession({b1_facts().session.cookies[0]: tok.access_token, **extra}, timeout_s, last_used, owner)

    def save(self, session: StoredSession) -> None:
        cookies = dict(session.cookies)
        sid = cookies.pop(b1_facts().session.cookies[0], "")
        tok = Token(access_token=sid, expires_at=session.last_used + session.timeout_s, token_type="B1SESSION",
                    extra={**cookies, "timeout_s": repr(session.timeout_s), "last_used": repr(session.last_used),
                           "owner": session.owner})
        # margin inf: the stored one is never "fresh enough", so this session is written (under the
        # store's cross-process lock), whatever another process stored before.
        self.tokens.refresh(self.key, math.inf, lambda: tok)
