"""The system registry: which external systems are installed, and what each one provides.

A system is a package `systems/<name>/` (or a separate distribution) that declares one
`SystemEntry` and names it under the entry-point group `ml_connector.systems`:

    [project.entry-points."ml_connector.systems"]
    <name> = "ml_connector.systems.<name>:ENTRY"

The packages under `ml_connector/systems/` that define `ENTRY` are found as well, so an in-tree
system works before its entry point is installed (a new package, or an install not synced since).

Everything above core (config, sandbox, CLI, agent, control plane) finds systems here and names
none. Loading the registry imports each system's `__init__` and its settings model only: the
clients, emulators and agent handlers are imported by the entry's factories when first used.

Tests (or an embedding application) may add an entry for this process with `register()`.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from ml_connector.core.known_errors import KnownError

if TYPE_CHECKING:  # annotations only: the channel imports httpx, which a light CLI command never needs
    from ml_connector.core.channel import ChannelFault, Handler

ENTRY_POINT_GROUP = "ml_connector.systems"
#: The in-tree systems' package (its subpackages with an `ENTRY`), beside the entry points.
BUILTIN_PACKAGE = "ml_connector.systems"


@dataclass(frozen=True)
class Emulator:
    """A system's sandbox: an HTTP emulator started on loopback by `ml-connector sandbox`."""

    default_port: int
    #: A fresh state; `seed` is the number of master records to seed (0: start empty).
    new_state: Callable[[int], Any]
    #: The ASGI (FastAPI) app serving a state.
    create_app: Callable[[Any], Any]
    #: Its entry in `sandbox --json`: (state, base URL) -> base_url, credentials, admin URL, ...
    info: Callable[[Any, str], dict[str, Any]]
    #: The data to persist between runs (no locks, faults or sessions), and its inverse.
    snapshot: Callable[[Any], dict[str, Any]]
    restore: Callable[[Any, dict[str, Any]], None]
    #: For a state whose snapshot could not be restored: seed it if it holds no data (None: nothing to do).
    ensure_seeded: Callable[[Any, int], None] | None = None
    #: Started by `start_sandboxes()` when no system list is given.
    started_by_default: bool = True


@dataclass(frozen=True)
class AgentSupport:
    """What the on-prem agent needs to serve a system named in agent.yaml (`systems: {x: {type: ...}}`)."""

    #: The settings of such a system in agent.yaml (extends core.settings.AgentSystemSettings).
    settings: type[BaseModel]
    #: (the agent.yaml system settings, password from the agent's vault) -> the handler serving its calls.
    handler: Callable[[Any, str], Handler]
    #: The flow-side caller sending calls through a channel: (channel, connection name, settings) -> client.
    channel_client: Callable[[Any, str, Any], Any]
    #: The allow-list check of one call: (agent system settings, system name, function, params) -> fault or
    #: None. None here: function names against `allow.functions`, tables against `allow.tables`.
    check: Callable[[Any, str, str, dict[str, Any]], ChannelFault | None] | None = None
    #: Whether a call (by function name) is safe to run twice (requeued after an agent was lost).
    idempotent: Callable[[str], bool] = field(default=lambda _function: False)
    #: The control plane's call budget of a connection served through the agent:
    #: settings -> (budget key, calls per second, max concurrent), or None when not paced.
    pacing: Callable[[Any], tuple[str, float, int] | None] | None = None
    #: The type of an agent.yaml system that names none (one system says so: the first one the agent served).
    default_type: bool = False


@dataclass(frozen=True)
class SystemEntry:
    """One external system: the only place that knows its name, settings, client, emulator and agent side."""

    name: str
    #: The pydantic model of a connection of this type (a `type: Literal[name]` field first).
    settings: type[BaseModel]
    #: (runtime, connection name, settings) -> the client flows use.
    connect: Callable[[Any, str, Any], Any]
    #: (runtime, connection name, settings) -> one line saying what was proven; raises on failure.
    ping: Callable[[Any, str, Any], str]
    #: Name of its provider facts (systems/<name>/provider.yaml), None without.
    provider: str | None = None
    #: The package holding its provider.yaml (and facts.py) when that is not ml_connector.systems.<provider>:
    #: a system shipped as a package of its own carries its facts.
    facts_package: str | None = None
    #: Its example connection for `ml-connector init`: base URL -> YAML lines (indented under `connections:`).
    example: Callable[[str], str] | None = None
    emulator: Emulator | None = None
    agent: AgentSupport | None = None
    #: Routers it adds to the control plane's HTTP server (e.g. an endpoint the system pushes to):
    #: runtime -> routers (empty when not configured).
    routers: Callable[[Any], list[Any]] | None = None
    #: Errors of its API explained for operators (core/known_errors.py): the console's inbox groups by them.
    known_errors: tuple[KnownError, ...] = ()


def lazy(module: str, name: str) -> Callable[..., Any]:
    """`module.name`, imported on its first call: an entry names its client, emulator and agent
    functions without importing them, so that loading the registry stays cheap."""
    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    return call


_lock = threading.RLock()
_entries: dict[str, SystemEntry] | None = None
_generation = 0


def _discover() -> dict[str, SystemEntry]:
    found: dict[str, SystemEntry] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        entry = ep.load()
        if not isinstance(entry, SystemEntry):
            raise TypeError(f"entry point {ep.name} = {ep.value!r} of {ENTRY_POINT_GROUP!r} is not a SystemEntry")
        if entry.name != ep.name:
            raise ValueError(f"entry point {ep.name!r} of {ENTRY_POINT_GROUP!r} declares system {entry.name!r}")
        found[entry.name] = entry
    package = importlib.import_module(BUILTIN_PACKAGE)
    for info in pkgutil.iter_modules(package.__path__):
        if not info.ispkg or info.name in found or info.name.startswith("_"):
            continue
        entry = getattr(importlib.import_module(f"{BUILTIN_PACKAGE}.{info.name}"), "ENTRY", None)
        if isinstance(entry, SystemEntry):
            if entry.name != info.name:
                raise ValueError(f"package {BUILTIN_PACKAGE}.{info.name} declares system {entry.name!r}")
            found[entry.name] = entry
    for entry in found.values():
        _locate_facts(entry)
    return found


def _locate_facts(entry: SystemEntry) -> None:
    if entry.provider is not None and entry.facts_package is not None:
        from ml_connector.core import providers  # YAML and the facts' schema, only when a system loads

        providers.locate(entry.provider, entry.facts_package)


def _all() -> dict[str, SystemEntry]:
    global _entries
    with _lock:
        if _entries is None:
            _entries = _discover()
        return _entries


def register(entry: SystemEntry) -> None:
    """Add (or replace) a system for this process, beside the installed ones."""
    global _generation
    with _lock:
        _all()[entry.name] = entry
        _locate_facts(entry)
        _generation += 1


def unregister(name: str) -> None:
    global _generation
    with _lock:
        if _all().pop(name, None) is not None:
            _generation += 1


def generation() -> int:
    """Changes whenever register()/unregister() changes the set (models built from it are rebuilt)."""
    with _lock:
        _all()
        return _generation


def names() -> list[str]:
    """The registered system names, sorted."""
    return sorted(_all())


def entries() -> Iterator[SystemEntry]:
    for name in names():
        yield _all()[name]


def find(name: str) -> SystemEntry | None:
    return _all().get(name)


def get(name: str) -> SystemEntry:
    """The entry of system `name`; LookupError naming the registered ones otherwise."""
    entry = find(name)
    if entry is None:
        hint = "" if names() else f"; the entry points {ENTRY_POINT_GROUP!r} come with the installed package: " \
            "run `uv sync`"
        raise LookupError(f"no system {name!r} is installed (systems: {', '.join(names()) or 'none'}){hint}")
    return entry


def with_emulator() -> list[SystemEntry]:
    return [e for e in entries() if e.emulator is not None]


def with_agent() -> list[SystemEntry]:
    return [e for e in entries() if e.agent is not None]
