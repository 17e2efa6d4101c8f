"""Issue 10's layering rule, kept by a test: outside systems/, flows/ and the demo scenarios, no module
names an installed system or imports a system's or a flow's module (they are found through the registry
and the entry points)."""

from __future__ import annotations

import re

from tests.support.installed import IN_TREE, PAIRS, SRC


def _outside() -> list:
    return [p for p in SRC.rglob("*.py")
            if p.relative_to(SRC).parts[0] not in ("systems", "flows") and not p.name.startswith("demo")]


def test_no_module_outside_systems_and_flows_imports_one() -> None:
    pattern = re.compile(r"ml_connector\.(systems|flows)\.\w+")
    found = [f"{p.relative_to(SRC)}:{n}" for p in _outside()
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert found == []


def test_no_code_outside_systems_and_flows_names_a_system_or_pair() -> None:
    names = re.compile(r"\b(" + "|".join(map(re.escape, [*IN_TREE, *PAIRS])) + r")\b")
    found = []
    for p in _outside():
        in_doc = False
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            stripped = line.strip()
            if stripped.count('"""') == 1:
                in_doc = not in_doc  # examples in docstrings (an agent.yaml sample) name systems on purpose
                continue
            code = stripped.split("#", 1)[0]
            if not in_doc and names.search(code) and not stripped.startswith(('"""', "#")):
                found.append(f"{p.relative_to(SRC)}:{n}: {stripped}")
    assert found == []
