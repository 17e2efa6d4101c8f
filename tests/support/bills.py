"""Ramp bills → SAP ECC: bills made in the Ramp sandbox, the SAP documents posted for them."""

from __future__ import annotations

import json
from typing import Any

import httpx

from ml_connector.sandbox import SandboxHandle
from ml_connector.systems.sap_ecc.posting import xblnr_for
from tests.support.env import Env

BILLS_FLOW = "bills_to_sap"


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
