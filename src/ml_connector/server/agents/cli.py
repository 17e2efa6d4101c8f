"""CLI: `ml-connector agents …`, the control plane's side of the remote agents (pairing tokens, list,
revoke)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ml_connector.cli_common import DEFAULT_CONFIG, CpConfig, cell_wrap, console, err, fail_plain, runtime

agents_app = typer.Typer(no_args_is_help=True, help="Remote agents (control plane): pairing tokens, list, revoke.")
DEFAULT_CP = DEFAULT_CONFIG
_fail = fail_plain


def _service(config: Path) -> Any:
    from ml_connector.server.agents.service import AgentService

    rt = runtime(config)
    return AgentService(rt.db, rt.vault)


@agents_app.command("issue-token")
def issue_token(config: CpConfig = DEFAULT_CP,
                site: str = typer.Option("default", help="The site the paired agent will serve."),
                ttl: str = typer.Option("15m", help="How long the token can be used (e.g. 15m, 1h).")) -> None:
    """Issue a one-time pairing token (printed once; stored hashed)."""
    from ml_connector.config import parse_duration

    try:
        seconds = parse_duration(ttl)
    except ValueError as exc:
        raise _fail(str(exc), 2) from None
    from ml_connector.agent.protocol import key_fingerprint

    svc = _service(config)
    token = svc.issue_token(site, seconds)
    err.print(f"pairing token for site [bold]{site}[/bold], valid {ttl}, usable once:")
    print(token, flush=True)
    err.print(f"control plane key {key_fingerprint(svc.control_public_key())} (pin it: ml-connector agent pair "
              "--control-plane-key ...)", highlight=False, markup=False, soft_wrap=True)


@agents_app.command("list")
def list_agents(config: CpConfig = DEFAULT_CP,
                as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The agents and their state."""
    agents = _service(config).list_agents()
    if as_json:
        print(json.dumps(agents, default=str))
        return
    console.print(agents_table(agents))


def agents_table(agents: list[dict[str, Any]]) -> Table:
    """Readable at 80 columns: ids and names fold, states and counts never wrap (short headers: `busy` =
    calls in flight on the agent, `queued` = calls waiting for the site, `skew` = clock skew in seconds)."""
    t = Table(cell_wrap("id"), cell_wrap("site"), cell_wrap("name"), cell_wrap("state", no_wrap=True),
              cell_wrap("last seen"), cell_wrap("busy", no_wrap=True, justify="right"),
              cell_wrap("queued", no_wrap=True, justify="right"), cell_wrap("skew", no_wrap=True, justify="right"))
    for a in agents:
        seen = "never" if a["seconds_since_seen"] is None else f"{a['seconds_since_seen']:.0f} s ago"
        t.add_row(a["id"], a["site"], a["name"], a["state"], seen, str(a["in_flight"]), str(a["queued_for_site"]),
                  "" if a["clock_skew"] is None else str(a["clock_skew"]))
    return t


@agents_app.command("revoke")
def revoke(agent_id: str, config: CpConfig = DEFAULT_CP) -> None:
    """Revoke an agent: its next poll is refused and it stops."""
    if not _service(config).revoke(agent_id):
        raise _fail(f"no agent {agent_id!r}")
    console.print(f"revoked agent [bold]{agent_id}[/bold]; it stops at its next poll")


def register_commands(app: typer.Typer) -> None:
    app.add_typer(agents_app, name="agents")
