"""CLI: `ml-connector users add/list/disable`, the console's users."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import typer
from rich.table import Table

from ml_connector.cli_common import DEFAULT_CONFIG, CpConfig, cell_wrap, console, err, runtime

users_app = typer.Typer(no_args_is_help=True,
                        help="Console users (argon2-hashed passwords; roles viewer, operator, admin).")


def _when(ts: object) -> str:
    return "" if not isinstance(ts, float) else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


@users_app.command("add")
def add(username: str, config: CpConfig = DEFAULT_CONFIG,
        role: str = typer.Option("viewer", help="viewer (read), operator (replay, mappings), admin (everything)"),
        password_stdin: bool = typer.Option(False, "--password-stdin",
                                            help="Read the password from standard input (first line).")) -> None:
    """Add a user; the password is read from a prompt (or stdin), never from the command line."""
    from ml_connector.server.console.users import UserError, add_user

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    try:
        user = add_user(runtime(config).db, username, password, role)
    except UserError as exc:
        err.print(f"error: {exc}", highlight=False, markup=False)
        raise typer.Exit(2) from None
    console.print(f"user {user.username} added ({user.role})", highlight=False)


@users_app.command("list")
def list_(config: CpConfig = DEFAULT_CONFIG, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The users: name, role, state, created, last login (never a password or its hash)."""
    from ml_connector.server.console.users import list_users

    rows = list_users(runtime(config).db)
    if as_json:
        print(json.dumps(rows))
        return
    t = Table(cell_wrap("user"), cell_wrap("role", no_wrap=True), cell_wrap("state", no_wrap=True),
              cell_wrap("created", max_width=10), cell_wrap("last login", max_width=10))
    for r in rows:
        t.add_row(str(r["username"]), str(r["role"]), str(r["state"]), _when(r["created_at"]),
                  _when(r["last_login_at"]))
    console.print(t)


@users_app.command("disable")
def disable(username: str, config: CpConfig = DEFAULT_CONFIG) -> None:
    """Disable a user: its sessions end at once and it cannot log in again."""
    from ml_connector.server.console.users import disable_user

    if not disable_user(runtime(config).db, username):
        err.print(f"error: no active user named {username!r}", highlight=False, markup=False)
        raise typer.Exit(1)
    console.print(f"user {username} disabled", highlight=False)
