"""`make demo`: the sandbox SAP ECC and Ramp, a vendor sync with a progress bar, a summary.

Everything lives under one working directory (default ./demo): the
configuration, the SQLite database, the master key, the agent's identity and
vault, and the emulators' data, so a second run continues from the first and
reports zero writes.

SAP is reached the way it is in production, through the on-premises agent
protocol: the control plane's agent API is served on loopback, an agent (in a
thread of this process, with its own vault holding the SAP password) pairs
once, long-polls for calls, runs them against the SAP sandbox and posts the
results back.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

from rich.console import Console

FLOW = "vendors_to_ramp"


def _port(preferred: int) -> int:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])


#: The flows of the `init` example and the demo (the connections come from the systems' registry entries).
INIT_FLOWS = """\
  vendors_to_ramp:
    pair: sap_ecc_ramp        # the flow module flows/sap_ecc_ramp.py
    source: sap_ecc           # connection names from above
    target: ramp
    # SAP master data -> Ramp; company codes, plants and departments as Ramp accounting fields
    streams: [vendors, gl_accounts, cost_centers, company_codes, plants, departments]
    schedule: {{interval: 7d}}  # or {{cron: "0 3 * * 1"}} (exactly one of the two)
    options:                  # settings of this pair
      company_codes: ["1000", "2000", "3000"]
      page_size: 5000
    mappings: {{}}              # table -> {{source value: target value}}

  bills_to_sap:
    pair: sap_ecc_ramp
    source: ramp              # approved Ramp bills ...
    target: sap_ecc           # ... become SAP vendor invoices (posted exactly once)
    streams: [bills, bill_status]   # post approved bills; paid -> clear, rejected -> block in SAP
    schedule: {{interval: 1h}}  # Ramp suggests polling every 1-4 h
    mappings:
      entities:               # Ramp entity id -> SAP company code (unmapped bills wait; see `parked`)
        "{entity_id}": "1000"
"""


def init_example(sap_url: str, ramp_url: str) -> str:
    """What `ml-connector init` writes: SAP ECC and Ramp (their registry entries' examples) and the flows
    between them, wired to the sandbox URLs given."""
    from ml_connector.config import config_template
    from ml_connector.core import registry
    from ml_connector.systems.ramp.sandbox.state import DEFAULT_ENTITY_ID

    examples = []
    for name, url in (("sap_ecc", sap_url), ("ramp", ramp_url)):
        example = registry.get(name).example
        assert example is not None, f"system {name} has no example connection"
        examples.append(example(url))
    return config_template("\n".join(examples), INIT_FLOWS.format(entity_id=DEFAULT_ENTITY_ID))


AGENT_TABLES = ["LFA1", "LFB1", "CDHDR", "T001", "SKA1", "SKAT", "SKB1", "CSKS", "CSKT", "BKPF", "BSIK", "BSAK",
                "T001K", "T001W"]  # the plants stream: valuation areas and plants


def _start_agent(rt: Any, workdir: Path, sap: dict[str, Any]) -> tuple[Any, Any]:
    """Serve the control plane's agent API on loopback and run a paired agent in a thread."""
    from fastapi import FastAPI

    from ml_connector.agent.config import AgentConfig
    from ml_connector.agent.runner import Agent, load_identity, open_vault, pair
    from ml_connector.core.servers import serve_in_thread
    from ml_connector.demo_ramp_bills import AGENT_FUNCTIONS as BILL_FUNCTIONS
    from ml_connector.demo_ramp_bills import AGENT_TABLES as BILL_TABLES
    from ml_connector.server.agent_api import agent_router
    from ml_connector.server.agents.service import AgentService, Settings

    svc = AgentService(rt.db, rt.vault, Settings(db_poll=0.05))
    app = FastAPI(title="ml-connector control plane (agent API)")
    app.include_router(agent_router(rt, svc))
    server = serve_in_thread(app, name="control-plane", port=_port(8030))
    cfg = AgentConfig.model_validate({
        "control_plane": server.url, "site": "demo", "data_dir": str(workdir / "agent"),
        "poll": {"hold": 20.0, "max_concurrent": 4, "heartbeat": 5.0},
        "systems": {"sap_ecc": {"type": "sap_ecc", "base_url": sap["base_url"], "client": sap["client"],
                                "user": sap["user"], "password_secret": "sap_ecc_password",
                                "allow": {"functions": ["RFC_PING", "RFC_SYSTEM_INFO", "RFC_READ_TABLE",
                                                        *BILL_FUNCTIONS],
                                          "tables": sorted({*AGENT_TABLES, *BILL_TABLES})}}}})
    # The SAP password lives in the agent's own vault, never in the control plane's.
    open_vault(cfg.data_dir_path()).set("sap_ecc_password", sap["password"])
    ident = load_identity(cfg.data_dir_path())
    if ident is None or ident.control_plane != server.url:
        # First run, or the control plane came up on another port: pair (again).
        ident = pair(cfg, svc.issue_token("demo", 300), server.url, name="demo-agent", force=True)
    agent = Agent(cfg, ident)
    threading.Thread(target=agent.run, name="demo-agent", daemon=True).start()
    return server, agent


def run_demo(workdir: Path, *, vendors: int = 3000, console: Console | None = None) -> int:
    from ml_connector.cli import sync_with_progress
    from ml_connector.config import example_config, load_config
    from ml_connector.core import engine
    from ml_connector.core.runtime import Runtime
    from ml_connector.sandbox import start_sandboxes

    console = console or Console()
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    console.rule("[bold]ml-connector demo: SAP ECC vendors → Ramp")
    handles = start_sandboxes(ports={"sap_ecc": _port(8010), "ramp": _port(8020)}, vendors=vendors,
                              state_dir=workdir / "sandbox", systems=("sap_ecc", "ramp"))
    try:
        sap, ramp = handles["sap_ecc"].info, handles["ramp"].info
        console.print(f"sandbox SAP ECC  {sap['base_url']}  (client {sap['client']}, user {sap['user']})")
        console.print(f"sandbox Ramp     {ramp['base_url']}  (client id {ramp['client_id']})")
        cfg_path = workdir / "ml-connector.yaml"
        # The sandbox ports may differ between runs: the demo rewrites its own config.
        text = example_config(sap["base_url"], ramp["base_url"])
        text = text.replace("  executor_id: null\n", "  executor_id: null\n  agent: remote\n  agent_site: demo\n", 1)
        cfg_path.write_text(text, encoding="utf-8")
        rt = Runtime(load_config(cfg_path), cfg_path)
        rt.vault.set("ramp_client_secret", ramp["client_secret"])
        server, agent = _start_agent(rt, workdir, sap)
        console.print(f"on-prem agent    paired with the control plane at {server.url}, long-polling for SAP calls")
        engine.start(rt, role="demo")
        try:
            code = sync_with_progress(rt, FLOW, list(rt.config.flows[FLOW].streams), out=console)
            from ml_connector.demo_ramp_bills import run_bills_round_trip

            code = code or run_bills_round_trip(rt, handles, console)
        finally:
            engine.shutdown()
            agent.stop_event.set()
            server.stop()
            rt.close()
        in_ramp = len(handles["ramp"].state.vendors.by_id)
        console.print(f"Ramp sandbox now holds {in_ramp} accounting vendors.")
        rel = cfg_path.relative_to(Path.cwd()) if cfg_path.is_relative_to(Path.cwd()) else cfg_path
        console.print(
            "\n[bold]Where to look next[/bold]\n"
            f"  • run it again: [bold]make demo[/bold] (nothing changed in SAP, so zero writes to Ramp; the bill "
            "round trip makes new bills each time)\n"
            f"  • runs and counts: [bold].venv/bin/ml-connector runs -c {rel}[/bold]\n"
            f"  • the agent's side: {workdir / 'agent'} (its identity, its vault with the SAP password, "
            "its audit log agent-audit.jsonl)\n"
            f"  • failures and replay: [bold].venv/bin/ml-connector failures -c {rel}[/bold]\n"
            f"  • bills: [bold].venv/bin/ml-connector runs -c {rel}[/bold] (bills, bill_status), "
            f"[bold]parked[/bold]; docs/sap-ecc-ramp.md\n"
            f"  • the configuration: {rel}; the database and audit trail: {workdir / 'data'}\n"
            "  • real systems: see README.md, 'Pointing it at real systems'")
        from ml_connector.demo_concur_b1 import run_concur_b1_demo
        from ml_connector.demo_ecc_procore import run_ecc_procore_demo
        from ml_connector.demo_ecc_sfmc import run_ecc_sfmc_demo  # the SAP ECC → Marketing Cloud pair

        # The other pairs, each on its own sandboxes and working directory; any failing fails the demo.
        for pair_demo in (run_concur_b1_demo, run_ecc_procore_demo, run_ecc_sfmc_demo):
            code = max(code, pair_demo(workdir, console))
        return code
    finally:
        for h in handles.values():
            h.stop()
