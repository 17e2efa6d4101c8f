"""Authentication of the operators' JSON API (`/api/flows`, `/api/runs`, `/api/agents`, ...).

Why bearer tokens (and not mTLS or Basic auth with a password): the callers are
scripts, CI jobs and a future console; a long random token created by a CLI command
is easy to hand to them, to list and to revoke one by one, and it needs no PKI on the
operator's side. The agents do not use it: `/api/agent/*` authenticates every request
by the agent's Ed25519 signature, and an admin token is worth nothing there.

A token reads `mlcat_<id>_<secret>`: the id (16 hex) finds the row, the secret (32
random bytes) is stored only as its SHA-256 and compared with `hmac.compare_digest`.
A plain hash is enough for a 256-bit random secret (no dictionary to attack, unlike a
password), and it keeps a request's check cheap. The token is printed once, on
creation; no log, audit event or API answer carries it (a rejected request is audited
with the reason and the token's id, never its secret).

When is a token needed: `server.api_auth: token` always; `auto` (the default) unless
the server is bound to loopback only and the request did not come through a proxy
(any proxy header: `Forwarded`, `X-Forwarded-*`, `Via`, `X-Real-IP`, `True-Client-IP`,
`CF-Connecting-IP`, ...: server/forwarded.py PROXY_HEADERS). Loopback-only means only processes on the
same host can connect, as with `ml-connector` commands that open the database
directly; a reverse proxy on the same host would make the API public, hence the
header check, and `api_auth: token` for such set-ups.

Refusals are audited coalesced (RefusalAudit): at most one `api.auth.rejected` row per
(client address, reason) per minute, with the number of refusals it stands for, so a flood
of bad requests neither grows the audit table without bound nor writes to the database per
request. Counted per control-plane process.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Float, Index, String, select
from sqlalchemy.orm import Mapped, mapped_column

from ml_connector.core import audit
from ml_connector.core.clock import SYSTEM_CLOCK, Clock
from ml_connector.core.db import Database
from ml_connector.core.models import Base
from ml_connector.core.net import is_loopback_host
from ml_connector.core.refusals import CoalescedRefusals
from ml_connector.server.forwarded import has_proxy_header, peer_of

log = logging.getLogger(__name__)

TOKEN_PREFIX = "mlcat_"
_TOKEN_RE = re.compile(r"^mlcat_([0-9a-f]{16})_([A-Za-z0-9_-]{20,100})$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
#: last_used_at is refreshed at most this often (a write per request would contend with the engine).
LAST_USED_RESOLUTION = 60.0
#: Hash compared when the id is unknown, so that both paths do the same work.
_DUMMY_HASH = hashlib.sha256(b"no such token").hexdigest()


class ApiTokenRow(Base):
    """An operator API token; only the SHA-256 of its secret is kept (migration 0006_api_tokens)."""

    __tablename__ = "mlc_api_tokens"
    __table_args__ = (Index("ix_mlc_api_tokens_name", "name"),)
    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)
    last_used_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: viewer | operator | admin (server/roles.py); tokens older than roles are admin (0013_console_users).
    role: Mapped[str] = mapped_column(String(20), default="admin", server_default="admin")


class ApiTokenError(Exception):
    pass


@dataclass(frozen=True)
class ApiCaller:
    token_id: str
    name: str
    role: str = "admin"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_token(db: Database, name: str, role: str = "admin", clock: Clock = SYSTEM_CLOCK) -> tuple[str, str]:
    """A new token for `name`: (token id, the token). The token is not stored and cannot be shown again."""
    from ml_connector.server.roles import ROLES

    if role not in ROLES:
        raise ApiTokenError(f"role {role!r}: use one of {', '.join(ROLES)}")
    if not NAME_RE.match(name):
        raise ApiTokenError(f"token name {name!r}: use letters, digits, '_', '.', '-' (at most 100), "
                            "starting with a letter or digit")
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    with db.session() as s:
        taken = s.scalars(select(ApiTokenRow.id).where(ApiTokenRow.name == name,
                                                       ApiTokenRow.revoked_at.is_(None))).first()
        if taken is not None:
            raise ApiTokenError(f"an active token named {name!r} exists ({taken}); revoke it first "
                                "or choose another name")
        s.add(ApiTokenRow(id=token_id, name=name, secret_hash=_hash(secret), created_at=clock.now(), role=role))
        audit.record(s, "api.token.created", detail={"token_id": token_id, "name": name, "role": role})
    return token_id, f"{TOKEN_PREFIX}{token_id}_{secret}"


def list_tokens(db: Database) -> list[dict[str, Any]]:
    with db.session() as s:
        return [{"id": r.id, "name": r.name, "created_at": r.created_at, "last_used_at": r.last_used_at,
                 "revoked_at": r.revoked_at, "state": "revoked" if r.revoked_at else "active", "role": r.role}
                for r in s.scalars(select(ApiTokenRow).order_by(ApiTokenRow.created_at))]


def revoke_token(db: Database, id_or_name: str, clock: Clock = SYSTEM_CLOCK) -> list[str]:
    """Revoke the token with this id, or the active one with this name; the ids revoked."""
    with db.session() as s:
        rows = list(s.scalars(select(ApiTokenRow).where(ApiTokenRow.revoked_at.is_(None),
                                                        (ApiTokenRow.id == id_or_name)
                                                        | (ApiTokenRow.name == id_or_name))))
        now = clock.now()
        for r in rows:
            r.revoked_at = now
            audit.record(s, "api.token.revoked", detail={"token_id": r.id, "name": r.name})
        return [r.id for r in rows]


def active_token_count(db: Database) -> int:
    with db.session() as s:
        return len(list(s.scalars(select(ApiTokenRow.id).where(ApiTokenRow.revoked_at.is_(None)))))


def verify_token(db: Database, token: str,
                 clock: Clock = SYSTEM_CLOCK) -> tuple[ApiCaller | None, str, str | None]:
    """(caller, reason, token id): caller is None when refused; reason says why (for the audit).
    Its last use is stored at most every LAST_USED_RESOLUTION seconds of `clock`."""
    m = _TOKEN_RE.match(token)
    if m is None:
        return None, "malformed_token", None
    token_id, secret = m.group(1), m.group(2)
    with db.read() as s:
        row = s.get(ApiTokenRow, token_id)
        stored = row.secret_hash if row is not None else _DUMMY_HASH
        matches = hmac.compare_digest(_hash(secret), stored)
        if row is None:
            return None, "unknown_token", token_id
        if not matches:
            return None, "bad_secret", token_id
        if row.revoked_at is not None:
            return None, "revoked_token", token_id
        caller, last_used = ApiCaller(row.id, row.name, row.role), row.last_used_at
    now = clock.now()
    if last_used is None or now - last_used > LAST_USED_RESOLUTION:
        with db.session() as s:
            fresh = s.get(ApiTokenRow, token_id)
            if fresh is not None:
                fresh.last_used_at = now
    return caller, "ok", token_id


class RefusalAudit(CoalescedRefusals):
    """Audit of refused operator requests: at most one `api.auth.rejected` row per (client, reason)
    per `window`, with the number of refusals it stands for (core/refusals.py)."""

    def __init__(self, db: Database, **kw: Any) -> None:
        super().__init__(db, "api.auth.rejected", outcome="failed", **kw)


def auth_required(server_cfg: Any) -> bool:
    """Whether every admin request needs a token (False: loopback-bound `auto`, see the module doc)."""
    return server_cfg.api_auth == "token" or not is_loopback_host(server_cfg.host)


bearer = HTTPBearer(auto_error=False, scheme_name="ApiToken", bearerFormat="mlcat_<id>_<secret>",
                    description="Operator API token from `ml-connector api-tokens create NAME`. Required unless "
                                "the server is bound to loopback only (server.api_auth: auto).")

UNAUTHORIZED_MESSAGE = ("this API needs an operator token: send `Authorization: Bearer <token>`; create one on the "
                        "control plane with `ml-connector api-tokens create NAME`")


def admin_guard(db: Database, server_cfg: Any, refusals: RefusalAudit | None = None,
                clock: Clock = SYSTEM_CLOCK) -> Callable[..., ApiCaller | None]:
    """The FastAPI dependency that protects the operators' API (shown as a security scheme in OpenAPI)."""
    always = auth_required(server_cfg)
    refusal_audit = refusals or RefusalAudit(db)

    def guard(request: Request,
              credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> ApiCaller | None:
        proxied = has_proxy_header(request.headers)
        # The caller is kept on the request for the role checks of the routes (server/roles.py).
        request.state.api_caller = None
        if not always and not proxied:
            return None
        if credentials is None or credentials.scheme.lower() != "bearer":
            reason, caller, token_id = "missing_token", None, None
        else:
            caller, reason, token_id = verify_token(db, credentials.credentials.strip(), clock)
        if caller is not None:
            request.state.api_caller = caller
            return caller
        client = request.client.host if request.client else ""
        refusal_audit.refused(client, reason, {"token_id": token_id, "method": request.method,
                                               "path": request.url.path, "proxied": proxied},
                              peer=peer_of(request))
        raise HTTPException(401, detail={"error": "unauthorized", "message": UNAUTHORIZED_MESSAGE},
                            headers={"WWW-Authenticate": 'Bearer realm="ml-connector"'})

    return guard
