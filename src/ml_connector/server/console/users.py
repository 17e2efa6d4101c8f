"""Console users: argon2-hashed passwords, roles, database sessions, login throttling.

Why sessions in the database (and not a signed cookie holding the user): a disabled user or a
logout ends every session at once, in every control-plane process, and the cookie carries
only a random id (stored as its SHA-256, like the API tokens) that is worth nothing once ended.

Throttling has two layers: per user in the database (after `LOCK_AFTER` wrong passwords in a row
the account refuses logins for a lock that doubles with each further failure, capped), so that a
guesser spread over many addresses or processes gets nowhere; and per client address in the
process (`ClientThrottle`), so that guessing over many user names from one address is slowed too.
A name that does not exist costs the same argon2 work as one that does.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Float, Index, Integer, String, delete, select
from sqlalchemy.orm import Mapped, mapped_column

from ml_connector.core import audit
from ml_connector.core.db import Database
from ml_connector.core.models import Base
from ml_connector.server.roles import ROLES

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")
MIN_PASSWORD = 10
#: Wrong passwords in a row before an account is locked; the first lock lasts LOCK_SECONDS, doubling.
LOCK_AFTER = 5
LOCK_SECONDS = 30.0
LOCK_MAX = 900.0
SESSION_SECONDS = 12 * 3600.0

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified when the user does not exist, so that both paths cost one argon2 verification (made on
    first use: hashing at import would cost every CLI start an argon2 hash)."""
    return _hasher.hash("no such user: constant work")


class UserRow(Base):
    """A console user (migration 0013_console_users); only the argon2 hash of the password is kept."""

    __tablename__ = "mlc_users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[float] = mapped_column(Float)
    disabled_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_login_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[float | None] = mapped_column(Float, nullable=True)


class SessionRow(Base):
    """A logged-in browser: the SHA-256 of the cookie's random id, and the CSRF token of its forms."""

    __tablename__ = "mlc_console_sessions"
    __table_args__ = (Index("ix_mlc_console_sessions_user", "user_id"),)
    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)


class UserError(Exception):
    pass


@dataclass(frozen=True)
class User:
    id: int
    username: str
    role: str


@dataclass(frozen=True)
class Session:
    user: User
    csrf: str


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def add_user(db: Database, username: str, password: str, role: str, *, actor: str = "cli") -> User:
    if not USERNAME_RE.match(username):
        raise UserError(f"user name {username!r}: use letters, digits, '_', '.', '@', '-' (at most 100), "
                        "starting with a letter or digit")
    if role not in ROLES:
        raise UserError(f"role {role!r}: use one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password must have at least {MIN_PASSWORD} characters")
    with db.session() as s:
        if s.scalars(select(UserRow.id).where(UserRow.username == username)).first() is not None:
            raise UserError(f"a user named {username!r} exists")
        row = UserRow(username=username, password_hash=_hasher.hash(password), role=role, created_at=time.time(),
                      failed_logins=0)
        s.add(row)
        s.flush()
        audit.record(s, "user.added", detail={"user": actor, "username": username, "role": role})
        return User(row.id, username, role)


def list_users(db: Database) -> list[dict[str, object]]:
    with db.read() as s:
        return [{"id": r.id, "username": r.username, "role": r.role, "created_at": r.created_at,
                 "last_login_at": r.last_login_at, "state": "disabled" if r.disabled_at else "active"}
                for r in s.scalars(select(UserRow).order_by(UserRow.username))]


def disable_user(db: Database, username: str, *, actor: str = "cli") -> bool:
    """Disable a user and end its sessions; False when there is no such active user."""
    with db.session() as s:
        row = s.scalars(select(UserRow).where(UserRow.username == username, UserRow.disabled_at.is_(None))).first()
        if row is None:
            return False
        row.disabled_at = time.time()
        s.execute(delete(SessionRow).where(SessionRow.user_id == row.id))
        audit.record(s, "user.disabled", detail={"user": actor, "username": username})
        return True


class ClientThrottle:
    """At most `limit` failed logins per client address per `window` seconds (per process)."""

    def __init__(self, limit: int = 20, window: float = 300.0) -> None:
        self.limit, self.window = limit, window
        self._fails: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, client: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        with self._lock:
            q = self._fails.get(client)
            while q and q[0] <= now - self.window:
                q.popleft()
            return q is not None and len(q) >= self.limit

    def failed(self, client: str, now: float | None = None) -> None:
        with self._lock:
            self._fails.setdefault(client, deque()).append(time.time() if now is None else now)
            if len(self._fails) > 10000:  # bounded memory under a flood of addresses
                self._fails.pop(next(iter(self._fails)))


@dataclass(frozen=True)
class LoginResult:
    user: User | None
    reason: str  # ok | bad_credentials | locked | throttled


def authenticate(db: Database, username: str, password: str, client: str, throttle: ClientThrottle,
                 now: float | None = None) -> LoginResult:
    """Check a login; every outcome is audited with the user name tried (never the password)."""
    now = time.time() if now is None else now
    if throttle.blocked(client, now):
        _audit_login(db, username, client, "throttled")
        return LoginResult(None, "throttled")
    with db.session() as s:
        row = s.scalars(select(UserRow).where(UserRow.username == username)).first()
        stored = row.password_hash if row is not None and row.disabled_at is None else _dummy_hash()
        if row is not None and row.locked_until is not None and row.locked_until > now:
            reason = "locked"
        else:
            try:
                ok = _hasher.verify(stored, password) and row is not None and row.disabled_at is None
            except (VerificationError, InvalidHashError):
                ok = False
            reason = "ok" if ok else "bad_credentials"
        if reason == "ok" and row is not None:
            row.failed_logins, row.locked_until, row.last_login_at = 0, None, now
            if _hasher.check_needs_rehash(row.password_hash):
                row.password_hash = _hasher.hash(password)
            user = User(row.id, row.username, row.role)
            audit.record(s, "console.login", detail={"user": username, "client": client})
            return LoginResult(user, "ok")
        if reason == "bad_credentials" and row is not None:
            row.failed_logins = (row.failed_logins or 0) + 1
            if row.failed_logins >= LOCK_AFTER:
                row.locked_until = now + min(LOCK_MAX, LOCK_SECONDS * 2 ** (row.failed_logins - LOCK_AFTER))
        audit.record(s, "console.login", outcome="failed", detail={"user": username, "client": client,
                                                                   "reason": reason})
    throttle.failed(client, now)
    return LoginResult(None, reason)


def _audit_login(db: Database, username: str, client: str, reason: str) -> None:
    with db.session() as s:
        audit.record(s, "console.login", outcome="failed", detail={"user": username, "client": client,
                                                                   "reason": reason})


def start_session(db: Database, user: User) -> str:
    """A new session for `user`; the cookie value (shown to the browser only)."""
    sid = secrets.token_urlsafe(32)
    now = time.time()
    with db.session() as s:
        s.execute(delete(SessionRow).where(SessionRow.expires_at <= now))  # housekeeping: ended sessions
        s.add(SessionRow(id_hash=_sha(sid), user_id=user.id, csrf=secrets.token_urlsafe(32), created_at=now,
                         expires_at=now + SESSION_SECONDS))
    return sid


def session_of(db: Database, sid: str | None) -> Session | None:
    """The live session of a cookie value, with its (active) user; None otherwise."""
    if not sid or len(sid) > 100:
        return None
    with db.read() as s:
        row = s.get(SessionRow, _sha(sid))
        if row is None or row.expires_at <= time.time():
            return None
        user = s.get(UserRow, row.user_id)
        if user is None or user.disabled_at is not None:
            return None
        return Session(User(user.id, user.username, user.role), row.csrf)


def end_session(db: Database, sid: str | None) -> None:
    if sid:
        with db.session() as s:
            s.execute(delete(SessionRow).where(SessionRow.id_hash == _sha(sid)))


def csrf_ok(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())
