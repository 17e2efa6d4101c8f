"""A stored IDoc starts the streams that read it: SAP pushes DEBMAS / ORDRSP to `ml-connector run`'s
IDoc receiver and the rows reach the Marketing Cloud sandbox without waiting for the schedule (a day
here), all over HTTP on loopback."""

from __future__ import annotations

import os
import signal
import subprocess

import httpx
import pytest

from tests.support import wait_healthy, wait_until
from tests.support.sandboxes import running_sandboxes
from tests.support.sfmc import de_rows, make_sfmc_env, mc_events, push_idocs_to

CUST, TRANS = "ML_SAP_Customer_Status", "ML_SAP_Transactions"


def test_a_pushed_idoc_starts_its_streams_without_waiting_for_the_schedule(tmp_path):
    with running_sandboxes(vendors=5, systems=("sap_ecc", "sfmc")) as handles:
        ecc, mc = handles["sap_ecc"].state, handles["sfmc"].info
        env = make_sfmc_env(tmp_path, handles["sap_ecc"].url, mc, schedule="{interval: 24h}", idoc=True)
        # Every stream has run once: none is due for a day, so only a hint can start a run now.
        env.cli("sync", "customers_to_sfmc", "--full")
        before = de_rows(mc, CUST)
        base = env.serve_on_free_port()
        proc = env.popen("run")
        try:
            wait_healthy(base, timeout=60)
            runs_before = {r["run_id"] for r in httpx.get(f"{base}/api/runs", timeout=10).json()}
            push_idocs_to(handles["sap_ecc"].url, f"{base}/sap/idoc")
            kunnr = sorted(before)[0]
            assert before[kunnr]["OrderBlock"] == ""
            ecc.data.update_customer(kunnr, AUFSD="01")
            wait_until(lambda: de_rows(mc, CUST)[kunnr]["OrderBlock"] == "01", timeout=30)
            assert de_rows(mc, CUST)[kunnr]["EligibleForMarketing"] == "False"

            vbak = ecc.data.rows("VBAK", ecc.client)[0]
            ecc.data.update_sales_order(vbak["VBELN"], BSTNK="PO-4711")
            wait_until(lambda: vbak["VBELN"] in de_rows(mc, TRANS, missing_ok=True), timeout=30)
            assert [e["ContactKey"] for e in mc_events(mc)] == [vbak["KUNNR"]]

            def new_runs() -> list[dict]:
                return [r for r in httpx.get(f"{base}/api/runs", timeout=10).json() if r["run_id"] not in runs_before]

            wait_until(lambda: all(r["status"] != "running" for r in new_runs()), timeout=30)
            runs = new_runs()
            # Started by the hints (IDs `...:h<n>`), no scheduled window; DEBMAS also feeds the hierarchy.
            assert {r["stream"] for r in runs} == {"customers", "hierarchy", "orders"}
            assert {r["run_id"].rsplit(":", 1)[1][0] for r in runs} == {"h"}
            assert [r for r in runs if r["status"] != "succeeded"] == []
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)


@pytest.mark.slow  # waits for DBOS's scheduler (polls every 5 s) under `ml-connector run`
def test_the_full_comparison_schedule_starts_full_runs_under_run(tmp_path):
    with running_sandboxes(vendors=5, systems=("sap_ecc", "sfmc")) as handles:
        ecc, mc = handles["sap_ecc"].state, handles["sfmc"].info
        env = make_sfmc_env(tmp_path, handles["sap_ecc"].url, mc, schedule="{interval: 24h}",
                            options='      full: {cron: "*/5 * * * * *", streams: [customers]}\n')
        env.cli("sync", "customers_to_sfmc")  # every stream has run: the interval starts nothing for a day
        kunnr = sorted(de_rows(mc, CUST))[0]
        ecc.data.update_customer(kunnr, AUFSD="01")  # no IDoc: only a full comparison sees it
        base = env.serve_on_free_port()
        proc = env.popen("run")
        try:
            wait_healthy(base, timeout=60)
            wait_until(lambda: de_rows(mc, CUST)[kunnr]["OrderBlock"] == "01", timeout=60)
            runs = httpx.get(f"{base}/api/runs", timeout=10).json()
            full = [r for r in runs if r["mode"] == "full"]
            assert full and {r["stream"] for r in full} == {"customers"}
            assert all(":full:" in r["run_id"] and r["run_id"].endswith("Z") for r in full)  # the tick's window ID
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
