"""Fixtures shared by test modules in several directories (helpers: tests/support)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ml_connector.core.db import Database
from tests.support.clock import FakeClock
from tests.support.databases import sqlite_database

# The fault matrix's table (`make faults`), printed after the tests marked `faults`.
pytest_plugins = ["tests.support.fault_matrix"]

# The suite starts a few hundred Python processes (the CLI, workers, control planes, agents). Where
# PYTHONDONTWRITEBYTECODE is set, each of them would compile every module it imports again (about a
# second of CPU per start): let them cache bytecode, in a directory of their own outside the tree.
if os.environ.pop("PYTHONDONTWRITEBYTECODE", None):
    os.environ.setdefault("PYTHONPYCACHEPREFIX", str(Path(tempfile.gettempdir()) / f"mlc-test-pycache-{os.getuid()}"))


@pytest.fixture(autouse=True)
def _short_step_retries(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLIs and workers a fast test starts retry the engine's steps as often, waiting a twentieth as
    long: a run that fails after its retries fails in seconds, not after a minute of backoff. Tests
    marked slow or scaleout (agents, workers killed and restarted while steps retry) keep the real waits."""
    if request.node.get_closest_marker("slow") is None and request.node.get_closest_marker("scaleout") is None:
        monkeypatch.setenv("MLC_STEP_RETRY_SCALE", os.environ.get("MLC_STEP_RETRY_SCALE", "0.05"))


@pytest.fixture()
def db(tmp_path: Path) -> Iterator[Database]:
    """A migrated SQLite database of this test's own."""
    d = sqlite_database(tmp_path / "db.sqlite")
    yield d
    d.dispose()


@pytest.fixture()
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture()
def no_master_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MLC_MASTER_KEY from the caller's environment: the vault's key comes from its data dir."""
    monkeypatch.delenv("MLC_MASTER_KEY", raising=False)


UNIT_DIR = Path(__file__).parent / "unit"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # `make test-fast` selects `unit or smoke`: every test under tests/unit is `unit` by where it lives.
    for item in items:
        if UNIT_DIR in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.unit)
