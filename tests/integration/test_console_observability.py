"""What the console shows about the platform's health (issue 15): each provider's API budget use on the
overview, the calls a run made per system, a record's kept body (redacted) with its digest in the
journey, and each connection's token and session health; no secret in any of it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ml_connector.core import audit, ratelimit
from ml_connector.core.models import OutboxRow, RunRow, TokenRow
from ml_connector.server.agents.models import AgentRow
from tests.support.console import ConsoleWorld, console_world, logged_in, page_csrf, stage_records
from tests.support.databases import audit_rows


@pytest.fixture()
def world(tmp_path: Path) -> Iterator[ConsoleWorld]:
    with console_world(tmp_path, sap_url="http://127.0.0.1:18", ramp_url="http://127.0.0.1:19") as w:
        yield w


def test_overview_shows_each_budgets_use(world: ConsoleWorld) -> None:
    ratelimit.reset_budgets()
    try:
        lim = ratelimit.budgets_for(world.rt.db).window("ramp", "client-x", 10, 60.0)
        for _ in range(9):
            lim.acquire()
        page = logged_in(world, "viv").get("/").text
    finally:
        ratelimit.reset_budgets()
    assert '<tr><td>ramp</td><td>client-x</td><td class="num">9</td><td class="num">10</td>' in page
    assert '<span class="bad">90 %</span>' in page  # at the alert's threshold (0.9)
    attention = page[page.index("Needs a person"):page.index('id="flows-h"')]
    assert "API budget of ramp (client-x) is 9/10 used" in attention


def test_run_page_lists_the_calls_made_per_system(world: ConsoleWorld) -> None:
    with world.rt.db.session() as s:
        s.add(RunRow(run_id="r-calls", flow="bills_to_sap", stream="bills", mode="incremental", status="succeeded",
                     counts={"read": 2}))
        for step, made in (("page", {"127.0.0.1:19": 3}), ("deliver", {"127.0.0.1:18": 2, "127.0.0.1:19": 1})):
            audit.record(s, "run.calls", flow="bills_to_sap", stream="bills", run_id="r-calls",
                         detail={"step": step, "calls": made})
    page = logged_in(world, "viv").get("/runs/r-calls").text
    assert '<tr><td>ramp</td><td class="num">4</td></tr>' in page
    assert '<tr><td>sap_ecc</td><td class="num">2</td></tr>' in page


def test_journey_shows_the_kept_body_redacted_with_its_digest(world: ConsoleWorld) -> None:
    failed = stage_records(world.rt)["0000100001"]
    page = logged_in(world, "viv").get("/journey?q=0000100003").text
    digest = audit.digest({"id": "0000100003"})
    assert f'title="{digest}"' in page  # the body's digest, the same as the write event's request digest
    assert page.count(digest[:12]) >= 2
    assert "&#34;id&#34;: &#34;0000100003&#34;" in page
    with world.rt.db.session() as s:
        row = s.get(OutboxRow, failed)
        row.payload = {"id": "0000100001", "password": "Body-Secret-5"}
    page = logged_in(world, "viv").get("/journey?q=0000100001").text
    assert "&#34;password&#34;: &#34;***&#34;" in page and "Body-Secret-5" not in page


def test_connections_show_token_and_session_health_without_values(world: ConsoleWorld) -> None:
    now = time.time()
    with world.rt.db.session() as s:
        s.add(TokenRow(connection="ramp", key_id="k", nonce=b"n", ciphertext=b"Cipher-Text-1",
                       expires_at=int(now + 3600), refresh_count=4))
        s.add(TokenRow(connection="b1session:sap_ecc:0123abcd", key_id="k", nonce=b"n", ciphertext=b"c",
                       expires_at=int(now - 60)))
        audit.record(s, "token.refreshed", target="ramp", detail={"connection": "ramp"})
        audit.record(s, "token.failed", outcome="failed", target="ramp",
                     detail={"connection": "ramp", "message": "invalid_client: client_secret=Top-Secret-9 refused"})
    page = logged_in(world, "viv").get("/connections").text
    ramp = page[page.index("<tr><td>ramp</td>"):]
    ramp = ramp[:ramp.index("</tr>")]
    assert "OAuth token: valid until" in ramp and "(4 refreshes)" in ramp
    assert "Last token event: token.failed (failed)" in ramp and "Last refresh failure:" in ramp
    assert "invalid_client" in ramp and "Top-Secret-9" not in page and "Cipher-Text-1" not in page
    sap = page[page.index("<tr><td>sap_ecc</td>"):]
    sap = sap[:sap.index("</tr>")]
    assert "b1session: <span class=\"warn\">expired</span>" in sap and "Last token event: none" in sap


def test_agents_page_shows_each_agents_reported_allow_list(world: ConsoleWorld) -> None:
    with world.rt.db.session() as s:
        s.add(AgentRow(id="agt_1", name="gw", site="plant-1", public_key="k", state="online",
                       created_at=time.time(), last_seen_at=time.time()))
        s.add(AgentRow(id="agt_2", name="gw2", site="plant-2", public_key="k2", state="online",
                       created_at=time.time(), last_seen_at=time.time()))
        audit.record(s, "agent.allow_list", source="agt_1", detail={"systems": {"erp": {
            "type": "sap_ecc", "functions": ["RFC_PING", "BAPI_*"], "tables": ["LFA1", "SKA1"], "resources": []}}})
    page = logged_in(world, "viv").get("/agents").text
    agt1 = page[page.index("<code>agt_1</code>"):]
    agt1 = agt1[:agt1.index("</tr>")]
    assert "<strong>erp</strong> (sap_ecc):" in agt1
    assert "functions <code>RFC_PING, BAPI_*</code>" in agt1 and "tables <code>LFA1, SKA1</code>" in agt1
    agt2 = page[page.index("<code>agt_2</code>"):]
    assert "not reported yet" in agt2[:agt2.index("</tr>")]


def test_admin_adds_a_connection_validated_before_the_file_is_written(world: ConsoleWorld) -> None:
    ada = logged_in(world, "ada")
    form = ada.get("/connections?add_type=ramp").text
    assert "client_secret_secret: ramp_client_secret" in form  # the system's example to start from
    before = world.rt.config_path.read_text(encoding="utf-8")
    csrf = page_csrf(ada)
    # a secret value in a plain field is refused, without echoing it; the file is unchanged
    resp = ada.post("/connections/add", data={"csrf": csrf, "name": "ramp2", "type": "ramp", "settings":
                                              "base_url: http://127.0.0.1:29\nauth: {client_id: c2, "
                                              "client_secret: Plain-Secret-1}\n"})
    assert "Not added" in resp.text and "Plain-Secret-1" not in resp.text
    assert world.rt.config_path.read_text(encoding="utf-8") == before
    assert "exists" in ada.post("/connections/add", data={"csrf": csrf, "name": "ramp", "type": "ramp",
                                                          "settings": ""}).text
    resp = ada.post("/connections/add", data={"csrf": csrf, "name": "ramp2", "type": "ramp", "settings":
                                              "base_url: http://127.0.0.1:29\nauth: {client_id: c2, "
                                              "client_secret_secret: ramp2_secret}\n"})
    assert "Connection ramp2 added" in resp.text and "<tr><td>ramp2</td><td>ramp</td>" in resp.text
    assert "ramp2_secret" in resp.text  # its credential can be entered now
    assert "ramp2:" in world.rt.config_path.read_text(encoding="utf-8") and "ramp2" in world.rt.config.connections
    [added] = audit_rows(world.rt.db, "console.connection.added")
    assert added.detail == {"user": "ada", "connection": "ramp2", "type": "ramp"}
    # an operator may not add one
    otto = logged_in(world, "otto")
    assert otto.post("/connections/add", data={"csrf": page_csrf(otto), "name": "x", "type": "ramp",
                                               "settings": ""}).status_code == 403
