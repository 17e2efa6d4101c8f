"""The calls a run makes, per system: noted as they are sent, kept in the audit trail at each step's end.

Who a call is for: the engine opens `counting()` around each step of a run that may talk to systems
(begin, each page, each delivery, finish) and around each replay or re-check of a run's records. That
sets an attribution (run, flow, stream, step) in a context variable; the transports `note` each request
they send under it: the shared HTTP transport by host (the console names the connection whose URL has
that host), the SOAP-RFC, Gateway and IDoc clients by host too, PyRFC by its connection's host, the
control plane's agent channel by the system it calls.

Threads: a context variable does not follow work handed to another thread. A source or target that
hands calls to a thread or pool of its own submits them through `carry(fn)`, which runs `fn` in a copy
of the submitting context, so its calls count for the same run and step (tests/unit/test_run_calls.py
checks that every pool and thread under systems/ and flows/ does, or says why not).

Counting once: each HTTP request sent is one call, and so is each retry (a 429, a 5xx, a dropped
connection sent again: the system received, or may have received, each one), a token request and a
re-logon after an expired SAP session. A call through the remote agent is one call however many
attempts the agent itself makes on the customer's network (the control plane does not see those), and is
noted only on the control plane: the agent process has no attribution, so nothing counts twice. With the
embedded agent the SAP client itself notes the call, and the channel does not.

Cost: a note is a context-variable read and a counter increment under a lock; nothing is written per
call. The counts wait in this process and `flush()` writes them all, at the end of the step that set the
attribution, one `run.calls` event per run and step ({step, calls: {system: n}}). Counts that another
thread noted after its step's flush (a read-ahead abandoned by a retried step) go out with the next flush
in this process, whichever run's step makes it, or at the engine's shutdown; each process (every worker on
Postgres) flushes its own.
A process killed mid-step loses that step's unflushed counts (its calls were made; the count is short).

Replays: a replay's calls (`replay`, the console's replay, approve and edit-and-retry) and a re-check's
(the approval queue's "ask again") are kept on the run that staged the records, as steps `replay` and
`recheck`, and shown apart from the run's own calls: the run's figures stay what the run did, and the
operator who fixed a cause and replayed finds what that cost next to the run it repaired.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

EVENT = "run.calls"
#: Steps that are not the run's own work: operators' replays and re-checks of its records, later.
LATER_STEPS = frozenset({"replay", "recheck"})

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class For:
    """Whom calls are made for: a run's step (or a replay of its records)."""

    run_id: str
    flow: str
    stream: str
    step: str


_current: ContextVar[For | None] = ContextVar("mlc_calls", default=None)
_pending: dict[For, Counter[str]] = {}
_lock = threading.Lock()


def note(system: str, n: int = 1) -> None:
    """One call (or `n`) to `system`, sent for whatever run this context works for (if any)."""
    who = _current.get()
    if who is None:
        return
    with _lock:
        tally = _pending.get(who)
        if tally is None:
            tally = _pending[who] = Counter()
        tally[system] += n


def note_request(request: Any) -> None:
    """An httpx request event hook: one call to the request's host (for clients without RetryTransport)."""
    note(request.url.netloc.decode("ascii", "replace"))


#: `event_hooks=` for an httpx.Client whose every request is one call (each one it sends: a re-logon too).
def http_hooks() -> dict[str, list[Callable[[Any], Any]]]:
    return {"request": [note_request]}


def current() -> For | None:
    return _current.get()


@contextmanager
def attributed(who: For) -> Iterator[For]:
    """Calls noted in this context (and in work it `carry`s to other threads) are for `who`."""
    token = _current.set(who)
    try:
        yield who
    finally:
        _current.reset(token)


@contextmanager
def counting(db: Any, run_id: str, flow: str, stream: str, step: str) -> Iterator[For]:
    """A step's calls are for its run; what was counted is kept (`flush`) when the step ends, however it ends."""
    with attributed(For(run_id, flow, stream, step)) as who:
        try:
            yield who
        finally:
            flush(db)


def on_behalf(db: Any, run_id: str, flow: str, stream: str, step: str,
              fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """`fn(*args, **kwargs)` with its calls counted for the run as `step` (and kept when it returns)."""
    with counting(db, run_id, flow, stream, step):
        return fn(*args, **kwargs)


def carry(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn`, to run on another thread (`pool.submit(carry(fn), ...)`) with the submitting context: its calls
    count for the same run and step. One carried callable runs once (a context is entered by one thread)."""
    return functools.partial(contextvars.copy_context().run, fn)


def drain() -> dict[For, dict[str, int]]:
    """Every count noted in this process and not kept yet (and forget them)."""
    with _lock:
        out = {who: dict(t) for who, t in _pending.items() if t}
        _pending.clear()
    return out


def _restore(taken: dict[For, dict[str, int]]) -> None:
    with _lock:
        for who, counts in taken.items():
            _pending.setdefault(who, Counter()).update(counts)


def flush(db: Any) -> None:
    """Keep every count waiting in this process: one `run.calls` event per run and step, in one transaction.
    A failed write keeps them waiting for the next flush (a count must not fail the step that made it)."""
    taken = drain()
    if not taken:
        return
    from ml_connector.core import audit

    try:
        with db.session() as s:
            for who, counts in taken.items():
                audit.record(s, EVENT, flow=who.flow, stream=who.stream, run_id=who.run_id,
                             detail={"step": who.step, "calls": counts})
    except Exception:
        _restore(taken)
        log.warning("could not keep the calls of %d run step(s) yet", len(taken), exc_info=True)


def host_names(connections: dict[str, Any]) -> dict[str, str]:
    """host[:port] → connection name, from every URL in the connections' settings (for `note` by host)."""
    out: dict[str, str] = {}

    def walk(value: Any, name: str) -> None:
        if isinstance(value, dict):
            for v in value.values():
                walk(v, name)
        elif isinstance(value, list):
            for v in value:
                walk(v, name)
        elif isinstance(value, str) and value.startswith(("http://", "https://")):
            host = urlsplit(value).netloc.rpartition("@")[2]
            if host:
                out.setdefault(host, name)

    for name, cfg in connections.items():
        walk(cfg.model_dump() if hasattr(cfg, "model_dump") else dict(cfg), name)
    return out


def totals(events: Iterable[Any], connections: dict[str, Any]) -> dict[str, int]:
    """{system or connection: calls} summed over `run.calls` events."""
    names = host_names(connections)
    out: Counter[str] = Counter()
    for ev in events:
        for system, n in (ev.detail or {}).get("calls", {}).items():
            out[names.get(system, system)] += int(n)
    return dict(sorted(out.items()))


def split(events: Iterable[Any], connections: dict[str, Any]) -> tuple[dict[str, int], dict[str, int]]:
    """(the run's own calls, the calls of later replays and re-checks of its records), per system."""
    own: list[Any] = []
    later: list[Any] = []
    for ev in events:
        (later if (ev.detail or {}).get("step") in LATER_STEPS else own).append(ev)
    return totals(own, connections), totals(later, connections)


def of_runs(sess: Any, run_ids: list[str], connections: dict[str, Any]
            ) -> dict[str, tuple[dict[str, int], dict[str, int]]]:
    """`split` for each of `run_ids` (one query): run id → (own calls, later replays' calls)."""
    from sqlalchemy import select

    from ml_connector.core.db import in_chunks
    from ml_connector.core.models import AuditRow

    events: dict[str, list[Any]] = {}
    for chunk in in_chunks(sorted(set(run_ids))):
        for ev in sess.scalars(select(AuditRow).where(AuditRow.event == EVENT, AuditRow.run_id.in_(chunk))):
            events.setdefault(str(ev.run_id), []).append(ev)
    return {rid: split(evs, connections) for rid, evs in events.items()}
