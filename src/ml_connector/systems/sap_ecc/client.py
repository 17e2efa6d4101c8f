"""SAP ECC SOAP-RFC client (`/sap/bc/soap/rfc`) and the agent-channel glue.

* `SoapRfcClient.call(fm, params, tables=...)` posts one SOAP-RFC request and
  returns the reply as a dict (see `soap.parse_response`), or raises a typed
  `RfcError` (errors.py).
* Budgets: one `ConcurrencyCap` and one calls-per-second `RollingWindowLimiter`
  per SAP system (base URL + client), shared by every client of that system in
  the process.
* Retries: exponential backoff with full jitter for retriable errors. A request
  that may already have been processed (read timeout, connection dropped after
  sending, 502/504, unreadable reply) is retried only for idempotent (read-only)
  function modules; for any other FM the error is raised with `uncertain=True`
  and the caller resolves it by a lookup. Retriable ABAP runtime errors
  (SYSTEM_FAILURE) of non-idempotent FMs are treated the same way: a wrapper FM
  may have committed before it dumped.
* `RfcCaller` is the transport-agnostic interface the table reader and flows use;
  `ChannelRfcCaller` sends calls through the agent channel, and `make_handler`
  is the agent side that serves them with a `SoapRfcClient`.

Channel encoding of a call: `ChannelRequest(system, function=fm, params=P)` where
P is the parameters with every scalar in ABAP character form (dates YYYYMMDD,
see `soap.normalize_params`) plus the key `"__tables__"`: the list of TABLES
parameters to declare so that the server returns them.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from ml_connector.core import calls
from ml_connector.core.channel import AgentChannel, ChannelError, ChannelRequest
from ml_connector.core.ratelimit import Budgets

from .call_policy import CallPolicy, system_key
from .errors import ERROR_CLASSES, CommunicationError, LogonError, rfc_error_from_fault
from .facts import ecc_facts
from .soap import (
    SOAP_ACTION,
    TABLES_KEY,
    build_envelope,
    declared_tables,
    normalize_params,
    parse_fault,
    parse_response,
    split_tables_param,
)

SOAP_PATH = ecc_facts().transport.paths.rfc
_REALM_RE = re.compile(r'realm="([^"]*)"', re.I)


class RfcCaller(Protocol):
    """Anything that can call an RFC-enabled function module."""

    def call(self, fm: str, params: dict[str, Any] | None = None, *,
             tables: Sequence[str] = ()) -> dict[str, Any]: ...


class SoapRfcClient:
    """A synchronous SOAP-RFC client for one SAP system and client (MANDT)."""

    def __init__(
        self,
        base_url: str,
        client: str | int,
        user: str,
        password: str,
        *,
        language: str | None = None,
        calls_per_second: int | None = None,
        max_concurrency: int | None = None,
        timeout: float | httpx.Timeout = 60.0,
        idempotent_functions: Sequence[str] | Callable[[str], bool] | None = None,
        backoff_base: float | None = None,
        backoff_max: float | None = None,
        max_attempts: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        transport: httpx.BaseTransport | None = None,
        verify: bool | str = True,
        budgets: Budgets | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = str(client).zfill(3)
        if not re.fullmatch(r"\d{3}", self.client):
            raise ValueError(f"SAP client must be three digits, got {client!r}")
        self.user = user
        self._password = password
        self.language = language
        # The budget is shared with every other client (any transport) of this SAP system.
        self.policy = CallPolicy(
            system_key(self.base_url, self.client), calls_per_second=calls_per_second,
            max_concurrency=max_concurrency, backoff_base=backoff_base, backoff_max=backoff_max,
            max_attempts=max_attempts, idempotent_functions=idempotent_functions, sleep=sleep, rng=rng,
            budgets=budgets)
        self.calls_per_second = self.policy.calls_per_second
        self.max_concurrency = self.policy.max_concurrency
        self.backoff_base = self.policy.backoff_base
        self.backoff_max = self.policy.backoff_max
        self.max_attempts = self.policy.max_attempts
        self.budget_key = self.policy.budget_key
        params = {"sap-client": self.client}
        if language:
            params["sap-language"] = language
        self._http = httpx.Client(
            base_url=self.base_url,
            params=params,
            auth=httpx.BasicAuth(user, password),  # sent pre-emptively on every request
            headers={
                "Content-Type": ecc_facts().transport.content_type,
                "Accept": "text/xml",
                "SOAPAction": SOAP_ACTION,
            },
            timeout=timeout,
            transport=transport,
            verify=verify,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"SoapRfcClient(base_url={self.base_url!r}, client={self.client!r}, user={self.user!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SoapRfcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def is_idempotent(self, fm: str) -> bool:
        return self.policy.is_idempotent(fm)

    @property
    def cookies(self) -> httpx.Cookies:
        return self._http.cookies

    # ------------------------------------------------------------------ calling

    def call(self, fm: str, params: dict[str, Any] | None = None, *,
             tables: Sequence[str] = ()) -> dict[str, Any]:
        body = build_envelope(fm, params, tables_wanted=tables)
        declared = declared_tables(params, tables)
        return self.policy.run(fm, lambda: self._once(fm, body, declared))

    def _once(self, fm: str, body: bytes, declared: list[str]) -> dict[str, Any]:
        with self.policy.slot():
            calls.note(urlsplit(self.base_url).netloc)  # the run's calls (core/calls.py)
            try:
                resp = self._http.post(SOAP_PATH, content=body)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                raise CommunicationError(f"cannot connect to {self.base_url}: {type(exc).__name__}: {exc}",
                                         key="RFC_COMMUNICATION_FAILURE") from None
            except (httpx.TimeoutException, httpx.RemoteProtocolError, httpx.ReadError,
                    httpx.WriteError) as exc:
                raise CommunicationError(
                    f"{fm}: connection to {self.base_url} failed after the request was sent "
                    f"({type(exc).__name__}: {exc}); the call may have been processed",
                    key="RFC_COMMUNICATION_FAILURE", uncertain=True) from None
            except httpx.TransportError as exc:
                raise CommunicationError(f"{fm}: transport error {type(exc).__name__}: {exc}",
                                         key="RFC_COMMUNICATION_FAILURE", uncertain=True) from None
        return self._interpret(fm, resp, declared)

    def _interpret(self, fm: str, resp: httpx.Response, declared: list[str]) -> dict[str, Any]:
        status = resp.status_code
        if status == 200:
            return parse_response(fm, resp.content, tables=declared)
        if status == 401:
            challenge = resp.headers.get("www-authenticate", "")
            m = _REALM_RE.search(challenge)
            realm = m.group(1) if m else ""
            where = f"realm {realm}" if realm else f"{self.base_url} client {self.client}"
            raise LogonError(f"Name or password is incorrect, or user {self.user!r} cannot log on to "
                             f"client {self.client} ({where})", key="RFC_LOGON_FAILURE")
        if status == 500:
            raise parse_fault(status, resp.content)
        if status == 403:
            raise LogonError(f"HTTP 403 Forbidden for {SOAP_PATH} (client {self.client}): user "
                             f"{self.user!r} lacks authorization or the service is blocked",
                             key="HTTP_403", raw=resp.content)
        if status == 404:
            raise CommunicationError(f"HTTP 404 for {SOAP_PATH}: the SICF service may be inactive",
                                     key="SERVICE_NOT_FOUND", raw=resp.content, retriable=False)
        if status in self.policy.retry.statuses:  # refused before processing (429, 503)
            raise CommunicationError(f"HTTP {status}: {fm} refused by the server, try later",
                                     key=f"HTTP_{status}", raw=resp.content)
        if status in (502, 504):  # a gateway may have forwarded the request
            raise CommunicationError(f"HTTP {status} from a gateway for {fm}; the call may have been "
                                     f"processed", key=f"HTTP_{status}", raw=resp.content, uncertain=True)
        raise CommunicationError(f"unexpected HTTP {status} for {fm}", key=f"HTTP_{status}",
                                 raw=resp.content, uncertain=True, retriable=False)

    # ------------------------------------------------------------------ helpers

    def ping(self) -> float:
        """RFC_PING round trip in seconds."""
        start = time.perf_counter()
        self.call("RFC_PING")
        return time.perf_counter() - start

    def system_info(self) -> dict[str, Any]:
        """RFC_SYSTEM_INFO's RFCSI_EXPORT structure."""
        result = self.call("RFC_SYSTEM_INFO")
        info = result.get("RFCSI_EXPORT")
        return info if isinstance(info, dict) else {}


class ChannelRfcCaller:
    """An `RfcCaller` that sends every call through the agent channel to `system`.

    Faults come back re-typed as the same `RfcError` subclasses; faults from
    outside the RFC taxonomy (e.g. UnknownSystem) raise `ChannelError`."""

    def __init__(self, channel: AgentChannel, system: str) -> None:
        self.channel = channel
        self.system = system

    def __repr__(self) -> str:
        return f"ChannelRfcCaller(system={self.system!r})"

    def call(self, fm: str, params: dict[str, Any] | None = None, *,
             tables: Sequence[str] = ()) -> dict[str, Any]:
        payload = normalize_params(params)
        payload[TABLES_KEY] = list(tables)
        response = self.channel.call(ChannelRequest(system=self.system, function=fm, params=payload))
        if response.ok:
            return response.result or {}
        fault = response.fault
        if fault is None:
            raise CommunicationError(f"{fm}: agent answered not-ok without a fault", key="INVALID_RESPONSE")
        if fault.type in ERROR_CLASSES:
            raise rfc_error_from_fault(fault)
        raise ChannelError(fault)


def make_handler(client: RfcCaller) -> Callable[[str, dict[str, Any]], dict[str, Any]]:
    """The agent-side handler: the inverse of `ChannelRfcCaller`."""

    def handle(function: str, params: dict[str, Any]) -> dict[str, Any]:
        p, tables = split_tables_param(params)
        return client.call(function, p, tables=tables)

    return handle
