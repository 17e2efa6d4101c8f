"""SAP ECC → Marketing Cloud end to end: the CLI in a subprocess, the SAP ECC and Marketing Cloud
sandboxes and the control plane's IDoc receiver as real HTTP servers on loopback."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator

import pytest

from ml_connector.sandbox import SandboxHandle
from tests.support import wait_until
from tests.support.env import summary_rows
from tests.support.receivers import Receiver
from tests.support.sandboxes import running_sandboxes
from tests.support.sfmc import (
    de_rows,
    idoc_endpoint,
    make_sfmc_env,
    mc_client,
    mc_events,
    mc_faults,
    mc_stats,
    push_idocs_to,
    send_list,
)

CUST, HIER, TRANS = "ML_SAP_Customer_Status", "ML_SAP_Customer_Hierarchy", "ML_SAP_Transactions"


@pytest.fixture()
def alert_receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture()
def pair() -> Iterator[dict[str, SandboxHandle]]:
    with running_sandboxes(vendors=20, systems=("sap_ecc", "sfmc")) as handles:
        yield handles


def sold_to_with_payer(ecc) -> tuple[str, str]:
    """A sold-to customer whose payer (KNVP RG) is another, unblocked account."""
    for p in ecc.data.rows("KNVP", ecc.client):
        if p["PARVW"] == "RG" and p["KUNN2"] != p["KUNNR"] and p["KUNNR"].startswith("00002000"):
            return p["KUNNR"], p["KUNN2"]
    raise AssertionError("the seed has no sold-to with another payer")


@pytest.mark.slow  # a dozen CLI processes, three full reads of the seeded customers
def test_full_sync_idoc_updates_hierarchy_orders_gaps_and_audience_check(tmp_path, pair, alert_receiver):
    ecc, mc = pair["sap_ecc"].state, pair["sfmc"].info
    alerts = f"alerts:\n  webhooks:\n    - {{url: '{alert_receiver.url}/hook', format: json}}\n  events: [sync.gap]\n\n"
    env = make_sfmc_env(tmp_path, pair["sap_ecc"].url, mc, extra=alerts)
    kna1 = {r["KUNNR"]: r for r in ecc.data.rows("KNA1", ecc.client)}

    # 1. Full run: the Data Extensions are created and hold every customer once.
    rows = summary_rows(env.cli("sync", "customers_to_sfmc", "--stream", "customers", "--full").stdout)
    assert rows[0][0] == len(kna1) and rows[0][1] == len(kna1)  # read, created
    cust = de_rows(mc, CUST)
    assert set(cust) == set(kna1)
    kunnr, payer = sold_to_with_payer(ecc)
    assert cust[kunnr]["ParentAccount"] == payer
    env.cli("sync", "customers_to_sfmc", "--stream", "hierarchy", "--full")
    hier = httpx_rows(mc, HIER)
    assert any(r["AccountNumber"] == kunnr and r["Role"] == "Payer" and r["PartnerNumber"] == payer for r in hier)

    # A re-run without IDocs reads nothing from SAP's customer tables and writes nothing.
    again = summary_rows(env.cli("sync", "customers_to_sfmc", "--stream", "customers").stdout)
    assert again[0][0] == 0 and sum(again[0][1:5]) == 0

    with idoc_endpoint(env) as endpoint:
        push_idocs_to(pair["sap_ecc"].url, endpoint)
        # 2. The payer is put on an order block in SAP: DEBMAS is pushed and stored; the incremental
        # run updates the payer and every customer it pays for (the block is up their hierarchy).
        ecc.data.update_customer(payer, AUFSD="01")
        wait_until(lambda: endpoint_count(endpoint, "DEBMAS") >= 1, timeout=15)
        inc = summary_rows(env.cli("sync", "customers_to_sfmc", "--stream", "customers").stdout)
        assert inc[0][3] >= 2  # updated: the payer and its children
        cust = de_rows(mc, CUST)
        assert cust[payer]["EligibleForMarketing"] == "False" and cust[payer]["OrderBlock"] == "01"
        assert cust[kunnr]["EligibleForMarketing"] == "False"
        assert f"parent {payer}: order block 01" in cust[kunnr]["IneligibleReason"]

        # 3. A sales order changes in SAP: its IDoc becomes a transactions row and a journey entry event.
        vbak = next(r for r in ecc.data.rows("VBAK", ecc.client) if r["KUNNR"] == kunnr) \
            if any(r["KUNNR"] == kunnr for r in ecc.data.rows("VBAK", ecc.client)) \
            else ecc.data.rows("VBAK", ecc.client)[0]
        ecc.data.update_sales_order(vbak["VBELN"], BSTNK="PO-4711")
        wait_until(lambda: endpoint_count(endpoint, "ORDRSP") >= 1, timeout=15)
        env.cli("sync", "customers_to_sfmc", "--stream", "orders")
        trans = de_rows(mc, TRANS)
        assert trans[vbak["VBELN"]]["CustomerNumber"] == vbak["KUNNR"]
        events = mc_events(mc)
        assert [e["ContactKey"] for e in events] == [vbak["KUNNR"]]
        assert trans[vbak["VBELN"]]["JourneyEvent"] == events[0]["eventInstanceId"]
        # The same order again (a second change): the row is updated, no second journey entry.
        ecc.data.update_sales_order(vbak["VBELN"], BSTNK="PO-4712")
        wait_until(lambda: endpoint_count(endpoint, "ORDRSP") >= 2, timeout=15)
        env.cli("sync", "customers_to_sfmc", "--stream", "orders")
        assert len(mc_events(mc)) == 1
        # 4. A lost update: SAP blocks a customer, the IDoc is stored but no run picks it up in time.
        # The gap monitor finds the difference, records it, corrects the row.
        lost = next(k for k, r in sorted(de_rows(mc, CUST).items()) if r["EligibleForMarketing"] == "True"
                    and k.startswith("00002000") and k != kunnr)
        before = endpoint_count(endpoint, "DEBMAS")
        ecc.data.update_customer(lost, LIFSD="02")
        wait_until(lambda: endpoint_count(endpoint, "DEBMAS") > before, timeout=15)
        gaps = json.loads(env.cli("audience", "gaps", "--max-lag", "0", "--json").stdout)
        assert [g["customer"] for g in gaps] == [lost]
        assert gaps[0]["fields"]["EligibleForMarketing"] == ["True", "False"]
        assert de_rows(mc, CUST)[lost]["DeliveryBlock"] == "02"
        wait_until(lambda: len(alert_receiver.requests) == 1, timeout=15)
        alert = alert_receiver.requests[0]["json"]
        assert alert["event"] == "sync.gap" and lost in alert["message"] and "corrected" in alert["message"]
        history = json.loads(env.cli("audience", "gaps", "--history", "--json").stdout)
        assert history[0]["customer"] == lost and history[0]["fields"]["DeliveryBlock"] == {"sfmc": "", "sap": "02"}
        assert json.loads(env.cli("audience", "gaps", "--max-lag", "0", "--json").stdout) == []
    # One token for all these runs and processes.
    assert mc_stats(mc)["token_requests"] == 1

    # 5. A customer blocked in SAP moments before a send (no IDoc yet): the audience check of the
    # send list excludes it from a fresh SAP read and corrects its status row.
    status = de_rows(mc, CUST)
    members = [k for k, r in sorted(status.items()) if r["EligibleForMarketing"] == "True"][:6]
    blocked_now = members[2]
    ecc.data.update_customer(blocked_now, SPERR="X")
    send_list(mc, "SPRING_PROMO", [*members, kunnr])
    out = env.cli("audience", "check", "SPRING_PROMO", extra_env={"COLUMNS": "80"}).stdout
    assert blocked_now in out and kunnr in out and "posting block" in out
    assert max(len(line) for line in out.splitlines()) <= 80
    flagged = de_rows(mc, "SPRING_PROMO")
    assert {k for k, r in flagged.items() if r["Eligible"] == "False"} == {blocked_now, kunnr}
    assert de_rows(mc, CUST)[blocked_now]["PostingBlocked"] == "True"
    removed = json.loads(env.cli("audience", "check", "SPRING_PROMO", "--remove", "--json").stdout)
    assert removed["ineligible"] == 2 and set(de_rows(mc, "SPRING_PROMO")) == set(members) - {blocked_now}

    # 6. The scheduled full comparison: a row edited in Marketing Cloud is put back to SAP's values.
    edited = members[0]
    client = mc_client(mc)
    client.update_rows(CUST, [({"CustomerNumber": edited}, {"CreditLimit": "1.00"})], upsert=False)
    full = summary_rows(env.cli("sync", "customers_to_sfmc", "--stream", "customers", "--full").stdout)
    # updated: the edited row, and the two rows corrected outside the runs (gap, audience check)
    # whose ledger entry was still SAP's older state
    assert full[0][3] == 3
    assert de_rows(mc, CUST)[edited]["CreditLimit"] == status[edited]["CreditLimit"]


def endpoint_count(endpoint, mestyp: str) -> int:
    from ml_connector.systems.sap_ecc.idoc_receiver import SqlIdocStore

    return len(SqlIdocStore(endpoint.db).list(mestyp=mestyp))


def httpx_rows(mc, key: str) -> list[dict[str, str]]:
    import httpx

    return list(httpx.get(f"{mc['admin']}/des/{key}/rows", timeout=30).json()["rows"])


@pytest.mark.slow  # a CLI process killed with SIGKILL in the middle of its writes, then a second run
def test_a_sync_killed_mid_batch_completes_on_the_next_run_without_duplicates(tmp_path, pair):
    ecc, mc = pair["sap_ecc"].state, pair["sfmc"].info
    env = make_sfmc_env(tmp_path, pair["sap_ecc"].url, mc, options="      page_size: 100\n")
    mc_faults(mc, latency=0.3)  # every Marketing Cloud call takes a while: the kill lands mid-delivery
    proc = env.popen("sync", "customers_to_sfmc", "--stream", "customers", "--full")
    try:
        wait_until(lambda: mc_stats(mc)["rowset_calls"] >= 2, timeout=120)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert 0 < len(de_rows(mc, CUST)) < len(ecc.data.rows("KNA1", ecc.client))
    mc_faults(mc, latency=0)
    env.cli("sync", "customers_to_sfmc", "--stream", "customers", "--full")
    rows = httpx_rows(mc, CUST)
    assert sorted(r["CustomerNumber"] for r in rows) == sorted(r["KUNNR"] for r in ecc.data.rows("KNA1", ecc.client))
    assert json.loads(env.cli("failures", "--json").stdout) == []
