"""Typed RFC errors, mirroring PyRFC's taxonomy (reference §1.2).

| code | class                  | typical key                                  |
|------|------------------------|----------------------------------------------|
| 1    | CommunicationError     | connect error, read timeout, dropped link    |
| 2    | LogonError             | RFC_LOGON_FAILURE (HTTP 401)                 |
| 3/4  | ABAPRuntimeError       | SYSTEM_FAILURE, SAPSQL_PARSE_ERROR, messages |
| 5    | ABAPApplicationError   | TABLE_NOT_AVAILABLE, FU_NOT_FOUND, ...       |
| 20   | ExternalRuntimeError   | invalid parameter on the client side         |

Every error is serializable for the agent channel: `to_fault()` gives a
`ChannelFault`, and `rfc_error_from_fault()` rebuilds the typed error on the
other side of the seam.

`uncertain` marks a call whose outcome is unknown (the request may have been
processed, e.g. a read timeout after the request was sent). The client never
retries such a call for a non-idempotent function module; the caller must
resolve it by a lookup (e.g. BKPF by BUKRS+XBLNR before re-posting).

`raw` keeps (a truncated copy of) the response body for diagnosis; it is never
part of `str()`. Messages never carry credentials or Authorization headers.
"""

from __future__ import annotations

from typing import Any

from ml_connector.core.channel import ChannelFault
from ml_connector.core.http import PicklableError

RAW_LIMIT = 4000

# Runtime keys after which a retry is reasonable: the ABAP session died or was
# refused for lack of resources; the call rolled back.
RETRIABLE_RUNTIME_KEYS = frozenset({"SYSTEM_FAILURE", "RFC_RESOURCE_FAILURE", "RESOURCE_FAILURE",
                                    "CM_NO_DATA_RECEIVED"})


class RfcError(PicklableError):
    """Base of all RFC errors; attributes follow PyRFC's RFCLibError."""

    default_code = 0

    def __init__(
        self,
        message: str = "",
        *,
        code: int | None = None,
        key: str = "",
        msg_class: str = "",
        msg_type: str = "",
        msg_number: str = "",
        msg_v1: str = "",
        msg_v2: str = "",
        msg_v3: str = "",
        msg_v4: str = "",
        raw: str | bytes | None = None,
        uncertain: bool = False,
        retriable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.code = self.default_code if code is None else code
        self.key = key
        self.message = message
        self.msg_class = msg_class
        self.msg_type = msg_type
        self.msg_number = msg_number
        self.msg_v1 = msg_v1
        self.msg_v2 = msg_v2
        self.msg_v3 = msg_v3
        self.msg_v4 = msg_v4
        if isinstance(raw, bytes):
            raw = raw[:RAW_LIMIT].decode("utf-8", errors="replace")
        self.raw: str | None = raw[:RAW_LIMIT] if raw is not None else None
        self.uncertain = uncertain
        self._retriable = retriable

    @property
    def retriable(self) -> bool:
        """Worth retrying after a pause (the caller still checks `uncertain`)."""
        if self._retriable is not None:
            return self._retriable
        return self._default_retriable()

    def _default_retriable(self) -> bool:
        return False

    def __str__(self) -> str:
        text = f"{self.code} (rc={self.code}): key={self.key}, message={self.message}"
        if self.msg_class or self.msg_type or self.msg_number:
            text += (
                f" [MSG: class={self.msg_class}, type={self.msg_type}, number={self.msg_number}, "
                f"v1-4:={self.msg_v1};{self.msg_v2};{self.msg_v3};{self.msg_v4}]"
            )
        return text

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key={self.key!r}, message={self.message!r}, code={self.code})"

    def to_fault(self) -> ChannelFault:
        details: dict[str, Any] = {
            "code": self.code,
            "msg_class": self.msg_class,
            "msg_type": self.msg_type,
            "msg_number": self.msg_number,
            "msg_v1": self.msg_v1,
            "msg_v2": self.msg_v2,
            "msg_v3": self.msg_v3,
            "msg_v4": self.msg_v4,
            "uncertain": self.uncertain,
        }
        if self.raw is not None:
            details["raw"] = self.raw
        return ChannelFault(type=type(self).__name__, key=self.key, message=self.message,
                            retriable=self.retriable, details=details)


class CommunicationError(RfcError):
    """Transport-level failure (code 1). Retriable unless the outcome is uncertain
    for a non-idempotent call; that decision is the client's."""

    default_code = 1

    def _default_retriable(self) -> bool:
        return True


class LogonError(RfcError):
    """Wrong user/password or wrong client (code 2). Never retried."""

    default_code = 2


class ABAPRuntimeError(RfcError):
    """Short dump or ABAP message (code 3, or 4 for messages)."""

    default_code = 3

    def _default_retriable(self) -> bool:
        return self.key in RETRIABLE_RUNTIME_KEYS


class ABAPApplicationError(RfcError):
    """A classic exception raised by the function module (code 5)."""

    default_code = 5


class ExternalRuntimeError(RfcError):
    """A client-side parameter error (code 20)."""

    default_code = 20


ERROR_CLASSES: dict[str, type[RfcError]] = {
    cls.__name__: cls
    for cls in (RfcError, CommunicationError, LogonError, ABAPRuntimeError, ABAPApplicationError,
                ExternalRuntimeError)
}


def rfc_error_from_fault(fault: ChannelFault) -> RfcError:
    """Re-create the typed error that `to_fault()` serialized. Unknown fault types
    become a plain `RfcError` whose key names the original type."""
    cls = ERROR_CLASSES.get(fault.type)
    d = fault.details

    def s(name: str) -> str:
        v = d.get(name)
        return "" if v is None else str(v)

    code = d.get("code")
    kwargs: dict[str, Any] = {
        "code": int(code) if isinstance(code, int | str) and str(code).lstrip("-").isdigit() else None,
        "msg_class": s("msg_class"),
        "msg_type": s("msg_type"),
        "msg_number": s("msg_number"),
        "msg_v1": s("msg_v1"),
        "msg_v2": s("msg_v2"),
        "msg_v3": s("msg_v3"),
        "msg_v4": s("msg_v4"),
        "raw": d.get("raw") if isinstance(d.get("raw"), str) else None,
        "uncertain": bool(d.get("uncertain", False)),
        "retriable": fault.retriable,
    }
    if cls is None:
        return RfcError(fault.message, key=fault.key or fault.type, **kwargs)
    return cls(fault.message, key=fault.key, **kwargs)
