"""The console in a real browser (issue 15): an admin logs in, sees the records that failed because Ramp
refused the credential, enters the right credential (write-only), tests the connection, replays the
records and finds them posted; then a Ramp bill parked on a missing entity mapping posts to SAP once the
mapping is saved in the inbox; then a new connection is added, its credential entered and pinged. The
control plane runs as `ml-connector run` (worker and HTTP server in a subprocess) against the sandboxes
on loopback; screenshots are kept in test-artifacts/."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from ml_connector.sandbox import SandboxHandle
from ml_connector.systems.ramp.sandbox.state import SECOND_ENTITY_ID
from tests.support import make_env, stop, wait_healthy
from tests.support.bills import add_bill, postable_vendor, sap_documents
from tests.support.browser import Screenshots, browser_paths, chromium_driver, sync_via_api
from tests.support.env import RAMP_SECRET
from tests.support.sandboxes import running_sandboxes

ADMIN_PASSWORD = "admin-password-1"
WRONG_SECRET = "Wrong-Ramp-Secret-1"


@pytest.fixture()
def sandboxes() -> Iterator[dict[str, SandboxHandle]]:
    with running_sandboxes(vendors=30) as handles:
        yield handles


@pytest.mark.browser
def test_admin_fixes_a_refused_credential_and_replays_the_failed_records(tmp_path: Path, sandboxes) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    browser_paths()  # skip early (before the sandboxes' work) when there is no browser outside `make test`
    ramp = sandboxes["ramp"].state
    env = make_env(tmp_path, sandboxes["sap_ecc"].url, sandboxes["ramp"].url, ramp_secret=WRONG_SECRET)
    # The chart of accounts: its records are staged and refused at delivery (the vendors stream now
    # lists Ramp's Bill Pay vendors first, so a refused credential stops it before anything is staged).
    assert env.cli("sync", "vendors_to_ramp", "--stream", "gl_accounts", check=False).returncode != 0
    db = sqlite3.connect(tmp_path / "data" / "ml-connector.sqlite")
    stuck = db.execute("select count(*) from mlc_outbox where state = 'in_flight'").fetchone()[0]
    assert stuck > 0 and not ramp.gl_accounts.by_id
    env.cli("users", "add", "ada", "--role", "admin", "--password-stdin", input_=ADMIN_PASSWORD + "\n")
    base = env.serve_on_free_port()
    proc = env.popen("run")
    shots = Screenshots("console-browser")
    try:
        wait_healthy(base)
        with chromium_driver(tmp_path / "downloads") as b:
            wait = WebDriverWait(b, 60)
            b.get(base + "/inbox")  # not logged in: the login page, then back here
            wait.until(ec.presence_of_element_located((By.ID, "username")))
            shots.take(b, "login")
            b.find_element(By.ID, "username").send_keys("ada")
            b.find_element(By.ID, "password").send_keys(ADMIN_PASSWORD)
            b.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
            wait.until(ec.title_contains("Inbox"))
            heading = b.find_element(By.XPATH, "//h2[contains(., 'refused our credentials')]")
            assert f"({stuck} records)" in heading.text
            shots.take(b, "inbox-refused-credential")

            b.find_element(By.LINK_TEXT, "Overview").click()
            wait.until(ec.title_contains("Overview"))
            assert f"{stuck} record(s) of vendors_to_ramp failed" in b.find_element(By.CLASS_NAME, "attention").text
            shots.take(b, "overview")

            # Fix the cause: the right credential, entered once and never shown again.
            b.find_element(By.LINK_TEXT, "Connections").click()
            wait.until(ec.title_contains("Connections"))
            Select(b.find_element(By.ID, "secret-name")).select_by_value("ramp_client_secret")
            b.find_element(By.ID, "secret-value").send_keys(RAMP_SECRET)
            b.find_element(By.XPATH, "//button[.='Store the credential']").click()
            wait.until(ec.text_to_be_present_in_element((By.CLASS_NAME, "msg"), "will not be shown again"))
            assert RAMP_SECRET not in b.page_source and WRONG_SECRET not in b.page_source
            # Test it (htmx posts the form and puts the answer beside the button).
            row = b.find_element(By.XPATH, "//tr[td[1]='ramp']")
            row.find_element(By.XPATH, ".//button[.='Test it']").click()
            wait.until(lambda _: "OK:" in row.find_element(By.TAG_NAME, "output").text)
            assert "/connections" in b.current_url  # stayed on the page: the answer came in place
            shots.take(b, "connection-tested")

            b.find_element(By.LINK_TEXT, "Inbox").click()
            wait.until(ec.title_contains("Inbox"))
            b.find_element(By.XPATH, f"//button[.='Replay all {stuck} of this kind']").click()
            wait.until(ec.text_to_be_present_in_element((By.CLASS_NAME, "msg"), f"Replayed {stuck} record(s)"))
            assert "Nothing waits" in b.page_source
            shots.take(b, "replayed")

            [key] = db.execute("select source_key from mlc_outbox where op = 'create' limit 1").fetchone()
            b.get(f"{base}/journey?q={key}")
            assert "posted" in b.page_source and "record.create" in b.page_source
            shots.take(b, "journey")
            # each refused record settled once after the fix: every created account is in Ramp (the
            # worker's schedule may have run the other streams meanwhile, now that the credential works)
            states = dict(db.execute("select state, count(*) from mlc_outbox where stream = 'gl_accounts' "
                                     "group by state").fetchall())
            created = db.execute("select count(*) from mlc_outbox where stream = 'gl_accounts' and op = 'create' "
                                 "and state = 'posted'").fetchone()[0]
            assert sum(states.values()) == stuck and set(states) <= {"posted", "resolved"}, states
            assert len(ramp.gl_accounts.by_id) == created > 0

            # A bill of an entity with no company code mapped is parked; saving the mapping posts it.
            sync_via_api(base, "vendors_to_ramp")  # its vendor in Ramp first (the credential is right now)
            bill = add_bill(env, postable_vendor(sandboxes), [{"amount": "55", "gl_account": "0000610000",
                                                               "cost_center": "0000001410"}],
                            entity_id=SECOND_ENTITY_ID, invoice_number="INV-900", allow_unknown=True)
            sync_via_api(base, "bills_to_sap")
            assert sap_documents(sandboxes, bill["id"]) == []
            b.get(base + "/inbox")
            group = b.find_element(By.XPATH, "//section[h2[contains(., 'Waiting for a mapping in table')]]")
            assert bill["id"] in group.text
            field = group.find_element(By.NAME, "target_value")
            assert b.find_element(By.CSS_SELECTOR, f"label[for='{field.get_attribute('id')}']").text.endswith("means")
            field.send_keys("1000")
            shots.take(b, "parked-mapping")
            group.find_element(By.XPATH, ".//button[.='Save the mapping and resume']").click()
            wait.until(ec.text_to_be_present_in_element((By.CLASS_NAME, "msg"), "resumed 1 record(s)"))
            shots.take(b, "mapping-resumed")

            # Add a new connection (a second Ramp client), enter its credential, and ping it.
            b.find_element(By.LINK_TEXT, "Connections").click()
            wait.until(ec.title_contains("Connections"))
            Select(b.find_element(By.ID, "add-type")).select_by_value("ramp")
            b.find_element(By.XPATH, "//button[.='Start from its example']").click()
            wait.until(ec.presence_of_element_located((By.ID, "conn-settings")))
            b.find_element(By.ID, "conn-name").send_keys("ramp_backup")
            settings = b.find_element(By.ID, "conn-settings")
            settings.clear()
            settings.send_keys(f"base_url: {sandboxes['ramp'].url}\nauth:\n  client_id: ramp_demo_client\n"
                               "  client_secret_secret: ramp_backup_secret\n")
            shots.take(b, "connection-new")
            b.find_element(By.XPATH, "//button[.='Add the connection']").click()
            wait.until(ec.text_to_be_present_in_element((By.CLASS_NAME, "msg"), "Connection ramp_backup added"))
            Select(b.find_element(By.ID, "secret-name")).select_by_value("ramp_backup_secret")
            b.find_element(By.ID, "secret-value").send_keys(RAMP_SECRET)
            b.find_element(By.XPATH, "//button[.='Store the credential']").click()
            wait.until(ec.text_to_be_present_in_element((By.CLASS_NAME, "msg"), "will not be shown again"))
            row = b.find_element(By.XPATH, "//tr[td[1]='ramp_backup']")
            row.find_element(By.XPATH, ".//button[.='Test it']").click()
            wait.until(lambda _: "OK:" in row.find_element(By.TAG_NAME, "output").text)
            shots.take(b, "connection-new-tested")
            assert RAMP_SECRET not in b.page_source
        assert len(sap_documents(sandboxes, bill["id"])) == 1
        trail = db.execute("select event, detail from mlc_audit where event like 'console.%' order by id").fetchall()
        events = [e for e, _ in trail]
        assert {"console.login", "console.credential.set", "console.ping", "console.replay",
                "console.connection.added"} <= set(events)
        assert "ramp_backup:" in env.config.read_text(encoding="utf-8")
        [(detail,)] = db.execute("select detail from mlc_audit where event = 'mapping.set'").fetchall()
        assert '"actor": "ada"' in detail
        syncs = db.execute("select detail from mlc_audit where event = 'api.sync'").fetchall()
        # the JSON API's syncs (master data, then bills), without a token on a loopback server
        assert len(syncs) == 2 and all('"user": "loopback"' in d for (d,) in syncs)
        assert all('"user": "ada"' in d for e, d in trail if e != "console.login")
        assert RAMP_SECRET not in repr(trail) and WRONG_SECRET not in repr(trail)
    finally:
        stop(proc)
