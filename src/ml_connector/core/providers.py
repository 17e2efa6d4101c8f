"""Provider facts as data: each `systems/<name>/provider.yaml` is loaded here.

Base URLs, token lifetimes, refresh margins, rate limits and the ping call live
in those files, not in code, so that a change of a vendor's limit is a data edit.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml


@cache
def provider(name: str) -> dict[str, Any]:
    """The parsed provider.yaml of system `name` (e.g. 'ramp', 'sap_ecc')."""
    ref = resources.files(f"ml_connector.systems.{name}").joinpath("provider.yaml")
    data = yaml.safe_load(ref.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"systems/{name}/provider.yaml: expected a mapping at the top level")
    return data


def fact(name: str, *path: str, default: Any = None) -> Any:
    """A nested value from a provider file, e.g. fact('ramp', 'rate_limit', 'limit')."""
    node: Any = provider(name)
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node
