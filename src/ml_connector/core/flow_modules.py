"""Which flow modules are installed: pair name -> module, found without importing any flow.

A flow is a module defining `FLOW` (core/flow.py). It is found, in this order:

- under the entry-point group `ml_connector.flows`, so a flow can ship as a package of its own:

      [project.entry-points."ml_connector.flows"]
      <pair> = "<package>.<module>"

- as a module of the in-tree package `ml_connector.flows` (`flows/<pair>.py`), so an in-tree flow
  works before its entry point is installed (a new file, or an install not synced since);
- added for this process with `register()` (tests, an embedding application).

Loading a configuration checks `pair` against these names; nothing is imported until a flow is built
(a flow module imports its systems' clients and the engine: seconds).
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import threading
from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "ml_connector.flows"
#: The in-tree flows' package (its modules), beside the entry points.
BUILTIN_PACKAGE = "ml_connector.flows"

_lock = threading.Lock()
_registered: dict[str, str] = {}


def register(pair: str, module: str) -> None:
    """Add (or replace) flow `pair`, the module `module`, for this process."""
    with _lock:
        _registered[pair] = module


def unregister(pair: str) -> None:
    with _lock:
        _registered.pop(pair, None)


def modules() -> dict[str, str]:
    """pair -> the module defining its FLOW: entry points, then in-tree modules, then register()."""
    found: dict[str, str] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        # "pkg.module" (or "pkg.module:FLOW": the module is what counts).
        found[ep.name] = ep.value.split(":", 1)[0].strip()
    package = importlib.import_module(BUILTIN_PACKAGE)
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            found.setdefault(info.name, f"{BUILTIN_PACKAGE}.{info.name}")
    with _lock:
        found.update(_registered)
    return found


def pairs() -> list[str]:
    """The installed flow pairs, sorted."""
    return sorted(modules())


def module_of(pair: str) -> str | None:
    return modules().get(pair)


def source_file(pair: str) -> str | None:
    """The path of the pair's module source, without importing it (None: unknown or not a .py file)."""
    module = module_of(pair)
    if module is None:
        return None
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return spec.origin
