"""`ml-connector webhooks-subscribe`: subscribe the control plane's Ramp webhook intake to a Ramp
connection's events (contributed to the CLI through the `ml_connector.commands` entry point group)."""

from __future__ import annotations

from typing import Annotated

import typer

from ml_connector.cli_common import DEFAULT_CONFIG, ConfigOpt, console, fail, runtime


def webhooks_subscribe(connection: str, endpoint_url: str, config: ConfigOpt = DEFAULT_CONFIG,
                       event: Annotated[list[str] | None, typer.Option(help="Event type (repeat); default: "
                                                                       "bills.approved, bills.paid, bills.rejected")]
                       = None) -> None:
    """Subscribe ENDPOINT_URL (this server's webhook path, as Ramp reaches it) to a Ramp connection's
    events; the signing secret goes into the vault. The running server answers Ramp's challenge."""
    from ml_connector.systems.ramp.webhooks import subscribe

    rt = runtime(config)
    try:
        sub = subscribe(rt, connection, endpoint_url, *([tuple(event)] if event else []))
    except Exception as exc:
        raise fail(f"subscribing failed: {exc}") from None
    finally:
        rt.close()
    console.print(f"subscribed {endpoint_url} (id {sub.get('id')}, status {sub.get('status')}); secret stored in "
                  "the vault")


def register_commands(app: typer.Typer) -> None:
    app.command("webhooks-subscribe")(webhooks_subscribe)
