"""The dynamic WHERE of RFC_READ_TABLE (`SELECT ... WHERE (OPTIONS)`): parse once, evaluate fast.

ABAP treats each OPTIONS line (RFC_DB_OPT-TEXT, CHAR72) like a source line: lines are joined, but
no token (identifier, operator, quoted literal) may continue on the next line. We tokenize each
line on its own, so a literal left open at the end of a line is an error, and an identifier split
across two lines becomes two identifiers (a syntax error or an unknown field), as on SAP.

Grammar (Open SQL subset that agents send)::

    cond    := or
    or      := and { OR and }
    and     := not { AND not }
    not     := NOT not | '(' cond ')' | pred
    pred    := field op operand
             | field [NOT] LIKE literal [ESCAPE literal]
             | field [NOT] IN '(' operand { ',' operand } ')'
             | field [NOT] BETWEEN operand AND operand
             | field IS [NOT] NULL
    op      := = | <> | < | > | <= | >= | EQ | NE | LT | GT | LE | GE
    operand := 'literal' | integer | field

Operators must be separated by blanks (`LIFNR='1'` is rejected, as SAP's ESP adapter documentation
says: "always include a space between the name of a column and the operator"). Field names and
keywords are case-insensitive; literals are case-sensitive with '' as an escaped quote.

Comparison semantics follow the database view of ABAP types: CHAR compares without trailing blanks
(so `LOEVM = ' '` matches an initial flag), NUMC literals are zero-padded to the field length,
P/I/F compare numerically, D/T compare as their YYYYMMDD/HHMMSS strings.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from .ddic import DdicField, DdicTable

Row = Mapping[str, str]
Predicate = Callable[[Row], bool]


class WhereError(ValueError):
    """An invalid dynamic WHERE. `reason` is one of: syntax, unknown_field, split_token."""

    def __init__(self, message: str, reason: str = "syntax") -> None:
        super().__init__(message)
        self.reason = reason


_OPS = {"=": "EQ", "<>": "NE", "<": "LT", ">": "GT", "<=": "LE", ">=": "GE",
        "EQ": "EQ", "NE": "NE", "LT": "LT", "GT": "GT", "LE": "LE", "GE": "GE"}
_KEYWORDS = {"AND", "OR", "NOT", "LIKE", "IN", "BETWEEN", "IS", "NULL", "ESCAPE"}
_IDENT = re.compile(r"[A-Za-z_/][A-Za-z0-9_/]*$")
_INT = re.compile(r"[+-]?\d+$")
_SEPARATORS = " \t\r\n"


@dataclass(frozen=True)
class Token:
    kind: str  # IDENT, KW, OP, LIT, INT, LPAR, RPAR, COMMA
    value: str
    line: int
    col: int


def tokenize(lines: Iterable[str]) -> list[Token]:
    """Tokens of the OPTIONS lines; a token never spans two lines."""
    tokens: list[Token] = []
    for lineno, line in enumerate(lines, start=1):
        i, n = 0, len(line)
        while i < n:
            ch = line[i]
            if ch in _SEPARATORS:
                i += 1
                continue
            if ch == "'":
                start = i
                if i > 0 and line[i - 1] not in _SEPARATORS + "(,":
                    raise WhereError(f"line {lineno} col {i + 1}: literal must be preceded by a blank")
                i += 1
                buf: list[str] = []
                while True:
                    if i >= n:
                        raise WhereError(f"line {lineno}: literal {line[start:]!r} is not closed on its line"
                                         " (a literal must not be split across OPTIONS lines)", "split_token")
                    if line[i] == "'":
                        if i + 1 < n and line[i + 1] == "'":
                            buf.append("'")
                            i += 2
                            continue
                        i += 1
                        break
                    buf.append(line[i])
                    i += 1
                if i < n and line[i] not in _SEPARATORS + "),":
                    raise WhereError(f"line {lineno} col {i + 1}: literal must be followed by a blank")
                tokens.append(Token("LIT", "".join(buf), lineno, start + 1))
                continue
            if ch in "(),":
                tokens.append(Token({"(": "LPAR", ")": "RPAR", ",": "COMMA"}[ch], ch, lineno, i + 1))
                i += 1
                continue
            start = i
            while i < n and line[i] not in _SEPARATORS and line[i] not in "(),'":
                i += 1
            word = line[start:i]
            if i < n and line[i] == "'":
                raise WhereError(f"line {lineno} col {start + 1}: {word!r} must be separated from the "
                                 "literal by a blank")
            up = word.upper()
            if word in _OPS or up in _OPS:
                tokens.append(Token("OP", _OPS[up], lineno, start + 1))
            elif up in _KEYWORDS:
                tokens.append(Token("KW", up, lineno, start + 1))
            elif _INT.match(word):
                tokens.append(Token("INT", word, lineno, start + 1))
            elif _IDENT.match(word):
                tokens.append(Token("IDENT", up, lineno, start + 1))
            else:
                raise WhereError(f"line {lineno} col {start + 1}: invalid token {word!r} "
                                 "(operators must be separated by blanks)")
    return tokens


# ---------------------------------------------------------------------------------------------
# AST


@dataclass(frozen=True)
class Cmp:
    field: str
    op: str  # EQ NE LT GT LE GE
    value: str  # literal text (normalised), or field name when is_field
    is_field: bool = False


@dataclass(frozen=True)
class Like:
    field: str
    pattern: str
    escape: str | None
    negated: bool


@dataclass(frozen=True)
class In:
    field: str
    values: tuple[str, ...]
    negated: bool


@dataclass(frozen=True)
class Between:
    field: str
    low: str
    high: str
    negated: bool


@dataclass(frozen=True)
class IsNull:
    field: str
    negated: bool


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class TrueNode:
    pass


Node = Cmp | Like | In | Between | IsNull | Not | And | Or | TrueNode


class _Parser:
    def __init__(self, tokens: list[Token], table: DdicTable) -> None:
        self.tokens = tokens
        self.pos = 0
        self.table = table

    def peek(self, offset: int = 0) -> Token | None:
        i = self.pos + offset
        return self.tokens[i] if i < len(self.tokens) else None

    def next(self, what: str) -> Token:
        tok = self.peek()
        if tok is None:
            raise WhereError(f"unexpected end of condition, expected {what}")
        self.pos += 1
        return tok

    def at_kw(self, kw: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind == "KW" and tok.value == kw

    def expect_kw(self, kw: str) -> None:
        tok = self.next(kw)
        if tok.kind != "KW" or tok.value != kw:
            raise WhereError(f"line {tok.line} col {tok.col}: expected {kw}, found {tok.value!r}")

    def parse(self) -> Node:
        if not self.tokens:
            return TrueNode()
        node = self.parse_or()
        tok = self.peek()
        if tok is not None:
            raise WhereError(f"line {tok.line} col {tok.col}: unexpected {tok.value!r}")
        return node

    def parse_or(self) -> Node:
        ops = [self.parse_and()]
        while self.at_kw("OR"):
            self.pos += 1
            ops.append(self.parse_and())
        return ops[0] if len(ops) == 1 else Or(tuple(ops))

    def parse_and(self) -> Node:
        ops = [self.parse_not()]
        while self.at_kw("AND"):
            self.pos += 1
            ops.append(self.parse_not())
        return ops[0] if len(ops) == 1 else And(tuple(ops))

    def parse_not(self) -> Node:
        if self.at_kw("NOT"):
            self.pos += 1
            return Not(self.parse_not())
        tok = self.peek()
        if tok is not None and tok.kind == "LPAR":
            self.pos += 1
            node = self.parse_or()
            close = self.next("')'")
            if close.kind != "RPAR":
                raise WhereError(f"line {close.line} col {close.col}: expected ')', found {close.value!r}")
            return node
        return self.parse_pred()

    def field_of(self, tok: Token) -> DdicField:
        if tok.kind != "IDENT":
            raise WhereError(f"line {tok.line} col {tok.col}: expected a field name, found {tok.value!r}")
        f = self.table.field(tok.value)
        if f is None:
            raise WhereError(f"line {tok.line} col {tok.col}: the field {tok.value} is unknown in "
                             f"table {self.table.name}", "unknown_field")
        return f

    def operand(self, f: DdicField) -> tuple[str, bool]:
        tok = self.next("an operand")
        if tok.kind == "LIT":
            return tok.value, False
        if tok.kind == "INT":
            return tok.value, False
        if tok.kind == "IDENT":
            return self.field_of(tok).fieldname, True
        raise WhereError(f"line {tok.line} col {tok.col}: expected a literal, found {tok.value!r}")

    def literal(self, f: DdicField) -> str:
        value, is_field = self.operand(f)
        if is_field:
            raise WhereError(f"a literal is expected after {f.fieldname}, not the field {value}")
        return value

    def parse_pred(self) -> Node:
        f = self.field_of(self.next("a field name"))
        negated = False
        if self.at_kw("NOT"):
            self.pos += 1
            negated = True
        tok = self.next("an operator")
        if tok.kind == "OP" and not negated:
            value, is_field = self.operand(f)
            return Cmp(f.fieldname, tok.value, value, is_field)
        if tok.kind == "KW" and tok.value == "LIKE":
            pattern = self.literal(f)
            escape = None
            if self.at_kw("ESCAPE"):
                self.pos += 1
                escape = self.literal(f)
                if len(escape) != 1:
                    raise WhereError("ESCAPE needs a single character")
            return Like(f.fieldname, pattern, escape, negated)
        if tok.kind == "KW" and tok.value == "IN":
            lpar = self.next("'('")
            if lpar.kind != "LPAR":
                raise WhereError(f"line {lpar.line} col {lpar.col}: expected '(' after IN")
            values = [self.literal(f)]
            while True:
                sep = self.next("',' or ')'")
                if sep.kind == "RPAR":
                    break
                if sep.kind != "COMMA":
                    raise WhereError(f"line {sep.line} col {sep.col}: expected ',' or ')' in IN list")
                values.append(self.literal(f))
            return In(f.fieldname, tuple(values), negated)
        if tok.kind == "KW" and tok.value == "BETWEEN":
            low = self.literal(f)
            self.expect_kw("AND")
            high = self.literal(f)
            return Between(f.fieldname, low, high, negated)
        if tok.kind == "KW" and tok.value == "IS" and not negated:
            neg = False
            if self.at_kw("NOT"):
                self.pos += 1
                neg = True
            self.expect_kw("NULL")
            return IsNull(f.fieldname, neg)
        raise WhereError(f"line {tok.line} col {tok.col}: expected a comparison operator after "
                         f"{f.fieldname}, found {tok.value!r}")


def parse(lines: Iterable[str], table: DdicTable) -> Node:
    """The AST of the OPTIONS lines for `table` (raises WhereError)."""
    return _Parser(tokenize(lines), table).parse()


# ---------------------------------------------------------------------------------------------
# Compilation to a predicate


def _norm(f: DdicField, literal: str) -> Any:
    """A literal converted to the comparison domain of field `f`."""
    t = f.inttype
    if t in ("P", "I", "F"):
        try:
            return Decimal(literal.strip() or "0")
        except InvalidOperation:
            raise WhereError(f"the literal {literal!r} is not a number for {f.fieldname}") from None
    if t == "N":
        s = literal.strip()
        if s.isdigit() and len(s) < f.leng:
            return s.rjust(f.leng, "0")
        return s
    return literal.rstrip(" ")


def _getter(f: DdicField) -> Callable[[Row], Any]:
    name, t, init = f.fieldname, f.inttype, f.initial()
    if t in ("P", "I", "F"):
        def num(row: Row) -> Any:
            v = row.get(name) or "0"
            try:
                return Decimal(v)
            except InvalidOperation:
                return Decimal(0)
        return num
    if t == "C":
        def chars(row: Row) -> Any:
            v = row.get(name)
            return v.rstrip(" ") if v else ""
        return chars

    def other(row: Row) -> Any:
        return row.get(name) or init
    return other


_CMP: dict[str, Callable[[Any, Any], bool]] = {
    "EQ": lambda a, b: a == b, "NE": lambda a, b: a != b,
    "LT": lambda a, b: a < b, "GT": lambda a, b: a > b,
    "LE": lambda a, b: a <= b, "GE": lambda a, b: a >= b,
}


def like_regex(pattern: str, escape: str | None = None) -> re.Pattern[str]:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if escape is not None and ch == escape and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def _compile(node: Node, table: DdicTable) -> Predicate:
    if isinstance(node, TrueNode):
        return lambda row: True
    if isinstance(node, Cmp):
        f = table.field(node.field)
        assert f is not None
        get = _getter(f)
        cmp = _CMP[node.op]
        if node.is_field:
            g2 = table.field(node.value)
            assert g2 is not None
            get2 = _getter(g2)
            return lambda row: cmp(get(row), get2(row))
        lit = _norm(f, node.value)
        op = node.op
        if op == "EQ":
            return lambda row: get(row) == lit
        if op == "GT":
            return lambda row: get(row) > lit
        if op == "GE":
            return lambda row: get(row) >= lit
        if op == "LT":
            return lambda row: get(row) < lit
        if op == "LE":
            return lambda row: get(row) <= lit
        return lambda row: get(row) != lit
    if isinstance(node, Like):
        f = table.field(node.field)
        assert f is not None
        get = _getter(f)
        # the database pads nothing: a CHAR column is compared without trailing blanks
        rx = like_regex(node.pattern.rstrip(" ") if f.inttype == "C" else node.pattern, node.escape)
        match = rx.fullmatch
        if node.negated:
            return lambda row: match(str(get(row))) is None
        return lambda row: match(str(get(row))) is not None
    if isinstance(node, In):
        f = table.field(node.field)
        assert f is not None
        get = _getter(f)
        values = frozenset(_norm(f, v) for v in node.values)
        if node.negated:
            return lambda row: get(row) not in values
        return lambda row: get(row) in values
    if isinstance(node, Between):
        f = table.field(node.field)
        assert f is not None
        get = _getter(f)
        lo, hi = _norm(f, node.low), _norm(f, node.high)
        if node.negated:
            return lambda row: not (lo <= get(row) <= hi)
        return lambda row: lo <= get(row) <= hi
    if isinstance(node, IsNull):
        # ABAP tables hold no NULLs for the fields the sandbox stores
        return (lambda row: True) if node.negated else (lambda row: False)
    if isinstance(node, Not):
        inner = _compile(node.operand, table)
        return lambda row: not inner(row)
    if isinstance(node, And):
        parts = [_compile(n, table) for n in node.operands]
        if len(parts) == 2:
            p0, p1 = parts
            return lambda row: p0(row) and p1(row)
        return lambda row: all(p(row) for p in parts)
    if isinstance(node, Or):
        parts = [_compile(n, table) for n in node.operands]
        if len(parts) == 2:
            q0, q1 = parts
            return lambda row: q0(row) or q1(row)
        return lambda row: any(p(row) for p in parts)
    raise TypeError(node)


@dataclass(frozen=True)
class KeyRange:
    """Bounds on one field implied by the top-level conjunction (for an index seek)."""

    low: str | None = None
    low_inclusive: bool = True
    high: str | None = None
    high_inclusive: bool = True


@dataclass(frozen=True)
class Where:
    """A compiled WHERE: `predicate(row)` and the AST it came from."""

    table: DdicTable
    node: Node
    predicate: Predicate

    @property
    def is_trivial(self) -> bool:
        return isinstance(self.node, TrueNode)

    def key_range(self, fieldname: str) -> KeyRange | None:
        """The range of `fieldname` (a CHAR/NUMC/DATS key) implied by the top-level ANDed conjuncts,
        or None when the condition does not bound it. The predicate still has to be applied."""
        f = self.table.field(fieldname)
        if f is None or f.inttype not in ("C", "N", "D", "T"):
            return None
        conj = self.node.operands if isinstance(self.node, And) else (self.node,)
        low: str | None = None
        low_inc = True
        high: str | None = None
        high_inc = True
        found = False

        def tighten_low(v: str, inc: bool) -> None:
            nonlocal low, low_inc
            if low is None or v > low or (v == low and not inc):
                low, low_inc = v, inc

        def tighten_high(v: str, inc: bool) -> None:
            nonlocal high, high_inc
            if high is None or v < high or (v == high and not inc):
                high, high_inc = v, inc

        for c in conj:
            if isinstance(c, Cmp) and c.field == f.fieldname and not c.is_field:
                v = _norm(f, c.value)
                if c.op in ("GT", "GE"):
                    tighten_low(v, c.op == "GE")
                elif c.op in ("LT", "LE"):
                    tighten_high(v, c.op == "LE")
                elif c.op == "EQ":
                    tighten_low(v, True)
                    tighten_high(v, True)
                else:
                    continue
                found = True
            elif isinstance(c, Between) and c.field == f.fieldname and not c.negated:
                tighten_low(_norm(f, c.low), True)
                tighten_high(_norm(f, c.high), True)
                found = True
        return KeyRange(low, low_inc, high, high_inc) if found else None


def compile_where(lines: Iterable[str], table: DdicTable) -> Where:
    """Parse and compile the OPTIONS lines of `table`; raises WhereError on any error."""
    node = parse(lines, table)
    return Where(table, node, _compile(node, table))
