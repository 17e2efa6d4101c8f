"""The fault matrix's shared base (one SAP sandbox and one migrated working directory per module)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.faults import Base, base


@pytest.fixture(scope="module")
def fault_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Base]:
    with base(tmp_path_factory.mktemp("faults")) as b:
        yield b
