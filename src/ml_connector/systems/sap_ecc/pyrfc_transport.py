"""PyRFC (native RFC through the SAP NW RFC SDK) behind the same `call()` interface as SoapRfcClient.

    client = PyRfcClient("10.0.0.1", "00", "100", "RFC_USER", password)
    client.call("RFC_READ_TABLE", {"QUERY_TABLE": "T000", "ROWCOUNT": 1}, tables=["DATA", "FIELDS"])

`pyrfc` is imported only when a client is constructed: it needs the proprietary SAP NW RFC SDK 7.50
(downloaded from the SAP Support Portal with an S-user, SAP Note 3337381) and then `pip install
pyrfc`; when it is missing, `PyRfcNotInstalled` says exactly that. One `pyrfc.Connection` is one
stateful ABAP session (a BAPI and BAPI_TRANSACTION_COMMIT on the same client commit together);
calls are serialized on it with a lock.

PyRFC's exceptions are mapped by class name to the typed errors of errors.py (ABAPApplicationError,
ABAPRuntimeError, LogonError, CommunicationError, ExternalRuntimeError; others -> RfcError), with
code, key, message and msg_class/msg_type/msg_number/msg_v1..v4 copied.

Values: PyRFC returns native Python types (datetime.date for DATS, Decimal for BCD, int, bytes for
RAW); `call` turns them into the character forms the SOAP-RFC client returns (DATS YYYYMMDD, TIMS
HHMMSS, numbers as text, RAW as upper-case hex), so results are JSON-safe for the agent channel and
the flows see one shape whatever the transport.

Budget and retries are the SOAP client's (call_policy.CallPolicy): the per-system calls-per-second
budget, the concurrency cap, backoff with jitter on SYSTEM_FAILURE and communication errors, and no
blind retry of a non-idempotent call whose outcome is unknown.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import random
import threading
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from ml_connector.core import calls
from ml_connector.core.ratelimit import Budgets

from .call_policy import CallPolicy
from .errors import (
    ABAPApplicationError,
    ABAPRuntimeError,
    CommunicationError,
    ExternalRuntimeError,
    LogonError,
    RfcError,
)
from .soap import TABLES_KEY, to_abap

INSTALL_HINT = (
    "the 'pyrfc' module is not installed. The PyRFC transport needs the SAP NW RFC SDK 7.50 "
    "(download it from the SAP Support Portal with an S-user, see SAP Note 3337381; SAP does not allow "
    "redistributing it), unpack it, set SAPNWRFC_HOME to its directory (and LD_LIBRARY_PATH to "
    "$SAPNWRFC_HOME/lib), then `pip install pyrfc` (builds with Cython). Or use transport: soap_rfc."
)

_CLASS_MAP: dict[str, type[RfcError]] = {
    "ABAPApplicationError": ABAPApplicationError,
    "ABAPRuntimeError": ABAPRuntimeError,
    "LogonError": LogonError,
    "CommunicationError": CommunicationError,
    "ExternalRuntimeError": ExternalRuntimeError,
    "ExternalApplicationError": ExternalRuntimeError,
    "ExternalAuthorizationError": LogonError,
}


class PyRfcNotInstalled(ImportError):
    def __init__(self, detail: str = "") -> None:
        super().__init__(f"PyRFC transport: {INSTALL_HINT}" + (f" ({detail})" if detail else ""))


def map_pyrfc_error(exc: BaseException, *, uncertain_communication: bool = True) -> RfcError:
    """Translate a pyrfc exception (by class name, MRO included) into our typed error."""
    cls: type[RfcError] = RfcError
    for klass in type(exc).__mro__:
        if klass.__name__ in _CLASS_MAP:
            cls = _CLASS_MAP[klass.__name__]
            break

    def attr(name: str) -> str:
        v = getattr(exc, name, None)
        return "" if v is None else str(v)

    code = getattr(exc, "code", None)
    message = attr("message") or str(exc)
    kwargs: dict[str, Any] = {
        "code": code if isinstance(code, int) else None, "key": attr("key"), "msg_class": attr("msg_class"),
        "msg_type": attr("msg_type"), "msg_number": attr("msg_number"), "msg_v1": attr("msg_v1"),
        "msg_v2": attr("msg_v2"), "msg_v3": attr("msg_v3"), "msg_v4": attr("msg_v4"), "raw": str(exc),
    }
    if cls is CommunicationError:
        kwargs["uncertain"] = uncertain_communication
    if cls is RfcError and not kwargs["key"]:
        kwargs["key"] = type(exc).__name__
    return cls(message, **kwargs)


def to_character_form(value: Any) -> Any:
    """A PyRFC result value in the SOAP-RFC client's shape: nested dicts and lists of strings."""
    if isinstance(value, dict):
        return {str(k): to_character_form(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_character_form(v) for v in value]
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex().upper()
    if isinstance(value, dt.datetime):  # not an ABAP type; PyRFC gives none, but be total
        return value.strftime("%Y%m%d%H%M%S")
    if isinstance(value, str | bool | int | float | Decimal | dt.date | dt.time):
        return to_abap(value)
    return str(value)


class PyRfcClient:
    """An RFC client over PyRFC with SoapRfcClient's `call(fm, params, tables=())` signature."""

    def __init__(self, ashost: str | None, sysnr: str | int = "00", client: str | int = "100", user: str = "",
                 password: str = "", *, language: str | None = "EN", dest: str | None = None,
                 config: dict[str, Any] | None = None, calls_per_second: int | None = None,
                 max_concurrency: int | None = None, max_attempts: int | None = None,
                 idempotent_functions: Sequence[str] | Callable[[str], bool] | None = None,
                 sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None,
                 budgets: Budgets | None = None, calls_as: str | None = None, **conn_params: Any) -> None:
        try:
            pyrfc = importlib.import_module("pyrfc")
        except ImportError as exc:
            raise PyRfcNotInstalled(str(exc)) from None
        self._pyrfc = pyrfc
        self.client = str(client).zfill(3)
        self.user = user
        self.ashost = ashost
        self.sysnr = str(sysnr).zfill(2)
        # The name a run's calls are counted under (core/calls.py): the connection's URL host, so the
        # console names the connection.
        self.calls_as = calls_as or str(dest or ashost)
        params: dict[str, Any] = dict(conn_params)
        if dest:
            params["dest"] = dest
        else:
            params.update(ashost=ashost, sysnr=self.sysnr, client=self.client, user=user, passwd=password)
            if language:
                params["lang"] = language
        if config:
            params["config"] = config
        # One connection is one ABAP session: calls on it are serialized. The budget key names the
        # application server and client, shared with every other PyRFC client of that system.
        self.policy = CallPolicy(f"rfc://{dest or ashost}/{self.sysnr}|{self.client}",
                                 calls_per_second=calls_per_second, max_concurrency=max_concurrency,
                                 max_attempts=max_attempts, idempotent_functions=idempotent_functions,
                                 sleep=sleep, rng=rng, budgets=budgets)
        self._lock = threading.Lock()
        try:
            self._conn = pyrfc.Connection(**params)
        except Exception as exc:
            raise map_pyrfc_error(exc, uncertain_communication=False) from None

    def __repr__(self) -> str:
        return f"PyRfcClient(ashost={self.ashost!r}, sysnr={self.sysnr!r}, client={self.client!r}, user={self.user!r})"

    def call(self, fm: str, params: dict[str, Any] | None = None, *,
             tables: Sequence[str] = ()) -> dict[str, Any]:
        kwargs = dict(params or {})
        kwargs.pop(TABLES_KEY, None)
        # PyRFC returns every TABLES parameter anyway; `tables` only matters for SOAP-RFC.

        def once() -> dict[str, Any]:
            with self.policy.slot(), self._lock:
                calls.note(self.calls_as)  # each attempt is one of the run's calls
                try:
                    result = self._conn.call(fm, **kwargs)
                except Exception as exc:
                    err = map_pyrfc_error(exc)
                    if isinstance(err, CommunicationError):
                        self._reopen()
                    raise err from None
            return to_character_form(dict(result or {}))

        return self.policy.run(fm, once)

    def _reopen(self) -> None:
        """After a communication error the session is gone; the next call needs a new one."""
        reopen = getattr(self._conn, "reopen", None)
        if callable(reopen):
            with contextlib.suppress(Exception):  # the next call reports the error if it persists
                reopen()

    def ping(self) -> None:
        with self.policy.slot(), self._lock:
            try:
                self._conn.ping()
            except Exception as exc:
                raise map_pyrfc_error(exc, uncertain_communication=False) from None

    def close(self) -> None:
        with self._lock, contextlib.suppress(Exception):  # closing a dead connection is not an error
            self._conn.close()

    def __enter__(self) -> PyRfcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
