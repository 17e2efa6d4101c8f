"""Ramp: the cloud spend platform (OAuth client credentials, REST).

`ENTRY` is this system's registry entry (entry point `ml_connector.systems: ramp`); its factories
import the client and the emulator only when called.
"""

from __future__ import annotations

from typing import Any

from ml_connector.core.registry import Emulator, SystemEntry, lazy
from ml_connector.systems.ramp.settings import RampConnection

NAME = "ramp"

#: What the emulator persists between runs (data only: no locks, faults or sessions).
SANDBOX_DATA = ("vendors", "gl_accounts", "fields", "field_options", "bills", "bill_order", "syncs",
                "billpay_vendors", "billpay_order", "departments", "locations", "users", "spend_programs", "cards",
                "transactions", "receipts", "reimbursements", "purchase_orders", "vendor_contacts",
                "accounting_connections", "webhooks", "webhook_events", "webhook_deliveries")


def _example(base_url: str) -> str:
    return f"""\
  {NAME}:
    type: {NAME}
    base_url: {base_url}      # omit to use Ramp's production URL
    auth:
      client_id: ramp_demo_client
      client_secret_secret: {NAME}_client_secret   # ml-connector secrets set {NAME}_client_secret
      scope: "accounting:read accounting:write bills:read vendors:read vendors:write purchase_orders:read"
    # limits: {{requests: 200, period: 10s}}   # override the provider's rate limit
"""


def _new_state(seed: int) -> Any:
    from ml_connector.systems.ramp.sandbox.state import RampSandbox

    return RampSandbox()


def _info(state: Any, url: str) -> dict[str, Any]:
    return {"base_url": url, "client_id": state.client_id, "client_secret": state.client_secret,
            "token_url": f"{url}/developer/v1/token", "admin": f"{url}/_sandbox"}


def _snapshot(state: Any) -> dict[str, Any]:
    with state.lock:
        return {"seq": state._seq, "business_id": state.business_id, **{k: getattr(state, k) for k in SANDBOX_DATA}}


def _restore(state: Any, snap: dict[str, Any]) -> None:
    for k in SANDBOX_DATA:
        if k in snap:
            setattr(state, k, snap[k])
    state._seq = snap["seq"]
    state.business_id = snap["business_id"]
    state.resume_webhooks()  # deliveries pending when the state was saved go out again


def _known_errors() -> tuple[Any, ...]:
    from ml_connector.systems.ramp.known_errors import KNOWN_ERRORS

    return KNOWN_ERRORS


ENTRY = SystemEntry(
    name=NAME,
    settings=RampConnection,
    connect=lazy("ml_connector.systems.ramp.connector", "connect"),
    ping=lazy("ml_connector.systems.ramp.connector", "ping"),
    provider=NAME,
    example=_example,
    emulator=Emulator(default_port=8020, new_state=_new_state,
                      create_app=lazy("ml_connector.systems.ramp.sandbox.app", "create_app"), info=_info,
                      snapshot=_snapshot, restore=_restore),
    known_errors=_known_errors(),
    # the webhook intake (`webhooks:` of a ramp connection) on the control plane's server
    routers=lazy("ml_connector.systems.ramp.webhooks", "routers"),
)
