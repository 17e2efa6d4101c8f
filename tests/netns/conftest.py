from __future__ import annotations

from typing import Any


def pytest_configure(config: Any) -> None:
    config.addinivalue_line("markers", "netns: needs root and `ip netns` (network namespaces)")
