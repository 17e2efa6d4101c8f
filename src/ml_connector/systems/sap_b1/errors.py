"""Typed Service Layer errors, parsed from every error shape B1 answers (reference §6.5):
code as number or string, message as {"lang","value"} object or plain string. They travel over the
agent channel as `ChannelFault`s and are re-typed on the control plane's side."""

from __future__ import annotations

import json
from typing import Any

from ml_connector.core.channel import ChannelFault
from ml_connector.core.http import PicklableError
from ml_connector.systems.sap_b1.facts import b1_facts


class B1Error(PicklableError):
    """An error answer of the Service Layer (or of the HTTP layer in front of it)."""

    retriable = False

    def __init__(self, message: str, *, status: int | None = None, code: int | str | None = None,
                 lang: str | None = None, uncertain: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.lang = lang
        self.uncertain = uncertain

    def __str__(self) -> str:
        bits = [f"HTTP {self.status}" if self.status else "", f"code {self.code}" if self.code is not None else ""]
        head = ", ".join(b for b in bits if b)
        return f"{self.message} ({head})" if head else self.message

    def to_fault(self) -> ChannelFault:
        return ChannelFault(type=type(self).__name__, key="" if self.code is None else str(self.code),
                            message=self.message, retriable=self.retriable,
                            details={"status": self.status, "code": self.code, "lang": self.lang,
                                     "uncertain": self.uncertain})


class B1SessionError(B1Error):
    """401 / code 301: no valid session (expired, logged out, wrong-case path, missing cookie)."""


class B1LoginError(B1Error):
    """Login refused (bad CompanyDB, user or password). Never carries the password."""


class B1NotFound(B1Error):
    """404: no such entity (code -2028) or resource."""


class B1CommunicationError(B1Error):
    """No usable answer: connection refused or dropped, timeout, a gateway's 502/503/504 page.
    `uncertain` when the request may have reached B1 (a write may have been committed)."""

    retriable = True


class B1RequestError(B1Error):
    """A request this client refuses to send (bad path, header or body); nothing reached B1."""


ERROR_CLASSES: dict[str, type[B1Error]] = {c.__name__: c for c in (
    B1Error, B1SessionError, B1LoginError, B1NotFound, B1CommunicationError, B1RequestError)}


def error_from_fault(fault: ChannelFault) -> B1Error:
    cls = ERROR_CLASSES.get(fault.type, B1Error)
    d = fault.details or {}
    return cls(fault.message, status=d.get("status"), code=d.get("code"), lang=d.get("lang"),
               uncertain=bool(d.get("uncertain", False)))


def _code(value: Any) -> int | str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        return text or None


def parse_error(status: int, content: bytes | str, *, uncertain: bool = False) -> B1Error:
    """The typed error of an error answer. Accepts {"error":{"code":int|str,"message":{..}|str}},
    and anything else (an HTML gateway page, empty body) as a communication error."""
    text = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
    code: int | str | None = None
    message: str | None = None
    lang: str | None = None
    try:
        data = json.loads(text) if text.strip() else None
    except ValueError:
        data = None
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        code = _code(err.get("code"))
        msg = err.get("message")
        if isinstance(msg, dict):
            message = str(msg.get("value", "")) or None
            lang = str(msg["lang"]) if msg.get("lang") is not None else None
        elif msg is not None:
            message = str(msg)
    session_code = b1_facts().session.invalid_session_code
    if status == 401 or code == session_code:
        return B1SessionError(message or "Invalid session", status=status, code=code, lang=lang)
    if isinstance(err, dict):
        if status == 404:
            return B1NotFound(message or "Not found", status=status, code=code, lang=lang)
        return B1Error(message or f"Service Layer error {code}", status=status, code=code, lang=lang)
    snippet = " ".join(text.split())[:200]
    return B1CommunicationError(f"HTTP {status} without a Service Layer error body: {snippet!r}",
                                status=status, uncertain=uncertain)
