"""SAP ECC → Procore benchmark (issue 13), standalone: `.venv/bin/python -m bench.procore_sync [--hour 20]`.

Both emulators run in this process; the sync is the CLI in a child process (the flow's three
streams, company code 1000, every PO since 2023 and every cost-center posting since 2024 through the
demo mappings). The Procore "hour" is scaled down to `--hour` seconds with a budget of `--budget`
requests per scaled hour, on both sides (emulator and the connection's `limits`), so that the run is
bound by the company budget. Reported:

- writes (vendors, contract lines, direct cost lines) and requests per scaled hour as a fraction of
  the budget, over the span from the first to the last Procore request (target ≥ 0.95), and the 429s
  the emulator answered (target 0);
- the wall time of the sync;
- SAP calls (SOAP-RFC) per 1,000 PO lines written;
- the wall time of a weekly sync for 150 projects: after that first load, the next week's POs of the
  150 job sites (`seed_job_sites`, one PO per job-site cost center, each its own Procore project,
  every fifth a subcontract with requisitions) and a labor week, synced on the same budget, and its
  Procore requests per scaled hour as a fraction of the budget (the figure issue 13 asks ≥ 0.95 of).

A run of purchase orders or cost allocations writes what Procore's remaining hourly budget allows
(less the flow's reserve, flows/_sap_ecc_procore_fair.py) and ends `waiting`; a load or weekly sync
is therefore `sync` run again, as soon as the last one ended, until nothing waits (as a frequent
schedule would), and its runs are counted. The machine's load average is reported with the figures.

Part of `make bench` (bench/run_all.py, scenario `procore`); results go to stdout as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from ml_connector.demo_ecc_procore import FLOW, PROCORE_SECRET, SAP_PASSWORD_SECRET, config_text
from ml_connector.sandbox import start_sandboxes
from ml_connector.systems.sap_ecc.sandbox.seed_construction import seed_job_sites, seed_labor


def run(hour: float, budget: int) -> dict[str, Any]:
    handles = start_sandboxes(systems=("sap_ecc", "procore"), vendors=3000)
    work = Path(tempfile.mkdtemp(prefix="bench-procore-"))
    try:
        sap, procore = handles["sap_ecc"].info, handles["procore"].info
        httpx.post(handles["procore"].url + "/_sandbox/limits", json={
            "hourly": budget, "hour_period": hour, "spike": 1_000_000}, timeout=10).raise_for_status()
        text = config_text(sap, procore, options={"po_from": "2023-01-01", "postings_from": "2024-01-01"})
        text = text.replace("      client_secret_secret: procore_client_secret\n",
                            "      client_secret_secret: procore_client_secret\n"
                            f"    limits: {{requests: {budget}, period: {hour:g}s}}\n")
        cfg = work / "ml-connector.yaml"
        cfg.write_text(text, encoding="utf-8")
        env = dict(os.environ, MLC_LOG_LEVEL="WARNING", COLUMNS="200")
        cli = [sys.executable, "-m", "ml_connector.cli"]
        for name, value in ((SAP_PASSWORD_SECRET, sap["password"]), (PROCORE_SECRET, procore["client_secret"])):
            subprocess.run([*cli, "secrets", "set", name, "--stdin", "-c", str(cfg)], input=value, text=True,
                           env=env, cwd=work, check=True, capture_output=True)
        ecc = handles["sap_ecc"].state
        st = handles["procore"].state
        seed_job_sites(ecc.data, ecc.client, sites=150)  # this week's POs: 150 job sites, 150 projects
        sap_before = httpx.get(handles["sap_ecc"].url + "/_sandbox/stats", timeout=10).json()
        def until_done() -> tuple[subprocess.CompletedProcess[str], int]:
            """`sync FLOW` until no stream waits for Procore's budget; (the last run, the runs)."""
            runs = 0
            while True:
                runs += 1
                started = time.monotonic()
                out = subprocess.run([*cli, "sync", FLOW, "-c", str(cfg)], env=env, cwd=work, text=True,
                                     capture_output=True)
                print(f"run {runs}: {time.monotonic() - started:.1f} s, Procore requests so far "
                      f"{st.stats['requests']:.0f}", file=sys.stderr, flush=True)
                if out.returncode or "waiting (not failed)" not in out.stdout or runs >= 500:
                    return out, runs

        load_before = os.getloadavg()
        t0 = time.monotonic()
        done, load_runs = until_done()
        wall = time.monotonic() - t0
        sap_after = httpx.get(handles["sap_ecc"].url + "/_sandbox/stats", timeout=10).json()
        stats = httpx.get(handles["procore"].url + "/_sandbox/stats", timeout=10).json()
        with st.lock:
            contract_lines = sum(len(c["line_items"]) for c in st.contracts.values())
            cost_lines = sum(len(d["line_items"]) for d in st.direct_costs.values())
            written = len(st.vendors) + contract_lines + cost_lines
        # The next week: 150 job sites' new POs and a labor week, one more sync of the flow.
        seed_job_sites(ecc.data, ecc.client, sites=150, bedat="20250609", first_ebeln=4510001001)
        seed_labor(ecc.data, ecc.client)
        with st.lock:
            before_week = set(st.contracts)
            week_lines_before = contract_lines + cost_lines
            st.stats["first_request_at"] = 0.0  # the weekly sync's span from its own first request
        # The weekly sync starts an hour after the load (a weekly schedule): a whole budget.
        time.sleep(hour)
        t1 = time.monotonic()
        weekly, weekly_runs = until_done()
        weekly_wall = time.monotonic() - t1
        load_after = os.getloadavg()
        with st.lock:
            week_projects = len({c["project_id"] for i, c in st.contracts.items() if i not in before_week})
            requisitions = len(st.requisitions)
            week_lines = (sum(len(c["line_items"]) for c in st.contracts.values())
                          + sum(len(d["line_items"]) for d in st.direct_costs.values()) - week_lines_before)
        week_stats = httpx.get(handles["procore"].url + "/_sandbox/stats", timeout=10).json()
        week_span = max(1e-9, week_stats["last_request_at"] - week_stats["first_request_at"])
        week_requests = week_stats["requests"] - stats["requests"]
        span = max(1e-9, stats["last_request_at"] - stats["first_request_at"])
        sap_calls = sum(sap_after["calls"].values()) - sum(sap_before["calls"].values())
        return {
            "exit_code": done.returncode, "wall_seconds": round(wall, 1),
            "scaled_hour_seconds": hour, "budget_per_hour": budget,
            "procore_requests": stats["requests"], "procore_429": stats["throttled"],
            "requests_fraction_of_budget": round(stats["requests"] / (span / hour * budget), 3),
            "written": {"vendors": len(st.vendors), "contract_lines": contract_lines, "direct_cost_lines": cost_lines},
            "writes_per_hour_fraction_of_budget": round(written / (span / hour * budget), 3),
            "projects_with_commitments": len({c["project_id"] for c in st.contracts.values()}),
            "sap_calls": sap_calls,
            "sap_calls_per_1000_po_lines": round(sap_calls * 1000 / max(1, contract_lines), 1),
            "load_runs": load_runs, "weekly_runs": weekly_runs,
            "weekly_exit_code": weekly.returncode, "weekly_sync_seconds": round(weekly_wall, 1),
            "weekly_requests_fraction_of_budget": round(week_requests / (week_span / hour * budget), 3),
            "weekly_lines_written": week_lines,
            "loadavg_before_after": [round(x, 2) for x in (*load_before, *load_after)],
            "weekly_projects": week_projects, "weekly_procore_requests": week_requests,
            "weekly_procore_429": week_stats["throttled"] - stats["throttled"], "requisitions": requisitions,
            "stderr_tail": (done.stderr[-500:] if done.returncode else "") + (weekly.stderr[-500:]
                                                                              if weekly.returncode else ""),
        }
    finally:
        for h in handles.values():
            h.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hour", type=float, default=20.0, help="seconds of the scaled Procore hour")
    ap.add_argument("--budget", type=int, default=400, help="requests per scaled hour")
    args = ap.parse_args()
    print(json.dumps(run(args.hour, args.budget), indent=2))


if __name__ == "__main__":
    main()
