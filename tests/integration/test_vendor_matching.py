"""Vendor matching before create (issue 11 §4) and reference data as Ramp fields (§5): the CLI in a
subprocess, the emulators on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ml_connector.sandbox import SandboxHandle, start_sandboxes
from tests.support import Env, make_env
from tests.support.ramp import add_billpay_vendor

FLOW = "vendors_to_ramp"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, SandboxHandle], Env]]:
    handles = start_sandboxes(vendors=40)
    env = make_env(tmp_path_factory.mktemp("match"), handles["sap_ecc"].url, handles["ramp"].url)
    try:
        yield handles, env
    finally:
        for h in handles.values():
            h.stop()


def _active_vendors(handles: dict[str, SandboxHandle]) -> list[dict[str, Any]]:
    ecc = handles["sap_ecc"].state
    in_1000 = {r["LIFNR"] for r in ecc.data.rows("LFB1", ecc.client) if r["BUKRS"] == "1000" and not r.get("LOEVM")}
    return [r for r in ecc.data.rows("LFA1", ecc.client)
            if r["LIFNR"] in in_1000 and not r.get("LOEVM") and not r.get("SPERR") and r.get("NAME1")]


def _name(r: dict[str, Any]) -> str:
    return " ".join(p for p in (r.get("NAME1", "").strip(), r.get("NAME2", "").strip()) if p)


def test_existing_ramp_vendors_are_linked_not_duplicated_and_ambiguous_ones_wait_for_review(world):
    handles, env = world
    ramp = handles["ramp"].state
    a, b = _active_vendors(handles)[:2]
    one = add_billpay_vendor(ramp, _name(a).upper() + ", Inc.", a.get("LAND1") or "US")
    twins = [add_billpay_vendor(ramp, _name(b), b.get("LAND1") or "US"),
             add_billpay_vendor(ramp, _name(b) + " LLC", b.get("LAND1") or "US")]
    env.cli("sync", FLOW, "--stream", "vendors")
    assert ramp.billpay_vendors[one]["accounting_vendor_remote_id"] == a["LIFNR"]
    assert a["LIFNR"] in ramp.vendors.by_remote
    # Two plausible matches: parked for review, not guessed, and not created as a third vendor.
    assert b["LIFNR"] not in ramp.vendors.by_remote
    assert all(ramp.billpay_vendors[t]["accounting_vendor_remote_id"] is None for t in twins)
    parked = env.cli("parked", "--flow", FLOW).stdout
    assert f"vendor_matches:{b['LIFNR']}" in parked
    out = env.cli("mappings", "set", FLOW, "vendor_matches", b["LIFNR"], twins[1]).stdout
    assert "resumed 1" in out
    assert b["LIFNR"] in ramp.vendors.by_remote
    assert ramp.billpay_vendors[twins[1]]["accounting_vendor_remote_id"] == b["LIFNR"]
    assert ramp.billpay_vendors[twins[0]]["accounting_vendor_remote_id"] is None
    before = len(ramp.vendors.by_id)
    env.cli("sync", FLOW, "--stream", "vendors")  # stable: nothing written again
    assert len(ramp.vendors.by_id) == before
    assert f"vendor_matches:{b['LIFNR']}" not in env.cli("parked", "--flow", FLOW).stdout


def test_company_codes_and_plants_become_ramp_accounting_fields_with_options(world):
    handles, env = world
    ramp = handles["ramp"].state
    ecc = handles["sap_ecc"].state
    for stream in ("company_codes", "plants"):
        env.cli("sync", FLOW, "--stream", stream)

    def options(field_id: str) -> dict[str, str]:
        frid = ramp.fields.by_remote[field_id]
        return {key.split("\x00", 1)[1]: ramp.field_options.by_id[rid]["value"]
                for key, rid in ramp.field_options.by_remote.items() if key.startswith(frid + "\x00")}

    companies = options("SAP_COMPANY_CODE")
    assert set(companies) == {"1000", "2000", "3000"} and companies["1000"] == "1000 ML Connector Inc."
    plants = {r["BWKEY"] for r in ecc.data.rows("T001K", ecc.client) if r["BUKRS"] in companies}
    assert plants and set(options("SAP_PLANT")) == plants
    before = len(ramp.field_options.by_id)
    for stream in ("company_codes", "plants"):  # a second run writes nothing
        env.cli("sync", FLOW, "--stream", stream)
    assert len(ramp.field_options.by_id) == before
