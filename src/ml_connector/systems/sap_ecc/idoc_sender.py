"""Sending XML IDocs into SAP: `POST /sap/bc/idoc_xml?sap-client=NNN` (ICF service IDOC_XML), §5.2.

    sender = IdocSender("https://sap:44300", "100", "IDOC_USER", password)
    result = sender.send(idoc)          # Idoc, list of Idocs, or ready XML bytes
    result.status, result.body

The control record must say DIRECT=2 (inbound into SAP); `send` fills DIRECT=2 and TABNAM when an
`Idoc` object lacks them. SAP answers 200 on acceptance. 401 raises `LogonError`; any other
non-2xx raises `IdocSendError` (status, body); transport failures raise `CommunicationError` with
`uncertain=True` when the request may have reached SAP (a re-send could then create a second IDoc).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from ml_connector.core import calls
from ml_connector.core.http import PicklableError

from .errors import CommunicationError, LogonError
from .idoc import CONTROL, Idoc, build_idoc_xml

IDOC_XML_PATH = "/sap/bc/idoc_xml"
CONTENT_TYPES = ("application/x-sap.idoc", "text/xml")


class IdocSendError(PicklableError):
    def __init__(self, status: int, body: str) -> None:
        self.status = status
        self.body = body[:4000]
        super().__init__(f"SAP rejected the IDoc: HTTP {status}: {self.body[:300]}")


@dataclass
class IdocSendResult:
    status: int
    body: str
    docnums: list[str]  # DOCNUMs SAP reported in the body, if any


class IdocSender:
    def __init__(self, base_url: str, client: str | int, user: str, password: str, *,
                 content_type: str = "application/x-sap.idoc", timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None, verify: bool | str = True) -> None:
        self.client = str(client).zfill(3)
        if not re.fullmatch(r"\d{3}", self.client):
            raise ValueError(f"SAP client must be three digits, got {client!r}")
        if content_type not in CONTENT_TYPES:
            raise ValueError(f"content_type must be one of {CONTENT_TYPES}")
        self.content_type = content_type
        self.user = user
        self._http = httpx.Client(base_url=base_url.rstrip("/"), auth=httpx.BasicAuth(user, password),
                                  params={"sap-client": self.client}, timeout=timeout, transport=transport,
                                  verify=verify, follow_redirects=False,
                                  event_hooks=calls.http_hooks())  # each send is one of the run's calls

    def __repr__(self) -> str:
        return f"IdocSender(base_url={str(self._http.base_url)!r}, client={self.client!r}, user={self.user!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> IdocSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _prepare(idocs: Sequence[Idoc]) -> list[Idoc]:
        out = []
        for idoc in idocs:
            control = {"TABNAM": CONTROL, **idoc.control}
            control.setdefault("DIRECT", "2")
            out.append(Idoc(control=control, segments=idoc.segments, root=idoc.root))
        return out

    def send(self, idoc: Idoc | Sequence[Idoc] | bytes) -> IdocSendResult:
        if isinstance(idoc, bytes):
            body = idoc
        else:
            items = [idoc] if isinstance(idoc, Idoc) else list(idoc)
            body = build_idoc_xml(self._prepare(items))
        try:
            resp = self._http.post(IDOC_XML_PATH, content=body,
                                   headers={"Content-Type": f"{self.content_type}; charset=utf-8"})
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise CommunicationError(f"cannot connect to SAP: {type(exc).__name__}") from None
        except httpx.HTTPError as exc:
            raise CommunicationError(f"IDoc send failed after the request was sent: {type(exc).__name__}",
                                     uncertain=True) from None
        if resp.status_code == 401:
            raise LogonError("Logon failed for /sap/bc/idoc_xml (user, password or client)",
                             key="RFC_LOGON_FAILURE", raw=resp.text)
        if not 200 <= resp.status_code < 300:
            raise IdocSendError(resp.status_code, resp.text)
        return IdocSendResult(resp.status_code, resp.text, re.findall(r"\b\d{16}\b", resp.text))
