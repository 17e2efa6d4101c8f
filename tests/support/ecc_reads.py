"""SAP ECC reads against the sandbox over HTTP: clients and what the emulator's tables should show."""

from __future__ import annotations

from typing import Any

import pytest

from ml_connector.core.servers import ServerHandle
from ml_connector.systems.sap_ecc.client import SoapRfcClient
from ml_connector.systems.sap_ecc.sandbox.app import DEMO_PASSWORD as PASSWORD
from ml_connector.systems.sap_ecc.sandbox.app import DEMO_USER as USER


def read_client(server: tuple[Any, ServerHandle], **kw: Any) -> SoapRfcClient:
    _, handle = server
    sleeps: list[float] = []
    opts: dict[str, Any] = {"sleep": sleeps.append, "calls_per_second": 50, "timeout": 10.0}
    opts.update(kw)
    return SoapRfcClient(handle.url, "100", opts.pop("user", USER), opts.pop("password", PASSWORD), **opts)


def expected_lfa1(state: Any, fields: list[str]) -> dict[str, dict[str, str]]:
    """The emulator's rows as RFC_READ_TABLE shows them: missing fields at their DDIC initial value."""
    ddic = pytest.importorskip("ml_connector.systems.sap_ecc.sandbox.ddic").table("LFA1")

    def value(row: dict[str, Any], name: str) -> str:
        f = ddic.field(name)
        v = row.get(name)
        # [:leng]: some generated values (upper-cased 'ß' -> 'SS') exceed the DDIC length; a real
        # table could not hold them, and RFC_READ_TABLE shows LENG characters.
        return (f.initial() if v in (None, "") else str(v))[: f.leng].rstrip()

    return {r["LIFNR"]: {f: value(r, f) for f in fields} for r in state.data.rows("LFA1", "100")}


def quiet_read_client(server: tuple[Any, ServerHandle]) -> SoapRfcClient:
    return SoapRfcClient(server[1].url, "100", USER, PASSWORD, sleep=lambda _s: None, calls_per_second=50,
                         timeout=10.0)
