"""The dynamic WHERE of RFC_READ_TABLE: grammar, ABAP tokenization rules, semantics."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_connector.systems.sap_ecc.sandbox import ddic
from ml_connector.systems.sap_ecc.sandbox.where import WhereError, compile_where
from tests.support.ecc_where import OPS, cmp_st, literal, matching, row_st

LFA1 = ddic.table("LFA1")
LFB1 = ddic.table("LFB1")
assert LFA1 is not None and LFB1 is not None


@pytest.mark.parametrize(("cond", "expected"), [
    ("LAND1 = 'US'", ["1", "4"]),
    ("LAND1 EQ 'US'", ["1", "4"]),
    ("land1 eq 'US'", ["1", "4"]),
    ("LAND1 = 'us'", []),  # literals are case-sensitive
    ("LAND1 <> 'US'", ["2", "3"]),
    ("LAND1 NE 'US'", ["2", "3"]),
    ("LIFNR > '0000100002'", ["3", "4"]),
    ("LIFNR GE '0000100002'", ["2", "3", "4"]),
    ("LIFNR < '0000100002'", ["1"]),
    ("LIFNR LE '0000100002'", ["1", "2"]),
    ("LIFNR LT '0000100002' OR LIFNR GT '0000100003'", ["1", "4"]),
    ("LOEVM = ' '", ["1", "3", "4"]),  # blank literal matches the initial CHAR value
    ("LOEVM = ''", ["1", "3", "4"]),
    ("LOEVM <> ' '", ["2"]),
    ("NAME1 LIKE 'Acme%'", ["1", "4"]),
    ("NAME1 LIKE 'Acme_Tools'", ["4"]),
    ("NAME1 LIKE '%|%'", ["1"]),
    ("NAME1 NOT LIKE 'Acme%'", ["2", "3"]),
    ("NAME1 LIKE 'Acme#_%' ESCAPE '#'", ["4"]),
    ("NAME1 = 'O''Brien Ltd'", ["3"]),
    ("NAME1 = 'Müller GmbH'", ["2"]),
    ("LAND1 IN ( 'DE', 'GB' )", ["2", "3"]),
    ("LAND1 IN ('DE','GB')", ["2", "3"]),
    ("LAND1 NOT IN ( 'DE', 'GB' )", ["1", "4"]),
    ("ERDAT BETWEEN '20210101' AND '20221231'", ["2", "3"]),
    ("ERDAT NOT BETWEEN '20210101' AND '20221231'", ["1", "4"]),
    ("NOT LAND1 = 'US'", ["2", "3"]),
    ("LAND1 = 'US' AND ( SPERR = 'X' OR LOEVM = 'X' )", ["4"]),
    ("( LAND1 = 'US' AND SPERR = 'X' ) OR LOEVM = 'X'", ["2", "4"]),
    ("LAND1 = 'US' OR LAND1 = 'DE' AND LOEVM = ' '", ["1", "4"]),  # AND binds tighter than OR
    ("NOT ( LAND1 = 'US' OR LAND1 = 'DE' )", ["3"]),
    ("ORT01 = ORT02", ["1", "2", "3", "4"]),  # column = column (both initial)
    ("", ["1", "2", "3", "4"]),
])
def test_conditions(cond: str, expected: list[str]) -> None:
    assert matching(cond) == expected


def test_lines_are_joined_at_token_boundaries() -> None:
    assert matching(["LAND1 = 'US'", "AND SPERR = 'X'"]) == ["4"]
    assert matching(["LAND1 = 'US' AND", "SPERR = 'X'"]) == ["4"]
    assert matching(["LAND1", "=", "'US'"]) == ["1", "4"]


@pytest.mark.parametrize("lines", [
    ["NAME1 = 'Acme |", " Pipe Inc.'"],  # literal split across two lines
    ["NAME1 LIKE 'Ac", "me%'"],
])
def test_literal_split_across_lines_is_an_error(lines: list[str]) -> None:
    with pytest.raises(WhereError) as exc:
        compile_where(lines, LFA1)
    assert exc.value.reason == "split_token"


def test_identifier_split_across_lines_is_an_error() -> None:
    with pytest.raises(WhereError):
        compile_where(["LAND1 = 'US' AND LOE", "VM = 'X'"], LFA1)


@pytest.mark.parametrize("cond", [
    "LIFNR='1'", "LIFNR= '1'", "LIFNR ='1'", "LIFNR<>'1'", "LIFNR =='1'", "LIFNR != '1'",
    "LAND1 = 'US' AND", "LAND1 = 'US' OR OR LAND1 = 'DE'", "( LAND1 = 'US'", "LAND1 = 'US' )",
    "LAND1 'US'", "LAND1 IN 'US'", "LAND1 BETWEEN 'A'", "= 'US'", "LAND1 = 'US' LAND1 = 'DE'",
    "LAND1 = 'unterminated",
])
def test_syntax_errors(cond: str) -> None:
    with pytest.raises(WhereError) as exc:
        compile_where([cond], LFA1)
    assert exc.value.reason in ("syntax", "split_token")


def test_unknown_field() -> None:
    with pytest.raises(WhereError) as exc:
        compile_where(["BUKRS = '1000'"], LFA1)
    assert exc.value.reason == "unknown_field"
    assert "BUKRS" in str(exc.value)
    compile_where(["BUKRS = '1000'"], LFB1)  # exists in LFB1


def test_numeric_and_numc_literals() -> None:
    w = compile_where(["WEBTR > 100"], LFB1)
    assert w.predicate({"WEBTR": "100.50"}) and not w.predicate({"WEBTR": "99.99"})
    assert not w.predicate({})  # initial packed value is 0
    w = compile_where(["PERNR = '42'"], LFB1)  # NUMC literal is zero-padded to the field length
    assert w.predicate({"PERNR": "00000042"})


def test_key_range_from_top_level_conjunction() -> None:
    w = compile_where(["LIFNR > '0000100002' AND LAND1 = 'US' AND LIFNR <= '0000100009'"], LFA1)
    kr = w.key_range("LIFNR")
    assert kr is not None
    assert (kr.low, kr.low_inclusive, kr.high, kr.high_inclusive) == ("0000100002", False, "0000100009", True)
    assert compile_where(["LIFNR > '1' OR LAND1 = 'US'"], LFA1).key_range("LIFNR") is None
    assert compile_where(["LAND1 = 'US'"], LFA1).key_range("LIFNR") is None


# -- properties ------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(row_st, min_size=1, max_size=8),
       terms=st.lists(cmp_st, min_size=1, max_size=5),
       joins=st.lists(st.sampled_from(["AND", "OR"]), min_size=4, max_size=4),
       width=st.integers(min_value=20, max_value=72))
def test_property_matches_reference_and_line_wrapping(rows: list[dict[str, str]],
                                                      terms: list[tuple[str, str, str]],
                                                      joins: list[str], width: int) -> None:
    text = ""
    for i, (f, op, v) in enumerate(terms):
        text += ("" if i == 0 else f" {joins[i - 1]} ") + f"{f} {op} {literal(v)}"

    def reference(row: dict[str, str]) -> bool:
        # AND binds tighter than OR: evaluate OR of AND-groups
        groups: list[list[bool]] = [[]]
        for i, (f, op, v) in enumerate(terms):
            if i and joins[i - 1] == "OR":
                groups.append([])
            groups[-1].append(OPS[op](row[f].rstrip(), v.rstrip()))
        return any(all(g) for g in groups)

    # wrap at blanks only, like a careful client (lines <= width; literals here contain no blanks
    # except the single-blank literal, which is one token)
    tokens = text.replace("' '", "'\x00'").split(" ")
    lines: list[str] = []
    cur = ""
    for tok in tokens:
        tok = tok.replace("\x00", " ")
        if cur and len(cur) + 1 + len(tok) > width:
            lines.append(cur)
            cur = tok
        else:
            cur = f"{cur} {tok}" if cur else tok
    lines.append(cur)
    assert all(len(line) <= 72 for line in lines)
    one = compile_where([text], LFA1)
    wrapped = compile_where(lines, LFA1)
    for row in rows:
        assert one.predicate(row) == reference(row)
        assert wrapped.predicate(row) == reference(row)


@settings(max_examples=100, deadline=None)
@given(value=st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                     min_size=1, max_size=30))
def test_property_quoted_literal_roundtrip(value: str) -> None:
    value = value.strip(" \t\r\n")
    if not value or any(c in value for c in "\t\r\n"):
        return
    w = compile_where([f"NAME1 = {literal(value)}"], LFA1)
    assert w.predicate({"NAME1": value})
    assert not w.predicate({"NAME1": value + "x"})
