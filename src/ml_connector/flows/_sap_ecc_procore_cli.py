"""`ml-connector procore drift FLOW [--json]` (entry point `ml_connector.commands: procore`).

Light at import, like every contributed command module: the CLI imports it at every start (even for
`--help`), so the drift report (`_sap_ecc_procore_drift.py`: flows, ledger, SQLAlchemy) is imported
only when the command runs.
"""

from __future__ import annotations

import typer

from ml_connector.cli_common import DEFAULT_CONFIG, ConfigOpt

procore_app = typer.Typer(no_args_is_help=True, help="SAP ECC → Procore: drift between Procore and SAP.")


@procore_app.command("drift")
def drift(flow: str = typer.Argument(..., help="A sap_ecc_procore flow."), config: ConfigOpt = DEFAULT_CONFIG,
          as_json: bool = typer.Option(False, "--json")) -> None:
    """Compare Procore's commitments and direct costs with a fresh read of SAP (exit 1 on drift)."""
    from ml_connector.flows._sap_ecc_procore_drift import drift as run_drift

    run_drift(flow, config, as_json)


def register_commands(app: typer.Typer) -> None:
    app.add_typer(procore_app, name="procore")
