"""SoapRfcClient + TableReader over real HTTP against the ECC sandbox emulator."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

sandbox_app = pytest.importorskip("ml_connector.systems.sap_ecc.sandbox.app")

from ml_connector.core.channel import InProcessChannel  # noqa: E402
from ml_connector.core.ratelimit import reset_budgets  # noqa: E402
from ml_connector.core.servers import ServerHandle, serve_in_thread  # noqa: E402
from ml_connector.systems.sap_ecc.client import ChannelRfcCaller, make_handler  # noqa: E402
from ml_connector.systems.sap_ecc.errors import (  # noqa: E402
    ABAPApplicationError,
    CommunicationError,
    LogonError,
)
from ml_connector.systems.sap_ecc.table_reader import TableReader, choose_function  # noqa: E402
from tests.support.ecc_reads import expected_lfa1, read_client  # noqa: E402

EccSandbox = sandbox_app.EccSandbox
create_app = sandbox_app.create_app
USER, PASSWORD = sandbox_app.DEMO_USER, sandbox_app.DEMO_PASSWORD


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Any, ServerHandle]]:
    state = EccSandbox(vendors=1500, seed=7)
    handle = serve_in_thread(create_app(state), name="ecc-sandbox")
    try:
        yield state, handle
    finally:
        handle.stop()


@pytest.fixture()
def sandbox(server: tuple[Any, ServerHandle]) -> Iterator[Any]:
    state, _ = server
    reset_budgets()
    yield state
    state.faults.reset()
    state.config.shuffle = False
    state.config.arbitrary_subset = False
    state.config.installed_modules = set()


@pytest.mark.parametrize("arbitrary", [False, True])
def test_read_all_lfa1_rows_exactly_once(server: tuple[Any, ServerHandle], sandbox: Any,
                                          arbitrary: bool) -> None:
    sandbox.config.shuffle = arbitrary
    sandbox.config.arbitrary_subset = arbitrary
    client = read_client(server)
    reader = TableReader(client)
    fields = [f.name for f in reader.describe("LFA1")]
    rows: list[dict[str, str]] = []
    for page in reader.read("LFA1", None, key_fields=["LIFNR"], page_size=400):
        assert len(page.rows) <= 400 and page.dropped == 0
        rows.extend(page.rows)
    got = [r["LIFNR"] for r in rows]
    want = expected_lfa1(sandbox, fields)
    assert len(got) == len(set(got)) == len(want) == 1500
    assert {r["LIFNR"]: r for r in rows} == want


def test_read_with_where_through_agent_channel(server: tuple[Any, ServerHandle], sandbox: Any) -> None:
    sandbox.config.shuffle = True
    sandbox.config.arbitrary_subset = True
    channel = InProcessChannel()
    channel.register("ecc", make_handler(read_client(server)))
    reader = TableReader(ChannelRfcCaller(channel, "ecc"))
    rows = [r for p in reader.read("LFA1", ["LIFNR", "NAME1", "LAND1"], key_fields=["LIFNR"],
                                   where="LAND1 = 'DE'", page_size=97) for r in p.rows]
    everything = expected_lfa1(sandbox, ["LIFNR", "NAME1", "LAND1"])
    want = {k: v for k, v in everything.items() if v["LAND1"] == "DE"}
    assert len(want) > 0
    assert len(rows) == len({r["LIFNR"] for r in rows})
    assert {r["LIFNR"]: r for r in rows} == want


@pytest.mark.parametrize("shape", ["detail", "detail_name_only", "faultstring_only"])
def test_table_not_available_every_fault_shape(server: tuple[Any, ServerHandle], sandbox: Any,
                                               shape: str) -> None:
    sandbox.config.exception_shape = shape
    try:
        with pytest.raises(ABAPApplicationError) as ei:
            TableReader(read_client(server)).describe("T008X")
    finally:
        sandbox.config.exception_shape = "detail"
    assert ei.value.key == "TABLE_NOT_AVAILABLE"


def test_logon_failure(server: tuple[Any, ServerHandle], sandbox: Any) -> None:
    client = read_client(server, password="wrong")
    with pytest.raises(LogonError) as ei:
        client.ping()
    assert "100" in str(ei.value) and "wrong" not in str(ei.value)


def test_ping_system_info_and_function_choice(server: tuple[Any, ServerHandle], sandbox: Any) -> None:
    client = read_client(server)
    assert client.ping() >= 0
    info = client.system_info()
    assert info.get("RFCSYSID") == sandbox.config.sid
    assert choose_function(client) == "RFC_READ_TABLE"
    sandbox.config.installed_modules = {"/BODS/RFC_READ_TABLE"}
    reader = TableReader.auto(client)
    assert reader.function == "/BODS/RFC_READ_TABLE" and reader.row_width == 2048
    rows = [r for p in reader.read("LFA1", ["LIFNR", "NAME1"], key_fields=["LIFNR"], page_size=500)
            for r in p.rows]
    assert len(rows) == 1500


@pytest.mark.parametrize("kind", ["system_failure", "http_500", "drop"])
def test_transient_faults_retried_for_reads(server: tuple[Any, ServerHandle], sandbox: Any,
                                            kind: str) -> None:
    sandbox.faults.update(fail_next=2, fail_kind=kind)
    sleeps: list[float] = []
    client = read_client(server, sleep=sleeps.append)
    assert client.call("RFC_PING") == {}
    assert sandbox.faults.fail_next == 0 and len(sleeps) == 2


def test_dropped_connection_for_non_idempotent_is_uncertain(server: tuple[Any, ServerHandle],
                                                            sandbox: Any) -> None:
    sandbox.faults.update(fail_next=1, fail_kind="drop")
    client = read_client(server, idempotent_functions=[])
    with pytest.raises(CommunicationError) as ei:
        client.call("STFC_CONNECTION", {"REQUTEXT": uuid.uuid4().hex})
    assert ei.value.uncertain
