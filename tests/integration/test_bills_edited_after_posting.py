"""A Ramp bill edited after it was posted in SAP (issue 11 item 9): held for review, or reversed and
reposted, each exactly once; never silently ignored. And bill syncs waiting for a Ramp token (item 7).
The CLI in a subprocess, the emulators on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ml_connector.config import load_config
from ml_connector.core.runtime import Runtime
from ml_connector.sandbox import SandboxHandle
from tests.support import Env, make_env
from tests.support.bills import (
    add_bill,
    all_sap_documents,
    bills_world,
    edit_bill,
    pay_bill,
    postable_vendor,
    ramp_bill,
    ramp_switch,
    review_items,
    sap_documents,
    sap_lines,
    set_flow_options,
    vendor_items,
)
from tests.support.databases import audit_rows, outbox_rows

FLOW = "bills_to_sap"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, SandboxHandle], Env]]:
    with bills_world(tmp_path_factory.mktemp("edits"), 40) as w:
        yield w


def _expense(handles: dict[str, SandboxHandle], doc: dict[str, str]) -> list[tuple[str, str, str]]:
    return sorted((r["HKONT"], r["KOSTL"], r["WRBTR"]) for r in sap_lines(handles, doc) if r["KOART"] == "S")


def test_an_edit_after_posting_is_held_for_review_until_an_operator_has_it_reposted(world):
    handles, env = world
    v = postable_vendor(handles, 3)
    line = {"amount": "100", "memo": "Paper", "gl_account": "0000600000", "cost_center": "0000001000"}
    b = add_bill(env, v, [line], invoice_number="INV-E1")
    env.cli("sync", FLOW, "--stream", "bills")
    [doc] = sap_documents(handles, b["id"])
    # Edited in Ramp after it was posted; Ramp keeps it synced (the emulator's default): the poll of the
    # posted bills sees it. The default policy holds it for review and leaves SAP alone.
    edit_bill(env, b["id"], line_items=[{**line, "amount": "120"}])
    env.cli("sync", FLOW, "--stream", "bills", check=False)
    assert [d["BELNR"] for d in sap_documents(handles, b["id"])] == [doc["BELNR"]]
    [item] = [i for i in review_items(env) if i["record"] == b["id"]]
    assert item["waits_for"].startswith(f"edited_bills:{b['id']}@")
    assert f"posted in SAP as {doc['BELNR']}/1000/{doc['GJAHR']}" in item["reason"]
    assert "amount 100.00 USD → 120.00 USD" in item["reason"]
    # A re-run writes nothing and raises it once.
    before = all_sap_documents(handles)
    env.cli("sync", FLOW, "--stream", "bills", check=False)
    assert all_sap_documents(handles) == before
    assert [i["id"] for i in review_items(env) if i["record"] == b["id"]] == [item["id"]]
    # The operator decides this edit: repost. The next run reverses the posted document and reposts.
    env.cli("mappings", "set", FLOW, "edited_bills", item["value"], "repost")
    env.cli("sync", FLOW, "--stream", "bills")
    docs = sap_documents(handles, b["id"])
    assert len(docs) == 3, docs  # the invoice, its reversal, the new invoice
    original = next(d for d in docs if d["BELNR"] == doc["BELNR"])
    assert original["STBLG"]
    [live] = [d for d in docs if not d.get("STBLG")]
    assert _expense(handles, live) == [("0000600000", "0000001000", "120.00")]
    assert not [i for i in review_items(env) if i["record"] == b["id"]]
    # And again: nothing more.
    before = all_sap_documents(handles)
    env.cli("sync", FLOW, "--stream", "bills")
    assert all_sap_documents(handles) == before


def test_an_edit_after_posting_is_reversed_and_reposted_exactly_once_by_the_repost_policy(world):
    handles, env = world
    ecc = handles["sap_ecc"].state
    text = env.config.read_text(encoding="utf-8")
    set_flow_options(env, FLOW, {"edited_after_posting": "repost"})
    ramp_switch(env, edit_resets_sync=True)  # Ramp makes the edited bill ready to sync again
    try:
        v = postable_vendor(handles, 4)
        lines = [{"amount": "70", "memo": "Toner", "gl_account": "0000600000", "cost_center": "0000001000"},
                 {"amount": "30", "memo": "Paper", "gl_account": "0000600000", "cost_center": "0000001100"}]
        b = add_bill(env, v, lines, invoice_number="INV-E2")
        env.cli("sync", FLOW, "--stream", "bills")
        [doc] = sap_documents(handles, b["id"])
        # The coding and an amount change; the reversal's answer is lost after SAP committed it.
        edit_bill(env, b["id"], line_items=[lines[0], {**lines[1], "amount": "45", "cost_center": "0000001300"}])
        ecc.fi.faults.update(fail_after_commit=1, fail_after_commit_mode="system_failure")
        try:
            env.cli("sync", FLOW, "--stream", "bills", check=False)
        finally:
            ecc.fi.faults.update(reset=True)
        env.cli("sync", FLOW, "--stream", "bills", check=False)
        docs = sap_documents(handles, b["id"])
        assert len(docs) == 3, docs
        assert next(d for d in docs if d["BELNR"] == doc["BELNR"])["STBLG"]
        [live] = [d for d in docs if not d.get("STBLG")]
        assert _expense(handles, live) == [("0000600000", "0000001000", "70.00"),
                                           ("0000600000", "0000001300", "45.00")]
        # Ready again in Ramp, so the new document is reported there.
        assert ramp_bill(env, b["id"])["sync_reference_id"] == f"{live['BELNR']}/1000/{live['GJAHR']}"
        before = (all_sap_documents(handles), httpx.get(f"{env.ramp_url}/_sandbox/stats", timeout=30).json()["syncs"])
        env.cli("sync", FLOW, "--stream", "bills")
        after = (all_sap_documents(handles), httpx.get(f"{env.ramp_url}/_sandbox/stats", timeout=30).json()["syncs"])
        assert after == before
    finally:
        env.config.write_text(text, encoding="utf-8")
        ramp_switch(env, edit_resets_sync=False)


def test_bill_syncs_wait_for_a_token_while_the_token_endpoint_is_down_and_resume_after(world, tmp_path: Path):
    handles, world_env = world
    # A second installation on the same sandboxes: a fresh database, so no token is stored yet.
    env = make_env(tmp_path, handles["sap_ecc"].url, handles["ramp"].url)
    env.env["MLC_HTTP_RETRY_SCALE"] = "0.001"  # the token request's retries, without their sleeps
    b = add_bill(env, postable_vendor(handles, 5), [{"amount": "64", "memo": "Cables", "gl_account": "0000600000",
                                                     "cost_center": "0000001000"}], invoice_number="INV-T1")
    ramp_switch(env, fail_next=40, kind="503", path="/developer/v1/token")
    try:
        out = env.cli("sync", FLOW, "--stream", "bills").stdout  # exit 0: waiting is not a failure
        assert "waiting (not failed)" in out and "no Ramp token" in out
    finally:
        ramp_switch(env, clear_faults=True)
    [run] = json.loads(env.cli("runs", "--json").stdout)
    assert run["status"] == "waiting" and run["error"] is None
    assert sap_documents(handles, b["id"]) == []
    rt = Runtime(load_config(env.config), env.config)
    try:
        failed = audit_rows(rt.db, "token.failed")
        # audited with the provider's answer (the status and what it said), never a token or the secret
        assert failed and failed[-1].detail["status"] == 503
        assert "Service unavailable" in failed[-1].detail["message"]
        assert not audit_rows(rt.db, "run.failed") and audit_rows(rt.db, "run.waiting")
    finally:
        rt.close()
    # The token endpoint answers again: the next run gets a token and posts the bill, once.
    env.cli("sync", FLOW, "--stream", "bills")
    assert len(sap_documents(handles, b["id"])) == 1
    rt = Runtime(load_config(env.config), env.config)
    try:
        assert audit_rows(rt.db, "token.issued")
        assert "ramp_tok_" not in json.dumps([r.detail for r in audit_rows(rt.db, "token.issued")])
    finally:
        rt.close()
    assert world_env is not env


def _bill_reports(handles: dict[str, SandboxHandle], bill_id: str, sync_type: str = "BILL_SYNC") -> list[str]:
    """The references Ramp received for `bill_id` as successful syncs of a type (one per report it applied)."""
    return [s["reference_id"] for v in handles["ramp"].state.syncs.values() if v["body"]["sync_type"] == sync_type
            for s in v["body"].get("successful_syncs", []) if s["id"] == bill_id]


def test_a_token_lost_between_the_sap_posting_and_the_ramp_report_waits_and_the_next_run_only_reports(
        world, tmp_path: Path):
    handles, _ = world
    env = make_env(tmp_path, handles["sap_ecc"].url, handles["ramp"].url)
    env.env["MLC_HTTP_RETRY_SCALE"] = "0.001"  # the token request's retries, without their sleeps
    env.cli("sync", FLOW, "--stream", "bills")  # a token is issued and stored; nothing of ours to post yet
    b = add_bill(env, postable_vendor(handles, 6), [{"amount": "58", "memo": "Adapters", "gl_account": "0000600000",
                                                     "cost_center": "0000001000"}], invoice_number="INV-T2")
    # The bill is read and posted in SAP with the stored token; then the report's call finds that token
    # expired, and the token endpoint fails every request for a new one.
    ramp_switch(env, fail_next=1, kind="expire_token", path="/developer/v1/accounting/syncs")
    ramp_switch(env, fail_next=40, kind="503", path="/developer/v1/token")
    try:
        out = env.cli("sync", FLOW, "--stream", "bills").stdout  # exit 0: waiting is not a failure
        assert "waiting (not failed)" in out and "Ramp token" in out, out
    finally:
        ramp_switch(env, clear_faults=True)
    [doc] = sap_documents(handles, b["id"])
    belnr = f"{doc['BELNR']}/1000/{doc['GJAHR']}"
    assert _bill_reports(handles, b["id"]) == [] and ramp_bill(env, b["id"])["sync_status"] != "BILL_SYNCED"
    runs = json.loads(env.cli("runs", "--json").stdout)
    assert runs[0]["status"] == "waiting" and runs[0]["error"] is None
    rt = Runtime(load_config(env.config), env.config)
    try:
        failed = audit_rows(rt.db, "token.failed")
        assert failed and failed[-1].detail["status"] == 503
        assert not audit_rows(rt.db, "run.failed") and audit_rows(rt.db, "run.waiting")
        # The document is recorded as posted (the ledger knows it); the report waits, not failed.
        [entry] = [r for r in outbox_rows(rt.db, FLOW, "bills") if r.source_key == b["id"]]
        assert (entry.state, entry.target_id) == ("waiting", belnr)
        assert f"posted in SAP as {belnr}" in (entry.last_error or "")
    finally:
        rt.close()
    # A token can be had again: the next run reports the document, once, and posts nothing.
    before = all_sap_documents(handles)
    env.cli("sync", FLOW, "--stream", "bills")
    assert all_sap_documents(handles) == before
    assert _bill_reports(handles, b["id"]) == [belnr]
    assert ramp_bill(env, b["id"])["sync_reference_id"] == belnr
    assert json.loads(env.cli("runs", "--json").stdout)[0]["status"] == "succeeded"
    # And again: nothing more, in either system.
    env.cli("sync", FLOW, "--stream", "bills")
    assert all_sap_documents(handles) == before and _bill_reports(handles, b["id"]) == [belnr]
    # Paid in Ramp: SAP clears the invoice, and the payment's report waits for a token the same way.
    pay_bill(env, b["id"], payment_date="2025-07-01", reference="ACH-TRACE-T2")
    ramp_switch(env, fail_next=1, kind="expire_token", path="/developer/v1/accounting/syncs")
    ramp_switch(env, fail_next=40, kind="503", path="/developer/v1/token")
    try:
        out = env.cli("sync", FLOW, "--stream", "bill_status").stdout
        assert "waiting (not failed)" in out and "Ramp token" in out, out
    finally:
        ramp_switch(env, clear_faults=True)
    items = vendor_items(handles, doc)
    assert items["cleared"] and not items["open"]
    [augbl] = {r["AUGBL"] for r in items["cleared"]}
    assert ramp_bill(env, b["id"])["sync_status"] == "BILL_SYNCED"
    assert _bill_reports(handles, b["id"], "BILL_PAYMENT_SYNC") == []
    env.cli("sync", FLOW, "--stream", "bill_status")
    cleared = f"{augbl}/1000/{doc['GJAHR']}"
    assert _bill_reports(handles, b["id"], "BILL_PAYMENT_SYNC") == [cleared]
    assert ramp_bill(env, b["id"])["sync_status"] == "BILL_AND_PAYMENT_SYNCED"
    # one payment document in SAP: the second run found the clearing and only reported it
    ecc = handles["sap_ecc"].state
    assert len([r for r in ecc.data.rows("BKPF", ecc.client) if r.get("XBLNR") == "ACH-TRACE-T2"]) == 1
