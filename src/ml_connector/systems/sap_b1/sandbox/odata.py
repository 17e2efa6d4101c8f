"""The small OData query subset the Service Layer emulator understands (reference §6.6 item 5):
`$filter` with eq/ne/ge/le/gt/lt, and/or, not, parentheses and startswith(Field,'x');
`$select`, `$orderby`, `$top`, `$skip`. Errors raise `ODataError` naming the offending option."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Row = dict[str, Any]
Pred = Callable[[Row], bool]


class ODataError(ValueError):
    pass


_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<name>[A-Za-z_][\w/]*)"
                    r"|(?P<punct>[(),]))")
_OPS = {"eq", "ne", "ge", "le", "gt", "lt"}
_DATE8 = re.compile(r"^(\d{4})(\d{2})(\d{2})(\d{6})?$")


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ODataError(f"$filter: cannot parse at position {pos}: {text[pos:pos + 20]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


def _literal(kind: str, raw: str) -> Any:
    if kind == "str":
        value = raw[1:-1].replace("''", "'")
        m = _DATE8.match(value)
        # Date literals are 'YYYYMMDD[hhmmss]' in the manual, the time is ignored [V]; entities
        # carry 'YYYY-MM-DD'.
        return f"{m.group(1)}-{m.group(2)}-{m.group(3)}" if m else value
    if kind == "num":
        return float(raw) if "." in raw else int(raw)
    if raw in ("null",):
        return None
    if raw in ("true", "false"):
        return raw == "true"
    raise ODataError(f"$filter: expected a literal, got {raw!r}")


def _compare(op: str, a: Any, b: Any) -> bool:
    if op == "eq":
        return bool(a == b)
    if op == "ne":
        return bool(a != b)
    if a is None or b is None:
        return False
    try:
        if op == "ge":
            return bool(a >= b)
        if op == "le":
            return bool(a <= b)
        if op == "gt":
            return bool(a > b)
        return bool(a < b)
    except TypeError:
        return False


class _Parser:
    def __init__(self, text: str, fields: set[str]) -> None:
        self.toks = _tokens(text)
        self.i = 0
        self.fields = fields

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise ODataError("$filter: unexpected end of expression")
        self.i += 1
        return tok

    def expect(self, value: str) -> None:
        _kind, raw = self.take()
        if raw != value:
            raise ODataError(f"$filter: expected {value!r}, got {raw!r}")

    def field(self, name: str) -> str:
        if name not in self.fields:
            raise ODataError(f"$filter: unknown property {name!r}")
        return name

    def parse(self) -> Pred:
        pred = self.or_()
        if self.peek() is not None:
            raise ODataError(f"$filter: unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return pred

    def or_(self) -> Pred:
        left = self.and_()
        while (tok := self.peek()) is not None and tok == ("name", "or"):
            self.take()
            right = self.and_()
            left = (lambda l_, r_: lambda row: l_(row) or r_(row))(left, right)
        return left

    def and_(self) -> Pred:
        left = self.unary()
        while (tok := self.peek()) is not None and tok == ("name", "and"):
            self.take()
            right = self.unary()
            left = (lambda l_, r_: lambda row: l_(row) and r_(row))(left, right)
        return left

    def unary(self) -> Pred:
        tok = self.peek()
        if tok == ("name", "not"):
            self.take()
            inner = self.unary()
            return lambda row: not inner(row)
        if tok == ("punct", "("):
            self.take()
            inner = self.or_()
            self.expect(")")
            return inner
        return self.comparison()

    def comparison(self) -> Pred:
        kind, raw = self.take()
        if kind != "name":
            raise ODataError(f"$filter: expected a property name, got {raw!r}")
        if raw in ("startswith", "endswith", "contains", "substringof"):
            self.expect("(")
            fname = self.field(self.take()[1])
            self.expect(",")
            lk, lraw = self.take()
            value = str(_literal(lk, lraw))
            self.expect(")")
            if raw == "startswith":
                return lambda row: str(row.get(fname) or "").startswith(value)
            if raw == "endswith":
                return lambda row: str(row.get(fname) or "").endswith(value)
            return lambda row: value in str(row.get(fname) or "")
        fname = self.field(raw)
        _, op = self.take()
        if op not in _OPS:
            raise ODataError(f"$filter: unsupported operator {op!r} (eq, ne, ge, le, gt, lt)")
        lk, lraw = self.take()
        value = _literal(lk, lraw)
        return lambda row: _compare(op, row.get(fname), value)


def parse_filter(text: str, fields: set[str]) -> Pred:
    return _Parser(text, fields).parse()


def apply_query(rows: list[Row], query: dict[str, str], fields: set[str]) -> tuple[list[Row], int]:
    """Filter and order `rows`; returns (rows, total count before $skip/$top)."""
    out = rows
    if query.get("$filter"):
        pred = parse_filter(query["$filter"], fields)
        out = [r for r in out if pred(r)]
    if query.get("$orderby"):
        keys: list[tuple[str, bool]] = []
        for part in query["$orderby"].split(","):
            bits = part.split()
            if (not bits or bits[0] not in fields or len(bits) > 2
                    or (len(bits) == 2 and bits[1] not in ("asc", "desc"))):
                raise ODataError(f"$orderby: invalid item {part.strip()!r}")
            keys.append((bits[0], len(bits) == 2 and bits[1] == "desc"))
        for name, desc in reversed(keys):
            out = sorted(out, key=lambda r, n=name: (r.get(n) is None, r.get(n) if r.get(n) is not None else 0),  # type: ignore[misc]
                         reverse=desc)
    return out, len(out)


def select(row: Row, query: dict[str, str], fields: set[str]) -> Row:
    sel = query.get("$select")
    if not sel:
        return row
    names = [s.strip() for s in sel.split(",") if s.strip()]
    for n in names:
        if n not in fields:
            raise ODataError(f"$select: unknown property {n!r}")
    return {n: row.get(n) for n in names}


def int_option(query: dict[str, str], name: str) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ODataError(f"{name}: expected a non-negative integer, got {raw!r}") from None
    if value < 0:
        raise ODataError(f"{name}: expected a non-negative integer, got {raw!r}")
    return value
