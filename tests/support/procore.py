"""SAP ECC → Procore: a working directory wired to both emulators, what the tests read from the
Procore emulator, and SAP records for the mapping unit tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from ml_connector.demo_ecc_procore import (
    DEMO_MAPPINGS,
    PROCORE_SECRET,
    SAP_PASSWORD_SECRET,
    client_for,
    config_text,
)
from ml_connector.sandbox import SandboxHandle
from ml_connector.systems.procore.client import ProcoreClient
from tests.support.env import Env, make_env, store_secrets

FLOW = "ecc_to_procore"


def procore_env(tmp: Path, handles: dict[str, SandboxHandle], *, mappings: dict[str, dict[str, str]] | None = None,
                options: dict[str, Any] | None = None, alerts_url: str | None = None) -> Env:
    """A configuration (demo mappings unless given) for the flow `ecc_to_procore`, secrets stored;
    with `alerts_url`, alerts (default events) go there as JSON."""
    sap, procore = handles["sap_ecc"].info, handles["procore"].info
    env = make_env(tmp, sap["base_url"], procore["base_url"], set_secrets=False)
    text = config_text(sap, procore, mappings=mappings, options=options)
    if alerts_url:
        text += f"alerts:\n  webhooks:\n    - {{url: {alerts_url}, format: json}}\n  backoff: 10ms\n"
    env.config.write_text(text, encoding="utf-8")
    store_secrets(env, {SAP_PASSWORD_SECRET: sap["password"], PROCORE_SECRET: procore["client_secret"]})
    return env


def procore_admin(handles: dict[str, SandboxHandle], path: str, body: dict[str, Any] | None = None) -> Any:
    r = httpx.post(handles["procore"].url + path, json=body or {}, timeout=10)
    r.raise_for_status()
    return r.json()


def procore_stats(handles: dict[str, SandboxHandle]) -> dict[str, Any]:
    return dict(httpx.get(handles["procore"].url + "/_sandbox/stats", timeout=10).json())


def po_record(*, ebeln: str = "4500000123", lifnr: str = "0000100042", werks: str = "1100",
              items: list[dict[str, Any]] | None = None, **head: Any) -> dict[str, Any]:
    """An SAP PO as PurchaseOrderSource reads it (EKKO + `_items` with `_accounts`)."""
    rec: dict[str, Any] = {"EBELN": ebeln, "BUKRS": "1000", "BSTYP": "F", "LOEKZ": "", "LIFNR": lifnr,
                           "ZTERM": "NT30", "WAERS": "USD", "BEDAT": "20241015", **head}
    rec["_items"] = items if items is not None else [
        {"EBELN": ebeln, "EBELP": "00010", "LOEKZ": "", "TXZ01": "Hex bolt M8x40", "MATKL": "FAST01",
         "WERKS": werks, "MENGE": "400.000", "MEINS": "ST", "NETPR": "5.00", "PEINH": "100", "NETWR": "20.00",
         "KNTTP": "", "_accounts": []},
        {"EBELN": ebeln, "EBELP": "00020", "LOEKZ": "", "TXZ01": "Forklift rental", "MATKL": "SERV03",
         "WERKS": werks, "MENGE": "10.000", "MEINS": "TAG", "NETPR": "100.00", "PEINH": "1", "NETWR": "1000.00",
         "KNTTP": "K", "_accounts": [
             {"ZEKKN": "01", "SAKTO": "0000640000", "KOSTL": "0000001610", "PS_PSP_PNR": "00000000",
              "MENGE": "6.000", "NETWR": "600.00"},
             {"ZEKKN": "02", "SAKTO": "0000630000", "KOSTL": "0000001620", "PS_PSP_PNR": "00000000",
              "MENGE": "4.000", "NETWR": "400.00"}]},
    ]
    return rec


def cost_group(*, kostl: str = "0000001610", lines: list[tuple[str, str, str, str]] | None = None,
               **head: Any) -> dict[str, Any]:
    """One document's BSEG lines on one cost center as CostLineSource reads them; lines are
    (HKONT, SHKZG, DMBTR, SGTXT)."""
    rec: dict[str, Any] = {"BUKRS": "1000", "BELNR": "0100000008", "GJAHR": "2025", "BLART": "SA",
                           "BUDAT": "20250605", "BKTXT": "Labor distribution", "XREVERSAL": "", "STBLG": "",
                           "STJAH": "", "KOSTL": kostl, **head}
    rec["_lines"] = [{"BUZEI": f"{i:03d}", "HKONT": h, "SHKZG": s, "DMBTR": a, "SGTXT": t, "KOSTL": kostl}
                     for i, (h, s, a, t) in enumerate(lines or [("0000630000", "S", "18450.00", "Crew A"),
                                                                 ("0000630000", "S", "50.00", "Crew A"),
                                                                 ("0000610000", "S", "1220.50", "Travel")], 1)]
    return rec


def demo(table: str, value: str) -> str | None:
    """The demo mappings as the flow's mapping lookup."""
    return DEMO_MAPPINGS.get(table, {}).get(value)


def without(table: str, value: str) -> Callable[[str, str], str | None]:
    """The demo mappings less one value."""
    return lambda t, v: None if (t, v) == (table, value) else demo(t, v)


def procore_client(handle: SandboxHandle, *, secret: str | None = None) -> ProcoreClient:
    """A client on the emulator with its own in-memory token store (no runtime)."""
    client: ProcoreClient = client_for(handle.info, secret=secret)
    return client
