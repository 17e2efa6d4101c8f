"""A full comparison of the contacts Data Extension (rows replaced per account) over loopback: an
account without contact persons holds no rows, and a full run must see that Marketing Cloud holds
none for it (not "missing, create it again" on every full run), and must delete a row Marketing
Cloud holds for it that SAP no longer has. Found by the fault matrix (its creates-recorded-twice
count); SAP ECC with a small seed and the engine in this process."""

from __future__ import annotations

import pytest

from ml_connector.core import engine
from tests.support.fault_pairs import SFMC_FLOW, engine_here, sfmc_master_case, small_ecc
from tests.support.faults import audit_creates
from tests.support.sfmc import de_rows, mc_client

pytestmark = pytest.mark.smoke  # `make test-fast` runs it (this system's or flow's loopback smoke)

CONTACTS = "ML_SAP_Contacts"


def _run(full: bool) -> dict[str, int]:
    run_id = engine.start_sync(SFMC_FLOW, "contacts", full=full)
    engine.wait(run_id, timeout=120, poll=0.05)
    return engine.progress(run_id)


def test_a_full_run_leaves_an_account_without_contacts_alone_and_deletes_its_stale_row(tmp_path):
    with small_ecc() as ecc, sfmc_master_case(ecc, tmp_path) as case, engine_here(case.w):
        st, mc = ecc.state, case.w.handles["sfmc"].info
        with_contacts = {r["KUNNR"] for r in st.data.rows("KNVK", st.client)}
        bare = sorted({r["KUNNR"] for r in st.data.rows("KNA1", st.client)} - with_contacts)
        assert bare and with_contacts  # accounts of both kinds
        first = _run(full=False)
        assert first["created"] == len(bare) + len(with_contacts) and first["failed"] == 0
        held = de_rows(mc, CONTACTS)

        again = _run(full=True)
        assert (again["created"], again["updated"], again["written"]) == (0, 0, 0), again
        assert max(audit_creates(case.w, SFMC_FLOW, "contacts").values()) == 1
        assert de_rows(mc, CONTACTS) == held

        # Someone adds a contact row in Marketing Cloud under an account SAP has none for: the full
        # run removes it (the account's rows are SAP's), and writes nothing else.
        mc_client(mc).upsert_rows(CONTACTS, [({"ContactKey": "9999999999"},
                                              {"AccountNumber": bare[0], "Role": "ContactPerson"})])
        repair = _run(full=True)
        assert (repair["created"], repair["updated"], repair["written"]) == (0, 1, 1), repair
        assert de_rows(mc, CONTACTS) == held
        assert max(audit_creates(case.w, SFMC_FLOW, "contacts").values()) == 1
