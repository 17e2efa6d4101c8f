"""core/registry.py: systems from the entry points and the in-tree packages; register/unregister."""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from typing import Any

import pytest

from ml_connector.core import registry


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Discovery again from scratch (the process's registry is put back afterwards)."""
    monkeypatch.setattr(registry, "_entries", None)
    yield


def test_installed_systems_are_found_through_the_entry_points(fresh: None) -> None:
    from importlib.metadata import entry_points

    declared = sorted(ep.name for ep in entry_points(group=registry.ENTRY_POINT_GROUP))
    assert declared == ["procore", "ramp", "sap_b1", "sap_ecc"]  # pyproject.toml, installed with the package
    assert registry.names() == declared
    entry = registry.get("sap_ecc")
    assert entry.emulator is not None and entry.agent is not None and entry.settings.__name__ == "SapEccConnection"


def test_in_tree_systems_are_found_without_their_entry_points(fresh: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "entry_points", lambda group: [])  # a package installed before its entry points
    assert registry.names() == ["procore", "ramp", "sap_b1", "sap_ecc"]


def test_an_entry_point_must_name_the_system_it_declares(fresh: None, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = EntryPoint(name="erp", value="ml_connector.systems.ramp:ENTRY", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [wrong])
    why = "entry point 'erp' of 'ml_connector.systems' declares system 'ramp'"
    with pytest.raises(ValueError, match=re.escape(why)):
        registry.names()


def test_register_and_unregister_change_the_generation() -> None:
    from tests.example_system import ENTRY

    before: Any = registry.generation()
    registry.register(ENTRY)
    try:
        assert "example" in registry.names() and registry.generation() == before + 1
    finally:
        registry.unregister("example")
    assert "example" not in registry.names() and registry.generation() == before + 2
    with pytest.raises(LookupError,
                       match="no system 'example' is installed \\(systems: procore, ramp, sap_b1, sap_ecc\\)"):
        registry.get("example")
