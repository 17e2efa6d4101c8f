"""Builds an SAP Business One connection from the configuration.

B1 is on-premises like ECC: the Service Layer client (and the B1 password) belong to the agent.
Flows get a `ChannelServiceLayerClient` that sends each request through the agent channel; with
`via: direct` they get the HTTP client itself. Both have the same `ServiceLayerApi` interface.
"""

from __future__ import annotations

from typing import Any

from ml_connector.systems.sap_b1.client import (
    ChannelServiceLayerClient,
    ServiceLayerApi,
    ServiceLayerClient,
    make_handler,
    service_root_of,
)
from ml_connector.systems.sap_b1.pacing import pacing_for
from ml_connector.systems.sap_b1.sessions import TokenSessionStore


def build_client(rt: Any, name: str, cfg: Any) -> ServiceLayerClient:
    # The session is kept in the token store (encrypted) and reused by later runs and processes.
    tokens = getattr(rt, "tokens", None)
    sessions = (TokenSessionStore(tokens, name, service_root_of(cfg.base_url), cfg.company_db, cfg.auth.username)
                if tokens is not None else None)
    root = service_root_of(cfg.base_url)
    return ServiceLayerClient(cfg.base_url, cfg.company_db, cfg.auth.username,
                              rt.vault.get(cfg.auth.password_secret), timeout=float(cfg.timeout),
                              verify=cfg.tls_verify, page_size=cfg.page_size, sessions=sessions,
                              pacing=pacing_for(root, cfg.company_db, cfg.limits))


def connect(rt: Any, name: str, cfg: Any) -> ServiceLayerApi:
    client = build_client(rt, name, cfg)
    if cfg.via == "direct":
        return client
    # The embedded agent: same request/response protocol as the separate agent process.
    rt.channel.register(name, make_handler(client))
    return ChannelServiceLayerClient(rt.channel, name, page_size=cfg.page_size)


def agent_handler(system_cfg: Any, password: str) -> Any:
    """The agent's handler for an agent.yaml system of type sap_b1 (password from the agent's vault)."""
    company_db = getattr(system_cfg, "company_db", None)
    if not company_db:
        raise ValueError("sap_b1 system: company_db (the CompanyDB of the Service Layer login) is required")
    # The agent's own pacing of the company database (agent.yaml `limits`, else provider.yaml).
    pacing = pacing_for(service_root_of(system_cfg.base_url), company_db, getattr(system_cfg, "limits", None))
    client = ServiceLayerClient(system_cfg.base_url, company_db, system_cfg.user, password,
                                timeout=float(system_cfg.timeout), verify=system_cfg.tls_verify, pacing=pacing)
    return make_handler(client)


def ping(rt: Any, name: str, cfg: Any) -> str:
    """Login (implicit) and the cheapest read: proves network, TLS, company, user and password."""
    client: ServiceLayerApi = rt.connection(name)
    seconds = client.ping()
    return f"logged in to {cfg.company_db}; GET ChartOfAccounts in {seconds * 1000:.0f} ms"
