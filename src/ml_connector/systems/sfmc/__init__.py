"""Salesforce Marketing Cloud (Engagement): server-to-server OAuth, SOAP and REST.

`ENTRY` is this system's registry entry (entry point `ml_connector.systems: sfmc`); its factories
import the client and the emulator only when called.
"""

from __future__ import annotations

from typing import Any

from ml_connector.core.registry import Emulator, SystemEntry, lazy
from ml_connector.systems.sfmc.settings import SfmcConnection

NAME = "sfmc"


def _example(base_url: str) -> str:
    return f"""\
  {NAME}:
    type: {NAME}
    auth_base: {base_url}      # https://<subdomain>.auth.marketingcloudapis.com
    auth:
      client_id: sfmc_demo_client
      client_secret_secret: {NAME}_client_secret   # ml-connector secrets set {NAME}_client_secret
      account_id: "100001"                         # MID of the business unit
    edition: corporate                              # yearly API allowance (provider.yaml allowance)
"""


def _new_state(seed: int) -> Any:
    from ml_connector.systems.sfmc.sandbox.state import SfmcSandbox

    return SfmcSandbox()


def _info(state: Any, url: str) -> dict[str, Any]:
    return {"base_url": url, "auth_base": url, "rest_base": f"{url}/rest/", "soap_base": f"{url}/soap/",
            "client_id": state.client_id, "client_secret": state.client_secret, "account_id": state.account_id,
            "wsdl": f"{url}/soap/etframework.wsdl", "admin": f"{url}/_sandbox"}


def _snapshot(state: Any) -> dict[str, Any]:
    return state.snapshot()


def _restore(state: Any, snap: dict[str, Any]) -> None:
    state.restore(snap)


ENTRY = SystemEntry(
    name=NAME,
    settings=SfmcConnection,
    connect=lazy("ml_connector.systems.sfmc.connector", "connect"),
    ping=lazy("ml_connector.systems.sfmc.connector", "ping"),
    provider=NAME,
    example=_example,
    emulator=Emulator(default_port=8060, new_state=_new_state,
                      create_app=lazy("ml_connector.systems.sfmc.sandbox.app", "create_app"), info=_info,
                      snapshot=_snapshot, restore=_restore, started_by_default=False),
)
