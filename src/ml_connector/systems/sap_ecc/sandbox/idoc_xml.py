"""Sandbox: the ICF service IDOC_XML, `POST /sap/bc/idoc_xml?sap-client=NNN` (reference §5.3).

Basic logon as for SOAP-RFC (401 + SAP realm otherwise). The document may carry several
<IDOC BEGIN="1">; every control record must say DIRECT=2, a known MESTYP/IDOCTYP and a sender
(SNDPRT/SNDPRN) with an inbound partner profile. Each accepted IDoc gets a new DOCNUM (the sender's
DOCNUM is ignored, as in SAP) and is kept in `idoc_state(state).received` with status 64.

Switches (Python `idoc_state(state).update(...)` or `POST /_sandbox/idoc/inbound`):
- partners: [{"sndprt": "LS", "sndprn": "MLCONNECT", "mestypes": [...] | null}, ...]
- extra_mestypes / extra_idoctypes: accepted in addition to the built-in list;
- ok_status / ok_body: the acceptance answer (`{docnums}` = space-separated DOCNUMs) [U];
- fail_next / fail_status / fail_body: the next N requests fail with this status and body.
`GET /_sandbox/idoc/inbound` shows the switches and the received IDocs.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ..idoc import IdocError, IdocPolicy, PartnerProfile, parse_idoc_xml, validate_all
from .app import EccSandbox, _basic_credentials, _logon_failed, _response

IDOC_XML_PATH = "/sap/bc/idoc_xml"


class IdocSandboxState:
    """IDoc state of one sandbox: DOCNUM counter, inbound switches and received IDocs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._docnum = 0
        self.partners: list[PartnerProfile] = [PartnerProfile("LS", "MLCONNECT")]
        self.extra_mestypes: frozenset[str] = frozenset()
        self.extra_idoctypes: frozenset[str] = frozenset()
        self.ok_status = 200
        self.ok_body = "IDoc(s) received: {docnums}"
        self.fail_next = 0
        self.fail_status = 500
        self.fail_body = "IDoc inbound processing failed (sandbox fault injection)"
        self.received: list[dict[str, Any]] = []

    def next_docnum(self) -> str:
        with self._lock:
            self._docnum += 1
            return str(self._docnum).zfill(16)

    def policy(self) -> IdocPolicy:
        return IdocPolicy(direct="2", partners=list(self.partners), extra_mestypes=self.extra_mestypes,
                          extra_idoctypes=self.extra_idoctypes, require_docnum=False)

    def take_failure(self) -> bool:
        with self._lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                return True
            return False

    def update(self, **kw: Any) -> dict[str, Any]:
        with self._lock:
            for key, value in kw.items():
                if key == "partners":
                    self.partners = [PartnerProfile(str(p["sndprt"]), str(p["sndprn"]),
                                                    frozenset(p["mestypes"]) if p.get("mestypes") else None)
                                     for p in value]
                elif key in ("extra_mestypes", "extra_idoctypes"):
                    setattr(self, key, frozenset(str(v) for v in value))
                elif key in ("ok_status", "fail_status", "fail_next"):
                    setattr(self, key, int(value))
                elif key in ("ok_body", "fail_body"):
                    setattr(self, key, str(value))
                elif key == "clear_received" and value:
                    self.received.clear()
                else:
                    raise ValueError(f"unknown IDoc inbound switch {key!r}")
        return self.to_dict()

    def to_dict(self) -> dict[str, Any]:
        return {"partners": [{"sndprt": p.sndprt, "sndprn": p.sndprn,
                              "mestypes": sorted(p.mestypes) if p.mestypes else None} for p in self.partners],
                "extra_mestypes": sorted(self.extra_mestypes), "extra_idoctypes": sorted(self.extra_idoctypes),
                "ok_status": self.ok_status, "ok_body": self.ok_body, "fail_next": self.fail_next,
                "fail_status": self.fail_status, "fail_body": self.fail_body, "received": len(self.received)}


_states: weakref.WeakKeyDictionary[EccSandbox, IdocSandboxState] = weakref.WeakKeyDictionary()
_states_lock = threading.Lock()


def idoc_state(state: EccSandbox) -> IdocSandboxState:
    with _states_lock:
        ext = _states.get(state)
        if ext is None:
            ext = _states[state] = IdocSandboxState()
        return ext


def idoc_xml_router(state: EccSandbox) -> APIRouter:
    router = APIRouter()
    ext = idoc_state(state)

    @router.post(IDOC_XML_PATH)
    async def idoc_xml(request: Request) -> Response:
        cfg = state.config
        client = request.query_params.get("sap-client") or cfg.default_client
        host = request.headers.get("host", "localhost")
        creds = _basic_credentials(request.headers.get("authorization"))
        user = state.authenticate(creds[0], creds[1], client) if creds else None
        if user is None:
            return _logon_failed(state, client, "", host)
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > cfg.max_request_bytes:
            return _response(state, "Request Entity Too Large", 413, client, "", "text/plain")
        body = await request.body()
        if len(body) > cfg.max_request_bytes:
            return _response(state, "Request Entity Too Large", 413, client, "", "text/plain")
        if ext.take_failure():
            return _response(state, ext.fail_body, ext.fail_status, client, "", "text/plain")

        def parse() -> list[Any]:
            idocs = parse_idoc_xml(body, max_bytes=cfg.max_request_bytes)
            validate_all(idocs, ext.policy())
            return idocs

        try:
            idocs = await anyio.to_thread.run_sync(parse)
        except IdocError as exc:
            return _response(state, f"IDoc rejected: {exc}", 400, client, "", "text/plain")
        docnums = []
        for idoc in idocs:
            docnum = ext.next_docnum()
            docnums.append(docnum)
            ext.received.append({"docnum": docnum, "client": client, "user": user, "status": "64",
                                 "sender_docnum": idoc.docnum, **idoc.to_dict()})
        return _response(state, ext.ok_body.format(docnums=" ".join(docnums)), ext.ok_status, client, "",
                         "text/plain")

    @router.get("/_sandbox/idoc/inbound")
    async def get_inbound() -> dict[str, Any]:
        return {**ext.to_dict(), "idocs": list(ext.received)}

    @router.post("/_sandbox/idoc/inbound")
    async def set_inbound(request: Request) -> Response:
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("expected a JSON object")
            return JSONResponse(ext.update(**body))
        except (ValueError, TypeError, KeyError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    return router
