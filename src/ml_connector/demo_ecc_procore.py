"""The SAP ECC → Procore part of `make demo`: both emulators on loopback, a configuration with the
demo mappings, the vendors, purchase order and cost allocation streams synced with the CLI, then
the totals per project and cost code compared between SAP and Procore.

`DEMO_MAPPINGS` and `config_text` are also what the integration tests run with.
"""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console

FLOW = "ecc_to_procore"

#: SAP (external format) → Procore: cost centers / plants → project numbers of the emulator's seed,
#: G/L accounts and material groups → its standard cost codes.
DEMO_MAPPINGS: dict[str, dict[str, str]] = {
    "cost_centers": {"1410": "26-001", "1420": "26-002", "1610": "26-003", "1620": "26-004", "1500": "26-005"},
    "plants": {"1000": "26-006", "1100": "26-003", "1200": "26-004"},
    "cost_codes": {"600000": "01-500", "610000": "90-200", "615000": "01-100", "620000": "16-700",
                   "630000": "90-100", "640000": "01-540", "650000": "01-500", "660000": "01-100",
                   "670000": "16-700", "680000": "01-100", "690000": "90-300"},
    "material_groups": {"RAW001": "05-500", "FAST01": "05-500", "CHEM01": "01-740", "PACK01": "01-100",
                        "SPARE1": "15-500", "ELEC01": "16-100", "OFFICE": "01-500", "IT0001": "16-700",
                        "PPE001": "01-560", "SERV01": "90-100", "SERV02": "01-310", "SERV03": "01-540",
                        "SERV04": "01-100"},
}
#: Job-site cost centers 2001..2150 (systems/sap_ecc/sandbox/seed_construction.py `seed_job_sites`) →
#: the emulator's active projects in order (26-001.., skipping every 20th, the closed jobs): 150 projects.
JOB_SITE_PROJECTS: dict[str, str] = dict(zip(
    (str(2000 + i) for i in range(1, 151)),
    (f"26-{n:03d}" for n in range(1, 161) if n % 20), strict=False))
DEMO_MAPPINGS["cost_centers"].update(JOB_SITE_PROJECTS)
DEMO_OPTIONS: dict[str, Any] = {"company_codes": ["1000"], "po_from": "2024-10-01", "postings_from": "2025-01-01",
                                "cost_centers": ["1410", "1420", "1610", "1620", "1500"],
                                "direct_cost_type": "payroll"}
#: Job sites the demo seeds (of the 150 the mappings cover), for a quick demo.
DEMO_JOB_SITES = 30
SAP_PASSWORD_SECRET = "sap_ecc_password"
PROCORE_SECRET = "procore_client_secret"


def config_text(sap: dict[str, Any], procore: dict[str, Any], *, mappings: dict[str, dict[str, str]] | None = None,
                options: dict[str, Any] | None = None) -> str:
    """A configuration: the SAP ECC and Procore sandboxes (direct RFC, no agent) and the flow."""
    import json

    maps = DEMO_MAPPINGS if mappings is None else mappings
    opts = {**DEMO_OPTIONS, **(options or {})}
    mapping_lines = "".join(f"      {t}: {json.dumps(v)}\n" for t, v in maps.items() if v)
    option_lines = "".join(f"      {k}: {json.dumps(v)}\n" for k, v in opts.items())
    return f"""\
engine:
  data_dir: ./data
  database_url: null
  queue_polling_interval: 0.1
server:
  host: 127.0.0.1
  port: 8080
connections:
  sap:
    type: sap_ecc
    base_url: {sap['base_url']}
    client: "{sap['client']}"
    language: EN
    via: direct
    auth:
      username: {sap['user']}
      password_secret: {SAP_PASSWORD_SECRET}
  procore:
    type: procore
    base_url: {procore['base_url']}
    login_url: {procore['login_url']}
    company_id: {procore['company_id']}
    auth:
      client_id: {procore['client_id']}
      client_secret_secret: {PROCORE_SECRET}
flows:
  {FLOW}:
    pair: sap_ecc_procore
    source: sap
    target: procore
    streams: [vendors, purchase_orders, cost_allocations]
    options:
{option_lines}    mappings:
{mapping_lines}"""


def sap_totals(ecc: Any, mappings: dict[str, dict[str, str]] | None = None,
               options: dict[str, Any] | None = None) -> dict[str, dict[tuple[str, str], Decimal]]:
    """What SAP says Procore should hold, per (project number, cost code): `commitments` (PO lines
    of mapped POs, deleted ones at 0) and `direct_costs` (DMBTR of cost-center lines, debit +)."""
    maps = DEMO_MAPPINGS if mappings is None else mappings
    opts = {**DEMO_OPTIONS, **(options or {})}
    from ml_connector.flows.sap_ecc_procore import external, po_to_contract

    client = ecc.client
    ccs = set(opts["company_codes"])
    po_from = str(opts["po_from"]).replace("-", "")
    items: dict[str, list[dict[str, Any]]] = {}
    for r in ecc.data.rows("EKPO", client):
        items.setdefault(r["EBELN"], []).append(dict(r, _accounts=[]))
    accounts: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in ecc.data.rows("EKKN", client):
        accounts.setdefault((r["EBELN"], r["EBELP"]), []).append(dict(r))
    out: dict[str, dict[tuple[str, str], Decimal]] = {"commitments": {}, "direct_costs": {}}

    def mapped(table: str, value: str) -> str | None:
        return maps.get(table, {}).get(value)

    for h in ecc.data.rows("EKKO", client):
        if h["BUKRS"] not in ccs or h.get("BSTYP") != "F" or h["BEDAT"] < po_from:
            continue
        its = sorted(items.get(h["EBELN"], []), key=lambda i: i["EBELP"])
        for it in its:
            it["_accounts"] = sorted(accounts.get((h["EBELN"], it["EBELP"]), []), key=lambda a: a["ZEKKN"])
        d = po_to_contract(h["EBELN"], {**h, "_items": its}, mapped=mapped)
        if not hasattr(d, "active"):
            continue  # parked
        for ln in d.payload["lines"]:
            k = (d.payload["project"], ln["cost_code"])
            out["commitments"][k] = out["commitments"].get(k, Decimal(0)) + Decimal(ln["amount"])
    scope = {str(c) for c in opts.get("cost_centers") or []}
    post_from = str(opts["postings_from"]).replace("-", "")
    docs = {(r["BUKRS"], r["BELNR"], r["GJAHR"]) for r in ecc.data.rows("BKPF", client)
            if r["BUKRS"] in ccs and r["BUDAT"] >= post_from}
    for r in ecc.data.rows("BSEG", client):
        kostl = external(r.get("KOSTL"))
        if (r["BUKRS"], r["BELNR"], r["GJAHR"]) not in docs or not r.get("KOSTL") or (scope and kostl not in scope):
            continue
        project, code = mapped("cost_centers", kostl), mapped("cost_codes", external(r.get("HKONT")))
        if not project or not code:
            continue
        amount = Decimal(str(r.get("DMBTR") or "0"))
        k = (project, code)
        out["direct_costs"][k] = out["direct_costs"].get(k, Decimal(0)) + (-amount if r["SHKZG"] == "H" else amount)
    return out


def procore_totals(procore: Any) -> dict[str, dict[tuple[str, str], Decimal]]:
    """What the Procore emulator holds, per (project number, cost code)."""
    out: dict[str, dict[tuple[str, str], Decimal]] = {"commitments": {}, "direct_costs": {}}
    with procore.lock:
        for kind, records in (("commitments", procore.contracts.values()),
                              ("direct_costs", procore.direct_costs.values())):
            for rec in records:
                number = procore.projects[rec["project_id"]]["project_number"]
                for li in rec["line_items"]:
                    cc = procore.cost_code(rec["project_id"], li.get("cost_code_id"))
                    k = (number, cc["full_code"] if cc else "-")
                    out[kind][k] = out[kind].get(k, Decimal(0)) + Decimal(str(li["amount"]))
    return {kind: {k: v for k, v in t.items() if v} for kind, t in out.items()}


def client_for(info: dict[str, Any], *, secret: str | None = None, limiter: Any = None) -> Any:
    """A Procore client on an emulator's `sandbox --json` entry, with its own in-memory token store
    (and `limiter`, the company's budget, when given)."""
    from ml_connector.core.http import OAuth2Auth, RetryPolicy
    from ml_connector.core.tokens import MemoryTokenStore
    from ml_connector.systems.procore.client import ProcoreClient
    from ml_connector.systems.procore.facts import procore_facts

    f = procore_facts()
    assert f.auth.token_path is not None
    auth = OAuth2Auth(info["login_url"] + f.auth.token_path, info["client_id"], secret or info["client_secret"],
                      connection="procore", store=MemoryTokenStore(), facts=f.auth,
                      retry=RetryPolicy.from_facts(f.need_retry()), provider="Procore")
    return ProcoreClient(info["base_url"], info["company_id"], auth, limiter=limiter)


def check_demo_mappings(info: dict[str, Any]) -> list[str]:
    """The demo mapping tables checked against the Procore emulator's projects and cost codes."""
    from ml_connector.systems.procore.targets import check_mappings

    projects = {f"{t} {k}": v for t in ("wbs", "cost_centers", "plants") for k, v in DEMO_MAPPINGS.get(t, {}).items()}
    codes = {f"{t} {k}": v for t in ("cost_codes", "material_groups") for k, v in DEMO_MAPPINGS.get(t, {}).items()}
    with client_for(info) as client:
        return check_mappings(client, projects, codes)


def _cli(workdir: Path, cfg: Path, *args: str, input_: str | None = None,
         width: int = 200) -> subprocess.CompletedProcess[str]:
    # The CLI's tables are laid out for the demo console's width (they are printed into it).
    env = dict(os.environ, MLC_LOG_LEVEL=os.environ.get("MLC_LOG_LEVEL", "WARNING"), COLUMNS=str(width))
    return subprocess.run([sys.executable, "-m", "ml_connector.cli", *args, "-c", str(cfg)], capture_output=True,
                          text=True, env=env, cwd=workdir, input=input_, timeout=600)


def run_ecc_procore_demo(workdir: Path, console: Console) -> int:
    """Start both emulators, sync the three streams with the CLI, show the tie-out; 0 = all good."""
    from ml_connector.sandbox import start_sandboxes

    workdir = workdir / "procore"
    workdir.mkdir(parents=True, exist_ok=True)
    # The emulators keep their data between demo runs (like the database): a second run writes nothing.
    handles = start_sandboxes(systems=("sap_ecc", "procore"), vendors=300, state_dir=workdir / "sandbox")
    try:
        ecc = handles["sap_ecc"].state
        if not any(r.get("XBLNR") == "PAYROLL" for r in ecc.data.rows("BKPF", ecc.client)):
            from ml_connector.systems.sap_ecc.sandbox.seed_construction import seed_labor

            seed_labor(ecc.data, ecc.client)  # this week's labor cost distribution
        from ml_connector.systems.sap_ecc.sandbox.seed_construction import seed_job_sites

        # This week's POs of DEMO_JOB_SITES of the 150 job sites (each its own Procore project; the
        # benchmark syncs all 150): the demo stays quick.
        seed_job_sites(ecc.data, ecc.client, sites=DEMO_JOB_SITES)
        sap, procore = handles["sap_ecc"].info, handles["procore"].info
        console.rule("[bold]ml-connector demo: SAP ECC → Procore")
        console.print(f"sandbox Procore  {procore['base_url']}  "
                      f"(company {procore['company_id']}, {len(handles['procore'].state.projects)} projects)")
        cfg = workdir / "ml-connector.yaml"
        cfg.write_text(config_text(sap, procore), encoding="utf-8")
        for name, value in ((SAP_PASSWORD_SECRET, sap["password"]), (PROCORE_SECRET, procore["client_secret"])):
            done = _cli(workdir, cfg, "secrets", "set", name, "--stdin", input_=value)
            if done.returncode:
                console.print(done.stdout + done.stderr)
                return done.returncode
        problems = check_demo_mappings(procore)
        console.print(f"mapping tables checked against Procore's projects and cost codes: "
                      f"{len(problems)} problem(s)" + "".join(f"\n  {p}" for p in problems))
        # One sync of the flow: vendors, purchase orders, cost allocations, in that order.
        done = _cli(workdir, cfg, "sync", FLOW, width=console.width)
        console.print(done.stdout.rstrip())
        code = done.returncode
        if code:
            console.print(done.stderr.rstrip())
        want, got = sap_totals(handles["sap_ecc"].state), procore_totals(handles["procore"].state)
        for kind in ("commitments", "direct_costs"):
            w = {k: v for k, v in want[kind].items() if v}
            verdict = "tie out" if w == got[kind] else "DIFFER"
            console.print(f"{kind.replace('_', ' ')}: {len(got[kind])} project/cost code totals, "
                          f"{sum(got[kind].values(), Decimal(0))} in Procore; SAP and Procore {verdict}")
            if w != got[kind]:
                code = code or 1
        return code
    finally:
        for h in handles.values():
            h.stop()
