"""SAP ECC: RFC (SOAP-RFC or PyRFC), Gateway OData, IDocs; on-prem, normally reached through the agent.

`ENTRY` is this system's registry entry (entry point `ml_connector.systems: sap_ecc`). Its factories
import the clients, the emulator and the IDoc receiver only when called, so that loading the
registry stays cheap.
"""

from __future__ import annotations

import logging
from typing import Any

from ml_connector.core.channel import Handler
from ml_connector.core.registry import AgentSupport, Emulator, SystemEntry, lazy
from ml_connector.systems.sap_ecc.settings import EccAgentSystem, SapEccConnection

NAME = "sap_ecc"
log = logging.getLogger(__name__)


def _example(base_url: str) -> str:
    return f"""\
  {NAME}:
    type: {NAME}
    base_url: {base_url}
    client: "100"            # the SAP client, 3 digits, in quotes
    language: EN
    via: agent               # reached through the agent on the SAP network ('direct' also allowed)
    auth:
      username: RFC_USER
      password_secret: {NAME}_password     # ml-connector secrets set {NAME}_password
    limits: {{max_concurrent: 8, calls_per_second: 20}}
    timeout: 60s
"""


# ------------------------------------------------------------------------------ emulator


def _new_state(seed: int) -> Any:
    from ml_connector.systems.sap_ecc.sandbox.app import EccSandbox

    return EccSandbox(vendors=seed)


def _info(state: Any, url: str) -> dict[str, Any]:
    from ml_connector.systems.sap_ecc.sandbox.app import DEMO_PASSWORD, DEMO_USER

    return {"base_url": url, "client": state.client, "user": DEMO_USER, "password": DEMO_PASSWORD,
            "soap_rfc": f"{url}/sap/bc/soap/rfc?sap-client={state.client}", "admin": f"{url}/_sandbox"}


def _snapshot(state: Any) -> dict[str, Any]:
    with state.data.lock:
        return {"stores": state.data._stores, "changenr": state.data._changenr}


def _restore(state: Any, snap: dict[str, Any]) -> None:
    state.data._stores = snap["stores"]
    state.data._changenr = snap["changenr"]


def _ensure_seeded(state: Any, vendors: int) -> None:
    if not state.data.count("LFA1", state.client):
        state.data.seed_vendors(vendors, 42, client=state.client)


# ------------------------------------------------------------------------------ agent side


def _agent_handler(sc: Any, password: str) -> Handler:
    """The agent's handler for an agent.yaml system of this type: RFC over the configured transport."""
    from ml_connector.systems.sap_ecc.client import RfcCaller, SoapRfcClient, make_handler

    client: RfcCaller
    if sc.transport == "pyrfc":
        from ml_connector.systems.sap_ecc.connector import pyrfc_target
        from ml_connector.systems.sap_ecc.pyrfc_transport import PyRfcClient

        ashost, sysnr = pyrfc_target(sc.base_url)
        client = PyRfcClient(ashost, sysnr, sc.client, sc.user, password, language=sc.language,
                             config={"timeout": int(float(sc.timeout))},
                             calls_per_second=sc.calls_per_second, max_concurrency=sc.max_concurrent)
    else:
        client = SoapRfcClient(sc.base_url, sc.client, sc.user, password,
                               language=sc.language, calls_per_second=sc.calls_per_second,
                               max_concurrency=sc.max_concurrent, timeout=float(sc.timeout),
                               verify=sc.tls_verify)
    return make_handler(client)


def _channel_client(channel: Any, name: str, cfg: Any) -> Any:
    from ml_connector.systems.sap_ecc.client import ChannelRfcCaller

    return ChannelRfcCaller(channel, name)


def _idempotent(function: str) -> bool:
    from ml_connector.systems.sap_ecc.call_policy import is_idempotent_default

    return is_idempotent_default(function)


def _pacing(cfg: Any) -> tuple[str, float, int]:
    """One budget per SAP system (base URL and client), as the agent's CallPolicy keys it."""
    from ml_connector.systems.sap_ecc.call_policy import system_key

    return system_key(cfg.base_url, cfg.client), float(cfg.limits.calls_per_second), int(cfg.limits.max_concurrent)


# ------------------------------------------------------------------------------ control plane


def _routers(rt: Any) -> list[Any]:
    """The IDoc endpoint SAP pushes to (`server.idoc`): each IDoc validated, stored durably, then acknowledged."""
    cfg = getattr(rt.config.server, "idoc", None)
    if cfg is None:
        return []
    from ml_connector.systems.sap_ecc.idoc import IdocPolicy, PartnerProfile
    from ml_connector.systems.sap_ecc.idoc_receiver import BasicAuth, SqlIdocStore, idoc_router

    partners = [PartnerProfile(p.sndprt, p.sndprn, frozenset(p.mestypes) if p.mestypes else None)
                for p in cfg.partners] or None
    return [idoc_router(SqlIdocStore(rt.db), BasicAuth.from_vault(rt.vault, cfg.username, cfg.password_secret),
                        policy=IdocPolicy(direct="1", partners=partners, client=cfg.client), path=cfg.path,
                        max_bytes=cfg.max_bytes, on_stored=lambda stored: start_consumers(rt, stored))]


def idoc_consumers(rt: Any, mestyps: set[str]) -> list[tuple[str, str]]:
    """(flow, stream) of every configured stream reading SAP ECC whose source reads stored IDocs of
    one of `mestyps` (its `IDOC_TYPES`)."""
    found: list[tuple[str, str]] = []
    for name, f in rt.config.flows.items():
        conn = rt.config.connections.get(f.source)
        if conn is None or conn.type != NAME:
            continue
        streams = rt.flow(name).streams()
        for stream in f.streams:
            s = streams.get(stream)
            if s is not None and mestyps & set(getattr(s.source, "IDOC_TYPES", ())):
                found.append((name, stream))
    return found


def start_consumers(rt: Any, stored: list[Any]) -> list[str]:
    """IDocs newly stored are a hint: start (or join the queued) incremental run of each stream that
    reads them, instead of waiting for its schedule. A duplicate starts nothing. The schedule stays
    the safety net: a hint lost here (no worker in this process, a crash) is picked up by it."""
    from ml_connector.core import engine

    mestyps = {s.mestyp for s in stored if not s.duplicate}
    started: list[str] = []
    if not mestyps:
        return started
    for flow, stream in idoc_consumers(rt, mestyps):
        try:
            started.append(engine.hint_sync(flow, stream))
        except Exception:
            log.exception("could not start %s/%s for the IDocs received (its schedule will run it)", flow, stream)
    return started


def _known_errors() -> tuple[Any, ...]:
    from ml_connector.systems.sap_ecc.known_errors import KNOWN_ERRORS

    return KNOWN_ERRORS


ENTRY = SystemEntry(
    name=NAME,
    settings=SapEccConnection,
    connect=lazy("ml_connector.systems.sap_ecc.connector", "connect"),
    ping=lazy("ml_connector.systems.sap_ecc.connector", "ping"),
    provider=NAME,
    example=_example,
    emulator=Emulator(default_port=8010, new_state=_new_state,
                      create_app=lazy("ml_connector.systems.sap_ecc.sandbox.app", "create_app"), info=_info,
                      snapshot=_snapshot, restore=_restore, ensure_seeded=_ensure_seeded),
    agent=AgentSupport(settings=EccAgentSystem, handler=_agent_handler, channel_client=_channel_client,
                       idempotent=_idempotent, pacing=_pacing, default_type=True),
    routers=_routers,
    known_errors=_known_errors(),
)
