"""SAP ECC → Marketing Cloud end to end: the CLI in a subprocess, the SAP ECC and Marketing Cloud
sandboxes and the control plane's IDoc receiver as real HTTP servers on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ml_connector.sandbox import SandboxHandle
from tests.support import wait_until
from tests.support.env import summary_rows
from tests.support.sandboxes import running_sandboxes
from tests.support.sfmc import de_rows, idoc_endpoint, make_sfmc_env, mc_events, mc_stats, push_idocs_to

CUST, HIER, TRANS = "ML_SAP_Customer_Status", "ML_SAP_Customer_Hierarchy", "ML_SAP_Transactions"


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


def test_full_sync_idoc_updates_hierarchy_and_orders(tmp_path, pair):
    ecc, mc = pair["sap_ecc"].state, pair["sfmc"].info
    env = make_sfmc_env(tmp_path, pair["sap_ecc"].url, mc)
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
    # One token for all these runs and processes.
    assert mc_stats(mc)["token_requests"] == 1


def endpoint_count(endpoint, mestyp: str) -> int:
    from ml_connector.systems.sap_ecc.idoc_receiver import SqlIdocStore

    return len(SqlIdocStore(endpoint.db).list(mestyp=mestyp))


def httpx_rows(mc, key: str) -> list[dict[str, str]]:
    import httpx

    return list(httpx.get(f"{mc['admin']}/des/{key}/rows", timeout=30).json()["rows"])
