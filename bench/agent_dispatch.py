"""Remote agent dispatch: control plane -> agent -> SAP sandbox -> control plane.

Compares RFC_PING through one remote agent with RFC_PING sent directly from the control
plane's process by a SoapRfcClient with the same settings:

- latency: p50/p99 of `--samples` sequential calls per path (the two paths alternate, so
  drift of a shared machine hits both alike);
- throughput: calls/s of `--calls` calls per path at each of `--threads` concurrency levels;
- the same sequential latency with the caller in another process than the control plane's
  API (`--cross-samples`): the path of a Postgres scale-out, where the worker that queues a
  call is not the one the agent polls. On SQLite (the layout above) only timers reach across
  processes; with `--pg URL` (default: $MLC_TEST_PG_URL) it is measured again on a fresh
  database of that Postgres server with its own control-plane API and agent process, with
  LISTEN/NOTIFY wake-ups and with timers only (MLC_AGENT_NOTIFY=0 in both processes).

Process layout, as deployed: the control plane's agent API and the callers (the flows of
`ml-connector run`) share this process; the agent is its own OS process running the
`ml-connector agent` code (through bench/agent_proc.py, only to raise the budget); the SAP
ECC emulator is its own process (bench/sandbox_proc.py).

The SAP call budget (CallPolicy: production range 10-50 calls/s per system) is raised to
`--budget` calls/s on both paths alike, and the concurrency cap is the highest thread count
on both: with the production budget both paths run at 50 calls/s and the ratio says nothing
about the agent.

The last line printed is a JSON object with every figure (bench/run_all.py reads it).

    python -m bench.agent_dispatch [--samples 500] [--calls 1000] [--threads 1,4,16]
                                   [--cross-samples 60] [--budget 100000] [--pg URL | --pg '']
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
SITE = "bench"
FUNCTION = "RFC_PING"
WARMUP = 20  # calls per path before measuring: connection pools, first-call imports


def pct(xs: list[float], p: float) -> float:
    """Nearest-rank percentile of `xs` (p in 0..100)."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s)) - 1))]


def throughput(fn: Callable[[], object], n: int, threads: int) -> float:
    """Calls per second of `n` calls of `fn` on `threads` threads."""
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda _: fn(), range(n)))
    return n / (time.perf_counter() - t0)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def agent_call(channel: Any) -> Callable[[], None]:
    from ml_connector.core.channel import ChannelRequest

    def call() -> None:
        r = channel.call(ChannelRequest(system="sap_ecc", function=FUNCTION, params={"__tables__": []}))
        if not r.ok:
            raise RuntimeError(f"{FUNCTION} via the agent failed: {r.fault}")

    return call


def caller_main(db_url: str, samples: int) -> None:
    """The cross-process caller: queue calls in the control plane's database from this process."""
    from ml_connector.core.db import Database
    from ml_connector.server.agents.channel import RemoteAgentChannel

    call = agent_call(RemoteAgentChannel(Database(db_url), SITE, timeout=30))
    for _ in range(3):
        call()
    print(json.dumps({"latencies": [timed(call) for _ in range(samples)]}), flush=True)


def summary(lat: list[float]) -> dict[str, float]:
    return {"p50_ms": pct(lat, 50) * 1000, "p90_ms": pct(lat, 90) * 1000, "p99_ms": pct(lat, 99) * 1000,
            "mean_ms": sum(lat) / len(lat) * 1000, "samples": len(lat)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=500, help="sequential calls per path for latency")
    # 1,000: about 16 s per level through the agent (~60 calls/s on 2 cores), so the bench stays near 90 s
    ap.add_argument("--calls", type=int, default=1000, help="calls per path and concurrency level")
    ap.add_argument("--threads", default="1,4,16", help="concurrency levels, comma-separated")
    ap.add_argument("--cross-samples", type=int, default=60, help="calls from a caller in another process (0: skip)")
    ap.add_argument("--budget", type=int, default=100_000, help="SAP calls/s on both paths during the bench")
    ap.add_argument("--pg", default=os.environ.get("MLC_TEST_PG_URL", ""),
                    help="Postgres server URL for the cross-process measurement on Postgres ('' to skip)")
    ap.add_argument("--caller", metavar="DB_URL", help=argparse.SUPPRESS)  # the cross-process caller child
    args = ap.parse_args(argv)
    if args.caller:
        caller_main(args.caller, args.cross_samples)
        return
    try:
        levels = sorted({int(x) for x in args.threads.split(",") if x.strip()})
    except ValueError:
        raise SystemExit(f"--threads: expected comma-separated integers like 1,4,16, got {args.threads!r}") from None
    if not levels or levels[0] < 1 or levels[-1] > 64:
        raise SystemExit(f"--threads: levels must be between 1 and 64 (the agent's max_concurrent), "
                         f"got {args.threads!r}")
    if args.samples < 1 or args.calls < 1 or args.budget < 1:
        raise SystemExit("--samples, --calls and --budget must be at least 1")
    out = run(args, levels)
    print(json.dumps(out), flush=True)


def run(args: argparse.Namespace, levels: list[int]) -> dict[str, Any]:
    from fastapi import FastAPI

    from bench.sandbox_proc import SandboxProcess
    from ml_connector.core.db import Database
    from ml_connector.core.servers import serve_in_thread
    from ml_connector.core.vault import MasterKey, Vault
    from ml_connector.server.agent_api import agent_router
    from ml_connector.server.agents.channel import RemoteAgentChannel
    from ml_connector.server.agents.service import AgentService, Settings
    from ml_connector.systems.sap_ecc import call_policy
    from ml_connector.systems.sap_ecc.client import SoapRfcClient

    cap = levels[-1]
    # Both paths alike: this process (direct client) here, the agent process in bench/agent_proc.py.
    call_policy.MAX_CALLS_PER_SECOND = max(call_policy.MAX_CALLS_PER_SECOND, args.budget)
    tmp = Path(tempfile.mkdtemp(prefix="mlc-bench-agent-"))
    sandbox = SandboxProcess("sap_ecc", vendors=10)
    agent_proc: subprocess.Popen[bytes] | None = None
    srv = None
    try:
        sap = sandbox.info
        db_url = f"sqlite:///{tmp / 'cp.sqlite'}"
        db = Database(db_url)
        db.migrate()
        vault = Vault(db, MasterKey.generate())
        settings = Settings()  # production defaults (MLC_AGENT_* environment)
        svc = AgentService(db, vault, settings)
        app = FastAPI()
        app.include_router(agent_router(SimpleNamespace(db=db, vault=vault), svc))
        srv = serve_in_thread(app, name="cp")

        agent_proc, log = start_agent(tmp, "agent", srv.url, sap, cap, lambda: svc.issue_token(SITE, 60),
                                      args.budget)

        direct = SoapRfcClient(sap["base_url"], sap["client"], sap["user"], sap["password"],
                               calls_per_second=args.budget, max_concurrency=cap)
        paths: dict[str, Callable[[], object]] = {
            "direct": lambda: direct.call(FUNCTION),
            "via agent": agent_call(RemoteAgentChannel(db, SITE, timeout=60)),
        }
        for fn in paths.values():
            for _ in range(WARMUP):
                fn()
        if agent_proc.poll() is not None:
            raise RuntimeError(f"the agent exited ({agent_proc.returncode}): {log.read_text()[-2000:]}")

        lat: dict[str, list[float]] = {k: [] for k in paths}
        for _ in range(args.samples):
            for name, fn in paths.items():
                lat[name].append(timed(fn))
        latency = {k: summary(v) for k, v in lat.items()}

        # CPU per call of each process (ms): where the dispatch path spends its time.
        procs = {"control plane + callers": os.getpid(), "agent": agent_proc.pid, "sap emulator": sandbox.proc.pid}
        tput: dict[str, dict[str, Any]] = {}
        for n_threads in levels:
            row: dict[str, float] = {}
            cpu: dict[str, dict[str, float]] = {}
            for name, fn in paths.items():
                before = {k: cpu_seconds(pid) for k, pid in procs.items()}
                row[name] = throughput(fn, args.calls, n_threads)
                cpu[name] = {k: (cpu_seconds(pid) - before[k]) / args.calls * 1000 for k, pid in procs.items()}
            tput[str(n_threads)] = {"direct_cps": row["direct"], "agent_cps": row["via agent"],
                                    "ratio": row["via agent"] / row["direct"], "cpu_ms_per_call": cpu}

        cross: dict[str, float] | None = None
        if args.cross_samples > 0:
            cross = cross_caller(db_url, args.cross_samples, dict(os.environ))
        if agent_proc.poll() is not None:
            raise RuntimeError(f"the agent exited ({agent_proc.returncode}): {log.read_text()[-2000:]}")
        pg = pg_cross(args, sap, cap, tmp) if args.pg and args.cross_samples > 0 else None
    finally:
        if agent_proc is not None and agent_proc.poll() is None:
            agent_proc.terminate()
            try:
                agent_proc.wait(10)
            except subprocess.TimeoutExpired:
                agent_proc.kill()
                agent_proc.wait(5)
        if srv is not None:
            srv.stop()
        sandbox.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    return report(args, levels, settings, latency, tput, cross, pg)


def cross_caller(db_url: str, samples: int, env: dict[str, str]) -> dict[str, float]:
    child = subprocess.run([sys.executable, "-m", "bench.agent_dispatch", "--caller", db_url,
                            "--cross-samples", str(samples)],
                           capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    if child.returncode != 0:
        raise RuntimeError(f"cross-process caller exited {child.returncode}: {child.stderr[-2000:]}")
    return summary(json.loads(child.stdout.strip().splitlines()[-1])["latencies"])


def start_agent(tmp: Path, name: str, url: str, sap: dict[str, Any], cap: int, token_for: Callable[[], str],
                budget: int) -> tuple[subprocess.Popen[bytes], Path]:
    """The agent in its own OS process (bench/agent_proc.py), paired with the API at `url`."""
    from ml_connector.agent.config import load_agent_config
    from ml_connector.agent.runner import open_vault, pair

    cfg_path = tmp / name / "agent.yaml"
    cfg_path.parent.mkdir(parents=True)
    cfg_path.write_text(yaml.safe_dump({
        "control_plane": url, "site": SITE, "data_dir": str(tmp / name / "data"),
        "poll": {"hold": "50s", "max_concurrent": cap},
        "systems": {"sap_ecc": {
            "type": "sap_ecc", "base_url": sap["base_url"], "client": sap["client"], "user": sap["user"],
            # agent.yaml must stay within 10-50; bench/agent_proc.py raises it to --budget
            "password_secret": "sap_pw", "calls_per_second": 50,
            "max_concurrent": cap, "allow": {"functions": [FUNCTION]}}}}), encoding="utf-8")
    cfg = load_agent_config(cfg_path)
    open_vault(cfg.data_dir_path()).set("sap_pw", sap["password"])
    pair(cfg, token_for(), url)
    log = tmp / name / "agent.log"
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.agent_proc", "--calls-per-second", str(budget), "-c", str(cfg_path)],
            stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, env=dict(os.environ))
    return proc, log


def pg_cross(args: argparse.Namespace, sap: dict[str, Any], cap: int, tmp: Path) -> dict[str, Any]:
    """Cross-process latency on Postgres: this process serves the agent API on a fresh database,
    a child process queues the calls; with notifications, then timers only."""
    import uuid

    import psycopg
    from fastapi import FastAPI

    from ml_connector.core.db import Database
    from ml_connector.core.servers import serve_in_thread
    from ml_connector.core.vault import MasterKey, Vault
    from ml_connector.server.agent_api import agent_router
    from ml_connector.server.agents import wakeups
    from ml_connector.server.agents.channel import RemoteAgentChannel
    from ml_connector.server.agents.service import AgentService, Settings

    server = args.pg.rsplit("/", 1)[0]
    name = f"mlc_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server + "/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{server}/{name}"
    db = Database(url)
    srv = None
    svc: AgentService | None = None
    agent: subprocess.Popen[bytes] | None = None
    out: dict[str, Any] = {}
    try:
        db.migrate()
        vault = Vault(db, MasterKey.generate())
        svc = AgentService(db, vault, Settings())
        app = FastAPI()
        app.include_router(agent_router(SimpleNamespace(db=db, vault=vault), svc))
        srv = serve_in_thread(app, name="cp-pg")
        agent, log = start_agent(tmp, "agent-pg", srv.url, sap, cap, lambda: svc.issue_token(SITE, 60), args.budget)
        call = agent_call(RemoteAgentChannel(db, SITE, timeout=60))
        for _ in range(WARMUP):
            call()
        out["in-process"] = summary([timed(call) for _ in range(args.cross_samples)])
        out["notify"] = cross_caller(url, args.cross_samples, dict(os.environ))
        # Timers only, in both processes (this one serves the poll and stores the results).
        os.environ["MLC_AGENT_NOTIFY"] = "0"
        try:
            out["timers"] = cross_caller(url, args.cross_samples, dict(os.environ))
        finally:
            os.environ.pop("MLC_AGENT_NOTIFY", None)
        if agent.poll() is not None:
            raise RuntimeError(f"the Postgres agent exited ({agent.returncode}): {log.read_text()[-2000:]}")
    finally:
        if agent is not None and agent.poll() is None:
            agent.terminate()
            try:
                agent.wait(10)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait(5)
        if srv is not None:
            srv.stop()
        if svc is not None:
            svc.stop()  # its lease sweeper
        listener = wakeups.listener(db)
        if listener is not None:
            listener.stop()  # before the database goes away under it
        db.dispose()
        with psycopg.connect(server + "/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return out


def report(args: argparse.Namespace, levels: list[int], settings: Any, latency: dict[str, dict[str, float]],
           tput: dict[str, dict[str, Any]], cross: dict[str, float] | None,
           pg: dict[str, Any] | None = None) -> dict[str, Any]:
    d, a = latency["direct"], latency["via agent"]
    figures: list[tuple[str, str]] = [
        ("latency direct", f"p50 {d['p50_ms']:.2f} ms, p99 {d['p99_ms']:.2f} ms ({d['samples']} calls)"),
        ("latency via agent", f"p50 {a['p50_ms']:.2f} ms, p99 {a['p99_ms']:.2f} ms ({a['samples']} calls)"),
        ("latency ratio via agent / direct", f"p50 x{a['p50_ms'] / d['p50_ms']:.1f}, "
                                             f"p99 x{a['p99_ms'] / d['p99_ms']:.1f}"),
    ]
    for n in levels:
        t = tput[str(n)]
        figures.append((f"calls/s, {n} thread{'s' if n > 1 else ''}",
                        f"direct {t['direct_cps']:.0f}, via agent {t['agent_cps']:.0f}, ratio {t['ratio']:.2f}"))
    for n, name in sorted({(levels[-1], "direct"), (levels[0], "via agent"), (levels[-1], "via agent")}):
        cpu = tput[str(n)]["cpu_ms_per_call"][name]
        figures.append((f"CPU ms per call, {name}, {n} thread{'s' if n > 1 else ''}",
                        ", ".join(f"{k} {v:.2f}" for k, v in cpu.items())))
    if cross is not None:
        figures.append(("latency, caller in another process than the API",
                        f"p50 {cross['p50_ms']:.1f} ms, p90 {cross['p90_ms']:.1f} ms, mean {cross['mean_ms']:.1f} ms "
                        f"({cross['samples']} calls; in-process p50 {a['p50_ms']:.1f} ms)"))
    if pg is not None:
        for key, label in (("in-process", "Postgres, caller in the API's process"),
                           ("notify", "Postgres, other process, NOTIFY"),
                           ("timers", "Postgres, other process, timers only")):
            x = pg[key]
            figures.append((f"latency, {label}", f"p50 {x['p50_ms']:.1f} ms, p90 {x['p90_ms']:.1f} ms, "
                                                 f"mean {x['mean_ms']:.1f} ms ({x['samples']} calls)"))
    print(f"agent dispatch, {FUNCTION}: control plane API and callers in this process (as in `ml-connector run`), "
          "the agent in its own OS process (`ml-connector agent` code), the SAP ECC emulator in its own process")
    print(f"SAP call budget raised to {args.budget} calls/s and concurrency cap {levels[-1]} on BOTH paths alike "
          "(production: 10-50 calls/s), so the dispatch path, not the budget, limits throughput")
    print(f"control plane agent settings: db_poll {settings.db_poll:g} s, hold_max {settings.hold_max:g} s")
    for name, value in figures:
        print(f"  {name:<50} {value}")
    return {"function": FUNCTION, "budget_calls_per_second": args.budget, "concurrency_cap": levels[-1],
            "agent": "separate OS process", "db_poll_s": settings.db_poll, "latency": latency,
            "latency_ratio": {"p50": a["p50_ms"] / d["p50_ms"], "p99": a["p99_ms"] / d["p99_ms"]},
            "throughput": {"calls_per_level": args.calls, "levels": tput},
            "cross_process_latency": cross, "postgres_latency": pg, "figures": figures}


if __name__ == "__main__":
    main()
