"""Approval before posting (issue 15), end to end over loopback: the Ramp bills flow with
`approval: {company_codes: ["1000"]}`; the control plane (`ml-connector run`) holds the bills in the
approval queue with the exact BAPI document and SAP's own verdict (BAPI_ACC_DOCUMENT_CHECK); SAP refuses
while the vendor is blocked for posting, accepts once it is unblocked and the operator asks again; an approved bill
posts once (approving twice posts nothing more), a rejected one never posts, through the JSON API and the
console's forms."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ml_connector.sandbox import SandboxHandle
from ml_connector.systems.sap_ecc.posting import xblnr_for
from tests.support import make_env, stop, wait_healthy
from tests.support.approvals import console_session, vendor_blocked, with_approval
from tests.support.bills import add_bill, postable_vendor, ramp_bill, sap_documents, sap_lines
from tests.support.browser import sync_via_api
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
