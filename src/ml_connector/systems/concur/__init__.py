"""SAP Concur: travel and expense in the cloud (company-level OAuth 2.0, regional datacenters, REST).

`ENTRY` is this system's registry entry (entry point `ml_connector.systems: concur`); its factories
import the client and the emulator only when called.
"""

from __future__ import annotations

from typing import Any

from ml_connector.core.registry import Emulator, SystemEntry, lazy
from ml_connector.systems.concur.settings import ConcurConnection

NAME = "concur"


def _example(base_url: str) -> str:
    return f"""\
  {NAME}:
    type: {NAME}
    base_url: {base_url}      # where the first grant is asked; omit for Concur's Global Landing Zone
    company_uuid: 00000000-0000-0000-0000-000000000000   # from the Company Request Token tool
    auth:
      client_id: concur_demo_client
      client_secret_secret: {NAME}_client_secret                   # ml-connector secrets set ...
      company_request_token_secret: {NAME}_company_request_token   # valid 24 h, used once
"""


def _new_state(seed: int) -> Any:
    from ml_connector.systems.concur.sandbox.state import ConcurSandbox

    return ConcurSandbox()


def _info(state: Any, url: str) -> dict[str, Any]:
    from ml_connector.systems.concur.sandbox.state import info

    return info(state, url)


def _snapshot(state: Any) -> dict[str, Any]:
    from ml_connector.systems.concur.sandbox.state import snapshot

    return snapshot(state)


def _restore(state: Any, snap: dict[str, Any]) -> None:
    from ml_connector.systems.concur.sandbox.state import restore

    restore(state, snap)


ENTRY = SystemEntry(
    name=NAME,
    settings=ConcurConnection,
    connect=lazy("ml_connector.systems.concur.connector", "connect"),
    ping=lazy("ml_connector.systems.concur.connector", "ping"),
    provider=NAME,
    example=_example,
    emulator=Emulator(default_port=8040, new_state=_new_state,
                      create_app=lazy("ml_connector.systems.concur.sandbox.app", "create_app"), info=_info,
                      snapshot=_snapshot, restore=_restore, started_by_default=False),
)
