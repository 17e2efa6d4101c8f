"""SAP Concur → SAP Business One end to end: the CLI in a subprocess, both emulators as HTTP servers
on loopback. One world per module: the tests run in order and each adds what it needs."""

from __future__ import annotations

import csv
import json
import signal
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from ml_connector.config import load_config
from ml_connector.core import audit
from ml_connector.core.runtime import Runtime
from ml_connector.core.servers import serve_in_thread
from ml_connector.core.tokens import MemoryTokenStore
from ml_connector.server.app import create_app
from ml_connector.systems.concur.auth import ConcurCompanyAuth, ConcurRoutingError
from ml_connector.systems.concur.client import ConcurClient
from tests.support import summary_rows, wait_until
from tests.support.concur import (
    FLOW,
    INVOICE_FLOW,
    ConcurWorld,
    add_supplier,
    concur_world,
    copy_report,
    expected_totals,
    pair_env,
    post_foreign_journal_entry,
    posted_totals,
    stored_token,
)
from tests.support.receivers import Receiver

pytestmark = pytest.mark.smoke  # `make test-fast` runs it (this system's or flow's loopback smoke)

R1, R2, R3, R4 = (f"R000{n}F9A3C2E1B0" for n in (1, 2, 3, 4))


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[tuple[ConcurWorld, Any]]:
    with concur_world() as w:
        yield w, pair_env(tmp_path_factory.mktemp("concur_b1"), w, alerts_url=f"{receiver.url}/hook")


def test_approved_reports_post_once_on_vendor_and_cost_centre_and_tie_out(world) -> None:
    w, env = world
    out = env.cli("sync", FLOW).stdout
    assert summary_rows(out)[0][:2] == [4, 3]  # read 4 approved reports in Processing Payment, 3 posted
    for rid in (R1, R2, R4):
        assert len(w.entries_for(f"report:{rid}")) == 1
    assert w.entries_for(f"report:{R3}") == []  # its coffee shop is not in Business One
    # the expense accounts tie out per account and cost centre
    posted = [je for rid in (R1, R2, R4) for je in w.entries_for(f"report:{rid}")]
    assert posted_totals(posted) == expected_totals(w, [R1, R2, R4])
    r2 = w.entries_for(f"report:{R2}")[0]
    credits = {ln["ShortName"]: ln["Credit"] for ln in r2["JournalEntryLines"] if ln.get("Credit")}
    assert credits == {"V20001": 389.9, "V20002": 1020.0, "V20004": 286.5}
    assert sum(ln["Debit"] for ln in r2["JournalEntryLines"]) == pytest.approx(sum(credits.values()))
    parked = env.cli("parked", "--flow", FLOW).stdout
    assert f"report:{R3}" in parked and "vendors:Blue Bottle Coffee" in parked
    # a re-run (another process) posts nothing, with the stored token (no new grant) and the stored
    # Service Layer session (no login: one per session lifetime)
    before, logins = len(w.journal_entries()), w.b1_stats()["logins"]
    again = summary_rows(env.cli("sync", FLOW).stdout)[0]
    assert again[1] == 0 and len(w.journal_entries()) == before
    assert w.b1_stats()["logins"] - logins == 0
    assert w.concur_stats()["token_requests"] == {"password": 1}


def test_review_lists_the_parked_report_for_finance_alerts_and_audits_it(world, receiver: Receiver) -> None:
    w, env = world
    [item] = json.loads(env.cli("review", "--flow", FLOW, "--json").stdout)
    report = w.concur.state.reports[R3]
    assert item["record"] == f"report:{R3}" and item["stream"] == "expense_reports"
    assert item["document"].startswith(f"expense report {report['Name']!r} ({R3})")
    assert "Blue Bottle Coffee" in item["party"] and item["amount"] == f"{report['Total']} USD"
    assert (item["waits_for"], item["table"], item["value"]) == ("vendors:Blue Bottle Coffee", "vendors",
                                                               "Blue Bottle Coffee")
    assert "not a business partner" in item["reason"] and item["since"]
    assert item["hint"] == f"ml-connector mappings set {FLOW} vendors 'Blue Bottle Coffee' <target value>"
    table = env.cli("review", "--flow", FLOW).stdout
    assert "Blue Bottle Coffee" in table and "1 document(s) marked for review" in table
    # the same list in the control plane's JSON API (served on loopback)
    rt = Runtime(load_config(env.config), env.config)
    handle = serve_in_thread(create_app(rt), name="control-plane")
    try:
        got = httpx.get(f"{handle.url}/api/review", params={"flow": FLOW}, timeout=30).json()
        with rt.db.read() as sess:
            audited = [(a.source, a.detail["waits_for"]) for a in audit.events(sess, limit=100000)
                       if a.event == "record.parked"]
    finally:
        handle.stop()
        rt.close()
    assert [(g["record"], g["party"], g["amount"], g["waits_for"]) for g in got] == \
        [(item["record"], item["party"], item["amount"], item["waits_for"])]
    # the operator was alerted once (the re-run parked nothing new), and the audit trail has it
    alerts = [r["json"] for r in receiver.requests if r["json"]["event"] == "record.parked"]
    # one alert per cause a stream's records wait for
    assert len(alerts) == 1 and alerts[0]["subject"] == f"{FLOW}/expense_reports vendors:Blue Bottle Coffee"
    assert "vendors:Blue Bottle Coffee" in alerts[0]["message"] and alerts[0]["details"]["count"] == 1
    assert audited == [(f"{FLOW}:report:{R3}", "vendors:Blue Bottle Coffee")]


def test_unmatched_vendor_waits_for_review_then_posts_once_mapped(world) -> None:
    w, env = world
    out = env.cli("mappings", "set", FLOW, "vendors", "Blue Bottle Coffee", "V00012").stdout
    assert "resumed 1" in out
    [je] = w.entries_for(f"report:{R3}")
    assert {ln.get("ShortName") for ln in je["JournalEntryLines"]} >= {"V00012"}
    assert posted_totals([je]) == expected_totals(w, [R3])


def test_parked_report_posts_by_itself_once_business_one_has_the_vendor(world) -> None:
    w, env = world
    rid = copy_report(w, R3, "R0050NEWVENDOR", vendor="Sightglass Coffee")
    first = summary_rows(env.cli("sync", FLOW).stdout)[0]
    assert first[1] == 0 and first[6] == 1  # nothing created, the new report parked
    assert w.entries_for(f"report:{rid}") == []
    add_supplier(w, "V30001", "SIGHTGLASS COFFEE, INC.")  # the master record appears in B1
    env.cli("sync", FLOW)  # the run maps parked records again first
    [je] = w.entries_for(f"report:{rid}")
    assert "V30001" in {ln.get("ShortName") for ln in je["JournalEntryLines"]}


def test_payment_requests_match_vendors_by_tax_id_then_name(world) -> None:
    w, env = world
    env.cli("sync", INVOICE_FLOW)
    prs = {je["Reference3"]: je for je in w.journal_entries() if je["Reference3"].startswith("concur:payment")}
    assert set(prs) == {"concur:payment_request:PR00017D5E", "concur:payment_request:PR00027D5E"}  # PR3 pending
    regus = prs["concur:payment_request:PR00017D5E"]["JournalEntryLines"]
    assert [ln["ShortName"] for ln in regus if ln.get("ShortName")] == ["V20006"]  # tax id, not the name
    assert [(ln["AccountCode"], ln["Debit"], ln["CostingCode"]) for ln in regus if ln.get("Debit")] == \
        [("6500", 2400.0, "CC03"), ("6600", 350.0, "CC03")]


def test_expired_token_is_refreshed_at_the_company_datacenter(world) -> None:
    w, env = world
    rid = copy_report(w, R2, "R0100EXPIRED")
    w.concur_admin("faults", expire_tokens=True)
    before = w.concur_stats()["token_requests"]
    env.cli("sync", FLOW)
    assert len(w.entries_for(f"report:{rid}")) == 1
    after = w.concur_stats()["token_requests"]
    assert after.get("refresh_token", 0) == before.get("refresh_token", 0) + 1
    assert after["password"] == before["password"]
    assert stored_token(env).extra["geolocation"] == w.c["regions"]["us2"]


def test_refresh_token_rotated_by_a_lost_answer_falls_back_to_the_company_grant(world) -> None:
    w, env = world
    tok = stored_token(env)
    # The refresh that a crash interrupted: Concur rotated the refresh token, we never stored the answer.
    r = httpx.post(tok.extra["geolocation"] + "/oauth2/v0/token",
                   data={"grant_type": "refresh_token", "refresh_token": tok.refresh_token,
                         "client_id": w.c["client_id"], "client_secret": w.c["client_secret"]})
    assert r.status_code == 200 and r.json()["refresh_token"] != tok.refresh_token
    w.concur_admin("faults", expire_tokens=True)
    rid = copy_report(w, R4, "R0101ROTATED")
    before = w.concur_stats()["token_requests"]
    env.cli("sync", FLOW)
    assert len(w.entries_for(f"report:{rid}")) == 1
    assert w.concur_stats()["token_requests"]["password"] == before["password"] + 1
    assert stored_token(env).refresh_token not in (tok.refresh_token, r.json()["refresh_token"])


def test_wrong_datacenter_is_refused(world, tmp_path: Path) -> None:
    w, env = world
    tok = stored_token(env)
    eu = w.c["regions"]["eu2"]
    r = httpx.get(eu + "/api/v3.0/expense/reports", headers={"Authorization": f"Bearer {tok.access_token}"})
    assert r.status_code == 401 and r.json()["geolocation"] == w.c["regions"]["us2"]
    r = httpx.post(eu + "/oauth2/v0/token", data={"grant_type": "refresh_token", "refresh_token": tok.refresh_token,
                                                   "client_id": w.c["client_id"],
                                                   "client_secret": w.c["client_secret"]})
    assert r.status_code == 400 and r.json()["code"] == 16
    # our client sends every call to the token's datacenter and refuses a URL of another one unsent
    auth = ConcurCompanyAuth(w.c["base_url"], w.c["client_id"], w.c["client_secret"],
                             company_uuid=w.c["company_uuid"], request_token=w.c["company_request_token"],
                             store=MemoryTokenStore(), key="probe")
    client = ConcurClient(w.c["base_url"], auth)
    try:
        assert client.ready_reports_page(limit=1)[1].startswith(w.c["regions"]["us2"] + "/")
        refused = w.concur_stats()["wrong_region"]
        with pytest.raises(ConcurRoutingError, match="datacenter"):
            client.get(eu + "/api/v3.0/expense/reports")
        assert w.concur_stats()["wrong_region"] == refused
    finally:
        client.close()


def test_b1_session_timeout_concur_429_and_a_lost_b1_answer_mid_run_still_post_exactly_once(world) -> None:
    w, env = world
    rids = [copy_report(w, R1, f"R02{n:02d}FAULTS") for n in range(3)]
    # Business One drops every session at the 6th request of the run (after the master-data reads
    # and the first lookup); Concur throttles twice; the first post's answer is lost after commit.
    w.b1_admin("faults", expire_sessions_after=6, after_commit_next=1, after_commit_kind="drop")
    w.concur_admin("faults", fail_next=2, fail_kind="429")
    stats = w.b1_stats()
    try:
        env.cli("sync", FLOW)
    finally:
        w.b1_admin("faults", clear_faults=True)
        w.concur_admin("faults", clear_faults=True)
    after = w.b1_stats()
    assert after["faults_injected"].get("expire_sessions") == 1
    # the earlier runs' session is reused; one login after the timeout (the request that met it was
    # replayed once)
    assert after["logins"] - stats["logins"] == 1
    assert after["faults_injected"].get("after_commit_drop", 0) == stats["faults_injected"].get(
        "after_commit_drop", 0) + 1
    for rid in rids:
        assert len(w.entries_for(f"report:{rid}")) == 1
    assert w.concur_stats()["throttled"] >= 2


def test_posting_confirmation_goes_back_to_concur_when_switched_on(world) -> None:
    w, env = world
    rid = copy_report(w, R2, "R0500CONFIRM")
    text = env.config.read_text()
    env.config.write_text(text.replace("dimension_fields: {1: Custom1, 2: Custom2}",
                                       "dimension_fields: {1: Custom1, 2: Custom2}\n"
                                       "      confirm_to_concur: true\n      system_id: B1-HARBOR", 1))
    try:
        env.cli("sync", FLOW)
    finally:
        env.config.write_text(text)
    [je] = w.entries_for(f"report:{rid}")
    confirmations = httpx.get(w.c["admin"] + "/state/confirmations").json()["confirmations"]
    assert [(c["docId"], c["overallPostingStatusCode"], c["postingDocs"][0]["documentNumber"])
            for c in confirmations] == [(f"fis-exp-{rid}", "success", str(je["Number"]))]
    assert w.concur.state.fis_status[f"fis-exp-{rid}"] == "POSTING_CONFIRMED_SUCCESS"


def test_month_end_reconciliation_per_account_and_cost_centre_explains_each_difference(world, tmp_path: Path) -> None:
    w, env = world
    # everything approved in November is posted: both flows tie out
    assert "the systems tie out" in env.cli("reconcile", FLOW, "--period", "2026-11").stdout
    assert "the systems tie out" in env.cli("reconcile", INVOICE_FLOW, "--period", "2026-11").stdout
    # a report that never reached Business One (its FIS document acknowledged by another system, so
    # the flow never read it), one waiting for its vendor, a journal entry made by hand in Business One
    missing = copy_report(w, R2, "R0600MISSING")
    with w.concur.state.lock:
        w.concur.state.fis_status[f"fis-exp-{missing}"] = "ACKNOWLEDGED"
    parked = copy_report(w, R4, "R0601PARKED", vendor="Corner Deli")
    env.cli("sync", FLOW)
    assert w.entries_for(f"report:{parked}") == [] and w.entries_for(f"report:{missing}") == []
    missing_total = expected_totals(w, [missing])
    post_foreign_journal_entry(w, "concur:report:R0999GHOST", 75.0, "2026-11-21")
    csv_path = tmp_path / "rec.csv"
    r = env.cli("reconcile", FLOW, "--period", "2026-11", "--csv", str(csv_path), check=False)
    assert r.returncode == 1 and "difference(s)" in r.stdout
    rows = list(csv.reader(csv_path.read_text().splitlines()))
    assert rows[0] == ["account", "cost center", "currency", "SAP Concur", "SAP Business One", "difference",
                       "record", "why"]
    why = {(row[6], row[7].split(":")[0]) for row in rows[1:] if row[6]}
    assert why == {(f"report:{missing}", "not in the target yet (not synced)"),
                   (f"report:{parked}", "parked"), ("concur:report:R0999GHOST", "in the target only")}
    # the missing report's amounts are the difference on its accounts and cost centres
    for (account, cc), amount in missing_total.items():
        [line] = [row for row in rows[1:] if row[:3] == [account, cc, "USD"] and row[6] == f"report:{missing}"]
        assert Decimal(line[3]) == amount and Decimal(line[4]) == 0
    [ghost] = [row for row in rows[1:] if row[6] == "concur:report:R0999GHOST"]
    assert ghost[:3] == ["6010", "CC01", "USD"] and Decimal(ghost[4]) == Decimal("75.00")


@pytest.mark.slow  # a CLI process SIGKILLed while it posts, and a second run
def test_sigkill_mid_post_leaves_exactly_one_journal_entry_per_report(world) -> None:
    w, env = world
    rids = [copy_report(w, R4, f"R04{n:02d}KILLED") for n in range(24)]
    w.b1_admin("faults", latency=0.1)  # slow Service Layer answers: the kill lands among the posts
    proc = env.popen("sync", FLOW)
    try:
        refs = {f"concur:report:{rid}" for rid in rids}
        wait_until(lambda: len(refs & {je["Reference3"] for je in w.journal_entries()}) >= 3, timeout=120,
                   interval=0.05)
        time.sleep(0.15)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        w.b1_admin("faults", clear_faults=True)
    partial = len(refs & {je["Reference3"] for je in w.journal_entries()})
    assert 0 < partial < len(rids), "the kill should land mid-run"
    env.cli("sync", FLOW)
    posted = [je["Reference3"] for je in w.journal_entries() if je["Reference3"] in refs]
    assert sorted(posted) == sorted(refs)  # every report once, none twice
