"""Start the sandbox emulators (one real HTTP server each) on loopback.

Used by `ml-connector sandbox`, `make demo` and the tests. Each system's emulator (app, seed,
snapshot/restore, `--json` info) comes from its registry entry. With a state
directory the emulators keep their data between runs, so that a second demo
run finds the vendors the first one created (and reports zero writes).
"""

from __future__ import annotations

import logging
import os
import pickle
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ml_connector.core import registry
from ml_connector.core.registry import Emulator
from ml_connector.core.servers import ServerHandle, serve_in_thread

log = logging.getLogger(__name__)


@dataclass
class SandboxHandle:
    name: str
    server: ServerHandle
    state: Any
    info: dict[str, Any]
    state_file: Path | None = None
    _saver: threading.Thread | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return self.server.url

    def save(self) -> None:
        if self.state_file is not None:
            _save(self.name, self.state, self.state_file)

    def stop(self) -> None:
        self.server.stop()
        self.save()


# -- what is persisted per emulator: each system's entry says (data only: no locks, faults or sessions)


def _emulator(name: str) -> Emulator:
    emulator = registry.get(name).emulator
    if emulator is None:
        raise LookupError(f"system {name!r} has no sandbox emulator")
    return emulator


def _save(name: str, state: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        pickle.dump(_emulator(name).snapshot(state), fh, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)


def _load(name: str, state: Any, path: Path) -> bool:
    if not path.exists():
        return False
    try:
        with open(path, "rb") as fh:
            # Our own file, written by _save above in the user's data directory.
            snap = pickle.load(fh)  # noqa: S301
        _emulator(name).restore(state, snap)
        return True
    except Exception as exc:  # a corrupt or old snapshot: start fresh, say so
        log.warning("sandbox %s: ignoring unreadable state file %s (%s)", name, path, exc)
        return False


def default_systems() -> tuple[str, ...]:
    """The emulators started when no system list is given."""
    return tuple(e.name for e in registry.with_emulator() if e.emulator and e.emulator.started_by_default)


def start_sandboxes(*, host: str = "127.0.0.1", ports: dict[str, int] | None = None, vendors: int = 3000,
                    state_dir: Path | None = None, systems: tuple[str, ...] | None = None,
                    states: dict[str, Any] | None = None) -> dict[str, SandboxHandle]:
    """Start the emulators of `systems` (default: the registered ones started by default); return handles
    keyed by system name. `ports` by system name (0 or absent: any free port); `states` by system name:
    a state object to serve instead of a fresh one; `vendors`: how many master records to seed."""
    ports = ports or {}
    states = states or {}
    out: dict[str, SandboxHandle] = {}
    for name in default_systems() if systems is None else systems:
        emulator = _emulator(name)
        sf = state_dir / f"{name}.pickle" if state_dir else None
        state = states.get(name)
        if state is None:  # a snapshot to restore: no seeding first (it would be replaced)
            state = emulator.new_state(0 if sf is not None and sf.exists() else vendors)
        if sf is not None and not _load(name, state, sf) and emulator.ensure_seeded is not None:
            emulator.ensure_seeded(state, vendors)
        srv = serve_in_thread(emulator.create_app(state), name=name, host=host, port=ports.get(name, 0))
        out[name] = SandboxHandle(name, srv, state, emulator.info(state, srv.url), sf)
    return out
