"""Receiving XML IDocs pushed by SAP through an XML-HTTP port (WE21 "XML HTTP" + SM59 type G).

    store = SqlIdocStore(db)                                  # table mlc_idocs (migration 0003)
    auth = BasicAuth.from_vault(vault, "SAPIDOC", "sap-idoc-password")
    policy = IdocPolicy(direct="1", partners=[PartnerProfile("LS", "EQ2CLNT100")])
    app.include_router(idoc_router(store, auth, policy=policy), prefix="/sap")   # POST /sap/idoc

Per request: Basic auth (401) -> size limit (413) -> safe parse (400 naming the problem) ->
control-record validation of every IDOC (400 naming `EDI_DC40-<FIELD>`) -> one database
transaction storing the new IDocs (a DOCNUM already stored for that sender is a duplicate: not
stored again, still acknowledged; if its content differs it is kept in `mlc_idoc_conflicts` and
audited `idoc.conflict` for an operator, since SAP never re-sends one DOCNUM with other data) ->
commit -> 200. If storing fails the answer is 503 and nothing
is acknowledged, so SAP keeps the IDoc in error status and it can be re-sent (BD87/RBDMANI2).
A document with several <IDOC> blocks is accepted or rejected as a whole.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import secrets
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from ml_connector.core import audit
from ml_connector.core.db import Database

from .idoc import (
    MAX_BYTES,
    MAX_DEPTH,
    Idoc,
    IdocError,
    IdocPolicy,
    IdocTooLarge,
    build_idoc_xml,
    parse_idoc_xml,
    validate_all,
)
from .idoc_models import IdocConflictRow, IdocRow

log = logging.getLogger(__name__)

__all__ = ["BasicAuth", "IdocStore", "SqlIdocStore", "StoredIdoc", "idoc_router"]


@dataclass(frozen=True)
class StoredIdoc:
    docnum: str
    mestyp: str
    idoctyp: str
    sndprn: str
    duplicate: bool
    conflict: bool = False  # a duplicate DOCNUM whose content differs from the stored IDoc

    def to_dict(self) -> dict[str, Any]:
        return {"docnum": self.docnum, "mestyp": self.mestyp, "idoctyp": self.idoctyp, "sndprn": self.sndprn,
                "duplicate": self.duplicate, "conflict": self.conflict}


# Control fields that describe the transmission, not the IDoc: a resend (BD87) may restamp them.
_VOLATILE_CONTROL = frozenset({"CREDAT", "CRETIM", "SERIAL", "STATUS", "ARCKEY", "REFINT", "REFGRP", "REFMES"})


def content_digest(parsed: dict[str, Any]) -> str:
    """What makes two receptions of one DOCNUM the same IDoc: the data segments and the stable
    control fields."""
    control = {k: v for k, v in (parsed.get("control") or {}).items() if k not in _VOLATILE_CONTROL}
    body = json.dumps({"control": control, "segments": parsed.get("segments")}, sort_keys=True,
                      separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


class IdocStore(Protocol):
    def store(self, idocs: Sequence[Idoc], raw: bytes) -> list[StoredIdoc]:
        """Store every new IDoc in one transaction; return only after the commit."""
        ...


class SqlIdocStore:
    """IDocs in `mlc_idocs` (same database as the rest of the domain state)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def store(self, idocs: Sequence[Idoc], raw: bytes) -> list[StoredIdoc]:
        try:
            return self._store_once(idocs, raw)
        except IntegrityError:
            # A concurrent request stored one of these DOCNUMs first: the retry sees it as a duplicate.
            return self._store_once(idocs, raw)

    def _store_once(self, idocs: Sequence[Idoc], raw: bytes) -> list[StoredIdoc]:
        out: list[StoredIdoc] = []
        seen: dict[tuple[str, str], str] = {}  # (sender, DOCNUM) -> content digest, within this document
        with self.db.session() as s:
            for idoc in idocs:
                key = (idoc.sndprn, idoc.docnum)
                parsed = idoc.to_dict()
                new_digest = content_digest(parsed)
                stored_digest = seen.get(key)
                if stored_digest is None:
                    stored = s.scalar(select(IdocRow.parsed).where(IdocRow.sndprn == idoc.sndprn,
                                                                   IdocRow.docnum == idoc.docnum))
                    stored_digest = content_digest(stored) if stored is not None else None
                own = raw if len(idocs) == 1 else build_idoc_xml([idoc], root=idoc.root or None)
                conflict = stored_digest is not None and stored_digest != new_digest
                if stored_digest is None:
                    s.add(IdocRow(docnum=idoc.docnum, mestyp=idoc.mestyp, idoctyp=idoc.idoctyp,
                                  cimtyp=idoc.cimtyp, sndprt=idoc.sndprt, sndprn=idoc.sndprn, status="received",
                                  raw=zlib.compress(own), parsed=parsed))
                    s.flush()
                    seen[key] = new_digest
                elif conflict:
                    # Kept beside the first one, for a person to decide; nothing is dropped silently.
                    s.add(IdocConflictRow(docnum=idoc.docnum, sndprn=idoc.sndprn, mestyp=idoc.mestyp,
                                          idoctyp=idoc.idoctyp, stored_digest=stored_digest,
                                          new_digest=new_digest, raw=zlib.compress(own), parsed=parsed))
                    audit.record(s, "idoc.conflict", outcome="conflict", source=f"{idoc.sndprn}/{idoc.docnum}",
                                 detail={"docnum": idoc.docnum, "sndprn": idoc.sndprn, "mestyp": idoc.mestyp,
                                         "stored_digest": stored_digest, "new_digest": new_digest})
                    log.warning("IDoc %s from %s re-sent with different content: kept as a conflict for "
                                "an operator (the first reception stays)", idoc.docnum, idoc.sndprn)
                out.append(StoredIdoc(idoc.docnum, idoc.mestyp, idoc.idoctyp, idoc.sndprn,
                                      stored_digest is not None, conflict))
        return out

    def conflicts(self, *, limit: int = 100) -> list[dict[str, Any]]:
        with self.db.session() as s:
            q = select(IdocConflictRow).order_by(IdocConflictRow.id).limit(limit)
            return [{"docnum": r.docnum, "sndprn": r.sndprn, "mestyp": r.mestyp, "idoctyp": r.idoctyp,
                     "stored_digest": r.stored_digest, "new_digest": r.new_digest, "parsed": r.parsed}
                    for r in s.scalars(q)]

    # -- reading (tools, tests) -------------------------------------------------------------

    def count(self) -> int:
        with self.db.session() as s:
            return int(s.scalar(select(func.count()).select_from(IdocRow)) or 0)

    def get(self, docnum: str, sndprn: str | None = None) -> dict[str, Any] | None:
        with self.db.session() as s:
            q = select(IdocRow).where(IdocRow.docnum == docnum)
            if sndprn is not None:
                q = q.where(IdocRow.sndprn == sndprn)
            row = s.scalars(q.limit(1)).first()
            if row is None:
                return None
            return {"docnum": row.docnum, "mestyp": row.mestyp, "idoctyp": row.idoctyp, "cimtyp": row.cimtyp,
                    "sndprt": row.sndprt, "sndprn": row.sndprn, "status": row.status,
                    "received_at": row.received_at, "raw": zlib.decompress(row.raw), "parsed": row.parsed}

    def list(self, *, mestyp: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        with self.db.session() as s:
            q = select(IdocRow).order_by(IdocRow.id)
            if mestyp:
                q = q.where(IdocRow.mestyp == mestyp)
            return [{"docnum": r.docnum, "mestyp": r.mestyp, "idoctyp": r.idoctyp, "sndprn": r.sndprn,
                     "status": r.status, "parsed": r.parsed} for r in s.scalars(q.limit(limit))]


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


class BasicAuth:
    """HTTP Basic credentials for the endpoint. The password comes from a callable (e.g. a vault
    secret), re-read at most every `ttl` seconds so that a rotated secret takes effect."""

    def __init__(self, user: str, password: str | Callable[[], str], *, ttl: float = 60.0,
                 realm: str = "ml-connector IDoc") -> None:
        self.user = user
        self._source: Callable[[], str] = password if callable(password) else (lambda: password)
        self._ttl = ttl
        self._cached: tuple[float, str] | None = None
        self._lock = threading.Lock()
        self.realm = realm

    @classmethod
    def from_vault(cls, vault: Any, user: str, secret_name: str, **kw: Any) -> BasicAuth:
        return cls(user, lambda: str(vault.get(secret_name)), **kw)

    def _password(self) -> str:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > self._ttl:
                self._cached = (now, self._source())
            return self._cached[1]

    def check(self, authorization: str | None) -> bool:
        creds = _basic_credentials(authorization)
        if creds is None:
            return False
        user_ok = secrets.compare_digest(creds[0].upper().encode(), self.user.upper().encode())
        pw_ok = secrets.compare_digest(creds[1].encode(), self._password().encode())
        return user_ok and pw_ok


class _TooLarge(Exception):
    pass


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def idoc_router(store: IdocStore, auth: BasicAuth | None, *, policy: IdocPolicy | None = None,
                path: str = "/idoc", max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH,
                on_stored: Callable[[list[StoredIdoc]], object] | None = None) -> APIRouter:
    """An APIRouter with `POST {path}` receiving XML IDocs from SAP. `auth` None disables the
    logon check (only for tests behind another authenticating layer). `policy` defaults to
    outbound-from-SAP (DIRECT=1) without a partner check: configure partner profiles in production."""
    pol = policy or IdocPolicy(direct="1")
    if pol.partners is None:
        log.warning("IDoc receiver %s: no partner profiles configured, any sender is accepted", path)
    router = APIRouter()

    def text(status: int, message: str, **headers: str) -> Response:
        return PlainTextResponse(message + "\n", status_code=status, headers=headers or None)

    @router.post(path)
    async def receive_idoc(request: Request) -> Response:
        if auth is not None and not auth.check(request.headers.get("authorization")):
            return text(401, "Logon failed: invalid or missing Basic credentials",
                        **{"WWW-Authenticate": f'Basic realm="{auth.realm}"'})
        try:
            body = await _read_limited(request, max_bytes)
        except _TooLarge:
            return text(413, f"IDoc document larger than {max_bytes} bytes")

        def parse() -> list[Idoc]:
            idocs = parse_idoc_xml(body, max_bytes=max_bytes, max_depth=max_depth)
            validate_all(idocs, pol)
            return idocs

        try:
            idocs = await anyio.to_thread.run_sync(parse)
        except IdocTooLarge as exc:
            return text(413, str(exc))
        except IdocError as exc:
            log.info("IDoc rejected: %s", exc)
            return text(400, f"IDoc rejected: {exc}")
        try:
            stored = await anyio.to_thread.run_sync(store.store, idocs, body)
        except Exception as exc:
            log.exception("IDoc store failed; not acknowledged")
            return text(503, f"IDoc not stored, not acknowledged ({type(exc).__name__}); please resend")
        if on_stored is not None:
            try:
                await anyio.to_thread.run_sync(on_stored, stored)  # it may query and enqueue
            except Exception:
                log.exception("IDoc on_stored callback failed (the IDocs are stored)")
        return JSONResponse({"status": "ok", "idocs": [s.to_dict() for s in stored]})

    return router
