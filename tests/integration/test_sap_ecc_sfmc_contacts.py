"""The B2B hierarchy whole, over loopback: SAP's customer hierarchy (KNVH) and contact persons (KNVK)
from the SAP ECC sandbox to the contacts Data Extension of the Marketing Cloud sandbox, by the CLI;
a block on a hierarchy node reaches its children's contacts through a DEBMAS of the node alone; a
large full comparison during business hours is deferred unless forced."""

from __future__ import annotations

from ml_connector.systems.sap_ecc.idoc_models import IdocRow
from ml_connector.systems.sap_ecc.sources import today_dats
from tests.support.env import summary_rows
from tests.support.sandboxes import running_sandboxes
from tests.support.sfmc import de_rows, idoc_endpoint, make_sfmc_env

CONTACTS = "ML_SAP_Contacts"


def test_contacts_link_account_parent_and_role_and_a_node_block_reaches_the_children(tmp_path):
    with running_sandboxes(vendors=5, systems=("sap_ecc", "sfmc")) as handles:
        ecc, mc = handles["sap_ecc"].state, handles["sfmc"].info
        # Business hours around the clock: every large full comparison requested now is deferred.
        week = "[mon, tue, wed, thu, fri, sat, sun]"
        env = make_sfmc_env(tmp_path, handles["sap_ecc"].url, mc, options=(
            "      page_size: 1000\n      large_extract: 100\n"
            f"      business_hours: {{start: '00:00', end: '24:00', days: {week}}}\n"))
        knvk = ecc.data.rows("KNVK", ecc.client)
        today = today_dats()
        valid = [r for r in ecc.data.rows("KNVH", ecc.client) if r["HKUNNR"] and r["DATAB"] <= today <= r["DATBI"]]
        contacts_of = {}
        for r in knvk:
            contacts_of.setdefault(r["KUNNR"], []).append(r["PARNR"])
        rows = summary_rows(env.cli("sync", "customers_to_sfmc", "--stream", "contacts", "--full").stdout)
        held = de_rows(mc, CONTACTS)
        assert set(held) == {r["PARNR"] for r in knvk} and rows[0][0] == len(ecc.data.rows("KNA1", ecc.client))
        assert all(held[r["PARNR"]]["AccountNumber"] == r["KUNNR"] for r in knvk)
        # A child in the hierarchy whose node is eligible: the node is its contacts' parent account.
        child, top = next((r["KUNNR"], r["HKUNNR"]) for r in sorted(valid, key=lambda r: r["KUNNR"])
                          if r["KUNNR"] in contacts_of and held[contacts_of[r["KUNNR"]][0]]["EligibleForMarketing"]
                          == "True" and not ecc.data.get("KNA1", (r["HKUNNR"],), ecc.client).get("AUFSD"))
        mine = [held[p] for p in contacts_of[child]]
        assert {(c["ParentAccount"], c["HierarchyPath"], c["Role"]) for c in mine} == \
            {(top, f"{child} > {top}", "ContactPerson")}
        moved = [r for r in ecc.data.rows("KNVH", ecc.client) if r["DATBI"] < today and r["KUNNR"] in contacts_of]
        for r in moved:  # an expired assignment is not the parent any more
            assert held[contacts_of[r["KUNNR"]][0]]["ParentAccount"] != r["HKUNNR"]
        payer_contact = next(p for k, ps in sorted(contacts_of.items()) if k.startswith("000029") for p in ps)
        assert held[payer_contact]["PromotionsAllowed"] == "False"  # accounts payable: no promotions

        # The node gets an order block; SAP announces the node only (DEBMAS); the incremental run
        # reads the node and every customer below it in KNVH, and their contacts become ineligible.
        ecc.data.update_customer(top, AUFSD="01")
        with idoc_endpoint(env) as endpoint, endpoint.db.session() as s:
            s.add(IdocRow(docnum="9000000001", mestyp="DEBMAS", idoctyp="DEBMAS07", sndprn="ECCCLNT100", raw=b"",
                          parsed={"segments": [{"segment": "E1KNA1M", "fields": {"KUNNR": top}}]}))
        inc = summary_rows(env.cli("sync", "customers_to_sfmc", "--stream", "contacts").stdout)
        below = {r["KUNNR"] for r in valid if r["HKUNNR"] == top}
        assert inc[0][0] >= 1 + len(below)  # read: the node and its children, not the whole table
        held = de_rows(mc, CONTACTS)
        for p in contacts_of[child]:
            assert held[p]["EligibleForMarketing"] == "False" and held[p]["PromotionsAllowed"] == "False"
            assert held[p]["IneligibleReason"] == f"parent {top}: order block 01"
        assert all(held[p]["EligibleForMarketing"] == "False" for p in contacts_of.get(top, []))

        # The last full comparison read more than large_extract: now (business hours) it is deferred.
        deferred = env.cli("sync", "customers_to_sfmc", "--stream", "contacts", "--full", check=False)
        assert deferred.returncode == 4 and "deferred" in deferred.stderr and "--force" in deferred.stderr
