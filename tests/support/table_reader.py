"""A fake RFC_READ_TABLE (with a reference WHERE evaluator) and generated tables, for the TableReader tests."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ml_connector.systems.sap_ecc.errors import ABAPApplicationError
from ml_connector.systems.sap_ecc.table_reader import (
    TableReader,
)

TOKEN = re.compile(r"\s*('(?:[^']|'')*'|\(|\)|<>|<=|>=|=|<|>|[A-Za-z_/][A-Za-z0-9_/]*)")
OPS = {"=": "=", "EQ": "=", "<>": "<>", "NE": "<>", "<": "<", "LT": "<", ">": ">", "GT": ">",
        "<=": "<=", "LE": "<=", ">=": ">=", "GE": ">="}


LFA1_FIELDS = [("MANDT", 3, "C"), ("LIFNR", 10, "C"), ("NAME1", 35, "C"), ("ORT01", 35, "C"),
               ("LAND1", 3, "C"), ("STCD1", 16, "C"), ("LOEVM", 1, "C")]


def lex(text: str) -> list[str]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if not m:
            raise ABAPApplicationError("bad WHERE", key="OPTION_NOT_VALID")
        out.append(m.group(1))
        pos = m.end()
    return out


class Where:
    """A tiny Open SQL WHERE evaluator: comparisons, AND/OR/NOT, parentheses."""

    def __init__(self, text: str, widths: dict[str, int]) -> None:
        self.toks = lex(text)
        self.i = 0
        self.widths = widths
        self.pred = self._or() if self.toks else (lambda row: True)
        if self.i != len(self.toks):
            raise ABAPApplicationError("trailing tokens", key="OPTION_NOT_VALID")

    def _peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def _next(self) -> str:
        tok = self._peek()
        if tok is None:
            raise ABAPApplicationError("unexpected end", key="OPTION_NOT_VALID")
        self.i += 1
        return tok

    def _or(self) -> Callable[[dict[str, str]], bool]:
        parts = [self._and()]
        while (self._peek() or "").upper() == "OR":
            self.i += 1
            parts.append(self._and())
        return lambda row: any(p(row) for p in parts)

    def _and(self) -> Callable[[dict[str, str]], bool]:
        parts = [self._not()]
        while (self._peek() or "").upper() == "AND":
            self.i += 1
            parts.append(self._not())
        return lambda row: all(p(row) for p in parts)

    def _not(self) -> Callable[[dict[str, str]], bool]:
        if (self._peek() or "").upper() == "NOT":
            self.i += 1
            inner = self._not()
            return lambda row: not inner(row)
        if self._peek() == "(":
            self.i += 1
            inner = self._or()
            if self._next() != ")":
                raise ABAPApplicationError("missing )", key="OPTION_NOT_VALID")
            return inner
        name = self._next().upper()
        if name not in self.widths:
            raise ABAPApplicationError(f"unknown field {name}", key="OPTION_NOT_VALID")
        op = OPS.get(self._next().upper())
        lit = self._next()
        if op is None or not lit.startswith("'"):
            raise ABAPApplicationError("bad comparison", key="OPTION_NOT_VALID")
        width = self.widths[name]
        value = lit[1:-1].replace("''", "'").ljust(width)

        def cmp(row: dict[str, str]) -> bool:
            v = row.get(name, "").ljust(width)
            return {"=": v == value, "<>": v != value, "<": v < value, ">": v > value,
                    "<=": v <= value, ">=": v >= value}[op]

        return cmp


@dataclass
class FakeTable:
    fields: list[tuple[str, int, str]]  # name, length, type
    rows: list[dict[str, str]]


@dataclass
class FakeReadTable:
    """RFC_READ_TABLE in memory. mode: 'random' | 'lowest' | 'highest' subset choice."""

    tables: dict[str, FakeTable]
    mode: str = "random"
    seed: int = 0
    server_width: int = 512
    trim_wa: bool = False
    installed: Sequence[str] = ("RFC_READ_TABLE",)
    before_call: Callable[[FakeReadTable, dict[str, Any]], None] | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def call(self, fm: str, params: dict[str, Any] | None = None, *,
             tables: Sequence[str] = ()) -> dict[str, Any]:
        p = dict(params or {})
        if fm not in self.installed:
            raise ABAPApplicationError("ID:FL Type:E Number:046 " + fm, key="FU_NOT_FOUND",
                                       msg_class="FL", msg_type="E", msg_number="046", msg_v1=fm)
        self.calls.append(p)
        if self.before_call is not None:
            self.before_call(self, p)
        name = str(p["QUERY_TABLE"])
        tab = self.tables.get(name)
        if tab is None:
            raise ABAPApplicationError(f"ID:SV Type:E Number:029 {name}", key="TABLE_NOT_AVAILABLE",
                                       msg_class="SV", msg_type="E", msg_number="029", msg_v1=name)
        delim = str(p.get("DELIMITER") or " ")
        dw = len(delim.rstrip())
        defs = {n: (ln, t) for n, ln, t in tab.fields}
        names = [f["FIELDNAME"] for f in p.get("FIELDS") or []] or [n for n, _, _ in tab.fields]
        out_fields, off = [], 0
        for n in names:
            if n not in defs:
                raise ABAPApplicationError(f"field {n}", key="FIELD_NOT_VALID")
            ln, t = defs[n]
            out_fields.append({"FIELDNAME": n, "OFFSET": f"{off:06d}", "LENGTH": f"{ln:06d}", "TYPE": t,
                               "FIELDTEXT": n.title()})
            off += ln + dw
        width = off - dw
        result: dict[str, Any] = {"FIELDS": out_fields, "OPTIONS": p.get("OPTIONS") or [], "DATA": []}
        if p.get("NO_DATA") == "X":
            return result
        if width > self.server_width:
            raise ABAPApplicationError(" Number:000", key="DATA_BUFFER_EXCEEDED")
        lines = [o["TEXT"] for o in p.get("OPTIONS") or []]
        assert all(len(line) <= 72 for line in lines), lines
        # trailing blanks do not survive; lines are concatenated WITHOUT a separator
        where = "".join(line.rstrip() for line in lines)
        pred = Where(where, {n: ln for n, ln, _ in tab.fields}).pred
        matching = [r for r in tab.rows if pred(r)]
        rowcount = int(p.get("ROWCOUNT") or 0)
        keyf = [n for n, _, _ in tab.fields]
        if self.mode == "random":
            self.rng.shuffle(matching)
        elif self.mode == "lowest":
            matching.sort(key=lambda r: [r[k].ljust(defs[k][0]) for k in keyf])
        else:
            matching.sort(key=lambda r: [r[k].ljust(defs[k][0]) for k in keyf], reverse=True)
        if rowcount:
            matching = matching[:rowcount]
            self.rng.shuffle(matching)
        data = []
        for r in matching:
            wa = delim.join(r.get(n, "").ljust(defs[n][0])[: defs[n][0]] for n in names)
            data.append({"WA": wa.rstrip() if self.trim_wa else wa})
        result["DATA"] = data
        return result


def lfa1(n: int, seed: int = 1) -> FakeTable:
    rng = random.Random(seed)
    rows = []
    for i in rng.sample(range(1, 10 * n + 10), n):
        rows.append({"MANDT": "100", "LIFNR": f"{i:010d}",
                     "NAME1": rng.choice(["Acme | Co", "O'Brien & Sons", "Müller GmbH", "A|B|C", " lead"]),
                     "ORT01": rng.choice(["Berlin", "New York", ""]), "LAND1": rng.choice(["DE", "US"]),
                     "STCD1": str(rng.randrange(10**8)), "LOEVM": rng.choice(["", "X"])})
    return FakeTable(LFA1_FIELDS, rows)


BSEG_FIELDS = [("MANDT", 3, "C"), ("BUKRS", 4, "C"), ("BELNR", 10, "C"), ("GJAHR", 4, "N"),
               ("BUZEI", 3, "N"), ("SGTXT", 50, "C"), ("WRBTR", 16, "P")]


def bseg(n: int, seed: int = 2) -> FakeTable:
    rng = random.Random(seed)
    keys: set[tuple[str, str, str, str]] = set()
    while len(keys) < n:
        keys.add((rng.choice(["1000", "2000"]), f"{rng.randrange(1, 40):010d}", rng.choice(["2023", "2024"]),
                  f"{rng.randrange(1, 6):03d}"))
    rows = [{"MANDT": "100", "BUKRS": b, "BELNR": d, "GJAHR": g, "BUZEI": z,
             "SGTXT": f"text {d}|{z}", "WRBTR": f"{rng.randrange(10**6) / 100:.2f}".rjust(16)}
            for b, d, g, z in keys]
    return FakeTable(BSEG_FIELDS, rows)


def read_all(reader: TableReader, table: str, fields: Sequence[str] | None, keys: Sequence[str],
             **kw: Any) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for page in reader.read(table, fields, key_fields=keys, **kw):
        assert len(page.rows) <= kw.get("page_size", 10000)
        out.extend(page.rows)
    return out


def expected(table: FakeTable, fields: Sequence[str], pred: Callable[[dict[str, str]], bool] = lambda r: True,
             ) -> list[dict[str, str]]:
    types = {n: t for n, _, t in table.fields}
    return [{f: (r[f].rstrip() if types[f] != "P" else r[f].strip()) for f in fields}
            for r in table.rows if pred(r)]


def canon(rows: list[dict[str, str]]) -> list[tuple[tuple[str, str], ...]]:
    return sorted(tuple(sorted(r.items())) for r in rows)


def ref_tokens(text: str) -> list[str]:
    return re.findall(r"(?:'(?:[^']|'')*'|[^\s'])+", text)
