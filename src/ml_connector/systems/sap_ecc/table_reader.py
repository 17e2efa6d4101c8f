"""Reading ECC tables through RFC_READ_TABLE (reference §2), correctly.

Paging: key windows verified by count, never ROWSKIPS
------------------------------------------------------
RFC_READ_TABLE runs `SELECT ... WHERE (OPTIONS)` with no ORDER BY and stops
after ROWCOUNT rows, so a ROWCOUNT-limited answer is an ARBITRARY subset of
the matching rows. "Take a page, continue after its largest key" would skip the
rows the server happened not to return. The one thing such a server does
guarantee — and the only assumption this reader makes — is:

    if fewer than ROWCOUNT rows come back, they are ALL the rows that match.

So the reader asks for ROWCOUNT = page_size + 1 and trusts an answer only when it
holds ≤ page_size rows. It walks the key space in half-open windows
`(cursor, hi]` (hi = +∞ at first):

1. Key probe: read only the key columns (narrow, cheap) of `(where) AND key >
   cursor AND key <= hi` with ROWCOUNT = page_size + 1.
2. If the probe is full (page_size + 1 rows), the window is too big. Its rows are
   real keys inside the window, so a returned key `m` (≠ hi) splits it into
   `(cursor, m]` and `(m, hi]`: push `m` on a stack of upper bounds and probe
   again. The first split takes the page_size-th smallest returned key
   (optimistic: exact when the server returns the lowest keys, as an index scan
   does); once that fails for a read, splits take the median (bisection for a
   server that returns random subsets). Every split strictly shrinks the window
   (m ≠ hi and m is inside it), so this terminates.
3. If the probe holds ≤ page_size keys, the window is complete: its exact key
   set is known. Each column group is then fetched for the same window, joined
   on the key fields, and the page is emitted; `cursor = hi`, pop the stack.
   When the fields fit in ONE column group, the probe reads that whole group instead of
   the keys alone: a probe of ≤ page_size rows is then the page itself (one call per
   verified window instead of two), and a full one is split on its keys as above.

Windows partition the key space (each bound is a real key inside the enclosing
window as the *server* orders keys), so every row is returned exactly once, no
matter which subset the server picks, and Python's string order is only used
to choose split points and sort rows within a page (SAP databases sort
binary). Compound keys compare lexicographically:
`(K1 > a) OR (K1 = a AND K2 > b)`. `key_fields` must be unique (the primary key
minus MANDT); a probe that returns duplicates raises `TableReadError`.

Column groups: a row is at most `row_width` characters (512 for RFC_READ_TABLE,
2048 for /BODS/RFC_READ_TABLE), delimiters included, so wide tables are read in
groups of columns, each repeating the key fields (`plan_groups`). A key present
in some groups but not all (concurrent insert/delete between the group reads)
triggers one refetch of the window; if still inconsistent the row is dropped and
counted in `Page.dropped` (and logged) — never joined half-filled. A fetch that
returns more than page_size rows (heavy concurrent inserts) re-probes the window.

DATA is cut by the OFFSET/LENGTH in FIELDS, never split on the delimiter, so a
delimiter character inside the data cannot shift columns; a server that trims
WA's trailing blanks just yields shorter lines. Values keep the internal format
(leading zeros stay) with trailing blanks stripped.

OPTIONS (CHAR72 lines) are wrapped by `wrap_options`: split only at whitespace
outside quoted literals, never inside a token. The lines are concatenated by
ABAP into a dynamic WHERE; trailing blanks of a CHAR72 line do not survive XML
or ABAP CHAR handling, so each continuation line *starts* with the separating
space (leading blanks survive), making every line self-delimiting whether the
server joins lines with or without a blank. Hence a token may be at most 71
characters (width - 1), which is also SAP's documented per-line limit.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from ml_connector.core.channel import ChannelError
from ml_connector.core.http import PicklableError

from .client import RfcCaller
from .errors import ABAPApplicationError
from .facts import ecc_facts

log = logging.getLogger(__name__)

TABLES = ("OPTIONS", "FIELDS", "DATA")
WIDE_FUNCTIONS = {"/BODS/RFC_READ_TABLE": 2048, "/SAPDS/RFC_READ_TABLE": 2048,
                  "/BODS/RFC_READ_TABLE2": 2048, "/SAPDS/RFC_READ_TABLE2": 2048}
CANDIDATE_FUNCTIONS = ("/BODS/RFC_READ_TABLE", "/SAPDS/RFC_READ_TABLE", "BBP_RFC_READ_TABLE",
                       "RFC_READ_TABLE")
_MAX_WINDOW_RETRIES = 5


class TableReadError(PicklableError):
    """A table cannot be read as asked (too wide, bad keys, inconsistent server)."""


class FieldValueError(TableReadError):
    """A numeric (DEC/CURR/QUAN packed, FLTP, INT) value RFC_READ_TABLE could not render: ABAP's
    MOVE to CHAR puts '*' in front of a value that does not fit the output length."""

    def __init__(self, table: str, field: str, value: str, message: str) -> None:
        super().__init__(message)
        self.table = table
        self.field = field
        self.value = value


NUMERIC_TYPES = frozenset("PFIbs8")  # packed, float, INT4, INT1, INT2, INT8


def parse_packed(text: str) -> Decimal:
    """A number as RFC_READ_TABLE renders it, as Decimal: '1234.56-' (ABAP trailing minus),
    '-1234.56', ' 12.50 ' and '1.2345000000E+03' (FLTP). Raises ValueError for an overflow
    ('*...') or anything else that is not a number."""
    s = text.strip()
    if s.startswith("*"):
        raise ValueError(f"{text!r} is an ABAP overflow marker, not a number")
    if s.endswith("-"):
        s = "-" + s[:-1].strip()
    elif s.endswith("+"):
        s = s[:-1].strip()
    if not s:
        return Decimal(0)
    try:
        d = Decimal(s)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a number") from None
    if not d.is_finite():
        raise ValueError(f"{text!r} is not a finite number")
    return d


def _numeric_value(raw: str, f: FieldInfo, table: str, function: str) -> str:
    """Canonical text of a numeric field ('-1234.56'), or FieldValueError naming table and field."""
    try:
        d = parse_packed(raw)
    except ValueError:
        kind = {"P": "packed (DEC/CURR/QUAN)", "F": "floating-point (FLTP)"}.get(f.type, "integer")
        raise FieldValueError(
            table, f.name, raw,
            f"{table}-{f.name}: {function} returned {raw!r} for a {kind} field of output length {f.length}: "
            f"the value does not fit (ABAP marks the overflow with '*') and is lost. Leave {f.name} out of "
            f"the field list, or read it with a module that renders it fully (/BODS/RFC_READ_TABLE with "
            f"2,048-character rows, or a Z extractor returning numbers unformatted)") from None
    if f.type == "F":
        return format(d, "f")
    return str(d)


@dataclass(frozen=True)
class FieldInfo:
    name: str
    offset: int
    length: int
    type: str = "C"
    text: str = ""
    is_key: bool = False


@dataclass
class Page:
    rows: list[dict[str, str]]
    last_key: tuple[str, ...]
    dropped: int = 0


# ----------------------------------------------------------------------------- literals and OPTIONS

def quote(value: Any) -> str:
    """An ABAP text literal: 'O''Brien'. The empty value is written ' ' (blank)."""
    text = str(value)
    if text == "":
        return "' '"
    return "'" + text.replace("'", "''") + "'"


def alpha(value: str | int, length: int) -> str:
    """ALPHA conversion to internal format: numeric values are zero-padded to
    `length` ('100131', 10 → '0000100131'); anything else is left as is."""
    text = str(value).strip()
    if text.isdigit() and text.isascii():
        if len(text) > length:
            raise ValueError(f"{text!r} is longer than the field length {length}")
        return text.zfill(length)
    return text


def _tokens(where: str) -> list[str]:
    """Whitespace-separated tokens; quoted literals ('' escapes) may hold whitespace."""
    tokens: list[str] = []
    cur: list[str] = []
    i, n = 0, len(where)
    while i < n:
        ch = where[i]
        if ch == "'":
            j = i + 1
            while True:
                if j >= n:
                    raise ValueError(f"unterminated quoted literal in WHERE: {where[i:i + 40]!r}")
                if where[j] == "'":
                    if j + 1 < n and where[j + 1] == "'":
                        j += 2
                        continue
                    break
                j += 1
            cur.append(where[i:j + 1])
            i = j + 1
        elif ch.isspace():
            if cur:
                tokens.append("".join(cur))
                cur = []
            i += 1
        else:
            cur.append(ch)
            i += 1
    if cur:
        tokens.append("".join(cur))
    return tokens


def _row_width(function: str) -> int:
    """TAB512-WA's width (provider facts `read_table.row_width`), or a wide module's."""
    return WIDE_FUNCTIONS.get(function) or ecc_facts().read_table.row_width


def wrap_options(where: str, width: int | None = None) -> list[str]:
    """Split a WHERE clause into OPTIONS lines ≤ `width` (default: provider facts
    `read_table.options_line_length`, RFC_DB_OPT-TEXT's CHAR72; see module docstring)."""
    if width is None:
        width = ecc_facts().read_table.options_line_length
    lines: list[str] = []
    line = ""
    for tok in _tokens(where):
        if len(tok) > width - 1:
            raise ValueError(f"WHERE token longer than {width - 1} characters cannot be sent in "
                             f"OPTIONS: {tok[:80]!r}")
        if not line:
            line = tok if not lines else " " + tok
        elif len(line) + 1 + len(tok) <= width:
            line += " " + tok
        else:
            lines.append(line)
            line = " " + tok
    if line:
        lines.append(line)
    return lines


def _and(*conds: str | None) -> str | None:
    parts = [c for c in conds if c]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    return " AND ".join(f"( {p} )" for p in parts)


def key_condition(keys: Sequence[str], values: Sequence[str], op: str) -> str:
    """Lexicographic compound-key comparison; `op` is '>' or '<='."""
    assert op in (">", "<=")
    strict = ">" if op == ">" else "<"
    terms: list[str] = []
    for i in range(len(keys)):
        eqs = [f"{keys[j]} = {quote(values[j])}" for j in range(i)]
        last_op = op if i == len(keys) - 1 else strict
        cmp = f"{keys[i]} {last_op} {quote(values[i])}"
        terms.append("( " + " AND ".join([*eqs, cmp]) + " )")
    return terms[0] if len(terms) == 1 else "( " + " OR ".join(terms) + " )"


# ----------------------------------------------------------------------------- column groups

def _delim_width(delimiter: str) -> int:
    # ABAP strlen() ignores trailing blanks: a blank delimiter occupies no column.
    return 0 if delimiter.strip() == "" else len(delimiter)


def plan_groups(fields: Sequence[FieldInfo], key_fields: Sequence[FieldInfo], row_width: int, *,
                delimiter_width: int = 1, table: str = "") -> list[list[FieldInfo]]:
    """Partition `fields` into groups whose row (lengths + delimiters) fits in
    `row_width`; every group starts with the key fields. First-fit in field order."""
    where = f" of table {table}" if table else ""
    key_names = {k.name for k in key_fields}
    key_width = sum(k.length for k in key_fields) + delimiter_width * max(len(key_fields) - 1, 0)
    if key_width > row_width:
        raise TableReadError(f"key fields{where} ({', '.join(key_names)}) are {key_width} characters "
                             f"wide, more than the row width {row_width}")
    groups: list[list[FieldInfo]] = []
    widths: list[int] = []
    for f in fields:
        if f.name in key_names:
            continue
        extra = f.length + (delimiter_width if key_fields else 0)
        if key_width + extra > row_width:
            raise TableReadError(
                f"field {f.name}{where} is {f.length} characters wide; with the key fields it cannot fit "
                f"a {row_width}-character row (use a wider function such as /BODS/RFC_READ_TABLE)")
        for i, w in enumerate(widths):
            if w + f.length + delimiter_width <= row_width:
                groups[i].append(f)
                widths[i] = w + f.length + delimiter_width
                break
        else:
            groups.append([*key_fields, f])
            widths.append(key_width + extra)
    if not groups:
        groups.append(list(key_fields))
    return groups


# ----------------------------------------------------------------------------- helpers

def _table(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    return []


def _int(value: Any) -> int:
    text = str(value).strip()
    return int(text) if text.lstrip("-").isdigit() else 0


def _fieldinfos(rows: list[Any]) -> list[FieldInfo]:
    out = []
    for r in rows:
        if not isinstance(r, Mapping):
            continue
        out.append(FieldInfo(name=str(r.get("FIELDNAME", "")).strip(), offset=_int(r.get("OFFSET", 0)),
                             length=_int(r.get("LENGTH", 0)), type=str(r.get("TYPE", "C")).strip() or "C",
                             text=str(r.get("FIELDTEXT", "")).strip()))
    return out


#: Character-like types are left-justified (trailing blanks cut); numbers are right-justified (both).
_CHAR_TYPES = frozenset(("C", "N", "D", "T", "g", "X", "y"))


def choose_function(caller: RfcCaller, *, probe_table: str = "T000") -> str:
    """The widest installed table-reading FM: /BODS/ or /SAPDS/RFC_READ_TABLE, then
    BBP_RFC_READ_TABLE, then RFC_READ_TABLE. FU_NOT_FOUND (or no RFC authority
    for it) means "not available"; any other answer means it exists."""
    for fm in CANDIDATE_FUNCTIONS[:-1]:
        try:
            caller.call(fm, {"QUERY_TABLE": probe_table, "NO_DATA": "X"}, tables=TABLES)
        except ABAPApplicationError as exc:
            if exc.key in ("FU_NOT_FOUND", "RFC_AUTHORIZATION_FAILURE", "FUNCTION_NOT_FOUND"):
                continue
            return fm
        except ChannelError as exc:
            if exc.fault.type == "NotAllowed":  # the agent's allow-list does not serve it: not for us
                continue
            raise
        return fm
    return CANDIDATE_FUNCTIONS[-1]


_probe_lock = threading.Lock()
_probed_weak: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_probed_strong: dict[int, tuple[Any, str]] = {}  # callers that cannot be weakly referenced
AUTO = "auto"  # TableReader(function=AUTO): the module is probed on first use, once per caller


def probed_function(caller: RfcCaller, *, probe_table: str = "T000") -> str:
    """`choose_function(caller)`, probed once per caller (= per connection) and cached.

    The connection objects of a runtime live for the process, so a connection is probed once,
    however many readers the flows build on it. A failed probe (communication, logon) caches
    nothing and raises, like the read it precedes would."""
    with _probe_lock:
        try:
            cached = _probed_weak.get(caller)
        except TypeError:
            entry = _probed_strong.get(id(caller))
            cached = entry[1] if entry is not None and entry[0] is caller else None
        if cached is not None:
            return cached
        fm = choose_function(caller, probe_table=probe_table)
        try:
            _probed_weak[caller] = fm
        except TypeError:
            _probed_strong[id(caller)] = (caller, fm)
        log.info("table reads through %s use %s", caller, fm)
        return fm


def forget_probe(caller: RfcCaller | None = None) -> None:
    """Drop the cached probe result of `caller` (all callers if None), e.g. after a transport."""
    with _probe_lock:
        if caller is None:
            _probed_weak.clear()
            _probed_strong.clear()
            return
        try:
            _probed_weak.pop(caller, None)
        except TypeError:
            _probed_strong.pop(id(caller), None)


class TableReader:
    """Reads a table through RFC_READ_TABLE (or a compatible FM) over any `RfcCaller`.

    `TableReader.probed(caller)` (function=AUTO) uses the widest installed read module of the
    connection, probed once per connection (`probed_function`) when the reader first calls SAP."""

    def __init__(self, caller: RfcCaller, *, function: str = "RFC_READ_TABLE", row_width: int | None = None,
                 delimiter: str | None = None) -> None:
        if delimiter is not None and len(delimiter) != 1:
            raise ValueError("DELIMITER is a single character")
        self.caller = caller
        self.function = function
        self._explicit_width = row_width
        self.row_width = row_width if row_width is not None else _row_width(function)
        self.delimiter = "|" if delimiter is None else delimiter
        self.calls = 0
        self._describe_cache: dict[str, list[FieldInfo]] = {}

    @classmethod
    def auto(cls, caller: RfcCaller, **kwargs: Any) -> TableReader:
        """A reader on the widest installed module, probed now (not cached; see `probed`)."""
        fm = choose_function(caller)
        return cls(caller, function=fm, row_width=_row_width(fm), **kwargs)

    @classmethod
    def probed(cls, caller: RfcCaller, **kwargs: Any) -> TableReader:
        """A reader on the widest installed module of this connection; the probe runs on the
        reader's first call and its answer is cached per caller, so production code can build
        readers freely (no SAP call at construction)."""
        return cls(caller, function=AUTO, **kwargs)

    def resolve_function(self) -> str:
        """The read module (probing the connection once if the reader was built with AUTO)."""
        if self.function == AUTO:
            fm = probed_function(self.caller)
            self.function = fm
            if self._explicit_width is None:
                self.row_width = _row_width(fm)
        return self.function

    def _call(self, table: str, names: Sequence[str], where: str | None, *, rowcount: int = 0,
              no_data: bool = False) -> dict[str, Any]:
        self.resolve_function()
        params: dict[str, Any] = {
            "QUERY_TABLE": table,
            "DELIMITER": self.delimiter,
            "NO_DATA": "X" if no_data else "",
            "ROWSKIPS": 0,
            "ROWCOUNT": rowcount,
            "OPTIONS": [{"TEXT": line} for line in wrap_options(where or "")],
            "FIELDS": [{"FIELDNAME": n} for n in names],
        }
        self.calls += 1
        return self.caller.call(self.function, params, tables=TABLES)

    def describe(self, table: str) -> list[FieldInfo]:
        """All fields of `table` with output offset/length (NO_DATA='X' probe)."""
        cached = self._describe_cache.get(table)
        if cached is None:
            result = self._call(table, [], None, no_data=True)
            cached = _fieldinfos(_table(result.get("FIELDS")))
            if not cached:
                raise TableReadError(f"{self.function} returned no FIELDS for table {table}")
            self._describe_cache[table] = cached
        return list(cached)

    def _select(self, table: str, group: Sequence[FieldInfo], where: str | None,
                rowcount: int) -> list[dict[str, str]]:
        names = [f.name for f in group]
        result = self._call(table, names, where, rowcount=rowcount)
        infos = _fieldinfos(_table(result.get("FIELDS")))
        if [i.name for i in infos] != names:
            infos = self._layout(group)  # server did not echo FIELDS: compute the layout
        rows = []
        numeric = [f for f in infos if f.type in NUMERIC_TYPES]
        # `_cut` of every field, as slices (a call per cell was a large part of a read's CPU).
        cuts = [(f.name, f.offset, f.offset + f.length, f.type in _CHAR_TYPES) for f in infos]
        for item in _table(result.get("DATA")):
            wa = (item.get("WA", "") if isinstance(item, Mapping) else str(item)) or ""
            row = {n: (wa[a:b].rstrip() if char else wa[a:b].strip()) for n, a, b, char in cuts}
            for f in numeric:  # '1234.56-' -> '-1234.56'; '*' overflow -> FieldValueError
                row[f.name] = _numeric_value(row[f.name], f, table, self.function)
            rows.append(row)
        return rows

    def _layout(self, group: Sequence[FieldInfo]) -> list[FieldInfo]:
        out, off = [], 0
        for f in group:
            out.append(FieldInfo(f.name, off, f.length, f.type, f.text, f.is_key))
            off += f.length + _delim_width(self.delimiter)
        return out

    def read(self, table: str, fields: Sequence[str] | None = None, *, key_fields: Sequence[str],
             where: str | None = None, page_size: int = 10000,
             after: Sequence[str] | None = None) -> Iterator[Page]:
        """All rows of `table` matching `where`, in pages of ≤ page_size rows,
        each row exactly once (see module docstring). Resume with `after=page.last_key`."""
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.resolve_function()
        keys = [k.upper() for k in key_fields if k.upper() != "MANDT"]  # client is implicit
        if not keys:
            raise ValueError("key_fields must name at least one key field besides MANDT")
        infos = {f.name: f for f in self.describe(table)}
        wanted = [f.upper() for f in fields] if fields else list(infos)
        for name in [*keys, *wanted]:
            if name not in infos:
                raise TableReadError(f"table {table} has no field {name}")
        key_infos = [FieldInfo(k, 0, infos[k].length, infos[k].type, infos[k].text, True) for k in keys]
        data_infos = [infos[n] for n in wanted if n not in keys]
        dw = _delim_width(self.delimiter)
        groups = plan_groups(data_infos, key_infos, self.row_width, delimiter_width=dw, table=table)
        regrouped = False
        fused = len(groups) == 1
        cursor: tuple[str, ...] | None = tuple(after) if after is not None else None
        if cursor is not None and len(cursor) != len(keys):
            raise ValueError(f"after={after!r} must have one value per key field {keys}")
        stack: list[tuple[str, ...] | None] = [None]
        optimistic = True
        last_split_optimistic = False
        retries = 0
        while stack:
            hi = stack[-1]
            window = _and(where,
                          key_condition(keys, cursor, ">") if cursor is not None else None,
                          key_condition(keys, hi, "<=") if hi is not None else None)
            whole: list[dict[str, str]] | None = None
            if fused:
                # One column group: probe with it, so that a window that fits is read in this one call.
                whole = self._probe_whole(table, groups[0], keys, window, page_size + 1)
                fused = whole is not None
            if whole is None:
                probe = self._probe(table, key_infos, window, page_size + 1)
            else:
                probe = [tuple(r[k] for k in keys) for r in whole]
            if len(probe) > page_size:
                if last_split_optimistic:
                    optimistic = False  # server does not return lowest keys first: bisect
                candidates = sorted(k for k in probe if k != hi)
                idx = page_size - 1 if optimistic else (len(candidates) - 1) // 2
                stack.append(candidates[min(idx, len(candidates) - 1)])
                last_split_optimistic = optimistic
                continue
            last_split_optimistic = False
            if not probe:
                stack.pop()
                cursor = hi if hi is not None else cursor
                continue
            try:
                rows, dropped = ((whole, 0) if whole is not None else
                                 self._fetch_window(table, groups, keys, window, set(probe), page_size))
            except _WindowOverflow:
                retries += 1
                if retries > _MAX_WINDOW_RETRIES:
                    raise TableReadError(f"table {table}: window after {cursor} keeps growing "
                                         f"(concurrent inserts); giving up") from None
                continue  # re-probe the same window; it will be split
            except ABAPApplicationError as exc:
                if exc.key != "DATA_BUFFER_EXCEEDED":
                    raise
                if regrouped:
                    raise TableReadError(
                        f"table {table}: {self.function} raised DATA_BUFFER_EXCEEDED even after regrouping "
                        f"columns into rows of ≤ {self.row_width // 2} characters") from exc
                regrouped = True
                groups = plan_groups(data_infos, key_infos, self.row_width // 2, delimiter_width=dw,
                                     table=table)
                log.warning("%s: DATA_BUFFER_EXCEEDED; regrouped into %d groups", table, len(groups))
                continue
            retries = 0
            stack.pop()
            new_cursor = hi if hi is not None else max(probe)
            cursor = new_cursor
            if rows:
                rows.sort(key=lambda r: tuple(r[k] for k in keys))
                yield Page(rows=rows, last_key=new_cursor, dropped=dropped)
            elif dropped:
                yield Page(rows=[], last_key=new_cursor, dropped=dropped)

    def _probe(self, table: str, key_infos: Sequence[FieldInfo], window: str | None,
               rowcount: int) -> list[tuple[str, ...]]:
        try:
            rows = self._select(table, key_infos, window, rowcount)
        except ABAPApplicationError as exc:
            if exc.key == "DATA_BUFFER_EXCEEDED":
                raise TableReadError(f"table {table}: the key fields alone exceed the row width of "
                                     f"{self.function}") from exc
            raise
        names = [k.name for k in key_infos]
        out = [tuple(r[n] for n in names) for r in rows]
        if len(set(out)) != len(out):
            dup = next(k for k in out if out.count(k) > 1)
            raise TableReadError(f"key fields {names} are not unique in table {table} (duplicate {dup}); "
                                 f"pass the full primary key (without MANDT)")
        return out

    def _probe_whole(self, table: str, group: Sequence[FieldInfo], keys: Sequence[str], window: str | None,
                     rowcount: int) -> list[dict[str, str]] | None:
        """A probe that reads a single column group whole (its rows, keys checked unique as `_probe`
        does); None when the server's buffer refuses the width (the key probe and the regrouping
        of `read` take over)."""
        try:
            rows = self._select(table, group, window, rowcount)
        except ABAPApplicationError as exc:
            if exc.key == "DATA_BUFFER_EXCEEDED":
                return None
            raise
        seen: set[tuple[str, ...]] = set()
        for r in rows:
            k = tuple(r[n] for n in keys)
            if k in seen:
                raise TableReadError(f"key fields {list(keys)} are not unique in table {table} (duplicate {k}); "
                                     f"pass the full primary key (without MANDT)")
            seen.add(k)
        return rows

    def _fetch_window(self, table: str, groups: Sequence[Sequence[FieldInfo]], keys: Sequence[str],
                      window: str | None, probe_keys: set[tuple[str, ...]],
                      page_size: int) -> tuple[list[dict[str, str]], int]:
        for attempt in (1, 2):
            per_group: list[dict[tuple[str, ...], dict[str, str]]] = []
            for group in groups:
                rows = self._select(table, group, window, page_size + 1)
                if len(rows) > page_size:
                    raise _WindowOverflow
                per_group.append({tuple(r[k] for k in keys): r for r in rows})
            everywhere = set.intersection(*(set(g) for g in per_group))
            seen = set().union(*(set(g) for g in per_group))
            partial = seen - everywhere
            vanished = probe_keys - seen
            if not partial or attempt == 2:
                break
            log.info("%s: %d rows differ between column groups; refetching the window", table,
                     len(partial))
        dropped = len(partial) + len(vanished)
        if dropped:
            log.warning("%s: dropped %d rows changed concurrently while reading (in some column groups "
                        "only, or deleted after the key probe)", table, dropped)
        out = []
        for k in everywhere:
            row: dict[str, str] = {}
            for g in per_group:
                row.update(g[k])
            out.append(row)
        return out, dropped


class _WindowOverflow(Exception):
    """Internal: a fetch returned more rows than the verified key probe allowed."""
