"""PO-based bills (SAP MM invoices) after posting (issue 11 items 1, 6 and 9): an edit in Ramp is held for
review or, by the customer's policy, reversed in MM (MR8M: BAPI_INCOMINGINVOICE_CANCEL through
Z_MLC_INCOMINGINVOICE_CANCEL, never FB08) and reposted, each exactly once; a rejection after posting with
`rejected_action: reverse` cancels the MM invoice once. The CLI in a subprocess, both emulators on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ml_connector.sandbox import SandboxHandle
from tests.support import Env
from tests.support.bills import (
    add_po_bill,
    all_sap_documents,
    bills_world,
    edit_bill,
    mm_invoices,
    postable_vendor,
    ramp_bill,
    ramp_switch,
    reject_bill,
    review_items,
    sap_documents,
    set_flow_options,
)

FLOW = "bills_to_sap"
CANCEL, FB08 = "Z_MLC_INCOMINGINVOICE_CANCEL", "Z_MLC_ACC_DOCUMENT_REVERSE"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, SandboxHandle], Env]]:
    with bills_world(tmp_path_factory.mktemp("po-reversal"), 30, "--stream", "vendors") as w:
        yield w


def _calls(handles: dict[str, SandboxHandle]) -> dict[str, int]:
    calls = handles["sap_ecc"].state.stats.calls
    return {fm: calls[fm] for fm in (CANCEL, FB08)}


def _state(handles: dict[str, SandboxHandle], bill_id: str) -> tuple[int, list[dict[str, Any]]]:
    """What SAP holds: every BKPF row, and the bill's MM invoices (RBKP)."""
    return all_sap_documents(handles), mm_invoices(handles, bill_id)


def _items(handles: dict[str, SandboxHandle], rbkp: dict[str, Any]) -> list[tuple[str, str, str]]:
    ecc = handles["sap_ecc"].state
    return sorted((r["EBELP"], r["WRBTR"], r["SHKZG"]) for r in ecc.data.rows("RSEG", ecc.client)
                  if (r["BELNR"], r["GJAHR"]) == (rbkp["BELNR"], rbkp["GJAHR"]))


def test_a_po_bill_edited_after_posting_is_held_for_review(world: Any) -> None:
    handles, env = world
    bill, po = add_po_bill(handles, env, postable_vendor(handles, 2), [(10, "15.00")], ["100.00"], "PO-E1")
    env.cli("sync", FLOW, "--stream", "bills")
    assert len(mm_invoices(handles, bill["id"])) == 1
    [fi_doc] = sap_documents(handles, bill["id"])
    # Edited in Ramp after it was posted (Ramp keeps it synced): the default policy holds it for review
    edit_bill(env, bill["id"], line_items=[{"amount": "120.00", "memo": "PO line 1",
                                            "purchase_order_line_item_id": po["line_items"][0]["id"]}])
    before = (_state(handles, bill["id"]), _calls(handles))
    env.cli("sync", FLOW, "--stream", "bills", check=False)
    [item] = [i for i in review_items(env) if i["record"] == bill["id"]]
    assert item["waits_for"].startswith(f"edited_bills:{bill['id']}@")
    assert f"posted in SAP as {fi_doc['BELNR']}/1000/{fi_doc['GJAHR']}" in item["reason"]
    assert "amount 100.00 USD → 120.00 USD" in item["reason"]
    ebeln = str(po["remote_id"]).lstrip("0")
    assert f"lines [PO {ebeln}/10 100.00] → [PO {ebeln}/10 120.00]" in item["reason"]
    # SAP untouched, and a re-run raises it once and writes nothing
    env.cli("sync", FLOW, "--stream", "bills", check=False)
    assert (_state(handles, bill["id"]), _calls(handles)) == before
    assert [i["id"] for i in review_items(env) if i["record"] == bill["id"]] == [item["id"]]
    assert not mm_invoices(handles, bill["id"])[0].get("STBLG")


def test_a_po_bill_edited_after_posting_is_cancelled_in_mm_once_and_reposted_once(world: Any) -> None:
    handles, env = world
    ecc = handles["sap_ecc"].state
    text = env.config.read_text(encoding="utf-8")
    set_flow_options(env, FLOW, {"edited_after_posting": "repost"})
    ramp_switch(env, edit_resets_sync=True)  # Ramp makes the edited bill ready to sync again
    try:
        bill, po = add_po_bill(handles, env, postable_vendor(handles, 3), [(10, "15.00"), (4, "250.00")],
                               ["150.00", "500.00"], "PO-E2")
        env.cli("sync", FLOW, "--stream", "bills")
        [first] = mm_invoices(handles, bill["id"])
        calls = _calls(handles)
        # One line moves to fewer motors; SAP's answer to the MR8M call is lost after its commit
        links = [pl["id"] for pl in po["line_items"]]
        edit_bill(env, bill["id"], line_items=[
            {"amount": "150.00", "memo": "PO line 1", "purchase_order_line_item_id": links[0]},
            {"amount": "250.00", "memo": "PO line 2", "purchase_order_line_item_id": links[1]}])
        ecc.fi.faults.update(fail_after_commit=1, fail_after_commit_mode="system_failure")
        try:
            env.cli("sync", FLOW, "--stream", "bills", check=False)
        finally:
            ecc.fi.faults.update(reset=True)
        env.cli("sync", FLOW, "--stream", "bills", check=False)
        invoices = mm_invoices(handles, bill["id"])
        assert len(invoices) == 3, invoices  # the invoice, its MR8M reversal, the new invoice
        original = next(r for r in invoices if r["BELNR"] == first["BELNR"])
        reversal = next(r for r in invoices if r["BELNR"] == original["STBLG"])
        [live] = [r for r in invoices if r not in (original, reversal)]
        assert (reversal["TCODE"], reversal["STBLG"]) == ("MR8M", first["BELNR"]) and not live.get("STBLG")
        assert _items(handles, live) == [("00010", "150.00", "S"), ("00020", "250.00", "S")]
        assert _items(handles, reversal) == [("00010", "150.00", "H"), ("00020", "500.00", "H")]
        # reversed in MM once (the lost answer settled by RBKP-STBLG), never through FB08
        assert _calls(handles) == {CANCEL: calls[CANCEL] + 1, FB08: calls[FB08]}
        [fi_live] = [d for d in sap_documents(handles, bill["id"]) if not d.get("STBLG")]
        assert fi_live["AWKEY"] == live["BELNR"] + live["GJAHR"]
        assert ramp_bill(env, bill["id"])["sync_reference_id"] == f"{fi_live['BELNR']}/1000/{fi_live['GJAHR']}"
        before = (_state(handles, bill["id"]), _calls(handles),
                  httpx.get(f"{env.ramp_url}/_sandbox/stats", timeout=30).json()["syncs"])
        env.cli("sync", FLOW, "--stream", "bills")
        assert (_state(handles, bill["id"]), _calls(handles),
                httpx.get(f"{env.ramp_url}/_sandbox/stats", timeout=30).json()["syncs"]) == before
    finally:
        env.config.write_text(text, encoding="utf-8")
        ramp_switch(env, edit_resets_sync=False)


def test_a_po_bill_rejected_after_posting_is_cancelled_in_mm_exactly_once(world: Any) -> None:
    handles, env = world
    ecc = handles["sap_ecc"].state
    bill, _ = add_po_bill(handles, env, postable_vendor(handles, 4), [(2, "100.00")], ["200.00"], "PO-R1")
    env.cli("sync", FLOW, "--stream", "bills")
    [rbkp] = mm_invoices(handles, bill["id"])
    text = env.config.read_text(encoding="utf-8")
    set_flow_options(env, FLOW, {"rejected_action": "reverse"})
    try:
        reject_bill(env, bill["id"])
        calls = _calls(handles)
        ecc.fi.faults.update(fail_after_commit=1, fail_after_commit_mode="system_failure")
        try:
            env.cli("sync", FLOW, "--stream", "bill_status", check=False)
        finally:
            ecc.fi.faults.update(reset=True)
        env.cli("sync", FLOW, "--stream", "bill_status", check=False)
        invoices = mm_invoices(handles, bill["id"])
        original = next(r for r in invoices if r["BELNR"] == rbkp["BELNR"])
        assert len(invoices) == 2 and original["STBLG"], invoices  # the invoice and its one reversal
        assert _calls(handles) == {CANCEL: calls[CANCEL] + 1, FB08: calls[FB08]}
        assert all(d["STBLG"] for d in sap_documents(handles, bill["id"]))  # its FI document reversed with it
        before = (_state(handles, bill["id"]), _calls(handles))
        env.cli("sync", FLOW, "--stream", "bill_status", check=False)
        env.cli("sync", FLOW, "--stream", "bills", check=False)
        assert (_state(handles, bill["id"]), _calls(handles)) == before
    finally:
        env.config.write_text(text, encoding="utf-8")
