"""Ramp bills → SAP ECC vendor invoices, end to end: the CLI in a subprocess, the emulators as real
HTTP servers on loopback. One world per module: master data is synced once, each test adds bills."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from ml_connector.sandbox import SandboxHandle
from ml_connector.systems.ramp.sandbox.state import DEFAULT_ENTITY_ID, SECOND_ENTITY_ID
from ml_connector.systems.ramp.webhooks import SIGNATURE_HEADER, signature
from tests.support import Env
from tests.support.bills import (
    add_bill,
    bill_failures,
    bills_world,
    create_cost_center,
    pay_bill,
    postable_vendor,
    ramp_bill,
    reject_bill,
    sandbox_state,
    sap_document,
    sap_documents,
    sap_lines,
    set_flow_options,
    vendor_items,
    with_alerts_and_schedule,
    with_ramp_webhooks,
)
from tests.support.receivers import Receiver
from tests.support.waiting import wait_healthy, wait_until
from tests.support.workers import sqlite_db

FLOW = "bills_to_sap"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, SandboxHandle], Env]]:
    with bills_world(tmp_path_factory.mktemp("bills"), 120) as w:
        yield w


def test_approved_bills_post_once_at_line_cost_centers_and_are_marked_synced(world):
    handles, env = world
    v = postable_vendor(handles)
    b1 = add_bill(env, v, [{"amount": "120.50", "memo": "Paper", "gl_account": "0000600000",
                         "cost_center": "0000001000"},
                        {"amount": "79.50", "memo": "Toner", "gl_account": "0000600000",
                         "cost_center": "0000001100"}], invoice_number="INV-100")
    b2 = add_bill(env, v, [{"amount": "1000", "memo": "Consulting", "gl_account": "0000630000",
                         "cost_center": "0000001300"}], invoice_number="INV-101")
    env.cli("sync", FLOW)
    for b in (b1, b2):
        docs = sap_documents(handles, b["id"])
        assert len(docs) == 1, docs
        doc = docs[0]
        assert (doc["BUKRS"], doc["BLART"], doc["WAERS"], doc["BUDAT"]) == ("1000", "KR", "USD", "20250615")
        rb = ramp_bill(env, b["id"])
        assert rb["sync_status"] == "BILL_SYNCED"
        assert rb["sync_reference_id"] == f"{doc['BELNR']}/{doc['BUKRS']}/{doc['GJAHR']}"
    seg = sap_lines(handles, sap_documents(handles, b1["id"])[0])
    expense = sorted((r["KOSTL"], r["WRBTR"]) for r in seg if r["KOART"] == "S")
    assert expense == [("0000001000", "120.50"), ("0000001100", "79.50")]
    vendor_line = [r for r in seg if r["KOART"] == "K"]
    assert [(r["LIFNR"], r["WRBTR"], r["SHKZG"]) for r in vendor_line] == [(v, "200.00", "H")]
    # Synced bills leave Ramp's sync_ready set: a second run posts nothing.
    env.cli("sync", FLOW)
    assert len(sap_documents(handles, b1["id"])) == len(sap_documents(handles, b2["id"])) == 1


def test_unmapped_entity_is_parked_then_resumed_by_a_mapping(world):
    handles, env = world
    b = add_bill(env, postable_vendor(handles, 1), [{"amount": "55", "gl_account": "0000610000",
                                          "cost_center": "0000001410"}],
              entity_id=SECOND_ENTITY_ID, invoice_number="INV-200")
    env.cli("sync", FLOW)
    assert sap_documents(handles, b["id"]) == []
    parked = env.cli("parked", "--flow", FLOW).stdout
    assert b["id"] in parked and f"entities:{SECOND_ENTITY_ID}" in parked
    out = env.cli("mappings", "set", FLOW, "entities", SECOND_ENTITY_ID, "1000").stdout
    assert "resumed 1" in out
    assert len(sap_documents(handles, b["id"])) == 1
    assert ramp_bill(env, b["id"])["sync_status"] == "BILL_SYNCED"
    assert b["id"] not in env.cli("parked", "--flow", FLOW).stdout
    assert DEFAULT_ENTITY_ID != SECOND_ENTITY_ID


def test_missing_cost_center_parks_alerts_once_and_posts_by_itself_once_created_in_sap(world, tmp_path):
    handles, env = world
    b = add_bill(env, postable_vendor(handles, 2), [{"amount": "10", "gl_account": "0000600000",
                                          "cost_center": "0000009999"}],
              invoice_number="INV-300", allow_unknown=True)
    text = env.config.read_text(encoding="utf-8")
    receiver = Receiver()
    env.config.write_text(with_alerts_and_schedule(text, receiver.url, FLOW, "2s"), encoding="utf-8")
    worker = None
    try:
        out = env.cli("sync", FLOW, check=False).stdout
        assert "1 record(s) parked" in out
        assert b["id"] in env.cli("parked", "--flow", FLOW).stdout
        assert "cost_center:1000/0000009999" in env.cli("parked", "--flow", FLOW).stdout
        env.cli("sync", FLOW, check=False)  # the poll again: still parked, the operator is not told twice
        wait_until(lambda: any(r["json"]["event"] == "record.parked" for r in receiver.requests), timeout=10)
        alerts = [r["json"] for r in receiver.requests if r["json"]["event"] == "record.parked"
                  and r["json"]["details"]["waits_for"] == "cost_center:1000/0000009999"]
        assert len(alerts) == 1 and b["id"] in alerts[0]["details"]["records"], alerts
        assert sap_documents(handles, b["id"]) == [] and ramp_bill(env, b["id"])["sync_status"] == "NOT_SYNCED"
        # The controller creates the cost center in SAP; the scheduled poll posts the bill, nobody replays it.
        worker = env.popen("run", "--no-server")
        create_cost_center(handles, "1000", "9999", "Plant 1 maintenance")
        wait_until(lambda: len(sap_documents(handles, b["id"])) == 1, timeout=90, interval=0.5)
        wait_until(lambda: ramp_bill(env, b["id"])["sync_status"] == "BILL_SYNCED", timeout=30, interval=0.5)
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)
        env.config.write_text(text, encoding="utf-8")
        receiver.close()
    seg = sap_lines(handles, sap_documents(handles, b["id"])[0])
    assert [r["KOSTL"] for r in seg if r["KOART"] == "S"] == ["0000009999"]
    assert b["id"] not in env.cli("parked", "--flow", FLOW).stdout


def test_timeout_after_sap_commit_still_posts_exactly_one_document(world):
    handles, env = world
    ecc = handles["sap_ecc"].state
    b = add_bill(env, postable_vendor(handles, 3), [{"amount": "42", "gl_account": "0000620000",
                                          "cost_center": "0000001300"}], invoice_number="INV-400")
    ecc.fi.faults.update(fail_after_commit=1, fail_after_commit_mode="system_failure")
    try:
        env.cli("sync", FLOW)
    finally:
        ecc.fi.faults.update(reset=True)
    assert len(sap_documents(handles, b["id"])) == 1
    assert ramp_bill(env, b["id"])["sync_status"] == "BILL_SYNCED"


def test_lost_ramp_report_is_resent_on_replay_without_reposting(world):
    handles, env = world
    ramp = handles["ramp"].state
    b = add_bill(env, postable_vendor(handles, 4), [{"amount": "300", "gl_account": "0000640000",
                                          "cost_center": "0000001620"}], invoice_number="INV-500")
    ramp.fail_next(3, "500", path="/developer/v1/accounting/syncs", method="POST")
    proc = env.cli("sync", FLOW, check=False)
    assert proc.returncode == 3
    assert len(sap_documents(handles, b["id"])) == 1
    assert ramp_bill(env, b["id"])["sync_status"] == "NOT_SYNCED"
    fail = next(f for f in bill_failures(env) if f["record"] == b["id"])
    assert "posted in SAP as" in fail["error"]
    # A scheduled run in between does not post it again either (same content, same outbox key).
    env.cli("sync", FLOW, check=False)
    assert len(sap_documents(handles, b["id"])) == 1
    env.cli("replay", str(fail["id"]))
    assert len(sap_documents(handles, b["id"])) == 1
    rb = ramp_bill(env, b["id"])
    doc = sap_documents(handles, b["id"])[0]
    assert rb["sync_status"] == "BILL_SYNCED"
    assert rb["sync_reference_id"] == f"{doc['BELNR']}/{doc['BUKRS']}/{doc['GJAHR']}"
    assert all(f["record"] != b["id"] for f in bill_failures(env))


def test_dry_run_shows_sap_check_results_and_writes_nothing(world):
    handles, env = world
    ecc = handles["sap_ecc"].state
    good = add_bill(env, postable_vendor(handles, 5), [{"amount": "12.34", "gl_account": "0000650000",
                                             "cost_center": "0000001000"}], invoice_number="INV-600")
    # An expense line without a cost center: the master data are there, SAP's check refuses it.
    bad = add_bill(env, postable_vendor(handles, 5), [{"amount": "5", "gl_account": "0000650000"}],
                   invoice_number="INV-601")
    parks = add_bill(env, postable_vendor(handles, 5), [{"amount": "6", "gl_account": "0000650000",
                                              "cost_center": "0000008888"}], invoice_number="INV-602",
                  allow_unknown=True)
    before = len(ecc.data.rows("BKPF", ecc.client))
    syncs_before = len(handles["ramp"].state.syncs)
    out = env.cli("sync", FLOW, "--stream", "bills", "--dry-run").stdout
    flat = " ".join(out.split())
    assert good["id"] in flat and bad["id"] in flat
    assert "SAP would accept it" in flat
    assert "SAP would REFUSE it" in flat and "COSTCENTER" in flat and "KI 235" in flat
    assert parks["id"] in flat and "waits for mapping cost_center:1000/0000008888" in flat
    assert len(ecc.data.rows("BKPF", ecc.client)) == before
    assert len(handles["ramp"].state.syncs) == syncs_before
    assert ramp_bill(env, good["id"])["sync_status"] == "NOT_SYNCED"


def test_month_end_reconciliation_explains_what_is_not_posted_yet(world, tmp_path):
    handles, env = world
    v = postable_vendor(handles, 7)
    month = {"issued_at": "2025-11-10", "due_at": "2025-12-10"}
    posted = add_bill(env, v, [{"amount": "100", "gl_account": "0000600000", "cost_center": "0000001000"},
                               {"amount": "50", "gl_account": "0000600000", "cost_center": "0000001100"}],
                      invoice_number="INV-700", **month)
    env.cli("sync", FLOW, check=False)  # earlier tests' refused bills fail again; this one posts
    assert len(sap_documents(handles, posted["id"])) == 1
    waiting = add_bill(env, v, [{"amount": "300", "gl_account": "0000630000", "cost_center": "0000001300"}],
                       invoice_number="INV-701", **month)  # approved in Ramp, not synced yet
    csv_path, html_path = tmp_path / "rec.csv", tmp_path / "rec.html"
    out = env.cli("reconcile", FLOW, "--period", "2025-11", "--csv", str(csv_path), "--html", str(html_path),
                  check=False)
    assert out.returncode == 1 and "1 difference(s)" in out.stdout
    rows = csv_path.read_text().splitlines()
    assert rows[0] == "company code,GL account,cost center,Ramp,SAP ECC,difference,record,why"
    assert "1000,600000,1000,100.00,100.00,0.00,," in rows
    assert "1000,600000,1100,50.00,50.00,0.00,," in rows
    assert "1000,630000,1300,300.00,0,300.00,," in rows
    assert f"1000,630000,1300,300.00,0,300.00,{waiting['id']},not in the target yet (not synced): INV-701" in rows
    report = html_path.read_text()
    assert "1 difference(s)." in report and waiting["id"] in report and "<script" not in report
    env.cli("sync", FLOW, check=False)
    assert len(sap_documents(handles, waiting["id"])) == 1
    again = env.cli("reconcile", FLOW, "--period", "2025-11")
    assert "the systems tie out" in again.stdout
    bad = env.cli("reconcile", FLOW, "--period", "2025-13", check=False)
    assert bad.returncode == 2 and "expected YYYY-MM" in bad.stderr


def test_paid_bill_clears_the_sap_invoice_once_and_is_reported_as_payment_synced(world):
    handles, env = world
    ecc = handles["sap_ecc"].state
    b = add_bill(env, postable_vendor(handles, 6), [{"amount": "250", "gl_account": "0000600000",
                                                     "cost_center": "0000001000"}], invoice_number="INV-700")
    env.cli("sync", FLOW, check=False)
    doc = sap_documents(handles, b["id"])[0]
    assert vendor_items(handles, doc)["open"] and not vendor_items(handles, doc)["cleared"]
    pay_bill(env, b["id"], payment_date="2025-07-01", reference="ACH-TRACE-0042")
    # The answer of the clearing call is lost after SAP committed it: resolved by reading BSAK.
    ecc.fi.faults.update(fail_after_commit=1, fail_after_commit_mode="system_failure")
    try:
        env.cli("sync", FLOW, check=False)
    finally:
        ecc.fi.faults.update(reset=True)
    items = vendor_items(handles, doc)
    assert not items["open"] and items["cleared"]
    augbl = {r["AUGBL"] for r in items["cleared"]}
    assert len(augbl) == 1 and {r["AUGDT"] for r in items["cleared"]} == {"20250701"}
    pay = sap_document(handles, doc["BUKRS"], augbl.pop(), "2025")
    assert pay is not None and pay["XBLNR"] == "ACH-TRACE-0042" and pay["BUDAT"] == "20250701"
    rb = ramp_bill(env, b["id"])
    assert rb["sync_status"] == "BILL_AND_PAYMENT_SYNCED"
    assert rb["payment_sync_reference_id"] == f"{pay['BELNR']}/{doc['BUKRS']}/{doc['GJAHR']}"
    payments = [r for r in ecc.data.rows("BKPF", ecc.client) if r.get("XBLNR") == "ACH-TRACE-0042"]
    env.cli("sync", FLOW, check=False)  # the reconciliation poll again: nothing more to do
    assert [r for r in ecc.data.rows("BKPF", ecc.client) if r.get("XBLNR") == "ACH-TRACE-0042"] == payments
    assert len(payments) == 1


def test_bill_rejected_after_posting_is_blocked_or_reversed_exactly_once(world):
    handles, env = world
    ecc = handles["sap_ecc"].state
    v = postable_vendor(handles, 7)
    blocked = add_bill(env, v, [{"amount": "80", "gl_account": "0000610000", "cost_center": "0000001100"}],
                       invoice_number="INV-800")
    reversed_ = add_bill(env, v, [{"amount": "90", "gl_account": "0000610000", "cost_center": "0000001100"}],
                         invoice_number="INV-801")
    env.cli("sync", FLOW, check=False)
    reject_bill(env, blocked["id"])
    env.cli("sync", FLOW, check=False)
    doc = sap_documents(handles, blocked["id"])[0]
    assert {r["ZLSPR"] for r in vendor_items(handles, doc)["open"]} == {"A"}
    # The customer configures reversal instead: the next rejection reverses its invoice, once.
    text = env.config.read_text(encoding="utf-8")
    set_flow_options(env, FLOW, {"rejected_action": "reverse"})
    try:
        reject_bill(env, reversed_["id"])
        ecc.fi.faults.update(fail_after_commit=1, fail_after_commit_mode="system_failure")
        try:
            env.cli("sync", FLOW, check=False)
        finally:
            ecc.fi.faults.update(reset=True)
        env.cli("sync", FLOW, check=False)
    finally:
        env.config.write_text(text, encoding="utf-8")
    docs = sap_documents(handles, reversed_["id"])
    original = next(d for d in docs if d["BELNR"] == min(x["BELNR"] for x in docs))
    assert len(docs) == 2 and original["STBLG"], docs  # the invoice and its one reversal
    assert not vendor_items(handles, original)["open"]


def test_ramp_webhooks_post_approved_bills_and_their_payment_without_waiting_for_the_poll(world):
    handles, env = world
    text = env.config.read_text(encoding="utf-8")
    env.config.write_text(with_ramp_webhooks(text), encoding="utf-8")
    base = env.serve_on_free_port()
    server = env.popen("run")
    try:
        wait_healthy(base, timeout=90)
        hook = f"{base}/webhooks/ramp"
        env.cli("webhooks-subscribe", "ramp", hook)
        # The server answered Ramp's challenge: the subscription is active.
        wait_until(lambda: [w["status"] for w in sandbox_state(env, "webhooks") if w["endpoint_url"] == hook]
                   == ["active"], timeout=30, interval=0.2)
        b = add_bill(env, postable_vendor(handles, 8), [{"amount": "75", "gl_account": "0000600000",
                                                         "cost_center": "0000001100"}], invoice_number="INV-900")
        wait_until(lambda: ramp_bill(env, b["id"])["sync_status"] == "BILL_SYNCED", timeout=60, interval=0.3)
        doc = sap_documents(handles, b["id"])[0]
        pay_bill(env, b["id"], payment_date="2025-07-02", reference="WH-PAY-1")
        wait_until(lambda: ramp_bill(env, b["id"])["sync_status"] == "BILL_AND_PAYMENT_SYNCED", timeout=60,
                   interval=0.3)
        assert not vendor_items(handles, doc)["open"] and len(sap_documents(handles, b["id"])) == 1
        # Ramp retries under the same event id: stored once, nothing started again.
        secret = next(w["secret"] for w in sandbox_state(env, "webhooks") if w["endpoint_url"] == hook)
        paid = next(d for d in sandbox_state(env, "webhook_deliveries")
                    if d["event_type"] == "bills.paid" and d["object_id"] == b["id"])
        raw = paid["body"].encode() if isinstance(paid["body"], str) else bytes(paid["body"])
        again = httpx.post(hook, content=raw, headers={SIGNATURE_HEADER: signature(secret, raw),
                                                       "Content-Type": "application/json"})
        assert again.status_code == 200 and again.json().get("duplicate") is True
        forged = httpx.post(hook, content=raw, headers={SIGNATURE_HEADER: signature("not-the-secret", raw)})
        assert forged.status_code == 401
        assert httpx.post(hook, content=raw).status_code == 401
        # The bill's journey over the JSON API names the webhooks that started its runs.
        steps = httpx.get(f"{base}/api/journey/{b['id']}", timeout=30).json()
        received = [s for s in steps if s["event"] == "webhook.received"]
        assert {s["detail"]["type"] for s in received} >= {"bills.approved", "bills.paid"}
        assert len([s for s in received if s["detail"]["type"] == "bills.paid"]) == 1  # the retry was not stored
        # A burst of approvals is a few runs of the bills stream, not one per event: queued one after
        # another, a payment's run behind them would wait for all of them (seen in bench: 40 s).
        db = sqlite_db(env)
        runs_of_bills = "select count(*) from workflow_status where workflow_uuid like 'sync:%:bills:incremental:%'"
        runs_before = db.execute(runs_of_bills).fetchone()[0]
        burst = [add_bill(env, postable_vendor(handles, 8), [{"amount": f"{20 + i}", "gl_account": "0000600000",
                                                              "cost_center": "0000001100"}],
                          invoice_number=f"INV-92{i}") for i in range(10)]
        ids = {x["id"] for x in burst}
        wait_until(lambda: all(ramp_bill(env, x["id"])["sync_status"] == "BILL_SYNCED" for x in burst),
                   timeout=120, interval=0.5)
        wait_until(lambda: all(d["status"] != "pending" for d in sandbox_state(env, "webhook_deliveries")
                               if d["object_id"] in ids), timeout=60, interval=0.3)  # every event answered
        events = {d["event_id"] for d in sandbox_state(env, "webhook_deliveries") if d["object_id"] in ids}
        runs = db.execute(runs_of_bills).fetchone()[0] - runs_before
        assert len(events) >= len(burst) and 1 <= runs <= len(burst) // 2, (len(events), runs)
    finally:
        server.terminate()
        server.wait(30)
        env.config.write_text(text, encoding="utf-8")
    assert len(sap_documents(handles, b["id"])) == 1


def test_journey_shows_a_bill_parked_posted_after_a_lost_answer_and_paid_by_any_of_its_ids(world):
    handles, env = world
    ecc = handles["sap_ecc"].state
    b = add_bill(env, postable_vendor(handles, 9), [{"amount": "64", "gl_account": "0000600000",
                                                     "cost_center": "0000009998"}],
                 invoice_number="INV-950", allow_unknown=True)
    env.cli("sync", FLOW, check=False)
    create_cost_center(handles, "1000", "9998", "Plant 1 tooling")
    ecc.fi.faults.update(fail_after_commit=1, fail_after_commit_mode="system_failure")
    try:
        env.cli("sync", FLOW, check=False)
    finally:
        ecc.fi.faults.update(reset=True)
    pay_bill(env, b["id"], payment_date="2025-07-03", reference="J-PAY-1")
    env.cli("sync", FLOW, check=False)
    doc = sap_documents(handles, b["id"])[0]
    steps = json.loads(env.cli("journey", b["id"], "--json").stdout)
    events = [(s["event"], s["stream"], s["detail"]) for s in steps if s["kind"] == "event"]
    assert ("record.parked", "bills", {"waits_for": "cost_center:1000/0000009998"}) in events
    posted = [d for e, st, d in events if e == "record.create" and st == "bills"]
    assert posted and posted[-1].get("resolved_by") == "lookup"  # the answer was lost after SAP's commit
    assert any(e == "record.create" and st == "bill_status" for e, st, _ in events)
    assert any(s["event"] == "record.resumed" for s in steps)
    table = " ".join(env.cli("journey", b["id"]).stdout.split())
    assert "record.parked" in table and "cost_center:1000/0000009998" in table and "lookup" in table
    # The same journey from SAP's side: the document number, or the XBLNR.
    for ref in (doc["BELNR"], sap_documents(handles, b["id"])[0]["XBLNR"]):
        other = json.loads(env.cli("journey", ref, "--json").stdout)
        assert {s["source"] for s in other if s["kind"] == "entry"} >= {f"{FLOW}:{b['id']}"}


def test_a_closed_posting_period_parks_the_bill_until_it_opens_or_moves_it_to_the_next_open_one(world):
    handles, env = world
    v = postable_vendor(handles, 10)
    fi = f"{env.sap_url}/_sandbox/fi/periods"
    close = {"bukrs": "1000", "from_year": 2025, "from_period": 1, "to_year": 2035, "to_period": 16}
    reopen = {"bukrs": "1000", "from_year": 2020, "from_period": 1, "to_year": 2035, "to_period": 16}
    text = env.config.read_text(encoding="utf-8")
    try:
        assert httpx.post(fi, json=close, timeout=30).status_code == 200  # OB52: 2024 closed
        parked = add_bill(env, v, [{"amount": "33", "gl_account": "0000600000", "cost_center": "0000001000"}],
                          invoice_number="INV-960", posting_date="2024-11-20")
        env.cli("sync", FLOW, check=False)
        assert sap_documents(handles, parked["id"]) == []
        assert "period:1000/2024-11" in env.cli("parked", "--flow", FLOW).stdout
        # The period opens again: the parked bill posts by itself, with its own date, at the next poll.
        assert httpx.post(fi, json=reopen, timeout=30).status_code == 200
        env.cli("sync", FLOW, check=False)
        docs = sap_documents(handles, parked["id"])
        assert len(docs) == 1 and docs[0]["BUDAT"] == "20241120"
        # The customer's other policy: post into the next open period, the original date kept.
        assert httpx.post(fi, json=close, timeout=30).status_code == 200
        set_flow_options(env, FLOW, {"closed_period": "next_open"})
        moved = add_bill(env, v, [{"amount": "44", "gl_account": "0000600000", "cost_center": "0000001000"}],
                         invoice_number="INV-961", posting_date="2024-12-05")
        env.cli("sync", FLOW, check=False)
        doc = sap_documents(handles, moved["id"])[0]
        assert doc["BUDAT"] == "20250101" and doc["GJAHR"] == "2025"
        vendor_line = next(r for r in sap_lines(handles, doc) if r["KOART"] == "K")
        assert "2024-12-05" in vendor_line["SGTXT"]
    finally:
        env.config.write_text(text, encoding="utf-8")
        assert httpx.post(fi, json=reopen, timeout=30).status_code == 200
