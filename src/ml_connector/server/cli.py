"""CLI: `ml-connector api-tokens …`, the operators' tokens for the control plane's JSON API."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ml_connector.cli_common import DEFAULT_CONFIG, CpConfig, cell_wrap, console, err, runtime

api_tokens_app = typer.Typer(no_args_is_help=True,
                             help="Bearer tokens for the operators' HTTP API (stored hashed; shown once).")
DEFAULT_CP = DEFAULT_CONFIG


def _db(config: Path) -> Any:
    return runtime(config).db


def _when(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@api_tokens_app.command("create")
def create(name: str, config: CpConfig = DEFAULT_CP,
           role: str = typer.Option("admin", help="viewer (read), operator (also replay, sync), admin")) -> None:
    """Create a token; it is printed once (standard output) and only its hash is kept."""
    from ml_connector.server.api_auth import ApiTokenError, create_token

    try:
        token_id, token = create_token(_db(config), name, role)
    except ApiTokenError as exc:
        err.print(f"error: {exc}", highlight=False, markup=False)
        raise typer.Exit(2) from None
    err.print(f"API token {token_id} ({name}, {role}); it cannot be shown again. "
              "Send it as `Authorization: Bearer <token>`:", highlight=False, markup=False)
    print(token, flush=True)


@api_tokens_app.command("list")
def list_(config: CpConfig = DEFAULT_CP, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The tokens (id, name, state, created, last used; with --json also the role); never their values."""
    from ml_connector.server.api_auth import list_tokens

    rows = list_tokens(_db(config))
    if as_json:
        print(json.dumps(rows))
        return
    console.print(tokens_table(rows))


def tokens_table(rows: list[dict[str, Any]]) -> Table:
    """Readable at 80 columns: the times wrap between date, time and zone; id and state never wrap."""
    t = Table(cell_wrap("id", no_wrap=True), cell_wrap("name"), cell_wrap("state", no_wrap=True),
              cell_wrap("created", max_width=10), cell_wrap("last used", max_width=10),
              cell_wrap("revoked", max_width=10))
    for r in rows:
        t.add_row(r["id"], r["name"], r["state"], _when(r["created_at"]), _when(r["last_used_at"]),
                  _when(r["revoked_at"]))
    return t


@api_tokens_app.command("revoke")
def revoke(id_or_name: str, config: CpConfig = DEFAULT_CP) -> None:
    """Revoke a token by id (or the active token of that name); refused from the next request on."""
    from ml_connector.server.api_auth import revoke_token

    ids = revoke_token(_db(config), id_or_name)
    if not ids:
        err.print(f"error: no active API token with id or name {id_or_name!r}", highlight=False, markup=False)
        raise typer.Exit(1)
    console.print(f"revoked API token(s) {', '.join(ids)}", highlight=False)


def register_commands(app: typer.Typer) -> None:
    """Add the control plane's command groups: `api-tokens` and `agents`."""
    from ml_connector.server.agents.cli import register_commands as register_agents
    from ml_connector.server.users_cli import users_app

    app.add_typer(api_tokens_app, name="api-tokens")
    app.add_typer(users_app, name="users")
    register_agents(app)
