"""Logistics reads over real HTTP (SOAP-RFC) against the ECC sandbox: the wide read module chosen
by probing needs fewer calls, and every release-behaviour switch combination yields the same rows."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

sandbox_app = pytest.importorskip("ml_connector.systems.sap_ecc.sandbox.app")

from ml_connector.core.ratelimit import reset_budgets  # noqa: E402
from ml_connector.core.servers import ServerHandle, serve_in_thread  # noqa: E402
from ml_connector.systems.sap_ecc.table_reader import TableReader, choose_function  # noqa: E402
from tests.support.ecc_reads import quiet_read_client  # noqa: E402

USER, PASSWORD = sandbox_app.DEMO_USER, sandbox_app.DEMO_PASSWORD


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Any, ServerHandle]]:
    state = sandbox_app.EccSandbox(vendors=300, seed=11)
    handle = serve_in_thread(sandbox_app.create_app(state), name="ecc-sandbox-reads")
    try:
        yield state, handle
    finally:
        handle.stop()


@pytest.fixture()
def state(server: tuple[Any, ServerHandle]) -> Iterator[Any]:
    st, _ = server
    reset_budgets()
    saved = dict(st.config.__dict__)
    saved["installed_modules"] = set(st.config.installed_modules)
    yield st
    st.config.__dict__.update(saved)


def test_wide_module_is_chosen_and_needs_fewer_calls(server: tuple[Any, ServerHandle], state: Any) -> None:
    where = "KUNNR BETWEEN '0000200001' AND '0000200060'"
    narrow = TableReader(quiet_read_client(server))
    assert choose_function(narrow.caller) == "RFC_READ_TABLE"
    rows_narrow = [r for p in narrow.read("KNA1", key_fields=["KUNNR"], where=where, page_size=20) for r in p.rows]
    state.config.installed_modules = {"BBP_RFC_READ_TABLE", "/BODS/RFC_READ_TABLE"}
    wide = TableReader.auto(quiet_read_client(server))
    assert wide.function == "/BODS/RFC_READ_TABLE" and wide.row_width == 2048
    assert wide.calls == 0  # the probe of choose_function is not a table read
    rows_wide = [r for p in wide.read("KNA1", key_fields=["KUNNR"], where=where, page_size=20) for r in p.rows]
    assert rows_wide == rows_narrow and len(rows_wide) == 60
    assert len(rows_wide[0]) == len(narrow.describe("KNA1"))  # full width: KNA1 is > 512 characters
    # per window: RFC_READ_TABLE needs a key probe + 2 column groups, /BODS/ a key probe + 1
    assert wide.calls < narrow.calls, (wide.calls, narrow.calls)
    state.config.installed_modules = {"BBP_RFC_READ_TABLE"}
    assert choose_function(quiet_read_client(server)) == "BBP_RFC_READ_TABLE"


SWITCHES = list(itertools.product(("classic", "class_based"), (False, True), ("iso", "internal"), (False, True),
                                  (False, True)))


def test_reader_copes_with_every_release_variant(server: tuple[Any, ServerHandle], state: Any) -> None:
    """release_variant x return_undeclared_tables x date_output x trim_trailing_blanks x
    packed_trailing_minus: identical rows (KNKK: CURR15,2 with negative SKFOR, DATS fields)."""
    where = "KKBER = '3000'"
    fields = ["KLIMK", "SKFOR", "CTLPC", "CRBLB", "ERDAT", "AEDAT", "NXTRV", "KNKLI"]
    results = []
    for variant, undeclared, date_output, trim, minus_last in SWITCHES:
        state.config.release_variant = variant
        state.config.return_undeclared_tables = undeclared
        state.config.date_output = date_output
        state.config.trim_trailing_blanks = trim
        state.config.packed_trailing_minus = minus_last
        reader = TableReader(quiet_read_client(server))
        rows = [r for p in reader.read("KNKK", fields, key_fields=["KUNNR", "KKBER"], where=where, page_size=200)
                for r in p.rows]
        results.append(rows)
    first = results[0]
    assert first and all(r == first for r in results)
    assert any(Decimal(r["SKFOR"]) < 0 for r in first)
    expected = {r["KUNNR"]: r for r in state.data.rows("KNKK", "100") if r["KKBER"] == "3000"}
    assert {r["KUNNR"] for r in first} == set(expected)
    for r in first:
        e = expected[r["KUNNR"]]
        assert Decimal(r["SKFOR"]) == Decimal(e["SKFOR"]) and r["AEDAT"] == (e.get("AEDAT") or "00000000")
