"""Evaluating WHERE clauses of the ECC sandbox against sample rows, and hypothesis strategies for them."""

from __future__ import annotations

from hypothesis import strategies as st

from ml_connector.systems.sap_ecc.sandbox import ddic
from ml_connector.systems.sap_ecc.sandbox.where import compile_where

LFA1 = ddic.table("LFA1")
assert LFA1 is not None

ROWS = [
    {"LIFNR": "0000100001", "LAND1": "US", "NAME1": "Acme | Pipe Inc.", "LOEVM": "", "ERDAT": "20200101"},
    {"LIFNR": "0000100002", "LAND1": "DE", "NAME1": "Müller GmbH", "LOEVM": "X", "ERDAT": "20210615"},
    {"LIFNR": "0000100003", "LAND1": "GB", "NAME1": "O'Brien Ltd", "ERDAT": "20221231"},
    {"LIFNR": "0000100004", "LAND1": "US", "NAME1": "Acme_Tools", "SPERR": "X", "ERDAT": "20230301"},
]


def matching(lines: list[str] | str, table: ddic.DdicTable = LFA1) -> list[str]:
    w = compile_where([lines] if isinstance(lines, str) else lines, table)
    return [r["LIFNR"][-1] for r in ROWS if w.predicate(r)]


FIELD_VALUES = {"LAND1": ["US", "DE", "GB", ""], "LOEVM": ["", "X"], "KTOKK": ["KRED", "LIEF", ""]}
OPS = {"=": lambda a, b: a == b, "<>": lambda a, b: a != b, "<": lambda a, b: a < b,
       ">": lambda a, b: a > b, "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b}


row_st = st.fixed_dictionaries({k: st.sampled_from(v) for k, v in FIELD_VALUES.items()})


cmp_st = st.tuples(st.sampled_from(sorted(FIELD_VALUES)), st.sampled_from(sorted(OPS)),
                   st.sampled_from(["US", "DE", "GB", "X", "KRED", "LIEF", " ", "A"]))


def literal(v: str) -> str:
    return "'" + v.replace("'", "''") + "'"
