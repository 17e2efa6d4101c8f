"""`make demo`: the sandbox SAP ECC and Ramp, a vendor sync with a progress bar, a summary.

Everything lives under one working directory (default ./demo): the
configuration, the SQLite database, the master key and the emulators' data, so
a second run continues from the first and reports zero writes.
"""

from __future__ import annotations

import socket
from pathlib import Path

from rich.console import Console

FLOW = "vendors_to_ramp"


def _port(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])


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
                              state_dir=workdir / "sandbox")
    try:
        sap, ramp = handles["sap_ecc"].info, handles["ramp"].info
        console.print(f"sandbox SAP ECC  {sap['base_url']}  (client {sap['client']}, user {sap['user']})")
        console.print(f"sandbox Ramp     {ramp['base_url']}  (client id {ramp['client_id']})")
        cfg_path = workdir / "ml-connector.yaml"
        # The sandbox ports may differ between runs: the demo rewrites its own config.
        cfg_path.write_text(example_config(sap["base_url"], ramp["base_url"]), encoding="utf-8")
        rt = Runtime(load_config(cfg_path), cfg_path)
        rt.vault.set("sap_ecc_password", sap["password"])
        rt.vault.set("ramp_client_secret", ramp["client_secret"])
        engine.start(rt)
        try:
            code = sync_with_progress(rt, FLOW, list(rt.config.flows[FLOW].streams))
        finally:
            engine.shutdown()
            rt.close()
        in_ramp = len(handles["ramp"].state.vendors.by_id)
        console.print(f"Ramp sandbox now holds {in_ramp} accounting vendors.")
        rel = cfg_path.relative_to(Path.cwd()) if cfg_path.is_relative_to(Path.cwd()) else cfg_path
        console.print(
            "\n[bold]Where to look next[/bold]\n"
            f"  • run it again: [bold]make demo[/bold] (nothing changed in SAP, so zero writes)\n"
            f"  • runs and counts: [bold].venv/bin/ml-connector runs -c {rel}[/bold]\n"
            f"  • what would change: [bold].venv/bin/ml-connector sync {FLOW} --dry-run -c {rel}[/bold] "
            "(needs [bold]ml-connector sandbox --state-dir demo/sandbox[/bold] running)\n"
            f"  • failures and replay: [bold].venv/bin/ml-connector failures -c {rel}[/bold]\n"
            f"  • the configuration: {rel}; the database and audit trail: {workdir / 'data'}\n"
            "  • real systems: see README.md, 'Pointing it at real systems'")
        return code
    finally:
        for h in handles.values():
            h.stop()
