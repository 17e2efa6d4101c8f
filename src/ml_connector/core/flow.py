"""What a flow module provides to the engine (core knows no system).

A flow wires two connections; it exposes streams. A stream is three parts:

- a `Source` (it belongs to a system): reads one kind of record, page by page, from a
  state the engine keeps; `finish` returns the cursor the engine persists for the next run;
- a mapping (it belongs to the flow): a function from one source record to the state the
  target should hold (`Desired`) or to `Parked` when a mapping or master record is missing;
- a `Target` (it belongs to a system): writes one kind of record with its exactly-once
  strategy (batch upload with bisection, create-then-lookup, post-with-reference-lookup).

The engine, not the flow or the target, marks entries in flight (`outbox.begin_attempt`)
before they are handed to `Target.write`, and hands entries left in doubt by a crash or a
timeout to `Target.lookup` first: only the entries the lookup does not find are written.

A record found in the target instead of written (an in-doubt entry the lookup finds, a create
refused because the record exists, an update of a record the ledger did not know) is
*adopted*: the engine compares it with what the target should hold (`Target.compare`) and
writes the correction, so the target's real state wins over the ledger's memory. A full run
also compares the records the ledger calls unchanged with the target's state
(`Target.current`), so `sync --full` converges the target even after the ledger was lost.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ml_connector.core.ledger import Change, Desired, Parked

if TYPE_CHECKING:
    from datetime import datetime

    from ml_connector.core.outbox import Entry
    from ml_connector.core.runtime import Runtime


@dataclass
class Page:
    """One page of source records: (source key, raw record) pairs, and where the stream stands after it."""

    records: list[tuple[str, dict[str, Any]]]
    position: Any
    done: bool
    estimate_total: int | None = None
    #: The source cannot read now for a reason that mends by itself (no token can be had: the token
    #: endpoint is down): the run ends `waiting` with this reason instead of failing, and the next
    #: run (schedule, webhook, `sync`) reads again. Give it with no records and `done`.
    waiting: str = ""


@dataclass
class Outcome:
    """The result of delivering one outbox entry."""

    entry_id: int
    #: posted | failed | uncertain | parked | waiting. `waiting`: the target holds the write (`target_id`),
    #: but a follow-up of it could not be done for a passing reason (no token to report it to the source):
    #: the ledger records the write, the run ends `waiting` (`error` says why) and the next run of the
    #: stream delivers the entry again, which the target must finish without writing twice.
    state: str
    target_id: str | None = None
    error: str | None = None
    request: Any = None
    response: Any = None
    #: The record as the target holds it, when this outcome comes from finding the record
    #: rather than writing it (lookup, adoption): the engine compares it with the entry.
    found: dict[str, Any] | None = None
    #: The target knows the record existed before this entry's write (refused as existing, or
    #: found for an entry the ledger had no target id for): counted as adopted, not created.
    adopted: bool = False
    #: How an uncertain write was settled, when the target had to find out (e.g. "lookup": the answer
    #: was lost and the record was found in the target): the audit trail and `journey` say so.
    resolved: str | None = None


@dataclass
class Verdict:
    """The target's own judgement of a document it has not received yet (`Target.check`): whether it
    would accept it, its messages (e.g. SAP's message class and number with the text), and what
    asked it (the check call), for the approval queue."""

    ok: bool
    messages: list[str] = field(default_factory=list)
    checked_by: str = ""


@dataclass
class RunContext:
    runtime: Runtime
    flow: str
    stream: str
    run_id: str
    mode: str  # full | incremental | dry_run
    options: dict[str, Any] = field(default_factory=dict)
    #: Scratch space for one step (a page, a replay, a dry run): what a mapping reads once per step
    #: instead of once per record, e.g. a mapping table.
    cache: dict[str, Any] = field(default_factory=dict)
    #: The source keys of the page being mapped (empty outside a page): a mapping that needs per-record
    #: state (e.g. the ledger) can read it for the whole page in one query instead of once per record.
    page_keys: frozenset[str] = frozenset()


Report = Callable[[list[Outcome]], None]
Mapper = Callable[[RunContext, str, dict[str, Any]], Desired | Parked]


class Source:
    """Reads one kind of record from a system. The engine persists what `begin` and
    `read_page` return (the stream state, in the same transaction as the page's records)
    and what `finish` returns (the cursor the next run's `begin` gets)."""

    def begin(self, ctx: RunContext, cursor: dict[str, Any]) -> dict[str, Any]:
        """Called once per run with the kept cursor ({} for a full run): the state to read from."""
        raise NotImplementedError

    def read_page(self, ctx: RunContext, state: dict[str, Any]) -> Page:
        raise NotImplementedError

    def finish(self, ctx: RunContext, state: dict[str, Any]) -> dict[str, Any]:
        """Called once after the last page: the cursor to keep for the next run."""
        return state


class Target:
    """Writes one kind of record to a system, exactly once.

    `connection`: the configured connection written to (the delivery queue is named after it).
    `batch_size`: the most entries per `write` call; the engine marks each call's entries in
    flight in one transaction just before the call, so a crash leaves at most one call's
    entries in doubt.
    """

    connection: str = ""
    batch_size: int = 500

    def lookup(self, ctx: RunContext, entries: list[Entry]) -> Iterable[Outcome]:
        """Entries whose earlier attempt is in doubt (in flight at a crash, or uncertain): find them
        in the target by their deterministic key or external id. Return outcomes for those whose
        write is known to have happened (usually `posted` with the target id); the engine writes
        the others again. A target whose writes are all idempotent may return []. A generator
        yielding outcomes as they are found lets the engine record them as they come (every
        `LOOKUP_FLUSH`), so that a recovery interrupted itself keeps what it found."""
        raise NotImplementedError

    def write(self, ctx: RunContext, entries: list[Entry], report: Report) -> None:
        """Write the entries (already marked in flight); call `report` with outcomes as soon as they
        are known (one call per target request, so that each is one transaction)."""
        raise NotImplementedError

    def compare(self, found: dict[str, Any], payload: dict[str, Any], active: bool) -> str | None:
        """The write that makes `found` (the record as the target holds it) hold `payload` with
        `active`: "update", "reactivate" or "deactivate", or None when it already does. The engine
        applies it to every record found instead of written. The default, for targets whose
        records cannot be corrected once written (posted documents), is None."""
        return None

    def current(self, ctx: RunContext, payloads: list[dict[str, Any]]) -> dict[int, tuple[str, dict[str, Any]]] | None:
        """For a full run: the records the target holds for these desired payloads, as
        {index in `payloads`: (target id, record)} (a payload absent from the answer is not in
        the target); None when the target cannot tell cheaply (the ledger is then trusted)."""
        return None

    def describe(self, op: str, payload: dict[str, Any]) -> str:
        """One line for `sync --dry-run`."""
        return f"{op} {payload}"

    def preview(self, ctx: RunContext, change: Change) -> str | None:
        """Optional, for `sync --dry-run`: ask the target whether it would accept this change
        (a check call that writes nothing) and say so in one line; None = no check."""
        return None

    def check(self, ctx: RunContext, payload: dict[str, Any]) -> Verdict | None:
        """Optional, for the approval queue (core/approval.py): ask the target whether it would accept
        this payload, writing nothing; None = this target offers no check."""
        return None

    def document(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The exact document the target will receive for `payload` (the approval queue shows it);
        by default the payload itself."""
        return payload

    def scope(self, payload: dict[str, Any]) -> str | None:
        """The organisational unit the payload is posted in (e.g. a company code), for a flow's
        `approval.company_codes`; None when the target has none or it cannot be told."""
        return None


class Stream:
    """One stream of a flow: a source, a mapping function, a target.

    `mapper(ctx, key, record)` wraps the flow's pure mapping function (binding options and
    mapping tables). `mapping_tables`: the tables the mapping reads (a record waiting for one of
    their keys is parked). `describe`, when given, replaces the target's dry-run line."""

    def __init__(self, name: str, source: Source, mapper: Mapper, target: Target, *,
                 mapping_tables: tuple[str, ...] = (),
                 describe: Callable[[str, dict[str, Any]], str] | None = None) -> None:
        self.name = name
        self.source = source
        self.mapper = mapper
        self.target = target
        self.mapping_tables = mapping_tables
        self._describe = describe

    @property
    def target_connection(self) -> str:
        """The queue a delivery runs on is named after it."""
        return self.target.connection

    def begin(self, ctx: RunContext, cursor: dict[str, Any]) -> dict[str, Any]:
        return self.source.begin(ctx, cursor)

    def read_page(self, ctx: RunContext, state: dict[str, Any]) -> Page:
        return self.source.read_page(ctx, state)

    def finish(self, ctx: RunContext, state: dict[str, Any]) -> dict[str, Any]:
        return self.source.finish(ctx, state)

    def map(self, ctx: RunContext, key: str, record: dict[str, Any]) -> Desired | Parked:
        return self.mapper(ctx, key, record)

    def describe_change(self, op: str, payload: dict[str, Any]) -> str:
        """One line for `sync --dry-run`."""
        return self._describe(op, payload) if self._describe else self.target.describe(op, payload)

    def preview(self, ctx: RunContext, change: Change) -> str | None:
        return self.target.preview(ctx, change)


@dataclass(frozen=True)
class Summary:
    """A source record as a person reviewing it recognises it (`ml-connector review`)."""

    document: str  # e.g. "expense report 'Q3 Boston' (ID 1A2B)"
    party: str = ""  # the vendor / customer / employee it concerns
    amount: str = ""  # with its currency


@dataclass(frozen=True)
class FlowSchedule:
    """A schedule a flow adds beside its configured `schedule` (e.g. a nightly full comparison):
    a cron (5 fields, or 6 with seconds first) starting runs of `streams` in `mode`."""

    name: str
    cron: str
    streams: tuple[str, ...]
    mode: str = "full"
    timezone: str | None = None
    #: A time missed (no run in `mode` since it; a worker was down, or the run was deferred by
    #: `Flow.defer_reason`) is run at a worker's start and re-checked every hour until it has run.
    catch_up: bool = False


class RunDeferred(Exception):
    """A run not started now, for the reason given (e.g. a large extract during business hours)."""


class Flow:
    """A configured pair: its streams by name."""

    pair: str = ""

    @classmethod
    def summarize(cls, stream: str, record: dict[str, Any]) -> Summary | None:
        """A parked source record of `stream` for its reviewer; None: only its key is shown."""
        return None

    def __init__(self, runtime: Runtime, name: str, cfg: Any) -> None:
        self.runtime = runtime
        self.name = name
        self.cfg = cfg

    def streams(self) -> dict[str, Stream]:
        raise NotImplementedError

    def stream(self, name: str) -> Stream:
        streams = self.streams()
        if name not in streams:
            raise KeyError(f"flow {self.name!r} has no stream {name!r} (streams: {', '.join(streams)})")
        return streams[name]

    def ping(self) -> Iterator[tuple[str, bool, str]]:
        """(connection, ok, detail) for each system this flow touches."""
        return iter(())

    def schedules(self) -> list[FlowSchedule]:
        """Schedules of this flow besides the configured one (from its options); none by default."""
        return []

    def defer_reason(self, stream: str, mode: str, now: datetime) -> str | None:
        """Why a run of `stream` in `mode` should not start at `now` (e.g. a large extract during
        business hours): a manual one is refused with this message unless forced, a scheduled one
        waits for its catch-up. None (the default): start it."""
        return None


def load_pair(pair: str) -> type[Flow]:
    """The flow module of `pair` (core/flow_modules.py: an entry point, or `flows/<pair>.py`) defines
    `FLOW` (a Flow subclass)."""
    from ml_connector.core import flow_modules

    module = flow_modules.module_of(pair)
    if module is None:
        raise ValueError(f"unknown flow pair {pair!r}: no module ml_connector.flows.{pair} and no entry point "
                         f"{pair!r} of {flow_modules.ENTRY_POINT_GROUP!r}")
    mod = importlib.import_module(module)
    flow_cls: type[Flow] = mod.FLOW
    return flow_cls
