"""Approval before posting (issue 15), end to end over loopback: the Ramp bills flow with
`approval: {company_codes: ["1000"]}`; the control plane (`ml-connector run`) holds the bills in the
approval queue with the exact BAPI document and SAP's own verdict (BAPI_ACC_DOCUMENT_CHECK); SAP refuses
while the vendor is blocked for posting, accepts once it is unblocked and the operator asks again; an approved bill
posts once (approving twice posts nothing more), a rejected one never posts, through the JSON API and the
console's forms. The same for Concur reports going to SAP Business One, whose verdict comes from the
check of systems/sap_b1/journal_check.py (B1 has no check call): refused while the posting period is
locked or an account is gone, accepted when asked again after the fix, posted once when approved."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ml_connector.sandbox import SandboxHandle
from ml_connector.systems.sap_b1 import known_errors as b1_msg
from ml_connector.systems.sap_b1.journal_check import CHECKED_BY as B1_CHECKED_BY
from ml_connector.systems.sap_ecc.posting import xblnr_for
from tests.support import make_env, stop, wait_healthy
from tests.support.approvals import console_session, vendor_blocked, with_approval
from tests.support.b1 import master_changed, period_locked
from tests.support.bills import add_bill, postable_vendor, ramp_bill, sap_documents, sap_lines
from tests.support.browser import sync_via_api
from tests.support.concur import FLOW as CONCUR_FLOW
from tests.support.concur import concur_world, pair_env
from tests.support.sandboxes import running_sandboxes

FLOW = "bills_to_sap"
PASSWORD = "operator-password-1"


@pytest.fixture()
def sandboxes() -> Iterator[dict[str, SandboxHandle]]:
    with running_sandboxes(vendors=30) as handles:
        yield handles


def _queue(base: str) -> dict[str, dict]:
    return {i["record"]: i for i in httpx.get(f"{base}/api/approvals", timeout=30).json()}


@pytest.mark.slow
def test_bills_wait_for_approval_with_sap_verdict_post_once_when_approved_never_when_rejected(
        tmp_path: Path, sandboxes) -> None:
    env = make_env(tmp_path, sandboxes["sap_ecc"].url, sandboxes["ramp"].url)
    env.config.write_text(with_approval(env.config.read_text(encoding="utf-8"), FLOW, {"company_codes": ["1000"]}),
                          encoding="utf-8")
    env.cli("sync", "vendors_to_ramp", "--stream", "vendors")
    env.cli("users", "add", "otto", "--role", "operator", "--password-stdin", input_=PASSWORD + "\n")
    v = postable_vendor(sandboxes)
    bills = [add_bill(env, v, [{"amount": amount, "memo": "Paper", "gl_account": "0000600000",
                                "cost_center": "0000001000"}], invoice_number=f"INV-A{n}",
                         allow_unknown=True)
             for n, amount in enumerate(("10.00", "20.00", "30.00", "40.00"))]
    base = env.serve_on_free_port()
    proc = env.popen("run")
    try:
        wait_healthy(base)
        with vendor_blocked(sandboxes, v):
            sync_via_api(base, FLOW)
        assert all(sap_documents(sandboxes, b["id"]) == [] for b in bills)  # nothing posted: they wait
        queue = _queue(base)
        assert set(queue) == {b["id"] for b in bills}
        first = queue[bills[0]["id"]]
        header = first["document"]["DOCUMENTHEADER"]
        assert (header["COMP_CODE"], header["REF_DOC_NO"]) == ("1000", xblnr_for(bills[0]["id"], "RMP"))
        assert first["document"]["CURRENCYAMOUNT"][0]["AMT_DOCCUR"] == "-10.00"  # the vendor line
        assert first["accepted"] is False and first["checked_by"] == "BAPI_ACC_DOCUMENT_CHECK"
        assert any("F5 351" in m for m in first["messages"]), first["messages"]  # vendor blocked
        runs = httpx.get(f"{base}/api/runs?flow={FLOW}", timeout=30).json()
        assert any(r["counts"].get("awaiting_approval") == 4 for r in runs if r["stream"] == "bills")

        # The vendor is unblocked: the operator asks SAP again; SAP would accept all four now.
        ids = [queue[b["id"]]["id"] for b in bills]
        assert httpx.post(f"{base}/api/approvals/check", json={"ids": ids}, timeout=60).json() == {"checked": 4}
        queue = _queue(base)
        assert all(queue[b["id"]]["accepted"] is True for b in bills), queue

        # Approve the first over the JSON API: posted once, reported to Ramp; approving again posts nothing.
        resp = httpx.post(f"{base}/api/approvals/approve", json={"ids": [ids[0]]}, timeout=120).json()
        assert resp["approved"] == [ids[0]] and resp["outcome"] == {"posted": 1}, resp
        assert len(sap_documents(sandboxes, bills[0]["id"])) == 1
        assert ramp_bill(env, bills[0]["id"])["sync_status"] == "BILL_SYNCED"
        again = httpx.post(f"{base}/api/approvals/approve", json={"ids": [ids[0]]}, timeout=120).json()
        assert again == {"approved": [], "outcome": {}}
        assert len(sap_documents(sandboxes, bills[0]["id"])) == 1

        # The console: the operator rejects the second with a note and approves the third (forms with CSRF).
        otto, csrf = console_session(base, "otto", PASSWORD)
        page = otto.get("/approvals").text
        assert "BAPI_ACC_DOCUMENT_CHECK" in page and "accepted" in page and bills[1]["id"] in page
        assert otto.post("/approvals/reject", data={"ids": [ids[1]], "note": "duplicate of INV-7"}).status_code == 403
        resp = otto.post("/approvals/reject", data={"csrf": csrf, "ids": [ids[1]], "note": "duplicate of INV-7"},
                         follow_redirects=True)
        assert "Rejected 1 record(s)" in resp.text
        resp = otto.post("/approvals/approve", data={"csrf": csrf, "ids": [ids[2]]}, follow_redirects=True)
        assert "Approved 1 record(s); sent: posted 1" in resp.text
        assert len(sap_documents(sandboxes, bills[2]["id"])) == 1
        # The run's page counts the calls it made to each system (reading Ramp, SAP's checks).
        bills_run = next(r for r in runs if r["stream"] == "bills")
        run_page = otto.get(f"/runs/{bills_run['run_id']}").text
        made = dict(re.findall(r'<tr><td>(\w+)</td><td class="num">(\d+)</td></tr>', run_page))
        assert int(made["ramp"]) >= 1 and int(made["sap_ecc"]) >= 4, made  # 4 checks (+ lookups)
        # ... and apart, the calls made since for its records: the operator's re-check (4 SAP checks) and the two
        # approvals' replays (each posted to SAP and reported to Ramp).
        later = dict(re.findall(r'<tr><th scope="row">(\w+)</th><td class="num">(\d+)</td></tr>', run_page))
        assert int(later["sap_ecc"]) >= 6 and int(later["ramp"]) >= 2, later
        journey = otto.get(f"/journey?q={bills[1]['id']}").text
        assert "approval.rejected" in journey and "duplicate of INV-7" in journey

        # Approved while the vendor is blocked again: SAP refuses the posting (failed, in the inbox). The cause is
        # in the data: the operator recodes the bill to another vendor on the record's page and retries it.
        with vendor_blocked(sandboxes, v):
            resp = httpx.post(f"{base}/api/approvals/approve", json={"ids": [ids[3]]}, timeout=120).json()
        assert resp["outcome"] == {"failed": 1}, resp
        other = postable_vendor(sandboxes, 1)
        resp = otto.post(f"/inbox/record/{ids[3]}/edit", data={"csrf": csrf, "field": "vendor", "value": other,
                                                               "retry": "1"}, follow_redirects=True)
        assert "vendor changed and retried: posted 1" in resp.text, resp.text[-2000:]
        [doc] = sap_documents(sandboxes, bills[3]["id"])
        assert [r["LIFNR"] for r in sap_lines(sandboxes, doc) if r["KOART"] == "K"] == [other]
        assert f"changed <code>vendor</code> from “{v}” to “{other}”" in resp.text

        # The next poll stages nothing again: the rejected bill is never posted, nothing is queued twice.
        sync_via_api(base, FLOW)
        assert sap_documents(sandboxes, bills[1]["id"]) == []
        assert _queue(base) == {}
        assert [len(sap_documents(sandboxes, b["id"])) for b in bills] == [1, 0, 1, 1]
    finally:
        stop(proc)


@pytest.mark.slow
def test_concur_reports_wait_with_business_ones_verdict_resend_asks_again_approve_posts_once(tmp_path: Path) -> None:
    with concur_world() as w:
        env = pair_env(tmp_path, w)
        env.config.write_text(with_approval(env.config.read_text(encoding="utf-8"), CONCUR_FLOW,
                                            {"streams": ["expense_reports"]})
                              + "server:\n  host: 127.0.0.1\n  port: 8080\n", encoding="utf-8")
        env.cli("users", "add", "otto", "--role", "operator", "--password-stdin", input_=PASSWORD + "\n")
        # The dry run shows the same verdict per document, and writes nothing.
        dry = re.sub(r"[│\s]+", " ", env.cli("sync", CONCUR_FLOW, "--dry-run").stdout)  # the table's cells joined
        assert dry.count("Business One would accept it") == 3 and "nothing was written" in dry, dry
        base = env.serve_on_free_port()
        proc = env.popen("run")
        try:
            wait_healthy(base)
            sync_via_api(base, CONCUR_FLOW)
            # Nothing posted: the reports wait. (The pair's payment-request flow, without approval, may post
            # on its own schedule meanwhile: only the reports' entries are counted.)
            assert w.report_entries() == []
            queue = _queue(base)
            assert len(queue) == 3 and all(k.startswith("report:") for k in queue), queue  # the 4th is parked
            first, second = (queue[k] for k in sorted(queue)[:2])
            # The exact JournalEntries body B1 will receive (the external id in Reference3), accepted by B1's check.
            assert first["document"]["Reference3"] == f"concur:{first['record']}"
            assert first["document"]["JournalEntryLines"] and "external_id" not in first["document"]
            assert all(i["accepted"] is True and i["checked_by"] == B1_CHECKED_BY for i in queue.values()), queue
            assert "Business One would accept it" in first["messages"][0]

            # The period of the first report's posting date is locked in B1, the second's expense account is gone:
            # asked again, B1's verdict refuses both, in Business One's own words.
            day = first["document"]["ReferenceDate"]
            account = next(ln["AccountCode"] for ln in second["document"]["JournalEntryLines"] if ln.get("Debit"))
            ids = [first["id"], second["id"]]
            with period_locked(w.b1.state, day), master_changed(w.b1.state, "ChartOfAccounts", account, gone=True):
                assert httpx.post(f"{base}/api/approvals/check", json={"ids": ids}, timeout=60).json() == {"checked": 2}
                queue = _queue(base)
                locked, gone = queue[first["record"]], queue[second["record"]]
                assert locked["accepted"] is False and gone["accepted"] is False
                assert any(m.startswith(b1_msg.with_code(-5002, b1_msg.PERIOD_LOCKED)) for m in locked["messages"])
                assert any(f"invalid account code (AccountCode) '{account}'" in m for m in gone["messages"]), gone
                otto, csrf = console_session(base, "otto", PASSWORD)
                page = otto.get("/approvals").text
                assert "refused" in page and "Posting period locked; specify an alternative date" in page
                assert "B1 has no check call for journal entries" in page
            # Fixed in B1: the operator asks again from the console; B1's check accepts both now.
            resp = otto.post("/approvals/check", data={"csrf": csrf, "ids": ids}, follow_redirects=True)
            assert "Asked the target again about 2 record(s)" in resp.text
            queue = _queue(base)
            assert all(queue[r]["accepted"] is True for r in (first["record"], second["record"])), queue

            # Approved: posted once in B1; approving again posts nothing more.
            resp = httpx.post(f"{base}/api/approvals/approve", json={"ids": [first["id"]]}, timeout=120).json()
            assert resp["approved"] == [first["id"]] and resp["outcome"] == {"posted": 1}, resp
            assert len(w.entries_for(first["record"])) == 1
            again = httpx.post(f"{base}/api/approvals/approve", json={"ids": [first["id"]]}, timeout=120).json()
            assert again == {"approved": [], "outcome": {}}
            assert len(w.entries_for(first["record"])) == 1 and len(w.report_entries()) == 1
            assert set(_queue(base)) == set(queue) - {first["record"]}
        finally:
            stop(proc)
