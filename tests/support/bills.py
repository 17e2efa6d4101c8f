"""Ramp bills → SAP ECC: bills made in the Ramp sandbox, the SAP documents posted for them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from ml_connector.sandbox import SandboxHandle, start_sandboxes
from ml_connector.systems.sap_ecc.posting import xblnr_for
from tests.support.env import Env, make_env

BILLS_FLOW = "bills_to_sap"


@contextmanager
def bills_world(workdir: Path, vendors: int, *sync_args: str) -> Iterator[tuple[dict[str, SandboxHandle], Env]]:
    """SAP ECC and Ramp sandboxes with `vendors` vendors, and a working directory whose master data is
    in Ramp (`ml-connector sync vendors_to_ramp *sync_args`): where bills can be made and posted."""
    handles = start_sandboxes(vendors=vendors)
    try:
        env = make_env(workdir, handles["sap_ecc"].url, handles["ramp"].url)
        env.cli("sync", "vendors_to_ramp", *sync_args)
        yield handles, env
    finally:
        for h in handles.values():
            h.stop()


def postable_vendor(handles: dict[str, SandboxHandle], n: int = 0) -> str:
    """An SAP vendor that can be posted to in company code 1000 and is in Ramp."""
    ecc = handles["sap_ecc"].state
    in_ramp = set(handles["ramp"].state.vendors.by_remote)
    lfa1 = {r["LIFNR"]: r for r in ecc.data.rows("LFA1", ecc.client)}
    ok = sorted(r["LIFNR"] for r in ecc.data.rows("LFB1", ecc.client)
                if r["BUKRS"] == "1000" and not r.get("LOEVM") and not r.get("SPERR")
                and not lfa1[r["LIFNR"]].get("SPERR") and not lfa1[r["LIFNR"]].get("LOEVM")
                and r["LIFNR"] in in_ramp)
    return ok[n]


def add_bill(env: Env, vendor: str, lines: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    body = {"vendor": vendor, "invoice_number": kw.pop("invoice_number", "INV-1"), "currency": "USD",
            "issued_at": "2025-06-15", "due_at": "2025-07-15", "line_items": lines, **kw}
    r = httpx.post(f"{env.ramp_url}/_sandbox/bills", json=body, timeout=30)
    assert r.status_code == 201, r.text
    return dict(r.json())


def ramp_bill(env: Env, bill_id: str) -> dict[str, Any]:
    bills = httpx.get(f"{env.ramp_url}/_sandbox/state/bills", timeout=30).json()["bills"]
    return next(b for b in bills if b["id"] == bill_id)


def sap_documents(handles: dict[str, SandboxHandle], bill_id: str) -> list[dict[str, Any]]:
    ecc = handles["sap_ecc"].state
    x = xblnr_for(bill_id, "RMP")
    return [r for r in ecc.data.rows("BKPF", ecc.client) if r.get("XBLNR") == x]


def sap_lines(handles: dict[str, SandboxHandle], doc: dict[str, Any]) -> list[dict[str, Any]]:
    ecc = handles["sap_ecc"].state
    return [r for r in ecc.data.rows("BSEG", ecc.client)
            if (r["BUKRS"], r["BELNR"], r["GJAHR"]) == (doc["BUKRS"], doc["BELNR"], doc["GJAHR"])]


def bill_failures(env: Env) -> list[dict[str, Any]]:
    return list(json.loads(env.cli("failures", "--json", "--flow", BILLS_FLOW).stdout))


def pay_bill(env: Env, bill_id: str, **spec: Any) -> dict[str, Any]:
    r = httpx.post(f"{env.ramp_url}/_sandbox/bills/{bill_id}/pay", json=spec, timeout=30)
    assert r.status_code == 200, r.text
    return dict(r.json())


def reject_bill(env: Env, bill_id: str, reason: str = "duplicate invoice") -> dict[str, Any]:
    r = httpx.post(f"{env.ramp_url}/_sandbox/bills/{bill_id}/reject", json={"reason": reason}, timeout=30)
    assert r.status_code == 200, r.text
    return dict(r.json())


def vendor_items(handles: dict[str, SandboxHandle], doc: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The document's vendor items: {"open": BSIK rows, "cleared": BSAK rows}."""
    ecc = handles["sap_ecc"].state
    key = (doc["BUKRS"], doc["BELNR"], doc["GJAHR"])
    return {name: [r for r in ecc.data.rows(table, ecc.client) if (r["BUKRS"], r["BELNR"], r["GJAHR"]) == key]
            for name, table in (("open", "BSIK"), ("cleared", "BSAK"))}


def sap_document(handles: dict[str, SandboxHandle], bukrs: str, belnr: str, gjahr: str) -> dict[str, Any] | None:
    ecc = handles["sap_ecc"].state
    return next((r for r in ecc.data.rows("BKPF", ecc.client)
                 if (r["BUKRS"], r["BELNR"], r["GJAHR"]) == (bukrs, belnr, gjahr)), None)


def set_flow_options(env: Env, flow: str, options: dict[str, Any]) -> None:
    """Give `flow` these options in the environment's configuration (replacing any it had)."""
    lines = env.config.read_text(encoding="utf-8").splitlines()
    out: list[str] = []
    inside = False
    for ln in lines:
        if ln.startswith(f"  {flow}:"):
            inside = True
            out.append(ln)
            out.append(f"    options: {json.dumps(options)}")
            continue
        if inside and ln.startswith("  ") and not ln.startswith("    "):
            inside = False
        if inside and ln.startswith("    options:"):
            continue
        out.append(ln)
    env.config.write_text("\n".join(out) + "\n", encoding="utf-8")


def create_cost_center(handles: dict[str, SandboxHandle], bukrs: str, kostl: str, text: str,
                       valid_from: str = "20200101") -> None:
    """What a controller does in KS01: a cost center (CSKS, CSKT) in the SAP sandbox."""
    ecc = handles["sap_ecc"].state
    key = kostl.zfill(10)
    ecc.data.insert("CSKS", {"KOKRS": bukrs, "KOSTL": key, "DATBI": "99991231", "DATAB": valid_from, "BUKRS": bukrs,
                             "KOSAR": "F", "VERAK": "Controller " + bukrs, "WAERS": "USD", "ERSDA": valid_from,
                             "USNAM": "KS01"}, ecc.client)
    ecc.data.insert("CSKT", {"SPRAS": "E", "KOKRS": bukrs, "KOSTL": key, "DATBI": "99991231", "KTEXT": text[:20],
                             "LTEXT": text[:40], "MCTXT": text[:20].upper()}, ecc.client)


def with_alerts_and_schedule(text: str, receiver_url: str, flow: str, interval: str) -> str:
    """The configuration `text` with record.parked alerts to `receiver_url` and `flow` polled every `interval`."""
    lines = text.splitlines()
    out, inside = [], False
    for ln in lines:
        if ln.startswith(f"  {flow}:"):
            inside = True
        elif inside and ln.startswith("  ") and not ln.startswith("    "):
            inside = False
        if inside and ln.startswith("    schedule:"):
            ln = f"    schedule: {{interval: {interval}}}"
        out.append(ln)
    return "\n".join(out) + (f"\nalerts:\n  webhooks:\n    - {{url: {receiver_url}/ops}}\n"
                             "  events: [record.parked]\n  backoff: 10ms\n")


def with_ramp_webhooks(text: str) -> str:
    """The configuration `text` with the Ramp connection's webhook intake (`/webhooks/ramp`) switched on."""
    marker = "    # limits: {requests: 200, period: 10s}"
    assert marker in text
    return text.replace(marker, "    webhooks: {}\n" + marker, 1)


def sandbox_state(env: Env, name: str) -> list[dict[str, Any]]:
    return list(httpx.get(f"{env.ramp_url}/_sandbox/state/{name}", timeout=30).json()[name])


def edit_bill(env: Env, bill_id: str, **spec: Any) -> dict[str, Any]:
    """Edit a bill in the Ramp sandbox (also after it was synced), as a user does in Ramp."""
    r = httpx.patch(f"{env.ramp_url}/_sandbox/bills/{bill_id}", json=spec, timeout=30)
    assert r.status_code == 200, r.text
    return dict(r.json())


def review_items(env: Env, flow: str = BILLS_FLOW) -> list[dict[str, Any]]:
    return list(json.loads(env.cli("review", "--flow", flow, "--json").stdout))


def all_sap_documents(handles: dict[str, SandboxHandle]) -> int:
    ecc = handles["sap_ecc"].state
    return len(ecc.data.rows("BKPF", ecc.client))


def ramp_switch(env: Env, **switches: Any) -> None:
    """Set Ramp sandbox switches (`POST /_sandbox/faults`)."""
    r = httpx.post(f"{env.ramp_url}/_sandbox/faults", json=switches, timeout=30)
    assert r.status_code == 200, r.text


def ramp_purchase_order(handles: dict[str, SandboxHandle], ebeln: str,
                        lines: list[tuple[str, int, str]]) -> dict[str, Any]:
    """A purchase order in the Ramp sandbox that mirrors SAP PO `ebeln`: lines (EBELP, quantity, unit price)."""
    return dict(handles["ramp"].state.create_purchase_order({
        "purchase_order_number": ebeln, "remote_id": ebeln, "currency": "USD",
        "line_items": [{"remote_id": p, "unit_quantity": q, "unit_price": price, "description": f"item {p}"}
                       for p, q, price in lines]}))


def mm_invoices(handles: dict[str, SandboxHandle], bill_id: str) -> list[dict[str, Any]]:
    """The SAP MM invoices (RBKP) posted for a Ramp bill (its XBLNR)."""
    ecc = handles["sap_ecc"].state
    x = xblnr_for(bill_id, "RMP")
    return [r for r in ecc.data.rows("RBKP", ecc.client) if r.get("XBLNR") == x]


def add_po_bill(handles: dict[str, SandboxHandle], env: Env, vendor: str, items: list[tuple[int, str]],
                amounts: list[str], invoice_number: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A PO-based bill: a purchase order in SAP (ME21N) with `items` (quantity, net price), the same PO in
    Ramp, and a Ramp bill whose line n is invoiced against PO item n for `amounts[n]`. Returns (bill, Ramp PO)."""
    from ml_connector.systems.sap_ecc.sandbox.seed_logistics import create_purchase_order

    ecc = handles["sap_ecc"].state
    ebeln = create_purchase_order(ecc.data, bukrs="1000", lifnr=vendor, client=ecc.client, bedat="20250601",
                                  items=[{"menge": q, "netpr": p, "txz01": f"item {n}"}
                                         for n, (q, p) in enumerate(items, start=1)])
    po = ramp_purchase_order(handles, ebeln, [(str(10 * n).zfill(5), q, p)
                                              for n, (q, p) in enumerate(items, start=1)])
    lines = [{"amount": a, "memo": f"PO line {n}", "purchase_order_line_item_id": po["line_items"][n - 1]["id"]}
             for n, a in enumerate(amounts, start=1)]
    return add_bill(env, vendor, lines, purchase_order_id=po["id"], invoice_number=invoice_number), po
