"""Ramp's refusals explained for finance staff (the console's inbox)."""

from __future__ import annotations

from ml_connector.core.known_errors import KnownError

KNOWN_ERRORS: tuple[KnownError, ...] = (
    KnownError("ramp:already-exists", r"DEVELOPER_7001.{0,200}already exist", "Ramp: the record is already there",
               "Ramp already holds a record with this id, so it refused to create it again.",
               "Replay: the record is looked up in Ramp and adopted instead of created."),
    KnownError("ramp:invalid-input", r"DEVELOPER_7001|Invalid input", "Ramp rejected the data",
               "Ramp's validation refused a field of the record (missing, too long, or an unknown code).",
               "Correct the record at the source (or its mapping), then replay."),
)
