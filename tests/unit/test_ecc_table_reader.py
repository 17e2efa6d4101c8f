"""TableReader against an in-memory RFC_READ_TABLE that behaves like the classic
implementation: no ORDER BY, and with ROWCOUNT set it returns an ARBITRARY subset
of the matching rows (random, lowest keys first, or adversarially highest first)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml_connector.systems.sap_ecc.errors import ABAPApplicationError
from ml_connector.systems.sap_ecc.table_reader import (
    AUTO,
    FieldInfo,
    TableReader,
    TableReadError,
    alpha,
    choose_function,
    forget_probe,
    key_condition,
    plan_groups,
    probed_function,
    quote,
    wrap_options,
)
from tests.support.table_reader import (
    LFA1_FIELDS,
    FakeReadTable,
    FakeTable,
    bseg,
    canon,
    expected,
    lfa1,
    read_all,
    ref_tokens,
)

# ----------------------------------------------------------------------------- paging correctness

@pytest.mark.parametrize("mode", ["random", "lowest", "highest"])
@pytest.mark.parametrize("page_size", [1, 7, 50, 1000])
def test_reads_every_row_exactly_once(mode: str, page_size: int) -> None:
    tab = lfa1(230)
    fake = FakeReadTable({"LFA1": tab}, mode=mode, seed=page_size)
    reader = TableReader(fake)
    fields = ["LIFNR", "NAME1", "ORT01", "LAND1"]
    rows = read_all(reader, "LFA1", fields, ["LIFNR"], page_size=page_size)
    keys = [r["LIFNR"] for r in rows]
    assert len(keys) == len(set(keys)) == 230
    assert canon(rows) == canon(expected(tab, fields))
    assert keys == sorted(keys)  # windows come in key order, rows sorted within a page


def test_naive_max_key_paging_would_miss_rows_on_this_server() -> None:
    """The fake really is hostile: 'key > max(previous page)' loses rows."""
    tab = lfa1(200)
    fake = FakeReadTable({"LFA1": tab}, mode="random", seed=3)
    seen: set[str] = set()
    last = None
    while True:
        opts = wrap_options(f"LIFNR > {quote(last)}") if last else []
        res = fake.call("RFC_READ_TABLE", {"QUERY_TABLE": "LFA1", "DELIMITER": "|", "ROWCOUNT": 20,
                                           "OPTIONS": [{"TEXT": o} for o in opts],
                                           "FIELDS": [{"FIELDNAME": "LIFNR"}]})
        got = [d["WA"].strip() for d in res["DATA"]]
        seen.update(got)
        if len(got) < 20:
            break
        last = max(got)
    assert len(seen) < 200


def test_efficiency_lowest_first_server() -> None:
    tab = lfa1(1000)
    fake = FakeReadTable({"LFA1": tab}, mode="lowest")
    reader = TableReader(fake)
    pages = list(reader.read("LFA1", ["LIFNR", "NAME1"], key_fields=["LIFNR"], page_size=100))
    assert [len(p.rows) for p in pages] == [100] * 10
    # describe + per page: full probe, verifying probe, one fetch; + final empty probe
    assert len(fake.calls) <= 1 + 10 * 3 + 2


def test_efficiency_random_server_is_logarithmic_not_linear() -> None:
    tab = lfa1(2000)
    fake = FakeReadTable({"LFA1": tab}, mode="random", seed=9)
    reader = TableReader(fake)
    pages = list(reader.read("LFA1", ["LIFNR", "NAME1"], key_fields=["LIFNR"], page_size=200))
    assert sum(len(p.rows) for p in pages) == 2000
    assert len(fake.calls) < 120


def test_compound_key_with_where_and_groups() -> None:
    tab = bseg(300)
    fake = FakeReadTable({"BSEG": tab}, mode="random", seed=5)
    reader = TableReader(fake, row_width=80)  # forces several column groups
    keys = ["MANDT", "BUKRS", "BELNR", "GJAHR", "BUZEI"]  # MANDT is dropped (implicit client)
    fields = ["BUKRS", "BELNR", "GJAHR", "BUZEI", "SGTXT", "WRBTR"]
    rows = read_all(reader, "BSEG", fields, keys, where="BUKRS = '1000' AND GJAHR = '2024'", page_size=16)
    want = expected(tab, fields, lambda r: r["BUKRS"] == "1000" and r["GJAHR"] == "2024")
    assert len(want) > 30
    assert canon(rows) == canon(want)
    assert all("MANDT" not in line for c in fake.calls for o in c["OPTIONS"] for line in o.values())


def test_resume_after_cursor() -> None:
    tab = lfa1(120)
    fake = FakeReadTable({"LFA1": tab}, mode="random", seed=11)
    reader = TableReader(fake)
    it = reader.read("LFA1", ["LIFNR"], key_fields=["LIFNR"], page_size=25)
    first = next(it)
    rest = read_all(TableReader(fake), "LFA1", ["LIFNR"], ["LIFNR"], page_size=25, after=first.last_key)
    keys = [r["LIFNR"] for r in first.rows] + [r["LIFNR"] for r in rest]
    assert sorted(keys) == sorted(r["LIFNR"] for r in tab.rows) and len(set(keys)) == len(keys)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(0, 120), page_size=st.integers(1, 40), seed=st.integers(0, 10**6),
       mode=st.sampled_from(["random", "lowest", "highest"]), width=st.sampled_from([80, 100, 512]))
def test_property_no_row_missed_or_duplicated(n: int, page_size: int, seed: int, mode: str,
                                              width: int) -> None:
    tab = bseg(n, seed=seed)
    fake = FakeReadTable({"BSEG": tab}, mode=mode, seed=seed)
    reader = TableReader(fake, row_width=width)
    fields = ["BUKRS", "BELNR", "GJAHR", "BUZEI", "SGTXT", "WRBTR"]
    rows = read_all(reader, "BSEG", fields, ["BUKRS", "BELNR", "GJAHR", "BUZEI"], page_size=page_size)
    assert canon(rows) == canon(expected(tab, fields))


# ----------------------------------------------------------------------------- data parsing

@pytest.mark.parametrize("trim", [False, True])
def test_delimiter_inside_data_and_trimmed_lines(trim: bool) -> None:
    tab = FakeTable(LFA1_FIELDS, [
        {"MANDT": "100", "LIFNR": "0000100131", "NAME1": "A|B|C", "ORT01": "", "LAND1": "US", "STCD1": "|",
         "LOEVM": ""},
        {"MANDT": "100", "LIFNR": "0000100132", "NAME1": "|||", "ORT01": "x|y", "LAND1": "", "STCD1": "",
         "LOEVM": "X"},
    ])
    fake = FakeReadTable({"LFA1": tab}, trim_wa=trim)
    rows = read_all(TableReader(fake), "LFA1", ["LIFNR", "NAME1", "ORT01", "LAND1", "STCD1", "LOEVM"],
                    ["LIFNR"])
    assert rows == [
        {"LIFNR": "0000100131", "NAME1": "A|B|C", "ORT01": "", "LAND1": "US", "STCD1": "|", "LOEVM": ""},
        {"LIFNR": "0000100132", "NAME1": "|||", "ORT01": "x|y", "LAND1": "", "STCD1": "", "LOEVM": "X"},
    ]


def test_describe() -> None:
    fake = FakeReadTable({"LFA1": lfa1(3)})
    infos = TableReader(fake).describe("LFA1")
    assert [(i.name, i.offset, i.length) for i in infos[:3]] == [("MANDT", 0, 3), ("LIFNR", 4, 10),
                                                                 ("NAME1", 15, 35)]
    assert fake.calls[0]["NO_DATA"] == "X"
    with pytest.raises(ABAPApplicationError) as ei:
        TableReader(fake).describe("T008X")
    assert ei.value.key == "TABLE_NOT_AVAILABLE" and ei.value.msg_v1 == "T008X"


def test_duplicate_keys_are_a_clear_error() -> None:
    tab = lfa1(50)
    fake = FakeReadTable({"LFA1": tab})
    with pytest.raises(TableReadError, match="not unique"):
        read_all(TableReader(fake), "LFA1", ["LIFNR", "LAND1"], ["LAND1"], page_size=10)


def test_unknown_field_is_clear_error() -> None:
    fake = FakeReadTable({"LFA1": lfa1(5)})
    with pytest.raises(TableReadError, match="NOPE"):
        read_all(TableReader(fake), "LFA1", ["NOPE"], ["LIFNR"])


# ----------------------------------------------------------------------------- concurrency and buffers

def test_row_deleted_between_group_fetches_is_dropped_and_counted() -> None:
    tab = lfa1(30)
    victim = sorted(r["LIFNR"] for r in tab.rows)[5]
    state = {"n": 0}

    def hook(fake: FakeReadTable, p: dict[str, Any]) -> None:
        names = [f["FIELDNAME"] for f in p.get("FIELDS") or []]
        if "STCD1" in names:  # the second column group
            state["n"] += 1
            if state["n"] == 1:
                fake.tables["LFA1"].rows = [r for r in fake.tables["LFA1"].rows if r["LIFNR"] != victim]

    fake = FakeReadTable({"LFA1": tab}, before_call=hook)
    reader = TableReader(fake, row_width=60)
    pages = list(reader.read("LFA1", ["LIFNR", "NAME1", "STCD1"], key_fields=["LIFNR"], page_size=100))
    rows = [r for p in pages for r in p.rows]
    assert victim not in {r["LIFNR"] for r in rows}
    assert sum(p.dropped for p in pages) == 1
    assert all(set(r) == {"LIFNR", "NAME1", "STCD1"} for r in rows)  # never half-joined
    assert len(rows) == 29


def test_row_inserted_between_group_fetches_is_refetched_not_half_joined() -> None:
    tab = lfa1(30)
    state = {"n": 0}
    newrow = {"MANDT": "100", "LIFNR": "0000000000", "NAME1": "New", "ORT01": "", "LAND1": "DE",
              "STCD1": "1", "LOEVM": ""}

    def hook(fake: FakeReadTable, p: dict[str, Any]) -> None:
        names = [f["FIELDNAME"] for f in p.get("FIELDS") or []]
        if "STCD1" in names:
            state["n"] += 1
            if state["n"] == 1:
                fake.tables["LFA1"].rows.append(newrow)

    fake = FakeReadTable({"LFA1": tab}, before_call=hook)
    pages = list(TableReader(fake, row_width=60).read("LFA1", ["LIFNR", "NAME1", "STCD1"],
                                                     key_fields=["LIFNR"], page_size=100))
    rows = [r for p in pages for r in p.rows]
    assert sum(p.dropped for p in pages) == 0
    assert {"LIFNR": "0000000000", "NAME1": "New", "STCD1": "1"} in rows and len(rows) == 31


def test_data_buffer_exceeded_regroups_once() -> None:
    tab = lfa1(40)
    fake = FakeReadTable({"LFA1": tab}, server_width=80)
    reader = TableReader(fake, row_width=120)
    fields = ["LIFNR", "NAME1", "ORT01", "LAND1", "STCD1"]
    rows = read_all(reader, "LFA1", fields, ["LIFNR"], page_size=15)
    assert canon(rows) == canon(expected(tab, fields))
    assert any(c.get("NO_DATA") != "X" and len(c["FIELDS"]) >= 4 for c in fake.calls)  # tried wide first


def test_data_buffer_exceeded_twice_is_clear_error() -> None:
    fake = FakeReadTable({"LFA1": lfa1(10)}, server_width=30)
    with pytest.raises(TableReadError, match="DATA_BUFFER_EXCEEDED"):
        read_all(TableReader(fake, row_width=120), "LFA1", ["LIFNR", "NAME1", "ORT01"], ["LIFNR"])


def test_field_wider_than_row_is_clear_error() -> None:
    fake = FakeReadTable({"LFA1": lfa1(3)})
    with pytest.raises(TableReadError, match=r"NAME1.*LFA1"):
        read_all(TableReader(fake, row_width=30), "LFA1", ["LIFNR", "NAME1"], ["LIFNR"])


def test_choose_function() -> None:
    tabs = {"T000": FakeTable([("MANDT", 3, "C")], [{"MANDT": "100"}])}
    assert choose_function(FakeReadTable(tabs)) == "RFC_READ_TABLE"
    assert choose_function(FakeReadTable(tabs, installed=("BBP_RFC_READ_TABLE", "RFC_READ_TABLE"))) \
        == "BBP_RFC_READ_TABLE"
    wide = FakeReadTable(tabs, installed=("/BODS/RFC_READ_TABLE", "RFC_READ_TABLE"))
    assert choose_function(wide) == "/BODS/RFC_READ_TABLE"
    reader = TableReader.auto(wide)
    assert reader.function == "/BODS/RFC_READ_TABLE" and reader.row_width == 2048


def test_probed_reader_probes_once_per_connection_and_only_when_used() -> None:
    tabs = {"T000": FakeTable([("MANDT", 3, "C")], [{"MANDT": "100"}]),
            "LFA1": FakeTable([("LIFNR", 10, "C")], [{"LIFNR": "0000100001"}, {"LIFNR": "0000100002"}])}
    wide = FakeReadTable(tabs, installed=("/BODS/RFC_READ_TABLE", "RFC_READ_TABLE"))
    seen: list[str] = []
    inner = wide.call

    def counting(fm: str, params: dict[str, Any] | None = None, *, tables: Sequence[str] = ()) -> dict[str, Any]:
        seen.append(fm)
        return inner(fm, params, tables=tables)

    wide.call = counting  # type: ignore[method-assign]
    forget_probe()
    first = TableReader.probed(wide)
    assert seen == [] and first.function == AUTO  # building a reader calls nothing
    assert [r["LIFNR"] for r in read_all(first, "LFA1", ["LIFNR"], ["LIFNR"])] == ["0000100001", "0000100002"]
    assert first.function == "/BODS/RFC_READ_TABLE" and first.row_width == 2048
    probes = len([fm for fm in seen if fm == "/BODS/RFC_READ_TABLE"]) - first.calls
    assert probes == 1
    second = TableReader.probed(wide)  # another reader on the same connection: no new probe
    read_all(second, "LFA1", ["LIFNR"], ["LIFNR"])
    assert len([fm for fm in seen if fm == "/BODS/RFC_READ_TABLE"]) == probes + first.calls + second.calls
    assert "RFC_READ_TABLE" not in seen
    narrow = FakeReadTable(tabs)  # another connection is probed on its own
    assert TableReader.probed(narrow).resolve_function() == "RFC_READ_TABLE"
    assert probed_function(wide) == "/BODS/RFC_READ_TABLE"
    forget_probe(wide)
    forget_probe()


# ----------------------------------------------------------------------------- literals and OPTIONS

def test_quote_and_alpha() -> None:
    assert quote("O'Brien") == "'O''Brien'"
    assert quote("") == "' '"
    assert alpha("100131", 10) == "0000100131"
    assert alpha(42, 4) == "0042"
    assert alpha("ABC", 10) == "ABC"
    with pytest.raises(ValueError):
        alpha("12345", 4)


def test_key_condition_compound() -> None:
    assert key_condition(["A"], ["1"], ">") == "( A > '1' )"
    assert key_condition(["A", "B"], ["1", "x"], "<=") == "( ( A < '1' ) OR ( A = '1' AND B <= 'x' ) )"


def test_wrap_options_basic() -> None:
    where = " AND ".join(f"LIFNR <> '{i:010d}'" for i in range(10)) + " AND NAME1 = 'a  b ''c'' d'"
    lines = wrap_options(where)
    assert all(len(line) <= 72 for line in lines)
    assert all(line.startswith(" ") for line in lines[1:])
    assert "NAME1 = 'a  b ''c'' d'" in "".join(lines)
    assert wrap_options("") == []
    with pytest.raises(ValueError, match="longer than 71"):
        wrap_options("NAME1 = '" + "x" * 80 + "'")
    with pytest.raises(ValueError, match="unterminated"):
        wrap_options("NAME1 = 'abc")


_ident = st.from_regex(r"[A-Z][A-Z0-9_]{0,29}", fullmatch=True)
_op = st.sampled_from(["=", "<>", "<", ">", "<=", ">=", "AND", "OR", "NOT", "(", ")", "LIKE", "EQ"])
_lit = st.text(alphabet=st.sampled_from(list("ab '|%_0 ")), max_size=40).map(
    lambda s: "'" + s.replace("'", "''") + "'")
_token = st.one_of(_ident, _op, _lit)


@settings(max_examples=300, deadline=None)
@given(tokens=st.lists(_token, max_size=60), seps=st.lists(st.sampled_from([" ", "  ", "\n", "\t "]),
                                                           min_size=60, max_size=60))
def test_property_wrap_options(tokens: list[str], seps: list[str]) -> None:
    where = "".join(t + s for t, s in zip(tokens, seps, strict=False))
    lines = wrap_options(where)
    assert all(len(line) <= 72 for line in lines)
    assert all(line.strip() for line in lines)
    # no token is ever split: each line holds whole tokens, in order
    assert [t for line in lines for t in ref_tokens(line)] == tokens
    # self-delimiting whether the server joins lines with or without a blank,
    # and even if trailing blanks are lost
    for joined in ("".join(line.rstrip() for line in lines), " ".join(lines)):
        assert ref_tokens(joined) == tokens


@settings(max_examples=200, deadline=None)
@given(lengths=st.lists(st.integers(1, 120), min_size=1, max_size=40), nkeys=st.integers(1, 3),
       width=st.integers(30, 600), dw=st.sampled_from([0, 1]))
def test_property_plan_groups(lengths: list[int], nkeys: int, width: int, dw: int) -> None:
    fields = [FieldInfo(f"F{i}", 0, ln) for i, ln in enumerate(lengths)]
    keys = [FieldInfo(f"K{i}", 0, 5 + i, is_key=True) for i in range(nkeys)]
    key_w = sum(k.length for k in keys) + dw * (nkeys - 1)
    too_wide = [f for f in fields if key_w + f.length + dw > width]
    if too_wide:
        with pytest.raises(TableReadError, match=too_wide[0].name):
            plan_groups(fields, keys, width, delimiter_width=dw, table="ZTAB")
        return
    groups = plan_groups(fields, keys, width, delimiter_width=dw, table="ZTAB")
    for g in groups:
        assert g[:nkeys] == keys
        assert sum(f.length for f in g) + dw * (len(g) - 1) <= width
    non_keys = [f.name for g in groups for f in g[nkeys:]]
    assert sorted(non_keys) == sorted(f.name for f in fields)
    assert len(non_keys) == len(set(non_keys))


def test_probe_skips_modules_the_agents_allow_list_refuses() -> None:
    from ml_connector.core.channel import ChannelError, ChannelFault
    from ml_connector.systems.sap_ecc.table_reader import choose_function

    class AgentRefuses:
        def __init__(self, fault_type: str) -> None:
            self.fault_type = fault_type
            self.seen: list[str] = []

        def call(self, fm: str, params: Any = None, *, tables: Any = ()) -> dict[str, Any]:
            self.seen.append(fm)
            raise ChannelError(ChannelFault(type=self.fault_type, key=fm, message="not in the allow-list"))

    caller = AgentRefuses("NotAllowed")
    assert choose_function(caller) == "RFC_READ_TABLE"
    assert "RFC_READ_TABLE" not in caller.seen and len(caller.seen) >= 2
    with pytest.raises(ChannelError):  # anything else is a real failure, not "not installed"
        choose_function(AgentRefuses("UnknownSystem"))
