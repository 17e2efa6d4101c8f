"""PyRFC transport: error mapping with a fake `pyrfc` module, the missing-SDK error, transport choice."""

from __future__ import annotations

import json
import sys
import time
import types
from collections.abc import Iterator
from typing import Any

import pytest

from ml_connector.core import calls
from ml_connector.core.db import Database
from ml_connector.systems.sap_ecc import errors
from ml_connector.systems.sap_ecc.connector import build_client, pyrfc_target
from ml_connector.systems.sap_ecc.pyrfc_transport import PyRfcClient, PyRfcNotInstalled, map_pyrfc_error
from tests.support.databases import audit_rows
from tests.support.pyrfc_fake import fake_pyrfc


@pytest.fixture
def pyrfc(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    mod = fake_pyrfc()
    monkeypatch.setitem(sys.modules, "pyrfc", mod)
    yield mod


def test_missing_pyrfc_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyrfc", None)  # makes `import pyrfc` raise ImportError
    with pytest.raises(PyRfcNotInstalled) as exc:
        PyRfcClient("10.0.0.1", "00", "100", "U", "P")
    text = str(exc.value)
    assert "SAP NW RFC SDK 7.50" in text and "SAP Support Portal" in text and "pip install pyrfc" in text
    assert isinstance(exc.value, ImportError)


def test_call_passes_params_and_maps_errors(pyrfc: types.ModuleType) -> None:
    c = PyRfcClient("sap.example", 1, "100", "RFC_USER", "secret", config={"timeout": 5})
    assert pyrfc.Connection.last_params == {"ashost": "sap.example", "sysnr": "01", "client": "100",
                                            "user": "RFC_USER", "passwd": "secret", "lang": "EN",
                                            "config": {"timeout": 5}}
    assert c.call("STFC_CONNECTION", {"REQUTEXT": "hi", "__tables__": ["X"]}, tables=["DATA"]) == \
        {"ECHOTEXT": "hi", "DATA": []}
    with pytest.raises(errors.ABAPApplicationError) as app:
        c.call("RFC_READ_TABLE", {"QUERY_TABLE": "T008X"})
    e = app.value
    assert (e.code, e.key, e.message, e.msg_class, e.msg_type, e.msg_number, e.msg_v1) == (
        5, "TABLE_NOT_AVAILABLE", "ID:SV Type:E Number:029 T008X", "SV", "E", "029", "T008X")
    assert e.to_fault().type == "ABAPApplicationError"
    with pytest.raises(errors.ABAPRuntimeError) as rt:
        c.call("Z_DIVIDE")
    assert rt.value.key == "COMPUTE_INT_ZERODIVIDE" and rt.value.code == 3
    with pytest.raises(errors.CommunicationError) as comm:
        c.call("Z_DROP")
    assert comm.value.uncertain is True and comm.value.retriable is True
    with pytest.raises(errors.ExternalRuntimeError) as ext:
        c.call("Z_BAD")
    assert ext.value.code == 20
    with pytest.raises(errors.RfcError) as other:
        c.call("Z_OTHER")
    assert type(other.value) is errors.RfcError and other.value.key == "RFCError"
    c.ping()
    c.close()


def test_logon_error_on_connect(pyrfc: types.ModuleType) -> None:
    with pytest.raises(errors.LogonError) as exc:
        PyRfcClient("h", "00", "100", "U", "wrong")
    assert exc.value.key == "RFC_LOGON_FAILURE" and "incorrect" in exc.value.message


def test_map_by_name_through_subclasses() -> None:
    class ABAPApplicationError(Exception):
        key = "FU_NOT_FOUND"
        message = "ID:FL Type:E Number:046 undefined"

    class Sub(ABAPApplicationError):
        pass

    mapped = map_pyrfc_error(Sub())
    assert isinstance(mapped, errors.ABAPApplicationError) and mapped.key == "FU_NOT_FOUND"


def test_connector_selects_transport(pyrfc: types.ModuleType) -> None:
    from ml_connector.systems.sap_ecc.settings import SapEccConnection

    base = {"type": "sap_ecc", "base_url": "http://sapecd:8001", "client": "100",
            "auth": {"username": "RFC_USER", "password_secret": "sap-password"}}
    rt = types.SimpleNamespace(vault=types.SimpleNamespace(get=lambda name: "pw"))
    soap = SapEccConnection.model_validate(base)
    assert soap.transport == "soap_rfc" and soap.odata is None
    assert type(build_client(rt, "sap", soap)).__name__ == "SoapRfcClient"
    native = SapEccConnection.model_validate({**base, "transport": "pyrfc",
                                              "odata": {"vendors": "/sap/opu/odata/sap/ZMLC_VENDOR_SRV"}})
    client = build_client(rt, "sap", native)
    assert isinstance(client, PyRfcClient) and (client.ashost, client.sysnr) == ("sapecd", "01")
    assert client.calls_as == "sapecd:8001"  # a run's calls are named after the connection (core/calls.py)
    with pytest.raises(ValueError):
        SapEccConnection.model_validate({**base, "transport": "rfc"})
    assert pyrfc_target("https://sap.example:44302") == ("sap.example", "02")
    assert pyrfc_target("http://sap.example:50100") == ("sap.example", "01")
    assert pyrfc_target("http://sap.example") == ("sap.example", "00")


def test_native_values_come_back_in_the_soap_clients_character_form(pyrfc: types.ModuleType) -> None:
    c = PyRfcClient("sap.example", "00", "100", "U", "P")
    out = c.call("Z_NATIVE")
    assert out == {"DATE": "20260301", "TIME": "090507", "AMOUNT": "-12.50", "COUNT": "7", "RAW": "01AB",
                   "FLAG": "X", "ROWS": [{"WRBTR": "1.00", "BUDAT": "20260131"}]}
    json.dumps(out)  # JSON-safe: it can travel through the agent channel


def test_system_failure_is_retried_for_reads_and_uncertain_for_postings(pyrfc: types.ModuleType) -> None:
    sleeps: list[float] = []
    c = PyRfcClient("sap.example", "00", "100", "U", "P", sleep=sleeps.append, calls_per_second=50)
    pyrfc.Connection.dumps_left = 2
    assert c.call("RFC_READ_TABLE", {"QUERY_TABLE": "LFA1"})["DATA"] == []
    assert len(sleeps) == 2 and all(0 <= s <= c.policy.backoff_max for s in sleeps)
    pyrfc.Connection.dumps_left = 1
    with pytest.raises(errors.ABAPRuntimeError) as exc:
        c.call("Z_MLC_ACC_DOCUMENT_POST", {"QUERY_TABLE": "x"})
    assert exc.value.uncertain is True  # resolved by the BKPF lookup, never posted again blindly
    assert len(sleeps) == 2


def test_pyrfc_calls_share_the_per_system_budget(pyrfc: types.ModuleType) -> None:
    from ml_connector.core.ratelimit import reset_budgets

    reset_budgets()
    a = PyRfcClient("sap.example", "00", "100", "U", "P", calls_per_second=10, max_concurrency=3)
    b = PyRfcClient("sap.example", "00", "100", "V", "Q", calls_per_second=10, max_concurrency=3)
    assert a.policy._limiter is b.policy._limiter and a.policy._cap is b.policy._cap
    assert a.policy._cap.limit == 3
    with pytest.raises(ValueError, match="between 10 and 50"):
        PyRfcClient("sap.example", "00", "100", "U", "P", calls_per_second=60)
    start = time.monotonic()
    for i in range(12):
        (a if i % 2 else b).call("STFC_CONNECTION", {"REQUTEXT": "x"})
    assert time.monotonic() - start >= 0.9  # the 11th call waits for the 1 s window


def test_agent_serves_a_system_configured_for_pyrfc(pyrfc: types.ModuleType, tmp_path: Any) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ml_connector.agent.config import AgentConfig
    from ml_connector.agent.runner import Agent, Identity

    cfg = AgentConfig.model_validate({
        "control_plane": "http://cp", "data_dir": str(tmp_path), "systems": {"sap_ecc": {
            "base_url": "http://sapecd:8001", "transport": "pyrfc", "user": "RFC_USER",
            "password_secret": "sap_pw", "allow": {"functions": ["Z_NATIVE"]}}}})
    ident = Identity(agent_id="agt_1", site="s", control_plane="http://cp", control_plane_public_key="",
                     key=Ed25519PrivateKey.generate())
    vault = types.SimpleNamespace(get=lambda name: {"sap_pw": "pw"}[name])
    agent = Agent(cfg, ident, vault=vault)
    out = agent.execute({"id": "c1", "system": "sap_ecc", "function": "Z_NATIVE", "params": {}})
    assert out.ok and out.result["DATE"] == "20260301"
    assert pyrfc.Connection.last_params["ashost"] == "sapecd" and pyrfc.Connection.last_params["sysnr"] == "01"
    refused = agent.execute({"id": "c2", "system": "sap_ecc", "function": "RFC_READ_TABLE", "params": {}})
    assert not refused.ok


def test_each_attempt_is_one_of_the_runs_calls(pyrfc: types.ModuleType, db: Database) -> None:
    calls.drain()  # counts an earlier test left waiting in this process are not this one's
    c = PyRfcClient("sapecd", "01", "100", "U", "P", sleep=lambda s: None, calls_as="sapecd:8001")
    pyrfc.Connection.dumps_left = 2  # two SYSTEM_FAILUREs, then the answer: three attempts
    with calls.counting(db, "run-1", "f", "s", "page"):
        c.call("RFC_READ_TABLE", {"QUERY_TABLE": "LFA1"})
    assert [r.detail["calls"] for r in audit_rows(db, calls.EVENT)] == [{"sapecd:8001": 3}]
