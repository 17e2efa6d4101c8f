"""The approval queue in the console and on the JSON API without a target (issue 15): who may see and act,
CSRF, the verdict and the document shown (redacted), reject audited with its note; an approval that
cannot be sent yet stays approved (the queue says so) and is approved once."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml_connector.core.models import OutboxRow
from ml_connector.server.api_auth import create_token
from tests.support.approvals import stage_approvals
from tests.support.console import ConsoleWorld, console_world, logged_in, page_csrf
from tests.support.databases import audit_rows


@pytest.fixture()
def world(tmp_path: Path) -> ConsoleWorld:
    with console_world(tmp_path) as w:
        yield w


def _state(world: ConsoleWorld, eid: int) -> str:
    with world.rt.db.read() as s:
        row = s.get(OutboxRow, eid)
        assert row is not None
        return row.state


def test_viewer_reads_the_queue_with_the_verdict_but_cannot_act(world: ConsoleWorld) -> None:
    ids = stage_approvals(world.rt)
    viv = logged_in(world, "viv")
    page = viv.get("/approvals").text
    assert "bill-a1" in page and "bill-a2" in page
    assert "refused" in page and "E F5 201 Posting period 006 2025 is not open" in page
    assert "not asked yet" in page  # bill-a2 has no verdict on record
    assert "Hidden-Password-1" not in page  # the document is shown redacted
    assert "/approvals/approve" not in page and "/approvals/reject" not in page
    resp = viv.post("/approvals/approve", data={"csrf": page_csrf(viv), "ids": [ids["bill-a1"]]})
    assert resp.status_code == 403 and _state(world, ids["bill-a1"]) == "approval"
    assert "2 record(s) of bills_to_sap wait for approval" in viv.get("/").text


def test_operator_rejects_with_a_note_and_approves_once_csrf_required(world: ConsoleWorld) -> None:
    ids = stage_approvals(world.rt)
    otto = logged_in(world, "otto")
    for data in ({}, {"csrf": "forged"}):
        assert otto.post("/approvals/reject", data={**data, "ids": [ids["bill-a1"]], "note": "x"}).status_code == 403
    assert "Say why" in otto.post("/approvals/reject", data={"csrf": page_csrf(otto), "ids": [ids["bill-a1"]],
                                                            "note": "  "}).text
    resp = otto.post("/approvals/reject", data={"csrf": page_csrf(otto), "ids": [ids["bill-a1"]],
                                                "note": "vendor asked to cancel"})
    assert "Rejected 1 record(s)" in resp.text and _state(world, ids["bill-a1"]) == "rejected"
    [event] = audit_rows(world.rt.db, "approval.rejected")
    assert (event.source, event.detail["user"], event.detail["note"]) == (
        "bills_to_sap:bill-a1", "otto", "vendor asked to cancel")
    # a rejected record cannot be approved afterwards
    otto.post("/approvals/approve", data={"csrf": page_csrf(otto), "ids": [ids["bill-a1"]]})
    assert _state(world, ids["bill-a1"]) == "rejected"
    # no worker runs in this process: the approval is kept, the page says it is not sent yet
    resp = otto.post("/approvals/approve", data={"csrf": page_csrf(otto), "ids": [ids["bill-a2"]]})
    assert "sending could not start" in resp.text and _state(world, ids["bill-a2"]) == "approved"
    assert "approved, not sent yet" in resp.text and "Send now" in resp.text
    otto.post("/approvals/approve", data={"csrf": page_csrf(otto), "ids": [ids["bill-a2"]]})
    assert [e.detail["user"] for e in audit_rows(world.rt.db, "approval.approved")] == ["otto"]


def test_json_api_roles_on_the_approval_queue(tmp_path: Path) -> None:
    with console_world(tmp_path, server="0.0.0.0") as w:
        ids = stage_approvals(w.rt)
        _, viewer = create_token(w.rt.db, "dash", "viewer")
        _, operator = create_token(w.rt.db, "ops", "operator")
        as_viewer = {"Authorization": f"Bearer {viewer}"}
        as_operator = {"Authorization": f"Bearer {operator}"}
        assert w.client.get("/api/approvals").status_code == 401
        items = w.client.get("/api/approvals", headers=as_viewer).json()
        assert [(i["record"], i["accepted"]) for i in items] == [("bill-a1", False), ("bill-a2", None)]
        assert "Hidden-Password-1" not in str(items)
        for path, body in (("/api/approvals/approve", {"ids": [ids["bill-a1"]]}),
                           ("/api/approvals/reject", {"ids": [ids["bill-a1"]], "note": "n"}),
                           ("/api/approvals/check", {"ids": [ids["bill-a1"]]})):
            assert w.client.post(path, json=body, headers=as_viewer).status_code == 403, path
        assert w.client.post("/api/approvals/reject", json={"ids": [ids["bill-a1"]], "note": ""},
                             headers=as_operator).status_code == 422
        resp = w.client.post("/api/approvals/reject", json={"ids": [ids["bill-a1"]], "note": "not ours"},
                             headers=as_operator)
        assert resp.json() == {"rejected": [ids["bill-a1"]]}
        [event] = audit_rows(w.rt.db, "approval.rejected")
        assert event.detail["user"].startswith("token:ops:")
