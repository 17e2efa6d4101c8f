"""The SAP Concur → SAP Business One part of `make demo`: the two sandboxes, approved expense
reports and payment requests posted as journal entries, one report whose vendor Business One does
not know parked for review, and posted once its vendor mapping is added.

Its own configuration and database live in `<workdir>/concur-b1` (the emulators' data in
`<workdir>/sandbox`), so a second run continues from the first and posts nothing.
"""

from __future__ import annotations

import socket
import textwrap
from pathlib import Path
from typing import Any

from rich.console import Console

FLOW = "concur_to_b1"
INVOICE_FLOW = "concur_invoices_to_b1"
#: The demo's review case: report 3's coffee shop, and the Business One supplier an operator maps it to.
REVIEW_VENDOR = ("Blue Bottle Coffee", "V00012")


def _port(preferred: int) -> int:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])


def pair_config(concur: dict[str, Any], b1: dict[str, Any], *, schedule: str = "interval: 1d",
                b1_via: str = "agent", alerts_url: str | None = None) -> str:
    """ml-connector.yaml for the pair against sandboxes (`sandbox --json` entries `concur`, `sap_b1`);
    with `alerts_url`, documents marked for review (and failed runs) are alerted there."""
    alerts = (f"alerts:\n  webhooks:\n    - url: {alerts_url}\n  events: [run.failed, record.parked]\n"
              if alerts_url else "")
    return alerts + textwrap.dedent(f"""\
        engine:
          executor_id: null
        connections:
          concur:
            type: concur
            base_url: {concur['base_url']}
            company_uuid: {concur['company_uuid']}
            auth:
              client_id: {concur['client_id']}
              client_secret_secret: concur_client_secret
              company_request_token_secret: concur_company_request_token
          sap_b1:
            type: sap_b1
            base_url: {b1['base_url']}
            company_db: {b1['company_db']}
            via: {b1_via}
            auth:
              username: {b1['user']}
              password_secret: sap_b1_password
        flows:
          {FLOW}:
            pair: concur_sap_b1
            source: concur
            target: sap_b1
            streams: [expense_reports]
            schedule: {{{schedule}}}      # align with the approval cycle; or {{cron: "0 6 * * 1-5"}}
            options:
              dimension_fields: {{1: Custom1, 2: Custom2}}   # cost centre, department
          {INVOICE_FLOW}:
            pair: concur_sap_b1
            source: concur
            target: sap_b1
            streams: [payment_requests]
            schedule: {{{schedule}}}
            options:
              payment_request_tax_id_field: Custom5          # where this company keeps the vendor tax id
        """)


def pair_secrets(concur: dict[str, Any], b1: dict[str, Any]) -> dict[str, str]:
    return {"concur_client_secret": concur["client_secret"],
            "concur_company_request_token": concur["company_request_token"], "sap_b1_password": b1["password"]}


def run_concur_b1_demo(workdir: Path, console: Console, *, b1_login_seconds: float | None = None) -> int:
    """Run the pair once against its sandboxes; 0 when everything was posted."""
    from ml_connector.cli import sync_with_progress
    from ml_connector.config import load_config
    from ml_connector.core import engine, mapping, outbox, review
    from ml_connector.core.runtime import Runtime
    from ml_connector.sandbox import start_sandboxes

    workdir = workdir.resolve()
    home = workdir / "concur-b1"
    home.mkdir(parents=True, exist_ok=True)
    console.rule("[bold]ml-connector demo: SAP Concur expense reports → SAP Business One journal entries")
    handles = start_sandboxes(ports={"concur": _port(8040), "sap_b1": _port(8050)}, state_dir=workdir / "sandbox",
                              systems=("concur", "sap_b1"))
    try:
        concur, b1 = handles["concur"].info, handles["sap_b1"].info
        if b1_login_seconds is not None:
            handles["sap_b1"].state.set_config(login_seconds=b1_login_seconds)
        console.print(f"sandbox SAP Concur       {concur['base_url']}  (company {concur['company_uuid']}, "
                      f"datacenter {concur['regions'][concur['home_region']]})")
        console.print(f"sandbox SAP Business One {b1['service_root']}  (company {b1['company_db']})")
        cfg_path = home / "ml-connector.yaml"
        cfg_path.write_text(pair_config(concur, b1), encoding="utf-8")
        rt = Runtime(load_config(cfg_path), cfg_path)
        for name, value in pair_secrets(concur, b1).items():
            rt.vault.set(name, value)
        engine.start(rt, role="demo")
        try:
            code = sync_with_progress(rt, FLOW, ["expense_reports"], out=console)
            code = max(code, sync_with_progress(rt, INVOICE_FLOW, ["payment_requests"], out=console))
            with rt.db.session() as s:
                items = review.items(s, rt.config.flows, flow=FLOW)  # what `ml-connector review` lists
            waiting = [(i.record, i.waits_for) for i in items]
            for i in items:
                console.print(f"[yellow]review[/yellow]: {i.document}, vendor {i.party}, {i.amount}: waits for "
                              f"{i.waits_for} ({i.reason})")
            vendor, card = REVIEW_VENDOR
            if any(on == mapping.waits_for("vendors", vendor) for _, on in waiting):
                with rt.db.session() as s:
                    ids = mapping.put(s, FLOW, "vendors", vendor, card, actor="demo")
                tally = engine.replay(ids)
                console.print(f"mapping vendors: {vendor} → {card} added (ml-connector mappings set {FLOW} vendors "
                              f"'{vendor}' {card}); resumed: {tally}")
            with rt.db.session() as s:
                left = list(outbox.parked(s, flow=FLOW))
            if left:
                code = max(code, 3)
        finally:
            engine.shutdown()
            rt.close()
        entries = handles["sap_b1"].state.rows("JournalEntries")
        stats = handles["sap_b1"].state.stats()
        console.print(f"Business One now holds {len(entries)} journal entries from Concur "
                      f"(Service Layer logins: {stats['logins']}; Concur token grants: "
                      f"{dict(handles['concur'].state.token_requests)}).")
        console.print(f"  • the pair's configuration: {cfg_path}; documents marked for review: "
                      f"[bold].venv/bin/ml-connector review -c {cfg_path}[/bold]")
        return code
    finally:
        for h in handles.values():
            h.stop()
