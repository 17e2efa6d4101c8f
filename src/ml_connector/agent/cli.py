"""CLI: `ml-connector agent …`, run at the customer's site (the control plane's `agents …` commands are
in server/agents/cli.py)."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from ml_connector.cli_common import console, err, fail_plain

agent_app = typer.Typer(help="The on-premises agent: pair it, store its SAP secrets, run it (default).")
agent_secrets_app = typer.Typer(no_args_is_help=True, help="The agent's own encrypted secrets (SAP passwords).")
agent_app.add_typer(agent_secrets_app, name="secrets")

AgentConfigOpt = Annotated[Path, typer.Option("--config", "-c", envvar="MLC_AGENT_CONFIG",
                                              help="Agent configuration (agent.yaml).")]
DEFAULT_AGENT = Path("agent.yaml")


_fail = fail_plain


# ------------------------------------------------------------------------------ agent


def _agent_cfg(config: Path) -> Any:
    from ml_connector.agent.config import AgentConfigError, load_agent_config

    try:
        return load_agent_config(config)
    except AgentConfigError as exc:
        err.print("[red]agent configuration error[/red]", highlight=False)
        err.print(str(exc), highlight=False, markup=False, soft_wrap=True)  # quotes paths and YAML as they are
        raise typer.Exit(2) from None


@agent_app.callback(invoke_without_command=True)
def agent_main(ctx: typer.Context, config: AgentConfigOpt = DEFAULT_AGENT) -> None:
    """Run the agent (long-poll the control plane, serve the allow-listed SAP calls)."""
    if ctx.invoked_subcommand is None:
        _run_agent(config)


@agent_app.command("run")
def agent_run(config: AgentConfigOpt = DEFAULT_AGENT) -> None:
    """Run the agent (same as `ml-connector agent`)."""
    _run_agent(config)


def _run_agent(config: Path) -> None:
    from ml_connector.agent.runner import (
        EXIT_NOT_PAIRED,
        Agent,
        TransportRefused,
        check_control_plane_url,
        load_identity,
    )
    from ml_connector.core.redact import install_log_redaction

    logging.getLogger("ml_connector.agent").setLevel(logging.INFO)
    install_log_redaction()
    cfg = _agent_cfg(config)
    ident = load_identity(cfg.data_dir_path())
    if ident is None:
        raise _fail(f"this agent is not paired (no identity in {cfg.data_dir_path()}); run "
                    "`ml-connector agent pair --token T --control-plane URL`", EXIT_NOT_PAIRED)
    try:  # before any request: https://, or http:// to loopback or with the explicit opt-in
        ident.control_plane = check_control_plane_url(cfg.control_plane or ident.control_plane, cfg)
    except TransportRefused as exc:
        raise _fail(str(exc), 2) from None
    agent = Agent(cfg, ident)
    try:
        code = agent.run()
    except KeyboardInterrupt:
        code = 0
    finally:
        agent.close()
    if agent.fatal is not None:
        what = ("was revoked by the control plane" if agent.fatal.code == "revoked"
                else "is not known to the control plane")
        raise _fail(f"agent {ident.agent_id} {what} ({agent.fatal.code}): {agent.fatal.message}. "
                    "Stopping; pair again with a new token (`ml-connector agents issue-token`).", code)
    raise typer.Exit(code)


@agent_app.command("pair")
def agent_pair(token: str = typer.Option(..., help="One-time token from `ml-connector agents issue-token`."),
               control_plane: str = typer.Option("", help="Control plane URL (default: from agent.yaml)."),
               config: AgentConfigOpt = DEFAULT_AGENT,
               name: str = typer.Option("", help="A name for this agent (default: host name)."),
               force: bool = typer.Option(False, help="Replace an existing identity."),
               control_plane_key: str = typer.Option(
                   "", help="Expected fingerprint of the control plane's key (SHA256:…, printed by "
                            "`ml-connector agents issue-token`); pairing is refused if the answer differs.")) -> None:
    """Exchange a pairing token for an agent identity (Ed25519 key generated here)."""
    from ml_connector.agent.config import write_minimal_config
    from ml_connector.agent.runner import TransportRefused, pair

    if not config.exists():
        if not control_plane:
            raise _fail(f"{config} does not exist: give --control-plane URL", 2)
        write_minimal_config(config, control_plane)
        err.print(f"wrote a minimal {config}; add the systems and their allow-lists")
    cfg = _agent_cfg(config)
    url = control_plane or cfg.control_plane
    if not url:
        raise _fail("no control plane URL: give --control-plane or set control_plane in agent.yaml", 2)
    try:
        ident = pair(cfg, token, url, name=name, force=force,  # TLS as agent.yaml's tls_verify says
                     expect_key=control_plane_key)
    except TransportRefused as exc:
        raise _fail(str(exc), 2) from None
    except RuntimeError as exc:
        raise _fail(str(exc)) from None
    console.print(f"paired: agent [bold]{ident.agent_id}[/bold] for site [bold]{ident.site}[/bold] "
                  f"at {ident.control_plane}. Next: ml-connector agent secrets set NAME; ml-connector agent")
    print(json.dumps({"agent_id": ident.agent_id, "site": ident.site}), flush=True)


@agent_app.command("status")
def agent_status(config: AgentConfigOpt = DEFAULT_AGENT) -> None:
    """This agent's identity and allow-list (no secrets)."""
    from ml_connector.agent.runner import load_identity

    cfg = _agent_cfg(config)
    ident = load_identity(cfg.data_dir_path())
    print(json.dumps({"paired": ident is not None, "agent_id": ident.agent_id if ident else None,
                      "site": ident.site if ident else None,
                      "control_plane": cfg.control_plane or (ident.control_plane if ident else None),
                      "systems": {n: s.allow.model_dump() for n, s in cfg.systems.items()},
                      "checked_at": time.time()}, indent=2))


@agent_secrets_app.command("set")
def agent_secrets_set(name: str, config: AgentConfigOpt = DEFAULT_AGENT,
                      value_stdin: bool = typer.Option(False, "--stdin", help="Read the value from stdin.")) -> None:
    """Store a secret in the agent's vault (never sent to the control plane)."""
    from ml_connector.agent.runner import open_vault

    cfg = _agent_cfg(config)
    if value_stdin or not sys.stdin.isatty():
        value = sys.stdin.read().rstrip("\r\n")
    else:
        value = typer.prompt(f"value for {name}", hide_input=True, confirmation_prompt=True)
    if not value:
        raise _fail("empty value: nothing stored")
    open_vault(cfg.data_dir_path()).set(name, value)
    console.print(f"stored agent secret [bold]{name}[/bold]")


@agent_secrets_app.command("list")
def agent_secrets_list(config: AgentConfigOpt = DEFAULT_AGENT) -> None:
    """Names of the agent's secrets (never values)."""
    from ml_connector.agent.runner import open_vault

    cfg = _agent_cfg(config)
    for s in open_vault(cfg.data_dir_path()).list():
        print(s.name)


def register_commands(app: typer.Typer) -> None:
    """Add `agent` (customer site) to the main CLI."""
    app.add_typer(agent_app, name="agent")
