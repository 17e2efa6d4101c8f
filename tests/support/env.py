"""A working directory with a configuration wired to the sandboxes, and the CLI run in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ml_connector.config import example_config
from tests.support.cli_inprocess import can_run_in_process, run_in_process
from tests.support.processes import CLI, ROOT, DrainedPopen

SAP_PASSWORD = "Sandbox-1234"
RAMP_SECRET = "ramp_demo_secret"


@dataclass
class Env:
    workdir: Path
    config: Path
    sap_url: str
    ramp_url: str
    env: dict[str, str]

    def cli(self, *args: str, check: bool = True, timeout: float = 240, input_: str | None = None,
            extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """`ml-connector *args -c CONFIG`: in a subprocess, or for a read-only command in this process
        (tests/support/cli_inprocess.py: a second of CPU less, the same outcome)."""
        env = dict(self.env, **(extra_env or {}))
        if can_run_in_process(args, env):
            proc = run_in_process([*args, "-c", str(self.config)], env, self.workdir, input_)
        else:
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

    def popen(self, *args: str, extra_env: dict[str, str] | None = None) -> DrainedPopen:
        env = dict(self.env, **(extra_env or {}))
        return DrainedPopen([*CLI, *args, "-c", str(self.config)], env=env, cwd=self.workdir)


def make_env(tmp: Path, sap_url: str, ramp_url: str, *, database_url: str | None = None,
             options: dict[str, Any] | None = None, ramp_limits: dict[str, Any] | None = None,
             set_secrets: bool = True, ramp_secret: str = RAMP_SECRET,
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
    if set_secrets and (sap_password, ramp_secret) == (SAP_PASSWORD, RAMP_SECRET):
        store_secrets(e, {"sap_ecc_password": sap_password, "ramp_client_secret": ramp_secret})
    elif set_secrets:
        # Values of a test's own (about leaks): through the CLI, so that this process's redaction
        # registry never learns them and cannot mask a leak the test looks for.
        e.cli("secrets", "set", "sap_ecc_password", "--stdin", input_=sap_password)
        e.cli("secrets", "set", "ramp_client_secret", "--stdin", input_=ramp_secret)
    return e


def store_secrets(e: Env, secrets: dict[str, str]) -> None:
    """What `ml-connector secrets set NAME` does for each secret, done in this process: a CLI start
    costs about a second of CPU and every test environment needs two secrets (the command itself is
    tested in test_cli_admin). Only the sandboxes' default values come this way (`make_env`). The
    database and master key are the ones the CLI would find: the configuration's, or
    $MLC_DATABASE_URL / $MLC_MASTER_KEY as the CLI's environment sets them."""
    from ml_connector.config import load_config
    from ml_connector.core.db import Database
    from ml_connector.core.vault import MasterKey, Vault

    names = ("MLC_DATABASE_URL", "MLC_MASTER_KEY")
    saved = {k: os.environ.get(k) for k in names}
    try:
        for k in names:  # the CLI's environment, not this process's
            if e.env.get(k):
                os.environ[k] = e.env[k]
            else:
                os.environ.pop(k, None)
        cfg = load_config(e.config)
        config_dir = e.config.resolve().parent
        db = Database(cfg.database_url_resolved(config_dir))
        try:
            db.migrate()
            vault = Vault(db, MasterKey.load(cfg.data_dir_resolved(config_dir)))
            for name, value in secrets.items():
                vault.set(name, value)
        finally:
            db.dispose()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


SUMMARY_COLUMNS = ["read", "created", "adopted", "updated", "deactivated", "unchanged", "parked", "failed"]


def summary_rows(stdout: str) -> list[list[int]]:
    """The numbers of every data row of the sync summary tables in `stdout`."""
    rows = []
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if len(cells) == len(SUMMARY_COLUMNS) and all(c.isdigit() for c in cells):
            rows.append([int(c) for c in cells])
    return rows


def summary(stdout: str) -> dict[str, int]:
    """The numbers of the summary table's (first) data row, by column."""
    rows = summary_rows(stdout)
    if not rows:
        raise AssertionError(f"no summary row in:\n{stdout}")
    return dict(zip(SUMMARY_COLUMNS, rows[0], strict=True))
