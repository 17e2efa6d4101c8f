"""Configuration files written for the loader tests and the errors it reports."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ml_connector.config import (
    ConfigError,
    load_config,
)


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "ml-connector.yaml"
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def errors_of(tmp_path: Path, text: str) -> list[str]:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    msg = str(ei.value)
    assert msg.splitlines() == ei.value.problems
    for line in ei.value.problems:
        assert line.startswith(f"{p}:"), line
    return ei.value.problems


def replace(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)
