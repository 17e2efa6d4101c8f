"""The Marketing Cloud emulator's state: tokens, Data Extensions with their rows, async requests,
journey event definitions and entry events, fault switches and call counters."""

from __future__ import annotations

import copy
import math
import secrets
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ml_connector.systems.sfmc.facts import sfmc_facts

# The provider's facts (provider.yaml), as the real service applies them.
_F = sfmc_facts()
assert _F.auth.token_lifetime is not None  # an OAuth2 mode (checked by the schema)
TOKEN_LIFE = float(_F.auth.token_lifetime)                      # the token lives 20 minutes ...
EXPIRES_IN = int(TOKEN_LIFE - _F.token.reported_early)          # ... and the answer says 1080 s
RETRIEVE_PAGE = _F.soap.retrieve_page                           # rows per SOAP Retrieve page
ASYNC_ROWS_MAX = _F.batch.async_max_rows
SYNC_ROWS_MAX = 5000       # the emulator's own cap on a rowset call (the service caps it at 5 MB)


@dataclass
class Faults:
    throttle_next: int = 0          # the next N API calls are throttled (REST 429, SOAP "Rate Limited")
    retry_after: int = 1            # REST Retry-After seconds while throttling
    fail_next: int = 0              # the next N API calls fail with `kind`
    kind: str = "5xx"               # 5xx | drop | timeout_after_commit
    latency: float = 0.0            # seconds added to every API call
    async_pending_polls: int = 1    # status polls answered Pending before an async request completes
    event_reject_contacts: list[str] = field(default_factory=list)  # inactive contacts: 400
    # Marketing Cloud throttles an account per minute: above `calls_per_minute` API calls (REST and
    # SOAP together) in the last `rate_window` seconds, a call is refused (REST 429 with Retry-After =
    # seconds until one is admitted again; SOAP "Rate Limited" fault) and not processed. 0: no limit.
    calls_per_minute: int = 0
    rate_window: float = 60.0       # the "minute" (a test may shorten it)

    def update(self, data: dict[str, Any]) -> None:
        for k, v in data.items():
            if not hasattr(self, k):
                raise KeyError(k)
            setattr(self, k, v)


@dataclass
class DataExtension:
    key: str
    name: str
    fields: list[dict[str, Any]]
    sendable_field: str | None = None
    rows: dict[tuple[str, ...], dict[str, str]] = field(default_factory=dict)
    object_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def primary_keys(self) -> list[str]:
        return [f["Name"] for f in self.fields if f.get("IsPrimaryKey")]

    def field(self, name: str) -> dict[str, Any] | None:
        return next((f for f in self.fields if f["Name"].lower() == name.lower()), None)


class SfmcSandbox:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.client_id = "sfmc_demo_client"
        self.client_secret = "sfmc-demo-secret-" + "0" * 8
        self.account_id = "100001"
        self.tokens: dict[str, float] = {}     # token -> expires at (time.time())
        self.des: dict[str, DataExtension] = {}
        self.async_requests: dict[str, dict[str, Any]] = {}
        self.event_definitions: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        # Journeys are built by marketing in Journey Builder; the seed holds one API entry event.
        self.event_definitions["ml-post-purchase"] = {"key": "ml-post-purchase", "name": "Post-purchase journey",
                                                      "type": "APIEvent", "fields": []}
        self.faults = Faults()
        self.stats: dict[str, int] = {"token_requests": 0, "rest_calls": 0, "soap_calls": 0, "throttled": 0,
                                      "rowset_calls": 0, "rows_upserted": 0, "async_requests": 0, "events": 0}
        self.continuations: dict[str, tuple[list[dict[str, str]], int, list[str]]] = {}
        self.admitted: deque[float] = deque()  # when the API calls of the current rate window came in

    # -- tokens -----------------------------------------------------------------------------------

    def issue_token(self) -> tuple[str, int]:
        with self.lock:
            tok = secrets.token_urlsafe(48)
            self.tokens[tok] = time.time() + TOKEN_LIFE
            self.stats["token_requests"] += 1
            return tok, EXPIRES_IN

    def token_state(self, tok: str | None) -> str:
        """ok | expired | invalid"""
        if not tok:
            return "invalid"
        with self.lock:
            exp = self.tokens.get(tok)
        if exp is None:
            return "invalid"
        return "ok" if time.time() < exp else "expired"

    def expire_tokens(self) -> int:
        with self.lock:
            for t in self.tokens:
                self.tokens[t] = 0.0
            return len(self.tokens)

    # -- throttling and faults ---------------------------------------------------------------------

    def over_rate(self, now: float | None = None) -> int | None:
        """With a per-minute limit: None when this API call is admitted (and counted), else the
        seconds (at least 1) until one is admitted again: the call is throttled."""
        with self.lock:
            limit, window = int(self.faults.calls_per_minute), float(self.faults.rate_window)
            if limit <= 0:
                return None
            now = time.monotonic() if now is None else now
            while self.admitted and self.admitted[0] <= now - window:
                self.admitted.popleft()
            if len(self.admitted) < limit:
                self.admitted.append(now)
                return None
            self.stats["throttled"] += 1
            return max(1, math.ceil(self.admitted[0] + window - now))

    def take_fault(self) -> str | None:
        """The fault of this API call: 'throttle', the fail kind, or None."""
        with self.lock:
            if self.faults.throttle_next > 0:
                self.faults.throttle_next -= 1
                self.stats["throttled"] += 1
                return "throttle"
            if self.faults.fail_next > 0:
                self.faults.fail_next -= 1
                return self.faults.kind
            return None

    # -- data extensions --------------------------------------------------------------------------

    def de_by_name(self, name: str) -> DataExtension | None:
        return next((d for d in self.des.values() if d.name == name), None)

    def upsert_row(self, de: DataExtension, row: dict[str, Any]) -> dict[str, str]:
        """Insert or update one row by its primary key (values as strings, as SFMC returns them)."""
        clean: dict[str, str] = {}
        for k, v in row.items():
            f = de.field(k)
            if f is None:
                raise ValueError(f"The column {k!r} does not exist in Data Extension {de.name!r}")
            value = "" if v is None else ("True" if v is True else "False" if v is False else str(v))
            if f.get("MaxLength") and f["FieldType"] in ("Text", "EmailAddress", "Phone") \
                    and len(value) > int(f["MaxLength"]):
                raise ValueError(f"The value for column {f['Name']!r} is longer than {f['MaxLength']} characters")
            if f["FieldType"] in ("Number", "Decimal") and value:
                try:
                    float(value)
                except ValueError:
                    raise ValueError(f"The value {value!r} for column {f['Name']!r} is not a number") from None
            clean[f["Name"]] = value
        pk = self.pk_of(de, clean)
        current = de.rows.get(pk)
        if current is None:
            for f in de.fields:
                if (f.get("IsRequired") or f.get("IsPrimaryKey")) and not clean.get(f["Name"]):
                    raise ValueError(f"The column {f['Name']!r} is required")
            de.rows[pk] = {f["Name"]: clean.get(f["Name"], "") for f in de.fields}
        else:
            current.update(clean)
        self.stats["rows_upserted"] += 1
        return de.rows[pk]

    @staticmethod
    def pk_of(de: DataExtension, row: dict[str, Any]) -> tuple[str, ...]:
        keys = de.primary_keys
        if not keys:
            return (str(uuid.uuid4()),)
        lower = {k.lower(): v for k, v in row.items()}
        missing = [k for k in keys if not str(lower.get(k.lower(), "") or "")]
        if missing:
            raise ValueError(f"The primary key column {missing[0]!r} is missing")
        return tuple(str(lower[k.lower()]) for k in keys)

    # -- persistence --------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"des": copy.deepcopy(self.des), "event_definitions": copy.deepcopy(self.event_definitions),
                    "events": list(self.events)}

    def restore(self, snap: dict[str, Any]) -> None:
        with self.lock:
            self.des = snap.get("des", {})
            self.event_definitions = snap.get("event_definitions", {})
            self.events = snap.get("events", [])
