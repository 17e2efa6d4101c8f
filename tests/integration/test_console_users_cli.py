"""`ml-connector users add/list/disable` and `api-tokens create --role` (issue 15)."""

from __future__ import annotations

import json
from pathlib import Path

from ml_connector.config import load_config
from ml_connector.core.runtime import Runtime
from ml_connector.server.api_auth import list_tokens
from ml_connector.server.console.users import list_users
from tests.support import make_env


def test_users_add_list_disable_and_token_roles(tmp_path: Path) -> None:
    env = make_env(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9", set_secrets=False)
    added = env.cli("users", "add", "otto", "--role", "operator", "--password-stdin", input_="Operator-Pass-77\n")
    assert "user otto added (operator)" in added.stdout
    refused = env.cli("users", "add", "viv", "--password-stdin", input_="short\n", check=False)
    assert refused.returncode == 2 and "at least 10 characters" in refused.stderr
    listed = env.cli("users", "list", "--json")
    [row] = json.loads(listed.stdout)
    assert (row["username"], row["role"], row["state"]) == ("otto", "operator", "active")
    assert "Operator-Pass-77" not in listed.stdout and "argon2" not in listed.stdout
    assert "user otto disabled" in env.cli("users", "disable", "otto").stdout
    token = env.cli("api-tokens", "create", "dash", "--role", "viewer")
    assert token.stdout.startswith("mlcat_") and "(dash, viewer)" in token.stderr
    rt = Runtime(load_config(env.config), env.config)
    assert [(u["username"], u["state"]) for u in list_users(rt.db)] == [("otto", "disabled")]
    assert [(t["name"], t["role"]) for t in list_tokens(rt.db)] == [("dash", "viewer")]
    rt.close()
