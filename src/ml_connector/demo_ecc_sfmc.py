"""`make demo`, second part: SAP ECC → Salesforce Marketing Cloud on the sandboxes.

The SAP ECC and Marketing Cloud emulators on loopback, the control plane's IDoc receiver (SAP
pushes DEBMAS, ORDRSP and DESADV to it), and the seed's failure cases played out: a parent
account's block makes its child accounts ineligible within seconds (DEBMAS), an order starts the
post-purchase journey, a customer blocked moments before a send is excluded by the audience
check, and a lost update is found as a sync gap and corrected.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from rich.console import Console

FLOW = "customers_to_sfmc"
IDOC_USER, IDOC_PASSWORD_SECRET = "SAPIDOC", "sfmc_demo_idoc_password"


DEMO_OPTIONS = "      page_size: 1000\n      event_key: ml-post-purchase\n"


def pair_config(sap: dict[str, Any], mc: dict[str, Any], *, options: str = DEMO_OPTIONS, extra: str = "",
                schedule: str = "{interval: 5s}", receiver: str = "", port: int = 8081,
                edition: str = "corporate",
                header: str = "# Written by `ml-connector demo` (SAP ECC → Marketing Cloud part): "
                              "sandbox URLs change between runs.\n") -> str:
    """The pair's configuration on the sandboxes (`sap`: base_url, client, user; `mc`: auth_base,
    client_id, account_id): the demo's, and the tests' (tests/support/sfmc.py). `options`: the flow's
    options block; `extra`: more top-level sections; `receiver`: the server's `idoc:` line."""
    return header + extra + f"""\
engine:
  data_dir: ./data
  database_url: null
  queue_polling_interval: 0.2
  executor_id: null

server:
  host: 127.0.0.1
  port: {port}
  api_auth: auto
{receiver}
connections:
  sap_ecc:
    type: sap_ecc
    base_url: {sap["base_url"]}
    client: "{sap.get("client", "100")}"
    language: EN
    via: direct
    auth:
      username: {sap.get("user", "RFC_USER")}
      password_secret: sap_ecc_password
    limits: {{max_concurrent: 8, calls_per_second: 50}}
    timeout: 60s
  sfmc:
    type: sfmc
    auth_base: {mc["auth_base"]}
    auth:
      client_id: {mc["client_id"]}
      client_secret_secret: sfmc_client_secret
      account_id: "{mc["account_id"]}"
    edition: {edition}

flows:
  {FLOW}:
    pair: sap_ecc_sfmc
    source: sap_ecc
    target: sfmc
    streams: [customers, hierarchy, orders]
    schedule: {schedule}          # DEBMAS/ORDRSP IDocs are picked up within seconds
    options:
{options}"""


def _wait(check: Any, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def run_ecc_sfmc_demo(workdir: Path, console: Console) -> int:
    """Run the SAP ECC → Marketing Cloud demo in `workdir`; 0 when every step did what it shows."""
    import secrets

    import httpx
    from fastapi import FastAPI

    from ml_connector.cli import sync_with_progress
    from ml_connector.config import load_config
    from ml_connector.core import engine
    from ml_connector.core.runtime import Runtime
    from ml_connector.core.servers import serve_in_thread
    from ml_connector.flows._sap_ecc_sfmc_checks import audience_check, sync_gaps
    from ml_connector.sandbox import start_sandboxes
    from ml_connector.systems.sap_ecc.idoc_receiver import BasicAuth, SqlIdocStore, idoc_router
    from ml_connector.systems.sfmc.client import SfmcClient
    from ml_connector.systems.sfmc.schema import DeField, DeSpec

    workdir = workdir.resolve() / "ecc-sfmc"
    # The sandboxes start fresh (SAP numbers its IDocs from 1 again): so does the demo's database.
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    console.rule("[bold]ml-connector demo: SAP ECC customers → Salesforce Marketing Cloud")
    handles = start_sandboxes(vendors=20, systems=("sap_ecc", "sfmc"))
    ecc, mc = handles["sap_ecc"].state, handles["sfmc"].info
    sap = handles["sap_ecc"].info
    code = 0
    try:
        console.print(f"sandbox SAP ECC          {sap['base_url']}")
        console.print(f"sandbox Marketing Cloud  auth {mc['auth_base']}  REST {mc['rest_base']}  "
                      f"SOAP {mc['soap_base']}")
        cfg_path = workdir / "ml-connector.yaml"
        cfg_path.write_text(pair_config(sap, mc), encoding="utf-8")
        rt = Runtime(load_config(cfg_path), cfg_path)
        rt.vault.set("sap_ecc_password", sap["password"])
        rt.vault.set("sfmc_client_secret", mc["client_secret"])
        if not rt.vault.exists(IDOC_PASSWORD_SECRET):
            rt.vault.set(IDOC_PASSWORD_SECRET, secrets.token_urlsafe(16))
        store = SqlIdocStore(rt.db)
        app = FastAPI()
        app.include_router(idoc_router(store, BasicAuth.from_vault(rt.vault, IDOC_USER, IDOC_PASSWORD_SECRET)),
                           prefix="/sap")
        receiver = serve_in_thread(app, name="demo-idoc")
        httpx.post(f"{sap['base_url']}/_sandbox/idoc/outbound",
                   json={"url": f"{receiver.url}/sap/idoc", "user": IDOC_USER,
                         "password": rt.vault.get(IDOC_PASSWORD_SECRET), "backoff_base": 0.05}, timeout=10)
        console.print(f"IDoc receiver            {receiver.url}/sap/idoc (SAP pushes DEBMAS, ORDRSP, DESADV here)")
        engine.start(rt, role="demo")
        try:
            code |= sync_with_progress(rt, FLOW, ["customers", "hierarchy"], full=True, out=console)
            mcc: SfmcClient = rt.connection("sfmc")
            status = {r["CustomerNumber"]: r for r in mcc.retrieve_rows(
                "ML_SAP_Customer_Status", ["CustomerNumber", "EligibleForMarketing", "ParentAccount", "Name"])}
            eligible = sum(r["EligibleForMarketing"] == "True" for r in status.values())
            console.print(f"Marketing Cloud holds {len(status)} customers, {eligible} eligible for marketing.")

            # A parent account is put on an order block: its children become ineligible within seconds.
            child, parent = next((k, r["ParentAccount"]) for k, r in sorted(status.items())
                                 if r["ParentAccount"] and r["EligibleForMarketing"] == "True"
                                 and status.get(r["ParentAccount"], {}).get("EligibleForMarketing") == "True")
            console.rule("A parent account is blocked in SAP")
            seen = store.count()
            t0 = time.monotonic()
            ecc.data.update_customer(parent, AUFSD="01")
            _wait(lambda: store.count() > seen)
            code |= sync_with_progress(rt, FLOW, ["customers"], out=console)
            row = mcc.retrieve_rows("ML_SAP_Customer_Status", ["EligibleForMarketing", "IneligibleReason"],
                                    mcc.simple_filter("CustomerNumber", "equals", child))[0]
            console.print(f"customer {child}: eligible {row['EligibleForMarketing']} ({row['IneligibleReason']}); "
                          f"{time.monotonic() - t0:.1f} s from the change in SAP")
            code |= 0 if row["EligibleForMarketing"] == "False" else 4

            # An order: the post-purchase journey starts.
            console.rule("An order is placed in SAP")
            vbak = next(r for r in ecc.data.rows("VBAK", ecc.client) if r["KUNNR"] not in (child, parent))
            seen = store.count()
            ecc.data.update_sales_order(vbak["VBELN"], BSTNK="WEB-4711")
            _wait(lambda: store.count() > seen)
            code |= sync_with_progress(rt, FLOW, ["orders"], out=console)
            events = httpx.get(f"{mc['admin']}/events", timeout=10).json()["events"]
            contact = events[-1]["ContactKey"] if events else "-"
            console.print(f"journey entry events: {len(events)} (contact {contact})")
            code |= 0 if len(events) == 1 else 4

            # A customer blocked moments before a send: the audience check excludes it.
            console.rule("Pre-campaign audience check")
            members = [k for k, r in sorted(status.items()) if r["EligibleForMarketing"] == "True"
                       and k not in (child, parent)][:8]
            late = members[3]
            ecc.data.update_customer(late, SPERR="X")
            spec = DeSpec("DEMO_SPRING_PROMO", "DEMO_SPRING_PROMO", (
                DeField("SubscriberKey", "Text", 50, primary=True), DeField("Email", "EmailAddress", 254),
                DeField("Eligible", "Boolean"), DeField("ExclusionReason", "Text", 250)),
                sendable_field="SubscriberKey")
            mcc.ensure_de(spec)
            mcc.upsert_rows(spec.key, [({"SubscriberKey": m}, {"Email": f"{m}@example.com", "Eligible": "True"})
                                       for m in [*members, child]])
            report = audience_check(rt, spec.key)
            console.print(report.table())
            code |= 0 if {m.key for m in report.excluded} == {late, child} else 4

            # A lost update: found as a sync gap and corrected.
            console.rule("Sync-gap monitor")
            lost = members[5]
            seen = store.count()
            ecc.data.update_customer(lost, LIFSD="02")
            _wait(lambda: store.count() > seen)
            gaps = sync_gaps(rt, max_lag=0)
            for g in gaps:
                console.print(f"gap: customer {g.customer}: {', '.join(g.fields)} differed; corrected")
            code |= 0 if [g.customer for g in gaps] == [lost] else 4
            burn = mcc.meter.burn() if mcc.meter else None
            stats = httpx.get(f"{mc['admin']}/stats", timeout=10).json()
            console.print(f"token requests: {stats['token_requests']}; API calls of this run: "
                          f"{mcc.meter.total if mcc.meter else 0}" + (f"; {burn.text()}" if burn else ""))
        finally:
            engine.shutdown()
            receiver.stop()
            rt.close()
        console.print(f"\nconfiguration: {cfg_path}; `ml-connector audience check DEMO_SPRING_PROMO -c {cfg_path}`")
        return code
    finally:
        for h in handles.values():
            h.stop()
