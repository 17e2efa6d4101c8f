"""The operators' console: who may see and do what, CSRF, login throttling, no secret in any page,
the inbox grouped by cause, a record's journey, and /metrics (issue 15)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ml_connector.core.models import RunRow
from ml_connector.core.vault import Vault
from ml_connector.server.agents.models import AgentRow
from ml_connector.server.api_auth import create_token
from ml_connector.server.console.users import LOCK_AFTER, ClientThrottle, disable_user
from tests.support.console import (
    PAGES,
    PASSWORDS,
    POSTS,
    ConsoleWorld,
    console_world,
    logged_in,
    login,
    page_csrf,
    stage_records,
)
from tests.support.databases import audit_dump, audit_rows

pytestmark = pytest.mark.smoke  # `make test-fast` runs it (this system's or flow's loopback smoke)


@pytest.fixture()
def world(tmp_path: Path) -> ConsoleWorld:
    with console_world(tmp_path) as w:
        yield w


def test_every_page_and_form_needs_a_session(world: ConsoleWorld) -> None:
    for path in PAGES:
        resp = world.client.get(path, follow_redirects=False)
        assert resp.status_code == 303, path
        assert resp.headers["location"].startswith("/login?next=/"), path
    for path in POSTS:
        assert world.client.post(path, data={"csrf": "x"}, follow_redirects=False).status_code == 303, path
    # the login page itself and the vendored htmx need none
    assert world.client.get("/login").status_code == 200
    assert world.client.get("/static/htmx.js").text.startswith("var htmx=")


def test_roles_on_every_page_and_form(world: ConsoleWorld) -> None:
    ids = stage_records(world.rt)
    for user, role in (("viv", "viewer"), ("otto", "operator"), ("ada", "admin")):
        client = logged_in(world, user)
        for path in PAGES:
            resp = client.get(path)
            assert resp.status_code == 200, (user, path)
            assert resp.headers["content-security-policy"].startswith("default-src 'self'")
        csrf = page_csrf(client)
        allowed = {"viewer": 0, "operator": 1, "admin": 2}
        for path, needed in POSTS.items():
            if path == "/logout" or allowed[role] >= allowed[needed]:
                continue
            resp = client.post(path, data={"csrf": csrf, "ids": [ids["0000100001"]], "flow": "bills_to_sap",
                                           "table": "entities", "source_value": "x", "target_value": "1000",
                                           "name": "ramp_client_secret", "value": "Should-Not-Be-Stored-1",
                                           "note": "n", "site": "plant-9", "ttl": "900"})
            assert resp.status_code == 403, (user, path)
            assert f"needs the <strong>{needed}</strong> role" in resp.text
    # a viewer sees no replay or mapping form, an operator no credential form
    viewer_inbox = logged_in(world, "viv").get("/inbox").text
    assert "Replay" not in viewer_inbox and "/inbox/mapping" not in viewer_inbox
    assert "/connections/secret" not in logged_in(world, "otto").get("/connections").text
    assert not world.rt.vault.exists("ramp_client_secret")  # the refused posts changed nothing
    assert not audit_rows(world.rt.db, "record.resolved") and not audit_rows(world.rt.db, "agent.token.issued")


def test_operator_saves_a_mapping_and_admin_stores_a_credential_audited_with_the_user(world: ConsoleWorld) -> None:
    otto = logged_in(world, "otto")
    resp = otto.post("/inbox/mapping", data={"csrf": page_csrf(otto), "flow": "vendors_to_ramp", "table": "tax",
                                             "source_value": "V1", "target_value": "TAX-1"})
    assert resp.status_code == 200 and "Mapping tax: V1 → TAX-1 saved" in resp.text
    [event] = audit_rows(world.rt.db, "mapping.set")
    assert event.detail["actor"] == "otto"

    ada = logged_in(world, "ada")
    resp = ada.post("/connections/secret", data={"csrf": page_csrf(ada), "name": "ramp_client_secret",
                                                 "value": "Brand-New-Secret-9"})
    assert resp.status_code == 200 and "it will not be shown again" in resp.text
    assert world.rt.vault.get("ramp_client_secret") == "Brand-New-Secret-9"
    [event] = audit_rows(world.rt.db, "console.credential.set")
    assert event.detail == {"user": "ada", "name": "ramp_client_secret"}
    # a credential no connection names is refused (the form is not a general vault writer)
    resp = ada.post("/connections/secret", data={"csrf": page_csrf(ada), "name": "other", "value": "x"})
    assert "Choose a credential that a connection names" in resp.text and not world.rt.vault.exists("other")


def test_csrf_is_refused_without_its_token(world: ConsoleWorld) -> None:
    ids = stage_records(world.rt)
    otto = logged_in(world, "otto")
    for data in ({}, {"csrf": ""}, {"csrf": "forged-token"}):
        resp = otto.post("/inbox/replay", data={**data, "ids": [ids["0000100001"]]})
        assert resp.status_code == 403 and "security token" in resp.text
    assert len(audit_rows(world.rt.db, "console.csrf_refused")) == 3
    # another session's token is not this one's
    other = logged_in(world, "otto")
    resp = otto.post("/inbox/replay", data={"csrf": page_csrf(other), "ids": [ids["0000100001"]]})
    assert resp.status_code == 403
    assert not audit_rows(world.rt.db, "console.replay")
    # the login form has its own token (a cookie of the login page and the form field must agree)
    resp = world.client.post("/login", data={"username": "otto", "password": PASSWORDS["otto"], "csrf": "x"},
                             follow_redirects=False)
    assert resp.status_code == 403 and "mlc_session" not in resp.headers.get("set-cookie", "")


def test_login_throttling_locks_the_account_and_then_the_address(world: ConsoleWorld) -> None:
    for _ in range(LOCK_AFTER):
        assert login(world.client, "otto", "wrong-password-x").status_code == 401
    # locked: even the right password is refused for now
    resp = login(world.client, "otto")
    assert resp.status_code == 429 and "Too many failed attempts" in resp.text
    assert login(world.client, "ada").status_code == 303  # another account is not locked
    reasons = [r.detail["reason"] for r in audit_rows(world.rt.db, "console.login") if r.outcome == "failed"]
    assert reasons == ["bad_credentials"] * LOCK_AFTER + ["locked"]
    assert "wrong-password-x" not in audit_dump(world.rt.db)

    throttle = ClientThrottle(limit=3, window=60.0)
    for t in (0.0, 1.0, 2.0):
        assert not throttle.blocked("10.0.0.1", now=t)
        throttle.failed("10.0.0.1", now=t)
    assert throttle.blocked("10.0.0.1", now=3.0) and not throttle.blocked("10.0.0.2", now=3.0)
    assert not throttle.blocked("10.0.0.1", now=61.0)  # the window slid past the failures


def test_disabled_user_loses_its_session(world: ConsoleWorld) -> None:
    viv = logged_in(world, "viv")
    assert viv.get("/").status_code == 200
    assert disable_user(world.rt.db, "viv", actor="ada")
    assert viv.get("/", follow_redirects=False).status_code == 303
    assert login(world.client, "viv").status_code == 401


def test_logout_ends_the_session(world: ConsoleWorld) -> None:
    viv = logged_in(world, "viv")
    cookie = viv.cookies.get("mlc_session")
    assert viv.post("/logout", data={"csrf": page_csrf(viv)}, follow_redirects=False).status_code == 303
    again = type(viv)(world.client.app, cookies={"mlc_session": cookie or ""})
    assert again.get("/", follow_redirects=False).status_code == 303


def test_no_secret_in_any_page(world: ConsoleWorld) -> None:
    secret = "Ramp-Top-Secret-42"
    Vault.set(world.rt.vault, "ramp_client_secret", secret)
    stage_records(world.rt)
    ada = logged_in(world, "ada")
    pages = [ada.get(p).text for p in PAGES] + [ada.get("/metrics").text]
    for text in pages:
        assert secret not in text
        assert not any(p in text for p in PASSWORDS.values())
        assert "$argon2" not in text
    assert "stored" in ada.get("/connections").text  # that it is set is shown, never its value


def test_inbox_groups_records_by_cause_in_plain_words(world: ConsoleWorld) -> None:
    stage_records(world.rt)
    text = logged_in(world, "otto").get("/inbox").text
    assert "Ramp rejected the data" in text  # the system's own catalogue entry (DEVELOPER_7001)
    assert "The target system refused our credentials" in text
    assert "Waiting for a mapping in table “entities”" in text
    assert 'name="source_value" value="0e1b5a1e-9999"' in text  # the mapping form is filled in
    assert "0000100003" not in text  # posted records are not in the inbox
    assert re.search(r"Replay all 1 of this kind", text)


def test_journey_shows_a_records_events_in_order(world: ConsoleWorld) -> None:
    stage_records(world.rt)
    viv = logged_in(world, "viv")
    text = viv.get("/journey?q=0000100003").text
    assert "vendors_to_ramp / vendors" in text and "record.create" in text
    assert "ramp-vendor-3" in text  # the target id
    assert viv.get("/journey?q=ramp-vendor-3").text.count("0000100003") >= 2  # found by the target's id too
    partial = viv.get("/journey?q=00001000").text
    assert "Records with ids containing it" in partial and "0000100002" in partial


def test_metrics_are_generic_per_flow_and_stream(world: ConsoleWorld) -> None:
    stage_records(world.rt)
    with world.rt.db.session() as s:
        s.add(AgentRow(id="agt_1", name="gw", site="plant-1", public_key="k", state="online",
                       created_at=time.time(), last_seen_at=time.time() - 30))
    text = world.client.get("/metrics").text  # loopback-only server: open like the JSON API
    assert 'mlc_records_failed{flow="vendors_to_ramp",stream="vendors"} 2.0' in text
    assert 'mlc_records_parked{flow="bills_to_sap",stream="bills"} 1.0' in text
    assert 'mlc_records_moved_total{flow="vendors_to_ramp",stream="vendors"} 1.0' in text
    lag = re.search(r'mlc_agent_seconds_since_seen\{agent="agt_1",site="plant-1",state="online"\} ([0-9.]+)', text)
    assert lag is not None and float(lag.group(1)) >= 30


def test_overview_puts_what_needs_a_person_first(world: ConsoleWorld) -> None:
    stage_records(world.rt)
    long_ago = datetime.now(UTC) - timedelta(days=30)  # vendors_to_ramp runs every 7 days
    with world.rt.db.session() as s:
        s.add(RunRow(run_id="r1", flow="vendors_to_ramp", stream="vendors", mode="incremental", status="succeeded",
                     counts={"read": 3}, started_at=long_ago, finished_at=long_ago))
    page = logged_in(world, "viv").get("/").text
    attention = page[page.index("Needs a person"):page.index('id="flows-h"')]
    assert "2 record(s) of vendors_to_ramp failed" in attention
    assert "1 record(s) of bills_to_sap wait for a mapping" in attention
    assert "vendors_to_ramp / vendors is stale" in attention
    assert attention.index("failed") < attention.index("stale")  # errors before warnings


def test_api_tokens_have_roles(tmp_path: Path) -> None:
    with console_world(tmp_path, server="0.0.0.0") as w:
        _, viewer = create_token(w.rt.db, "dash", "viewer")
        _, operator = create_token(w.rt.db, "ops", "operator")
        as_viewer = {"Authorization": f"Bearer {viewer}"}
        assert w.client.get("/api/flows", headers=as_viewer).status_code == 200
        assert w.client.get("/metrics", headers=as_viewer).status_code == 200
        assert w.client.get("/metrics").status_code == 401
        resp = w.client.post("/api/replay", json={"ids": []}, headers=as_viewer)
        assert resp.status_code == 403 and "operator role" in resp.json()["detail"]["message"]
        assert w.client.post("/api/flows/vendors_to_ramp/sync", json={}, headers=as_viewer).status_code == 403
        resp = w.client.post("/api/replay", json={"ids": []}, headers={"Authorization": f"Bearer {operator}"})
        assert resp.status_code == 200 and resp.json() == {"replayed": 0, "outcome": {}}
        assert not audit_rows(w.rt.db, "api.replay")  # refused, or nothing to replay: nothing was done
        resp = w.client.post("/api/flows/nope/sync", json={}, headers={"Authorization": f"Bearer {operator}"})
        assert resp.status_code == 404


def test_reconciliation_page_offers_the_flows_that_have_one(world: ConsoleWorld) -> None:
    viv = logged_in(world, "viv")
    page = viv.get("/reconcile").text
    assert "<option selected>bills_to_sap</option>" in page or "<option >bills_to_sap</option>" in page
    assert "vendors_to_ramp</option>" not in page  # master data has no month-end totals
    bad = viv.get("/reconcile?flow=bills_to_sap&period=2025-13").text
    assert "period &#39;2025-13&#39;: expected YYYY-MM" in bad
    assert viv.get("/reconcile/export?flow=nope&period=2025-11").status_code == 400


def test_operator_resolves_records_without_retry_with_a_note(world: ConsoleWorld) -> None:
    ids = stage_records(world.rt)
    otto = logged_in(world, "otto")
    assert "Select records and say why" in otto.post("/inbox/resolve", data={
        "csrf": page_csrf(otto), "ids": [ids["0000100001"]], "note": " "}).text
    resp = otto.post("/inbox/resolve", data={"csrf": page_csrf(otto), "ids": [ids["0000100001"], ids["bill-7"]],
                                             "note": "created by hand in Ramp"})
    assert "Resolved 2 record(s) without a retry" in resp.text
    assert "0000100001" not in resp.text and "bill-7" not in resp.text  # gone from the inbox
    events = audit_rows(world.rt.db, "record.resolved")
    assert {(e.source, e.detail["user"], e.detail["note"]) for e in events} == {
        ("vendors_to_ramp:0000100001", "otto", "created by hand in Ramp"),
        ("bills_to_sap:bill-7", "otto", "created by hand in Ramp")}
    journey = otto.get("/journey?q=0000100001").text
    assert "resolved" in journey and "record.resolved" in journey


def test_admin_pairs_and_revokes_agents(world: ConsoleWorld) -> None:
    with world.rt.db.session() as s:
        s.add(AgentRow(id="agt_1", name="gw", site="plant-1", public_key="k", state="online",
                       created_at=time.time(), last_seen_at=time.time()))
    ada = logged_in(world, "ada")
    page = ada.post("/agents/token", data={"csrf": page_csrf(ada), "site": "plant-2", "ttl": "3600"}).text
    token = re.search(r"--token (\S+)", page)
    assert token is not None and "--control-plane-key SHA256:" in page
    assert token.group(1) not in audit_dump(world.rt.db)  # shown once, kept nowhere
    [issued] = audit_rows(world.rt.db, "console.agent.token_issued")
    assert issued.detail == {"user": "ada", "site": "plant-2", "ttl_seconds": 3600}
    assert token.group(1) not in ada.get("/agents").text
    assert "Agent agt_1 revoked" in ada.post("/agents/agt_1/revoke", data={"csrf": page_csrf(ada)}).text
    with world.rt.db.read() as s:
        assert s.get(AgentRow, "agt_1").state == "revoked"
