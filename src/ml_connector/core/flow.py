"""What a flow module provides to the engine (core knows no system).

A flow wires two connections; it exposes streams. A stream reads pages from
the source (through the agent channel when the source is on-prem), maps each
record to the state the target should hold (or parks it), and delivers outbox
entries to the target, resolving uncertain outcomes by lookup.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ml_connector.core.ledger import Change, Desired, Parked

if TYPE_CHECKING:
    from ml_connector.core.outbox import Entry
    from ml_connector.core.runtime import Runtime


@dataclass
class Page:
    """One page of source records: (source key, raw record) pairs, and where the stream stands after it."""

    records: list[tuple[str, dict[str, Any]]]
    position: Any
    done: bool
    estimate_total: int | None = None


@dataclass
class Outcome:
    """The result of delivering one outbox entry."""

    entry_id: int
    state: str  # posted | failed | uncertain | parked
    target_id: str | None = None
    error: str | None = None
    request: Any = None
    response: Any = None


@dataclass
class RunContext:
    runtime: Runtime
    flow: str
    stream: str
    run_id: str
    mode: str  # full | incremental | dry_run
    options: dict[str, Any] = field(default_factory=dict)


class Stream:
    """Base class for one stream of a flow; flows subclass it."""

    name: str = ""
    target_connection: str = ""  # the queue a delivery runs on is named after it

    def begin(self, ctx: RunContext, cursor: dict[str, Any]) -> dict[str, Any]:
        """Called once per run: return the stream state the run starts from (position etc.)."""
        raise NotImplementedError

    def read_page(self, ctx: RunContext, state: dict[str, Any]) -> Page:
        raise NotImplementedError

    def finish(self, ctx: RunContext, state: dict[str, Any]) -> dict[str, Any]:
        """Called once after the last page: return the cursor to keep for the next run."""
        return state

    def map(self, ctx: RunContext, key: str, record: dict[str, Any]) -> Desired | Parked:
        raise NotImplementedError

    def deliver(self, ctx: RunContext, entries: list[Entry], report: Callable[[list[Outcome]], None]) -> None:
        """Write the entries to the target; call `report` with outcomes as soon as they are known
        (one call per target request, so that each is one transaction)."""
        raise NotImplementedError

    def describe_change(self, op: str, payload: dict[str, Any]) -> str:
        """One line for `sync --dry-run`."""
        return f"{op} {payload}"

    def preview(self, ctx: RunContext, change: Change) -> str | None:
        """Optional, for `sync --dry-run`: ask the target whether it would accept this change
        (a check call that writes nothing) and say so in one line; None = no check."""
        return None


class Flow:
    """A configured pair: its streams by name."""

    pair: str = ""

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


def load_pair(pair: str) -> type[Flow]:
    """`flows/<pair>.py` defines `FLOW` (a Flow subclass)."""
    try:
        mod = importlib.import_module(f"ml_connector.flows.{pair}")
    except ModuleNotFoundError as exc:
        raise ValueError(f"unknown flow pair {pair!r}: no module ml_connector.flows.{pair}") from exc
    flow_cls: type[Flow] = mod.FLOW
    return flow_cls
