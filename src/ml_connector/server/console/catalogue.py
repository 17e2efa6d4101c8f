"""Known causes of failed and parked records, in words a finance person understands.

The inbox groups records by cause: `classify` turns an outbox entry (its state, what it is
parked on, its last error) into a `Cause` with a stable key, a title, what happened and how to
fix it. The generic entries below know only the platform's own vocabulary (mappings, HTTP
statuses, credentials, uncertain writes); a system adds the errors of its own API as
`known_errors` patterns of its registry entry, tried first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ml_connector.core.known_errors import KnownError
from ml_connector.core.redact import redact


@dataclass(frozen=True)
class Cause:
    key: str
    title: str
    explanation: str
    fix: str
    #: For a record parked on a mapping: (table, source value) that the mapping form fills in.
    mapping: tuple[str, str] | None = None


GENERIC: tuple[KnownError, ...] = (
    KnownError("credential_refused", r"invalid_client|invalid_grant|refused (the|our) credential|"
               r"credential.{0,20}refused|\b401\b|unauthori[sz]ed",
               "The target system refused our credentials",
               "The system answered that the user, client id or secret we sent is not valid (it may have been "
               "changed or expired).",
               "An administrator enters the current credential on the Connections page and tests it; then "
               "replay the records."),
    KnownError("forbidden", r"\b403\b|forbidden|not authori[sz]ed to|insufficient scope|permission",
               "Our user may not do this in the target system",
               "The credential works, but its permissions (roles, scopes) do not include this action.",
               "Ask the target system's administrator to grant the permission; then replay."),
    KnownError("rate_limited", r"\b429\b|too many requests|rate limit",
               "The target system asked us to slow down",
               "Its request budget was used up while these records were sent.",
               "Nothing is wrong with the data: replay them (or wait for the next run)."),
    KnownError("unreachable", r"timed? ?out|timeout|connecterror|connection (refused|reset)|unreachable|"
               r"name or service not known|\b50[234]\b",
               "The target system could not be reached",
               "The network or the target system was down, or too slow to answer.",
               "Check that the system is up (Connections: test it), then replay."),
    KnownError("server_error", r"\b500\b|internal server error",
               "The target system failed while handling the record",
               "An error inside the target system, not in our data as far as it told us.",
               "Replay; if it fails again, show the error to the target system's administrator."),
    KnownError("not_in_target", r"is not in .{1,40} to (update|deactivate|reactivate)",
               "The record is gone from the target system",
               "We wanted to change a record that someone deleted in the target system.",
               "Re-create it there or resolve it here; replay creates it again if the source still has it."),
    KnownError("rejected_data", r"\b(400|422)\b|invalid|required|missing|must be|not allowed|does not exist",
               "The target system rejected the data",
               "A field of the record is missing or has a value the target does not accept.",
               "Correct the record in the source system (or the mapping that produces the field), then replay."),
)

UNCERTAIN = Cause("uncertain", "Not known whether the write arrived",
                  "The target did not confirm the write (a timeout or a lost answer); it may or may not hold "
                  "the record.",
                  "Replay: the record is looked up in the target first, so it is never written twice.")
UNKNOWN = Cause("other", "Other errors",
                "An error that is not in the catalogue yet; its text is shown with each record.",
                "Read the error; fix the cause, then replay. Tell us about it so it gets an explanation.")


def _system_errors() -> list[KnownError]:
    from ml_connector.core import registry

    out: list[KnownError] = []
    for entry in registry.entries():
        out.extend(entry.known_errors)
    return out


def classify(state: str, parked_on: str | None, error: str | None) -> Cause:
    if state == "parked" and parked_on:
        table, _, value = parked_on.partition(":")
        return Cause(f"mapping:{table}", f"Waiting for a mapping in table “{table}”",
                     f"The record uses a value that the mapping table “{table}” does not translate yet, so we "
                     "cannot tell the target which of its codes to use.",
                     "An operator adds the missing value below; the waiting records are then sent by themselves.",
                     mapping=(table, value))
    # A write in doubt is grouped by what put it in doubt when that is known (a refused credential
    # is fixed on the Connections page); replay looks it up in the target first either way.
    text = redact(error or "")
    for known in (*_system_errors(), *GENERIC):
        m = re.search(known.pattern, text, re.IGNORECASE)
        if m:
            try:
                title = known.title.format(**m.groupdict())
            except (KeyError, IndexError):
                title = known.title
            return Cause(known.key, title, known.explanation, known.fix)
    return UNCERTAIN if state in ("uncertain", "in_flight") else UNKNOWN
