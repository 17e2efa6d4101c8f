"""Shared test support: sandboxes on loopback, a configuration wired to them, the CLI in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ml_connector.config import example_config

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "ml_connector.cli"]
SAP_PASSWORD = "Sandbox-1234"


@dataclass
class Env:
    workdir: Path
    config: Path
    sap_url: str
    ramp_url: str
    env: dict[str, str]

    def cli(self, *args: str, check: bool = True, timeout: float = 240, input_: str | None = None,
            extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        env = dict(self.env, **(extra_env or {}))
        proc = subprocess.run([*CLI, *args, "-c", str(self.config)], capture_output=True, text=True,
                              timeout=timeout, env=env, cwd=self.workdir, input=input_)
        if check and proc.returncode != 0:
            raise AssertionError(f"ml-connector {' '.join(args)} exited {proc.returncode}\n"
                                 f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        return proc

    def serve_on_free_port(self) -> str:
        """Point the configuration's HTTP server at a free loopback port; return its base URL."""
        from ml_connector.core.servers import free_port

        port = free_port()
        self.config.write_text(self.config.read_text().replace("  port: 8080", f"  port: {port}"))
        return f"http://127.0.0.1:{port}"

    def popen(self, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        env = dict(self.env, **(extra_env or {}))
        return subprocess.Popen([*CLI, *args, "-c", str(self.config)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env, cwd=self.workdir)


def make_env(tmp: Path, sap_url: str, ramp_url: str, *, database_url: str | None = None,
             options: dict[str, Any] | None = None, ramp_limits: dict[str, Any] | None = None,
             set_secrets: bool = True, ramp_secret: str = "ramp_demo_secret",
             sap_password: str = SAP_PASSWORD) -> Env:
    cfg = tmp / "ml-connector.yaml"
    text = example_config(sap_url, ramp_url)
    if options:
        text = text.replace("      page_size: 5000\n", "".join(f"      {k}: {json.dumps(v)}\n"
                                                             for k, v in options.items()))
    if ramp_limits:
        text = text.replace("    # limits: {requests: 200, period: 10s}",
                            f"    limits: {{requests: {ramp_limits['requests']}, period: {ramp_limits['period']}}}")
    cfg.write_text(text, encoding="utf-8")
    env = dict(os.environ)
    env["MLC_LOG_LEVEL"] = env.get("MLC_LOG_LEVEL", "WARNING")
    env["PYTHONPATH"] = str(ROOT / "src")
    env["COLUMNS"] = "250"  # rich wraps tables to the terminal width
    env.pop("MLC_DATABASE_URL", None)
    if database_url:
        env["MLC_DATABASE_URL"] = database_url
    e = Env(tmp, cfg, sap_url, ramp_url, env)
    if set_secrets:
        e.cli("secrets", "set", "sap_ecc_password", "--stdin", input_=sap_password)
        e.cli("secrets", "set", "ramp_client_secret", "--stdin", input_=ramp_secret)
    return e


def ramp_vendors(ramp_url: str) -> list[dict[str, Any]]:
    return list(httpx.get(f"{ramp_url}/_sandbox/state/vendors", timeout=30).json()["vendors"])


def stop_all(procs: list[subprocess.Popen[str]], handles: dict[str, Any] | None = None) -> None:
    """Stop the worker processes (SIGINT, then SIGKILL after 20 s) and the sandboxes."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
    for h in (handles or {}).values():
        h.stop()


def wait_healthy(base: str, timeout: float = 90) -> None:
    """Wait until the server at `base` answers /health."""
    def up() -> bool:
        try:
            return httpx.get(f"{base}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(up, timeout=timeout, interval=0.2)


def wait_until(pred: Any, timeout: float = 60, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


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
