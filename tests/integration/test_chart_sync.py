"""SAP ECC chart of accounts and cost centers → Ramp, end to end: the CLI in a subprocess, the
emulators as real HTTP servers on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ml_connector.sandbox import SandboxHandle, start_sandboxes
from tests.support import Env, make_env, ramp_state, summary

pytestmark = pytest.mark.smoke  # `make test-fast` runs it (this system's or flow's loopback smoke)

FLOW = "vendors_to_ramp"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, SandboxHandle], Env]]:
    handles = start_sandboxes(vendors=50)
    env = make_env(tmp_path_factory.mktemp("chart"), handles["sap_ecc"].url, handles["ramp"].url)
    try:
        yield handles, env
    finally:
        for h in handles.values():
            h.stop()


def test_gl_accounts_reach_ramp_with_classification_and_second_run_writes_nothing(world):
    handles, env = world
    ecc = handles["sap_ecc"].state
    first = summary(env.cli("sync", FLOW, "--stream", "gl_accounts").stdout)
    assert first["failed"] == 0
    got = {a["id"]: a for a in ramp_state(env.ramp_url, "gl_accounts")}
    ska1 = {r["SAKNR"] for r in ecc.data.rows("SKA1", ecc.client)}
    blocked = {"0000699999"}  # SKB1-XSPEB in every company code: never uploaded
    assert set(got) == ska1 - blocked
    assert first["created"] == len(got)
    assert got["0000600000"]["code"] == "600000"
    assert got["0000600000"]["name"] == "Office supplies and stationery"  # SKAT-TXT50, language E
    assert {k: got[k]["classification"] for k in ("0000100000", "0000160000", "0000300000", "0000600000",
                                                   "0000800000", "0000140000")} == {
        "0000100000": "ASSET", "0000160000": "LIABILITY", "0000300000": "EQUITY", "0000600000": "EXPENSE",
        "0000800000": "REVENUE", "0000140000": "ASSET"}
    again = summary(env.cli("sync", FLOW, "--stream", "gl_accounts").stdout)
    assert again["created"] == again["updated"] == again["deactivated"] == again["failed"] == 0
    assert len(ramp_state(env.ramp_url, "gl_accounts")) == len(got)


def test_cost_centers_become_field_options_and_locks_deactivate(world):
    handles, env = world
    ecc = handles["sap_ecc"].state
    first = summary(env.cli("sync", FLOW, "--stream", "cost_centers").stdout)
    assert first["failed"] == 0
    fields = ramp_state(env.ramp_url, "fields")
    assert [(f["id"], f["name"], f["input_type"]) for f in fields] == [
        ("SAP_COST_CENTER", "Cost Center", "SINGLE_CHOICE")]
    opts = {o["id"]: o for o in ramp_state(env.ramp_url, "field_options")}
    # 1900 expired in 2022 and 2700 is valid only from 2030: neither is offered
    assert "0000001900" not in opts and "0000002700" not in opts
    assert len(opts) == 21 == first["created"]
    assert opts["0000001410"]["value"] == "Sales East" and opts["0000001410"]["code"] == "1410"
    assert all(o["field_id"] == fields[0]["ramp_id"] and o["is_active"] for o in opts.values())

    assert summary(env.cli("sync", FLOW, "--stream", "cost_centers").stdout)["created"] == 0

    # Lock one cost center for postings in SAP, rename another: one deactivation, one update.
    with ecc.data.lock:
        for r in ecc.data.store("CSKS", ecc.client).rows:
            if r["KOSTL"] == "0000001500":
                r["BKZKP"] = "X"
        for r in ecc.data.store("CSKT", ecc.client).rows:
            if r["KOSTL"] == "0000001200":
                r["KTEXT"] = "People & Culture"
    out = summary(env.cli("sync", FLOW, "--stream", "cost_centers").stdout)
    assert (out["created"], out["updated"], out["deactivated"], out["failed"]) == (0, 1, 1, 0)
    opts = {o["id"]: o for o in ramp_state(env.ramp_url, "field_options")}
    assert opts["0000001500"]["is_active"] is False
    assert opts["0000001200"]["value"] == "People & Culture"
    assert len(ramp_state(env.ramp_url, "fields")) == 1  # the field upsert is idempotent on id
