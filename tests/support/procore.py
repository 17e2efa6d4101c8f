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
                options: dict[str, Any] | None = None, alerts_url: str | None = None,
                alert_events: list[str] | None = None) -> Env:
    """A configuration (demo mappings unless given) for the flow `ecc_to_procore`, secrets stored;
    with `alerts_url`, alerts (default events, or `alert_events`) go there as JSON."""
    sap, procore = handles["sap_ecc"].info, handles["procore"].info
    env = make_env(tmp, sap["base_url"], procore["base_url"], set_secrets=False)
    text = config_text(sap, procore, mappings=mappings, options=options)
    if alerts_url:
        text += f"alerts:\n  webhooks:\n    - {{url: {alerts_url}, format: json}}\n  backoff: 10ms\n"
        if alert_events:
            text += f"  events: [{', '.join(alert_events)}]\n"
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


def procore_client(handle: SandboxHandle, *, secret: str | None = None, limiter: Any = None) -> ProcoreClient:
    """A client on the emulator with its own in-memory token store (no runtime), drawing on `limiter`
    (the company's budget) when given."""
    client: ProcoreClient = client_for(handle.info, secret=secret, limiter=limiter)
    return client


WEBHOOK_SECRET = "procore_webhook_authorization"
WEBHOOK_PATH = "/procore/webhooks"


def enable_webhooks(env: Env, authorization: str) -> None:
    """Receive Procore's webhooks on the control plane (connection `procore`), the hook's header in the vault."""
    text = env.config.read_text()
    marker = "      client_secret_secret: " + PROCORE_SECRET + "\n"
    assert marker in text
    env.config.write_text(text.replace(marker, marker + f"    webhooks: {{path: {WEBHOOK_PATH}, "
                                                         f"authorization_secret: {WEBHOOK_SECRET}}}\n", 1))
    store_secrets(env, {WEBHOOK_SECRET: authorization})


def add_hook(client: ProcoreClient, url: str, authorization: str, resources: tuple[str, ...]) -> int:
    """A company hook to `url` sending `authorization`, triggered on create and update of `resources`
    (through the emulator's webhooks API)."""
    hook = client.request("POST", "/rest/v1.0/webhooks/hooks", json={
        "company_id": client.company_id,
        "hook": {"api_version": "v2.0", "destination_url": url,
                 "destination_headers": {"Authorization": authorization}}}).json()
    for resource in resources:
        for event_type in ("create", "update"):
            client.request("POST", f"/rest/v1.0/webhooks/hooks/{hook['id']}/triggers",
                           json={"company_id": client.company_id,
                                 "trigger": {"resource_name": resource, "event_type": event_type}})
    return int(hook["id"])


def hook_deliveries(client: ProcoreClient, hook_id: int) -> list[dict[str, Any]]:
    return list(client.iterate(f"/rest/v1.0/webhooks/hooks/{hook_id}/deliveries",
                               {"company_id": client.company_id}))


def contract_project(handles: dict[str, SandboxHandle], project_id: int) -> str:
    """The project number of a Procore project id (the emulator's state)."""
    return str(handles["procore"].state.projects[project_id]["project_number"])


def sap_project(handles: dict[str, SandboxHandle], ebeln: str, cost_centers: dict[str, str]) -> str | None:
    """The project a PO of the SAP emulator maps to: the demo mappings with `cost_centers` on top."""
    from ml_connector.flows.sap_ecc_procore import po_project

    ecc = handles["sap_ecc"].state
    items = [dict(i, _accounts=[a for a in ecc.data.rows("EKKN", ecc.client)
                                if a["EBELN"] == ebeln and a["EBELP"] == i["EBELP"]])
             for i in ecc.data.rows("EKPO", ecc.client) if i["EBELN"] == ebeln]
    maps = {**DEMO_MAPPINGS, "cost_centers": {**DEMO_MAPPINGS["cost_centers"], **cost_centers}}
    return po_project({"EBELN": ebeln, "_items": items}, lambda t, v: maps.get(t, {}).get(v))[0]


def remap_cost_center(env: Env, cost_center: str, project: str) -> None:
    """Change a cost center's project in the configuration's mapping table (the configuration's
    mappings win over ones set with `mappings set`, so a demo mapping is changed there)."""
    text = env.config.read_text()
    old = next(f'"{cost_center}": "{v}"' for k, v in DEMO_MAPPINGS["cost_centers"].items() if k == cost_center)
    assert old in text
    env.config.write_text(text.replace(old, f'"{cost_center}": "{project}"', 1), encoding="utf-8")


def set_option(env: Env, name: str, value: Any) -> None:
    """Set one of the flow's options in the configuration (written by `config_text`)."""
    import json

    text = env.config.read_text()
    marker = "    options:\n"
    assert marker in text
    env.config.write_text(text.replace(marker, marker + f"      {name}: {json.dumps(value)}\n", 1), encoding="utf-8")


#: Job-site POs only (the base seed's POs are older): each job site its own Procore project.
JOB_SITE_OPTIONS = {"po_from": "2025-06-01"}


def job_site_world(tmp: Path, sites: int, *, options: dict[str, Any] | None = None
                   ) -> tuple[dict[str, SandboxHandle], Env]:
    """Both emulators with `sites` job sites' POs in SAP (job site i → project 26-00i, the closed
    26-020 skipped), a configuration reading only those POs (plus `options`), and Procore's vendors
    synced. The caller stops the handles."""
    from ml_connector.sandbox import start_sandboxes
    from ml_connector.systems.sap_ecc.sandbox.seed_construction import seed_job_sites

    handles = start_sandboxes(systems=("sap_ecc", "procore"), vendors=300)
    try:
        ecc = handles["sap_ecc"].state
        seed_job_sites(ecc.data, ecc.client, sites=sites)
        procore_admin(handles, "/_sandbox/limits", {"spike": 100000, "hourly": 100000})
        env = procore_env(tmp, handles, options={**JOB_SITE_OPTIONS, **(options or {})})
        env.cli("sync", FLOW, "--stream", "vendors")
    except BaseException:
        for h in handles.values():
            h.stop()
        raise
    return handles, env


def hourly_budget(handles: dict[str, SandboxHandle], requests: int) -> None:
    """A fresh hourly window of `requests` in the Procore emulator (the spike window out of the way)."""
    procore_admin(handles, "/_sandbox/limits", {"hourly": requests, "hour_period": 3600, "spike": 100000,
                                                "reset": True})


def contract_projects(handles: dict[str, SandboxHandle]) -> dict[str, list[str]]:
    """Project number → origin ids of the SAP contracts in it (not those closed by a move)."""
    st = handles["procore"].state
    out: dict[str, list[str]] = {}
    with st.lock:
        for c in st.contracts.values():
            if c["origin_id"] == f"SAP-PO-{c['number']}":
                out.setdefault(str(st.projects[c["project_id"]]["project_number"]), []).append(c["origin_id"])
    return out


def active_projects(handles: dict[str, SandboxHandle], first: int, count: int) -> list[str]:
    """Project numbers of job sites first..first+count-1, in the demo mappings' order."""
    return [DEMO_MAPPINGS["cost_centers"][str(2000 + i)] for i in range(first, first + count)]


def change_job_site_po(handles: dict[str, SandboxHandle], site: int, amount: str) -> str:
    """Job site `site`'s PO changed in SAP (its first item's net value); its EBELN."""
    from ml_connector.systems.sap_ecc.sandbox.seed_logistics import change_purchase_order

    ecc = handles["sap_ecc"].state
    ebeln = str(4510000000 + site)
    change_purchase_order(ecc.data, ebeln, client=ecc.client, items={"00010": {"NETWR": amount}})
    return ebeln


def line_amount(handles: dict[str, SandboxHandle], origin_id: str, line: str) -> str | None:
    """The amount of line `line` of the SAP contract `origin_id` in the Procore emulator."""
    st = handles["procore"].state
    with st.lock:
        for c in st.contracts.values():
            if c["origin_id"] == origin_id:
                return next((str(li["amount"]) for li in c["line_items"] if li["origin_id"] == line), None)
    return None
