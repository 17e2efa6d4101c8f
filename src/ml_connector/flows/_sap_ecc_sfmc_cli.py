"""Helpers of the pair sap_ecc_sfmc (the leading underscore keeps them out of the flow pairs).

`ml-connector audience ...`: the pre-campaign audience check and the sync-gap monitor of the
SAP ECC → Marketing Cloud pair (registered on the CLI by `register_commands`)."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from ml_connector.cli_common import DEFAULT_CONFIG, ConfigOpt, console, fail, runtime

audience_app = typer.Typer(no_args_is_help=True,
                           help="Marketing Cloud audiences against SAP: pre-send check, sync gaps.")


@audience_app.command("check")
def check(de_key: str = typer.Argument(..., help="External key of the send list Data Extension."),
          config: ConfigOpt = DEFAULT_CONFIG,
          flow: str | None = typer.Option(None, help="The sap_ecc_sfmc flow (default: the only one)."),
          remove: bool = typer.Option(False, "--remove", help="Delete ineligible members (default: flag them)."),
          member_column: str | None = typer.Option(None, help="The send list's customer number column."),
          all_members: bool = typer.Option(False, "--all", help="List every member, not only the ineligible."),
          as_json: bool = typer.Option(False, "--json")) -> None:
    """Check every member of a send list against a fresh read of SAP; flag or remove the ineligible."""
    from ml_connector.flows._sap_ecc_sfmc_checks import audience_check

    rt = runtime(config)
    try:
        report = audience_check(rt, de_key, flow=flow, remove=remove, member_column=member_column)
    except (ValueError, KeyError) as exc:
        raise fail(str(exc), 2) from None
    finally:
        rt.close()
    if as_json:
        print(json.dumps(report.to_dict(), default=str))
        return
    console.print(report.table(all_members=all_members))
    console.print(f"{len(report.members) - len(report.excluded)} eligible, {len(report.excluded)} ineligible "
                  f"({'removed' if remove else 'flagged'}); {report.corrected} customer status row(s) corrected "
                  "from SAP")


@audience_app.command("gaps")
def gaps(config: ConfigOpt = DEFAULT_CONFIG,
         flow: str | None = typer.Option(None, help="The sap_ecc_sfmc flow (default: the only one)."),
         max_lag: float = typer.Option(60.0, help="Seconds a change from SAP may take to reach Marketing Cloud."),
         history: bool = typer.Option(False, "--history", help="Show the recorded gaps instead of checking."),
         as_json: bool = typer.Option(False, "--json")) -> None:
    """Find SAP status changes not visible in Marketing Cloud after --max-lag; alert and correct them."""
    from ml_connector.flows._sap_ecc_sfmc_checks import gap_history, sync_gaps

    rt = runtime(config)
    try:
        if history:
            rows = gap_history(rt)
            if as_json:
                print(json.dumps(rows, default=str))
                return
            t = Table("when", "customer", "lag s", "fields (Marketing Cloud → SAP)", title="Sync gaps")
            for r in rows:
                fields = ", ".join(f"{k}: {v.get('sfmc')}→{v.get('sap')}" for k, v in (r.get("fields") or {}).items())
                t.add_row(str(r["at"])[:19], str(r.get("customer")), str(r.get("lag_seconds")), fields)
            console.print(t)
            return
        found = sync_gaps(rt, flow=flow, max_lag=max_lag)
    except (ValueError, KeyError) as exc:
        raise fail(str(exc), 2) from None
    finally:
        rt.close()
    if as_json:
        print(json.dumps([g.__dict__ for g in found], default=str))
        return
    console.print(f"{len(found)} sync gap(s) found and corrected" if found else "no sync gap")
    for g in found:
        console.print(f"  {g.customer}: {', '.join(g.fields)} (announced {g.announced_at}, {g.lag_seconds:.0f} s ago)")


def register_commands(app: typer.Typer) -> None:
    app.add_typer(audience_app, name="audience")
