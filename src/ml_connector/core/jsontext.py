"""JSON text of small values, as `json.dumps` gives it, without its per-call set-up.

`json.dumps(v, **options)` builds a `JSONEncoder` and a C encoder on every call, which costs more than
encoding a record of a few fields; the sync path encodes several per record (content hashes, audit
digests and details, JSON columns). `encoder(**options)` builds the C encoder once and returns a
function giving exactly `json.dumps(v, **options)`. Circular references are not checked (the values
are records read from a system, never circular; such a value would raise RecursionError instead of
ValueError). Where the C encoder is missing, it is `JSONEncoder(**options).encode`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from itertools import repeat
from json import encoder as _enc
from typing import Any

_SAMPLE: Any = {"b": [1, 2.5, None, True, "x\u00e9\n"], "a": {"z": False, "y": -0.0}, "c": "\u2603"}


def _c_encoder(sort_keys: bool, separators: tuple[str, str], ensure_ascii: bool,
               default: Callable[[Any], Any] | None) -> tuple[Callable[[Any], str], Any]:
    """`JSONEncoder(**options).encode`, and the C encoder (None where missing or unlike it): called
    as `c_encode(value, 0)`, it gives the chunks of the text of any value but a bare string."""
    plain = json.JSONEncoder(sort_keys=sort_keys, separators=separators, ensure_ascii=ensure_ascii,
                             default=default)
    slow = plain.encode
    make: Any = getattr(_enc, "c_make_encoder", None)
    if make is None:
        return slow, None
    try:
        item_sep, key_sep = separators
        c_encode = make(None, default or plain.default, _enc.encode_basestring_ascii if ensure_ascii
                        else _enc.encode_basestring, None, key_sep, item_sep, sort_keys, False, True)
        if "".join(c_encode(_SAMPLE, 0)) != slow(_SAMPLE):  # another Python's C encoder: the documented path
            return slow, None
    except (TypeError, ValueError):
        return slow, None
    return slow, c_encode


def encoder(*, sort_keys: bool = False, separators: tuple[str, str] = (", ", ": "), ensure_ascii: bool = True,
            default: Callable[[Any], Any] | None = None) -> Callable[[Any], str]:
    """A function equal to `json.dumps(value, sort_keys=…, separators=…, ensure_ascii=…, default=…)`."""
    slow, c_encode = _c_encoder(sort_keys, separators, ensure_ascii, default)
    if c_encode is None:
        return slow

    def fast(value: Any) -> str:
        if isinstance(value, str):  # JSONEncoder.encode's own shortcut for a bare string
            return slow(value)
        return "".join(c_encode(value, 0))

    return fast


def encoder_many(*, sort_keys: bool = False, separators: tuple[str, str] = (", ", ": "),
                 ensure_ascii: bool = True,
                 default: Callable[[Any], Any] | None = None) -> Callable[[list[Any]], list[str]]:
    """A function giving `[json.dumps(v, **options) for v in values]`, in loops that run in C when
    every value is a dict or a list (no Python call per value: a page's audit digests and details)."""
    one = encoder(sort_keys=sort_keys, separators=separators, ensure_ascii=ensure_ascii, default=default)
    c_encode = _c_encoder(sort_keys, separators, ensure_ascii, default)[1]
    if c_encode is None:
        return lambda values: list(map(one, values))
    containers = {dict, list}
    join = "".join

    def many(values: list[Any]) -> list[str]:
        if set(map(type, values)) <= containers:
            return list(map(join, map(c_encode, values, repeat(0))))
        return list(map(one, values))

    return many


#: `json.dumps(value)`: SQLAlchemy's JSON columns (its default serializer).
dumps = encoder()
