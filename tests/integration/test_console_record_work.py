"""A person's work on one record in the console (issue 15): edit a field of a failed or parked record
(audited with before and after; a secret field is neither shown nor editable; a record in doubt is not
editable), assign it to a person, add notes; and the mapping editor, whose save resumes what it unblocks."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml_connector.core.models import MappingRow, OutboxRow
from tests.support.console import ConsoleWorld, console_world, logged_in, page_csrf, stage_records
from tests.support.databases import audit_rows


@pytest.fixture()
def world(tmp_path: Path) -> ConsoleWorld:
    with console_world(tmp_path) as w:
        yield w


def _payload(world: ConsoleWorld, eid: int, payload: dict | None = None) -> dict:
    with world.rt.db.session() as s:
        row = s.get(OutboxRow, eid)
        assert row is not None
        if payload is not None:
            row.payload = payload
        return dict(row.payload)


def test_operator_edits_a_failed_records_field_audited_with_before_and_after(world: ConsoleWorld) -> None:
    ids = stage_records(world.rt)
    failed, doubt = ids["0000100001"], ids["0000100002"]
    _payload(world, failed, {"id": "0000100001", "name": "", "lines": [{"amount": 5}],
                             "password": "Hidden-Password-2"})
    otto = logged_in(world, "otto")
    page = otto.get(f"/inbox/record/{failed}").text
    assert "<code>lines.0.amount</code>" in page and "Hidden-Password-2" not in page
    assert "<option>password</option>" not in page  # a secret is not offered for editing
    csrf = page_csrf(otto)
    for field, value, why in (("password", "x", "holds a secret"), ("lines.0.amount", "five", "whole number"),
                              ("nope", "x", "has no field"), ("lines", "x", "not a single value")):
        resp = otto.post(f"/inbox/record/{failed}/edit", data={"csrf": csrf, "field": field, "value": value})
        assert why in resp.text, (field, resp.text[-1500:])
    resp = otto.post(f"/inbox/record/{failed}/edit", data={"csrf": csrf, "field": "name", "value": "ACME Corp"})
    assert "name changed; the record waits for a retry" in resp.text
    resp = otto.post(f"/inbox/record/{failed}/edit", data={"csrf": csrf, "field": "lines.0.amount", "value": "7"})
    assert _payload(world, failed) == {"id": "0000100001", "name": "ACME Corp", "lines": [{"amount": 7}],
                                       "password": "Hidden-Password-2"}
    assert [(e.detail["field"], e.detail["before"], e.detail["after"], e.detail["user"])
            for e in audit_rows(world.rt.db, "record.edited")] == [("name", "", "ACME Corp", "otto"),
                                                                   ("lines.0.amount", 5, 7, "otto")]
    assert "changed <code>name</code> from “” to “ACME Corp”" in resp.text
    # a write in doubt may have reached the target: not editable
    resp = otto.post(f"/inbox/record/{doubt}/edit", data={"csrf": csrf, "field": "id", "value": "x"})
    assert "only a failed or parked record can be edited" in resp.text
    # no worker in this process: the edit is kept, the retry says it could not start
    resp = otto.post(f"/inbox/record/{failed}/edit", data={"csrf": csrf, "field": "name", "value": "ACME",
                                                           "retry": "1"})
    assert "the retry could not start" in resp.text and _payload(world, failed)["name"] == "ACME"


def test_assign_and_notes_are_audited_and_shown_in_the_inbox(world: ConsoleWorld) -> None:
    ids = stage_records(world.rt)
    eid = ids["0000100001"]
    otto = logged_in(world, "otto")
    csrf = page_csrf(otto)
    assert "Choose a person" in otto.post(f"/inbox/record/{eid}/assign",
                                         data={"csrf": csrf, "assignee": "mallory"}).text
    assert "Assigned to ada." in otto.post(f"/inbox/record/{eid}/assign", data={"csrf": csrf, "assignee": "ada"}).text
    assert "Write a note" in otto.post(f"/inbox/record/{eid}/note", data={"csrf": csrf, "note": " "}).text
    resp = otto.post(f"/inbox/record/{eid}/note", data={"csrf": csrf, "note": "asked AP for the vendor's name"})
    assert "Note added." in resp.text and "noted “asked AP for the vendor&#39;s name”" in resp.text
    assert '<dd id="assignee">ada</dd>' in resp.text
    inbox = logged_in(world, "viv").get("/inbox").text
    assert "<td>ada</td>" in inbox and f'href="/inbox/record/{eid}"' in inbox
    [assigned] = audit_rows(world.rt.db, "record.assigned")
    [note] = audit_rows(world.rt.db, "record.note")
    assert (assigned.detail["user"], assigned.detail["assignee"], note.detail["user"]) == ("otto", "ada", "otto")
    assert "record.note" in otto.get("/journey?q=0000100001").text
    # a viewer reads the record but has no forms
    viewer_page = logged_in(world, "viv").get(f"/inbox/record/{eid}").text
    assert "asked AP" in viewer_page and f"/inbox/record/{eid}/note" not in viewer_page


def test_mapping_editor_lists_tables_saves_and_removes(world: ConsoleWorld) -> None:
    ids = stage_records(world.rt)
    otto = logged_in(world, "otto")
    page = otto.get("/mappings?flow=bills_to_sap").text
    assert "entities" in page and "Records wait for: “0e1b5a1e-9999” (1)" in page
    assert 'name="source_value" required maxlength="200" value="0e1b5a1e-9999"' in page
    csrf = page_csrf(otto)
    # saving resumes the parked record it unblocks (no worker here: said, the mapping is kept)
    resp = otto.post("/mappings/set", data={"csrf": csrf, "flow": "bills_to_sap", "table": "entities",
                                            "source_value": "0e1b5a1e-9999", "target_value": "2000"})
    assert "Mapping saved; resuming the records failed" in resp.text
    with world.rt.db.read() as s:
        assert s.get(MappingRow, ("bills_to_sap", "entities", "0e1b5a1e-9999")).target_value == "2000"
        assert s.get(OutboxRow, ids["bill-7"]).state == "parked"  # resumed by the next run or the replay
    resp = otto.post("/mappings/set", data={"csrf": csrf, "flow": "bills_to_sap", "table": "entities",
                                            "source_value": "other-entity", "target_value": "3000"})
    assert "Mapping entities: other-entity → 3000 saved." in resp.text and "<td>other-entity</td>" in resp.text
    resp = otto.post("/mappings/remove", data={"csrf": csrf, "flow": "bills_to_sap", "table": "entities",
                                               "source_value": "other-entity"})
    assert "removed" in resp.text and "<td>other-entity</td>" not in resp.text
    assert [e.detail["actor"] for e in audit_rows(world.rt.db, "mapping.set")] == ["otto", "otto"]
    assert [e.detail["actor"] for e in audit_rows(world.rt.db, "mapping.removed")] == ["otto"]
    assert "No flow named nope" in otto.post("/mappings/set", data={
        "csrf": csrf, "flow": "nope", "table": "t", "source_value": "a", "target_value": "b"}).text
