"""SAP Business One: the Service Layer (OData over HTTPS); on-prem, normally reached through the agent.

`ENTRY` is this system's registry entry (entry point `ml_connector.systems: sap_b1`); its factories
import the client, the allow-list check and the emulator only when called.
"""

from __future__ import annotations

from typing import Any

from ml_connector.core.channel import ChannelFault, Handler
from ml_connector.core.registry import AgentSupport, Emulator, SystemEntry, lazy
from ml_connector.systems.sap_b1.settings import B1AgentSystem, SapB1Connection

NAME = "sap_b1"


def _example(base_url: str) -> str:
    return f"""\
  {NAME}:
    type: {NAME}
    base_url: {base_url}      # https://host:50000 (the service root /b1s/v1 is added)
    company_db: SBODEMOUS
    via: agent               # reached through the agent on the customer's network
    auth:
      username: manager
      password_secret: {NAME}_password     # ml-connector secrets set {NAME}_password
"""


def _new_state(seed: int) -> Any:
    from ml_connector.systems.sap_b1.sandbox.app import B1Sandbox

    return B1Sandbox()


def _info(state: Any, url: str) -> dict[str, Any]:
    return {"base_url": url, "service_root": f"{url}/b1s/v1", "company_db": state.company_db,
            "user": state.user, "password": state.password, "admin": f"{url}/_sandbox"}


def _snapshot(state: Any) -> dict[str, Any]:
    with state.lock:
        return {"rows": {n: es.rows for n, es in state.sets.items()}, "next_jdt": state._next_jdt,
                "next_number": state._next_number, "periods": state.periods, "rates": state.rates}


def _restore(state: Any, snap: dict[str, Any]) -> None:
    for n, rows in snap["rows"].items():
        if n in state.sets:
            state.sets[n].rows = rows
    state._next_jdt, state._next_number = snap["next_jdt"], snap["next_number"]
    if "periods" in snap:
        state.periods, state.rates = snap["periods"], snap["rates"]


# ------------------------------------------------------------------------------ agent side


def _agent_handler(sc: Any, password: str) -> Handler:
    from ml_connector.systems.sap_b1.connector import agent_handler

    handler: Handler = agent_handler(sc, password)
    return handler


def _channel_client(channel: Any, name: str, cfg: Any) -> Any:
    from ml_connector.systems.sap_b1.client import ChannelServiceLayerClient

    return ChannelServiceLayerClient(channel, name, page_size=getattr(cfg, "page_size", None))


def _check(sc: Any, system: str, function: str, params: dict[str, Any]) -> ChannelFault | None:
    """Service Layer calls are allowed by resource and method (`allow.resources`), not by function module."""
    from ml_connector.systems.sap_b1.allow import check_resource

    return check_resource(system, function, params, sc.allow.resources)


def _pacing(cfg: Any) -> tuple[str, float, int]:
    """The control plane's budget of a connection served through the agent: one per company
    database, as the agent's own pacing keys it (pacing.py)."""
    from ml_connector.systems.sap_b1.client import service_root_of
    from ml_connector.systems.sap_b1.pacing import company_key, limits_of

    cps, conc = limits_of(getattr(cfg, "limits", None))
    return f"sap_b1:{company_key(service_root_of(cfg.base_url), cfg.company_db)}", float(cps), conc


def _known_errors() -> tuple[Any, ...]:
    from ml_connector.systems.sap_b1.known_errors import KNOWN_ERRORS

    return KNOWN_ERRORS


#: Service Layer actions that only read (POSTs by the API reference): the pre-posting check's
#: (journal_check.py), as safe to run again as a GET.
READ_ACTIONS = frozenset({"POST CompanyService_GetPeriods", "POST CompanyService_GetFinancePeriods",
                          "POST SBOBobService_GetCurrencyRate"})


def _idempotent(function: str) -> bool:
    # a Service Layer read ("GET JournalEntries", a reading action): safe to run again
    return function.startswith("GET ") or function in READ_ACTIONS


ENTRY = SystemEntry(
    name=NAME,
    settings=SapB1Connection,
    connect=lazy("ml_connector.systems.sap_b1.connector", "connect"),
    ping=lazy("ml_connector.systems.sap_b1.connector", "ping"),
    provider=NAME,
    example=_example,
    emulator=Emulator(default_port=8030, new_state=_new_state,
                      create_app=lazy("ml_connector.systems.sap_b1.sandbox.app", "create_app"), info=_info,
                      snapshot=_snapshot, restore=_restore, started_by_default=False),
    # One call budget per company database, here and in the agent (pacing.py).
    agent=AgentSupport(settings=B1AgentSystem, handler=_agent_handler, channel_client=_channel_client,
                       check=_check, idempotent=_idempotent, pacing=_pacing),
    known_errors=_known_errors(),
)
