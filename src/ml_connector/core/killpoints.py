"""Test-only crash points: SIGKILL this process at a chosen step of a write, deterministically.

Off unless `$MLC_TEST_KILL_AT` is set (the fault matrix sets it in the sync process it kills, never
in a deployment); when unset, `hit` is one dictionary lookup. The value is `POINT[@MATCH][#N]`: the
process kills itself (SIGKILL: no cleanup, no flush, as a power cut or the OOM killer would) the
N-th time (default 1) it reaches POINT with a detail containing MATCH (default: any). The points:

- `page.staged`      a page's outbox entries are committed (pending), its delivery not begun;
                     detail: the stream
- `deliver.claimed`  entries are marked in flight (committed), the target not called yet; detail: the stream
- `deliver.written`  the target answered for entries (its write committed there), nothing recorded
                     here yet; detail: the stream
- `deliver.recorded` the outcomes are recorded (outbox, ledger, audit), the engine's step not
                     completed; detail: the stream
- `http.sent`        a request through the shared HTTP transport (core/http.py) is about to leave;
                     detail: "METHOD /path"
- `http.answered`    its answer has arrived (a write committed at the far end), not yet handed to the
                     caller; detail: "METHOD /path"

So `deliver.written@bills` kills a sync after SAP posted a bill and before the ledger has it, and
`http.sent@POST /developer/v1/accounting/syncs` after SAP posted it and before Ramp heard of it.
"""

from __future__ import annotations

import os
import signal
import threading

ENV = "MLC_TEST_KILL_AT"
POINTS = ("page.staged", "deliver.claimed", "deliver.written", "deliver.recorded", "http.sent", "http.answered")

_lock = threading.Lock()
_seen = 0


def parse(spec: str) -> tuple[str, str, int]:
    """(point, match, n) of a `POINT[@MATCH][#N]` value; ValueError naming what is wrong."""
    rest, _, count = spec.partition("#")
    point, _, match = rest.partition("@")
    point = point.strip()
    if point not in POINTS:
        raise ValueError(f"{ENV}={spec!r}: unknown point {point!r} (one of {', '.join(POINTS)})")
    if count and (not count.isdigit() or int(count) < 1):
        raise ValueError(f"{ENV}={spec!r}: the count after '#' must be a positive integer")
    return point, match, int(count or 1)


def hit(point: str, detail: str = "") -> None:
    """Kill this process here if `$MLC_TEST_KILL_AT` names this point (and this is its N-th match)."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    global _seen
    want, match, n = parse(spec)
    if want != point or match not in detail:
        return
    with _lock:
        _seen += 1
        if _seen < n:
            return
    os.kill(os.getpid(), signal.SIGKILL)
