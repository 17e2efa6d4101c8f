"""`make demo`, part two: the Ramp bill round trip against the sandboxes.

A manufacturer with three plants (cost centers 1000, 1610, 1620 of company code 1000) approves a bill
for each plant in Ramp; they post into SAP as vendor invoices at the plant's cost center and G/L
account. Then one is paid in Ramp (the SAP invoice is cleared, payment date and reference kept, the
payment reported back to Ramp) and one rejected (the SAP invoice is blocked for payment). A fourth
bill names a cost center SAP does not have yet: it parks (a `record.parked` alert where alerts are
configured); the controller creates the cost center in SAP, and the next poll posts the bill, with
no replay. The poll is what the worker's schedule (or a Ramp webhook) runs; the demo runs it twice.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

BILLS_FLOW = "bills_to_sap"
MASTER_FLOW = "vendors_to_ramp"
#: What the bill streams call in SAP through the agent (besides RFC_READ_TABLE).
AGENT_FUNCTIONS = ["Z_MLC_ACC_DOCUMENT_POST", "BAPI_ACC_DOCUMENT_CHECK", "Z_MLC_CLEAR_VENDOR_ITEMS",
                   "Z_MLC_SET_PAYMENT_BLOCK", "Z_MLC_ACC_DOCUMENT_REVERSE",
                   "Z_MLC_INCOMINGINVOICE_CREATE", "Z_MLC_INCOMINGINVOICE_CANCEL"]  # PO-based bills (MM invoices)
AGENT_TABLES = ["T001", "T001B", "LFB1", "SKB1", "CSKS", "BKPF", "BSIK", "BSAK",
                "EKKO", "EKPO", "RBKP", "RSEG"]  # PO-based bills: the PO check and the invoice lookup
#: (plant, cost center, G/L account, amount, memo)
PLANT_BILLS = [("1000", "0000001000", "0000600000", "1840.00", "Spare parts, plant 1000"),
               ("1100", "0000001610", "0000610000", "925.50", "Maintenance, plant 1100 (Production NJ)"),
               ("1200", "0000001620", "0000620000", "310.00", "Pallets, plant 1200 (Warehouse Chicago)")]


def postable_vendors(handles: dict[str, Any]) -> list[str]:
    """The SAP vendors of company code 1000, not blocked or deleted, that the vendor sync put into Ramp
    (the demo's bills and bench/ramp_bills.py post on them)."""
    ecc = handles["sap_ecc"].state
    in_ramp = set(handles["ramp"].state.vendors.by_remote)
    lfa1 = {r["LIFNR"]: r for r in ecc.data.rows("LFA1", ecc.client)}
    ok = sorted(r["LIFNR"] for r in ecc.data.rows("LFB1", ecc.client)
                if r["BUKRS"] == "1000" and not r.get("LOEVM") and not r.get("SPERR") and r["LIFNR"] in in_ramp
                and not lfa1[r["LIFNR"]].get("SPERR") and not lfa1[r["LIFNR"]].get("LOEVM"))
    if not ok:
        raise RuntimeError("no vendor of company code 1000 in Ramp: the vendor sync must run first")
    return ok


def _vendor(handles: dict[str, Any]) -> str:
    """An SAP vendor of company code 1000 that the vendor sync put into Ramp (postable)."""
    return postable_vendors(handles)[0]


def _new_cost_center(handles: dict[str, Any]) -> str:
    """A cost center number SAP does not have (the demo's data persist between runs)."""
    ecc = handles["sap_ecc"].state
    have = {r["KOSTL"] for r in ecc.data.rows("CSKS", ecc.client)}
    return next(f"{n:010d}" for n in range(9001, 9999) if f"{n:010d}" not in have)


def _poll(rt: Any) -> dict[str, dict[str, Any]]:
    """One poll of the bill streams (what the schedule runs), quietly: counts per stream."""
    from ml_connector.core import engine

    out = {}
    for stream in rt.config.flows[BILLS_FLOW].streams:
        out[stream] = engine.wait(engine.start_sync(BILLS_FLOW, stream))
    return out


def _sap_state(handles: dict[str, Any], bill_id: str) -> tuple[str, str]:
    """(document, status) of the bill's SAP invoice, read from the sandbox's tables."""
    from ml_connector.systems.sap_ecc.posting import xblnr_for

    ecc = handles["sap_ecc"].state
    docs = [r for r in ecc.data.rows("BKPF", ecc.client) if r.get("XBLNR") == xblnr_for(bill_id, "RMP")]
    if not docs:
        return "-", "not posted"
    d = min(docs, key=lambda r: r["BELNR"])
    key = (d["BUKRS"], d["BELNR"], d["GJAHR"])
    open_ = [r for r in ecc.data.rows("BSIK", ecc.client) if (r["BUKRS"], r["BELNR"], r["GJAHR"]) == key]
    cleared = [r for r in ecc.data.rows("BSAK", ecc.client) if (r["BUKRS"], r["BELNR"], r["GJAHR"]) == key]
    if d.get("STBLG"):
        status = f"reversed by {d['STBLG']}"
    elif cleared:
        status = f"paid: cleared by {cleared[0]['AUGBL']} on {cleared[0]['AUGDT']}"
    elif any(r.get("ZLSPR") for r in open_):
        status = f"open, payment block {open_[0]['ZLSPR']}"
    else:
        status = "open"
    return f"{d['BELNR']}/{d['BUKRS']}/{d['GJAHR']}", status


def run_bills_round_trip(rt: Any, handles: dict[str, Any], console: Console) -> int:
    """The round trip (see the module docstring); 0 when every bill ended where it should."""
    from ml_connector.systems.ramp.sandbox.state import DEFAULT_ENTITY_ID

    console.rule("[bold]Ramp bills → SAP ECC invoices, and their status back")
    ramp = handles["ramp"].state
    vendor = _vendor(handles)
    bills = []
    for plant, kostl, saknr, amount, memo in PLANT_BILLS:
        bills.append(ramp.create_bill({
            "vendor": vendor, "invoice_number": f"PL{plant}-{ramp._seq}", "currency": "USD",
            "entity_id": DEFAULT_ENTITY_ID, "line_items": [{"amount": amount, "memo": memo, "gl_account": saknr,
                                                            "cost_center": kostl}]}))
    missing = _new_cost_center(handles)
    parked = ramp.create_bill({"vendor": vendor, "invoice_number": f"NEWCC-{ramp._seq}", "currency": "USD",
                               "entity_id": DEFAULT_ENTITY_ID, "allow_unknown": True,
                               "line_items": [{"amount": "99.00", "memo": "Tooling, new cost center",
                                               "gl_account": "0000600000", "cost_center": missing}]})
    console.print(f"Ramp: {len(bills)} bills approved (one per plant) and one on cost center "
                  f"{missing.lstrip('0')}, which SAP does not have yet")
    first = _poll(rt)
    console.print(f"poll 1: posted {first['bills'].get('created', 0)}, parked {first['bills'].get('parked', 0)}")
    paid, rejected = bills[0], bills[1]
    ramp.pay_bill(paid["id"], {"payment_date": paid["issued_at"][:10], "reference": f"ACH{ramp._seq:012d}"})
    ramp.reject_bill(rejected["id"], "goods returned")
    ecc = handles["sap_ecc"].state
    ecc.data.insert("CSKS", {"KOKRS": "1000", "KOSTL": missing, "DATBI": "99991231", "DATAB": "20200101",
                             "BUKRS": "1000", "KOSAR": "F", "VERAK": "Controller 1000", "WAERS": "USD",
                             "ERSDA": "20200101", "USNAM": "KS01"}, ecc.client)
    console.print(f"Ramp: bill {paid['invoice_number']} paid, bill {rejected['invoice_number']} rejected; "
                  f"SAP: cost center {missing.lstrip('0')} created (KS01)")
    from ml_connector.core import engine

    # The reference sync picks the new cost center up (Ramp gets it as a field option, as SAP has it).
    ref = engine.wait(engine.start_sync(MASTER_FLOW, "cost_centers"))
    console.print(f"reference sync: {ref.get('created', 0)} new cost center option(s) in Ramp")
    second = _poll(rt)
    console.print(f"poll 2: posted {second['bills'].get('created', 0)}, status changes "
                  f"{second['bill_status'].get('created', 0)}")
    t = Table("Ramp bill", "Ramp status", "SAP invoice", "SAP status", title="The bills in both systems")
    want = {paid["id"]: "paid", rejected["id"]: "payment block", bills[2]["id"]: "open", parked["id"]: "open"}
    ok = True
    for b in [*bills, parked]:
        now = ramp.bills[b["id"]]
        doc, status = _sap_state(handles, b["id"])
        ok = ok and want[b["id"]] in status
        t.add_row(str(now["invoice_number"]), f"{now['approval_status']} / {now['payment_status']} / "
                  f"{now['sync_status']}", doc, status)
    console.print(t)
    return 0 if ok else 1
