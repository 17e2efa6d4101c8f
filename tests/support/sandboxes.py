"""The emulators (SAP ECC, Ramp, SAP Business One): in this process or in a process of their own, and
what the tests read from them."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from ml_connector.sandbox import SandboxHandle, start_sandboxes
from tests.support.processes import BIN


@contextmanager
def running_sandboxes(**kw: Any) -> Iterator[dict[str, SandboxHandle]]:
    """`start_sandboxes(**kw)` in this process, stopped on exit."""
    handles = start_sandboxes(**kw)
    try:
        yield handles
    finally:
        for h in handles.values():
            h.stop()


def start_sandbox(prefix: list[str] | None = None, host: str = "127.0.0.1",
                  system: str = "sap_ecc") -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """`ml-connector sandbox` in its own process; the connection info of `system` (sap_ecc, ramp, sap_b1)."""
    # Every emulator `sandbox` starts by default on a free port: its default port may be taken by a
    # parallel test.
    from ml_connector.core import registry

    ports = [a for e in registry.with_emulator() if e.emulator is not None and e.emulator.started_by_default
             for a in ("--port", f"{e.name}=0")]
    p = subprocess.Popen([*(prefix or []), str(BIN), "sandbox", "--json", "--host", host, *ports, "--vendors", "20"],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    line = p.stdout.readline()
    return p, json.loads(line)[system]


def sap_stats(sap: dict[str, Any]) -> dict[str, Any]:
    return dict(httpx.get(sap["base_url"] + "/_sandbox/stats", timeout=5).json())


def sap_faults(sap: dict[str, Any], **kw: Any) -> None:
    httpx.post(sap["base_url"] + "/_sandbox/faults", json=kw, timeout=5).raise_for_status()


def ramp_vendors(ramp_url: str) -> list[dict[str, Any]]:
    return list(httpx.get(f"{ramp_url}/_sandbox/state/vendors", timeout=30).json()["vendors"])


def ramp_state(ramp_url: str, name: str) -> list[dict[str, Any]]:
    """The Ramp sandbox's records of `name` (vendors, gl_accounts, bills, ...)."""
    return list(httpx.get(f"{ramp_url}/_sandbox/state/{name}", timeout=30).json()[name])


def in_scope_vendors(ecc: Any, company_codes: tuple[str, ...] = ("1000", "2000", "3000")) -> dict[str, dict[str, Any]]:
    """What the SAP sandbox says should be in Ramp: vendor number → (name, active)."""
    client = ecc.client
    lfb1: dict[str, list[dict[str, Any]]] = {}
    for r in ecc.data.rows("LFB1", client):
        if r["BUKRS"] in company_codes:
            lfb1.setdefault(r["LIFNR"], []).append(r)
    out = {}
    for v in ecc.data.rows("LFA1", client):
        ccs = lfb1.get(v["LIFNR"])
        if not ccs:
            continue
        deleted = v.get("LOEVM", "").strip() == "X" or all(c.get("LOEVM", "").strip() == "X" for c in ccs)
        name = " ".join(p for p in (v.get("NAME1", "").strip(), v.get("NAME2", "").strip()) if p)
        out[v["LIFNR"]] = {"name": name or v["LIFNR"], "active": not deleted}
    return out


def assert_ramp_matches_sap(ecc: Any, ramp_url: str) -> None:
    """Every active in-scope SAP vendor is in Ramp once, active, with its name; nothing else is active."""
    want = in_scope_vendors(ecc)
    got = ramp_vendors(ramp_url)
    ids = [v["id"] for v in got]
    assert len(ids) == len(set(ids)), "duplicate vendor in Ramp"
    by_id = {v["id"]: v for v in got}
    expected_present = {k for k, v in want.items() if v["active"]}
    # Every active SAP vendor is in Ramp, active, with its name; nothing else is active.
    assert expected_present <= set(by_id)
    for k in expected_present:
        assert by_id[k]["name"] == want[k]["name"]
        assert by_id[k]["is_active"] is True
    assert {k for k, v in by_id.items() if v["is_active"]} == expected_present
