"""Fixtures shared by the integration test modules (helpers: tests/support)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ml_connector.sandbox import SandboxHandle
from tests.support.sandboxes import running_sandboxes


@pytest.fixture()
def sandboxes(request: pytest.FixtureRequest) -> Iterator[dict[str, SandboxHandle]]:
    """Fresh in-process sandboxes for one test (tests change their state and faults), seeded with the
    module's SANDBOX_VENDORS vendors (50 by default), or as many as an indirect parameter says."""
    vendors = getattr(request, "param", None) or getattr(request.module, "SANDBOX_VENDORS", 50)
    with running_sandboxes(vendors=vendors) as handles:
        yield handles
