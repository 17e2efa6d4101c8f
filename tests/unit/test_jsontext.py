"""`jsontext.encoder` gives exactly the text `json.dumps` gives (hashes and audit digests depend on it)."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from ml_connector.core import jsontext

OPTIONS: list[dict[str, Any]] = [
    {},
    {"default": str},
    {"sort_keys": True, "separators": (",", ":"), "default": str},
    {"sort_keys": True, "separators": (",", ":"), "ensure_ascii": False, "default": str},
]
VALUES: list[Any] = [
    {"id": "0000100001", "name": "Müller & Söhne GmbH", "code": "100001", "active": True},
    {"z": [1, 2.5, -0.0, None, {"y": "é☃\x00\n\"", "x": []}], "a": {}, "b": float("inf")},
    {"at": datetime(2026, 12, 7, 21, 0), "amount": Decimal("1.20")},
    [], {}, "a bare string", 7, 1e300, None, False,
]


@pytest.mark.parametrize("options", OPTIONS)
def test_encoder_matches_json_dumps(options: dict[str, Any]) -> None:
    encode = jsontext.encoder(**options)
    for value in VALUES:
        try:
            want: Any = json.dumps(value, **options)
        except TypeError:
            want = TypeError
        try:
            got: Any = encode(value)
        except TypeError:
            got = TypeError
        assert got == want, value


def test_unserialisable_values_and_unsortable_keys_are_refused_as_json_dumps_refuses_them() -> None:
    with pytest.raises(TypeError):
        jsontext.dumps({"when": datetime(2026, 1, 1)})
    with pytest.raises(TypeError):
        jsontext.encoder(sort_keys=True)({1: "a", "b": 2})


@pytest.mark.parametrize("options", OPTIONS)
def test_encoder_many_matches_json_dumps_of_each_value(options: dict[str, Any]) -> None:
    many = jsontext.encoder_many(**options)
    containers = [v for v in VALUES if isinstance(v, dict | list) and v is not VALUES[2]]
    for values in (containers, [v for v in VALUES if v is not VALUES[2] or "default" in options], []):
        assert many(values) == [json.dumps(v, **options) for v in values]
