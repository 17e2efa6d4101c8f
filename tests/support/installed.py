"""What this source tree ships, read from the files (not from the registry the tests check): the systems
under src/ml_connector/systems/ and the flow pairs under src/ml_connector/flows/. Tests that check lists
and "expected one of ..." messages build them from here, so adding a system changes no test."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "ml_connector"

#: Each package under systems/ whose __init__ declares its registry ENTRY.
IN_TREE: list[str] = sorted(
    p.parent.name for p in (SRC / "systems").glob("*/__init__.py") if "ENTRY" in p.read_text(encoding="utf-8"))

#: Each flow module (a leading underscore marks a flow's helper module, not a pair).
PAIRS: list[str] = sorted(p.stem for p in (SRC / "flows").glob("*.py") if not p.stem.startswith("_"))


def one_of(names: Iterable[str]) -> str:
    """As the configuration's errors list choices: sorted, quoted, comma-separated."""
    return ", ".join(repr(n) for n in sorted(names))
