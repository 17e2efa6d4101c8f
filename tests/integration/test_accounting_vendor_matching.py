"""Vendor matching before create against the accounting vendors Ramp already has under other remote ids
(issue 11 §4; the Bill Pay side is in test_vendor_matching.py): adopted, not duplicated, the match in the
ledger; ambiguous ones wait for review. The CLI in a subprocess, the emulators on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ml_connector.config import load_config
from ml_connector.core import ledger
from ml_connector.core.runtime import Runtime
from ml_connector.sandbox import SandboxHandle, start_sandboxes
from tests.support import Env, make_env
from tests.support.ramp import active_sap_vendors, sap_vendor_name, upload_accounting_vendor

FLOW = "vendors_to_ramp"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, SandboxHandle], Env]]:
    handles = start_sandboxes(vendors=40)
    env = make_env(tmp_path_factory.mktemp("acct-match"), handles["sap_ecc"].url, handles["ramp"].url)
    try:
        yield handles, env
    finally:
        for h in handles.values():
            h.stop()


def test_accounting_vendors_ramp_already_had_are_adopted_not_duplicated_and_ambiguous_ones_wait(world):
    handles, env = world
    ramp = handles["ramp"].state
    a, b = active_sap_vendors(handles)[:2]
    old = upload_accounting_vendor(handles["ramp"], "QB-17", sap_vendor_name(a).upper() + ", Inc.")
    twins = [upload_accounting_vendor(handles["ramp"], "QB-21", sap_vendor_name(b)),
             upload_accounting_vendor(handles["ramp"], "QB-22", sap_vendor_name(b) + " LLC")]
    env.cli("sync", FLOW, "--stream", "vendors")
    # The one Ramp had is adopted (its name and code from SAP), not created a second time.
    assert a["LIFNR"] not in ramp.vendors.by_remote
    assert (ramp.vendors.by_id[old]["name"], ramp.vendors.by_id[old]["code"]) == (sap_vendor_name(a),
                                                                                   a["LIFNR"].lstrip("0"))
    rt = Runtime(load_config(env.config), env.config)
    try:
        with rt.db.read() as s:
            assert ledger.lookup(s, FLOW, "vendors", [a["LIFNR"]])[a["LIFNR"]].target_id == old
    finally:
        rt.close()
    # Two plausible ones: parked for review, neither adopted, no third one created.
    assert b["LIFNR"] not in ramp.vendors.by_remote
    parked = env.cli("parked", "--flow", FLOW).stdout
    assert f"accounting_vendor_matches:{b['LIFNR']}" in parked
    out = env.cli("mappings", "set", FLOW, "accounting_vendor_matches", b["LIFNR"], twins[1]).stdout
    assert "resumed 1" in out
    assert b["LIFNR"] not in ramp.vendors.by_remote
    assert ramp.vendors.by_id[twins[1]]["name"] == sap_vendor_name(b)
    # A re-run creates nothing.
    before = len(ramp.vendors.by_id)
    env.cli("sync", FLOW, "--stream", "vendors")
    assert len(ramp.vendors.by_id) == before
    assert a["LIFNR"] not in ramp.vendors.by_remote and b["LIFNR"] not in ramp.vendors.by_remote
