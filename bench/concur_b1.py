"""SAP Concur → SAP Business One: journal entries posted per second, Service Layer logins per
1,000 entries (target: one per session lifetime) and Concur token requests (per run, and per day
at the provider's token lifetime).

Both emulators run in their own process (`ml-connector sandbox`); the sync runs in a child process
(`ml-connector sync`), Business One through the embedded agent channel, with the emulator's
login cost of provider.yaml (about five seconds, counted in the wall time).

Two runs by default, each its own process after new reports arrive: the second reuses the
first's Service Layer session (kept in the token store), so logins stay one per session lifetime.

    python -m bench.concur_b1 [--reports 500] [--runs 2]
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

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent / "ml-connector"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    for k in ("MLC_DATABASE_URL", "MLC_MASTER_KEY", "MLC_CONFIG"):
        env.pop(k, None)
    env["MLC_LOG_LEVEL"] = "WARNING"
    return env


def run(reports: int, runs: int = 2) -> dict[str, Any]:
    """`runs` syncs (separate processes, as a schedule would start them), each after `reports`
    new approved reports: the Service Layer session of the first is kept and reused by the next."""
    from ml_connector.demo_concur_b1 import FLOW, pair_config, pair_secrets
    from ml_connector.systems.concur.facts import concur_facts

    sandbox = subprocess.Popen([str(BIN), "sandbox", "--json", "--port", "concur=0", "--port", "sap_b1=0"],
                               stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert sandbox.stdout is not None
        info = json.loads(sandbox.stdout.readline())
        concur, b1 = info["concur"], info["sap_b1"]
        with tempfile.TemporaryDirectory() as tmp:
            cfg = Path(tmp) / "ml-connector.yaml"
            cfg.write_text(pair_config(concur, b1), encoding="utf-8")
            for name, value in pair_secrets(concur, b1).items():
                subprocess.run([str(BIN), "secrets", "set", name, "--stdin", "-c", str(cfg)], input=value,
                               text=True, check=True, capture_output=True, env=_env())
            b1_before = httpx.get(b1["admin"] + "/stats").json()
            wall, logins_per_run = 0.0, []
            for _ in range(runs):
                httpx.post(concur["admin"] + "/add_reports", json={"count": reports}, timeout=120).raise_for_status()
                before = httpx.get(b1["admin"] + "/stats").json()["logins"]
                t0 = time.perf_counter()
                subprocess.run([str(BIN), "sync", FLOW, "-c", str(cfg)], check=True, capture_output=True,
                               env=_env())
                wall += time.perf_counter() - t0
                logins_per_run.append(httpx.get(b1["admin"] + "/stats").json()["logins"] - before)
        b1_after = httpx.get(b1["admin"] + "/stats").json()
        tokens = httpx.get(concur["admin"] + "/stats").json()["token_requests"]
    finally:
        sandbox.terminate()
        sandbox.wait(30)
    posted = b1_after["counts"]["JournalEntries"] - b1_before["counts"]["JournalEntries"]
    logins = b1_after["logins"] - b1_before["logins"]
    auth = concur_facts().auth
    assert auth.token_lifetime is not None and auth.refresh_margin is not None
    per_day = 86400.0 / (auth.token_lifetime - auth.refresh_margin)  # refreshes of a worker running all day
    return {"reports": reports * runs, "runs": runs, "journal_entries": posted, "wall_s": round(wall, 2),
            "b1_logins_per_run": logins_per_run,
            "entries_per_s": round(posted / wall, 1) if wall else None,
            "b1_logins": logins, "b1_logins_per_1000_entries": round(1000 * logins / posted, 2) if posted else None,
            "concur_token_requests_this_run": tokens,
            "concur_token_requests_per_day_running": round(per_day + 1)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--reports", type=int, default=500, help="new approved reports before each run")
    p.add_argument("--runs", type=int, default=2, help="sync runs, each its own process")
    a = p.parse_args()
    print(json.dumps(run(a.reports, a.runs), indent=2))


if __name__ == "__main__":
    main()
