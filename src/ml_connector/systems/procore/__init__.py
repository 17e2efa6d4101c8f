"""Procore: construction project management (DMSA OAuth client credentials, REST v1.0).

`ENTRY` is this system's registry entry (entry point `ml_connector.systems: procore`); its factories
import the client and the emulator only when called.
"""

from __future__ import annotations

from typing import Any

from ml_connector.core.registry import Emulator, SystemEntry, lazy
from ml_connector.systems.procore.settings import ProcoreConnection

NAME = "procore"


def _example(base_url: str) -> str:
    return f"""\
  {NAME}:
    type: {NAME}
    base_url: {base_url}      # omit for Procore's production API host
    login_url: {base_url}     # omit for login.procore.com
    company_id: 4260001
    auth:
      client_id: procore_demo_client
      client_secret_secret: {NAME}_client_secret   # ml-connector secrets set {NAME}_client_secret
"""


def _new_state(seed: int) -> Any:
    from ml_connector.systems.procore.sandbox.state import ProcoreSandbox

    return ProcoreSandbox()


def _info(state: Any, url: str) -> dict[str, Any]:
    return {"base_url": url, "login_url": url, "client_id": state.client_id, "client_secret": state.client_secret,
            "company_id": state.company_id, "admin": f"{url}/_sandbox"}


def _snapshot(state: Any) -> dict[str, Any]:
    return state.snapshot()


def _restore(state: Any, snap: dict[str, Any]) -> None:
    state.restore(snap)


ENTRY = SystemEntry(
    name=NAME,
    settings=ProcoreConnection,
    connect=lazy("ml_connector.systems.procore.connector", "connect"),
    ping=lazy("ml_connector.systems.procore.connector", "ping"),
    provider=NAME,
    example=_example,
    # Not started by `start_sandboxes()` without a system list (the Ramp pair's tests need only
    # SAP ECC and Ramp); `ml-connector sandbox` starts every registered emulator, this one too.
    emulator=Emulator(default_port=8050, new_state=_new_state,
                      create_app=lazy("ml_connector.systems.procore.sandbox.app", "create_app"), info=_info,
                      snapshot=_snapshot, restore=_restore, started_by_default=False),
)
