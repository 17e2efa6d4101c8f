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
from json import encoder as _enc
from typing import Any

_SAMPLE: Any = {"b": [1, 2.5, None, True, "x\u00e9\n"], "a": {"z": False, "y": -0.0}, "c": "\u2603"}


def encoder(*, sort_keys: bool = False, separators: tuple[str, str] = (", ", ": "), ensure_ascii: bool = True,
            default: Callable[[Any], Any] | None = None) -> Callable[[Any], str]:
    """A function equal to `json.dumps(value, sort_keys=…, separators=…, ensure_ascii=…, default=…)`."""
    plain = json.JSONEncoder(sort_keys=sort_keys, separators=separators, ensure_ascii=ensure_ascii,
                             default=default)
    slow = plain.encode
    make: Any = getattr(_enc, "c_make_encoder", None)
    if make is None:
        return slow
    try:
        item_sep, key_sep = separators
        c_encode = make(None, default or plain.default, _enc.encode_basestring_ascii if ensure_ascii
                        else _enc.encode_basestring, None, key_sep, item_sep, sort_keys, False, True)

        def fast(value: Any) -> str:
            if isinstance(value, str):  # JSONEncoder.encode's own shortcut for a bare string
                return slow(value)
            return "".join(c_encode(value, 0))

        if fast(_SAMPLE) != slow(_SAMPLE):  # another Python's C encoder: take the documented path
            return slow
    except (TypeError, ValueError):
        return slow
    return fast


#: `json.dumps(value)`: SQLAlchemy's JSON columns (its default serializer).
dumps = encoder()
