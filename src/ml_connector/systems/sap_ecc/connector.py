"""Builds an SAP ECC connection from the configuration.

SAP is on-premises: the SOAP-RFC client (and the SAP password) belong to the
agent. The flows get a `ChannelRfcCaller`, which sends every call through the
agent channel; with `via: direct` (tests, a control plane inside the network)
they get the client itself behind the same `call()` interface.
"""

from __future__ import annotations

import time
from typing import Any

from ml_connector.systems.sap_ecc.client import ChannelRfcCaller, SoapRfcClient, make_handler


def build_client(rt: Any, name: str, cfg: Any) -> SoapRfcClient:
    return SoapRfcClient(
        cfg.base_url, cfg.client, cfg.auth.username, rt.vault.get(cfg.auth.password_secret),
        language=cfg.language, calls_per_second=int(cfg.limits.calls_per_second),
        max_concurrency=int(cfg.limits.max_concurrent), timeout=float(cfg.timeout))


def connect(rt: Any, name: str, cfg: Any) -> Any:
    client = build_client(rt, name, cfg)
    if cfg.via == "direct":
        return client
    # The embedded agent: same request/response protocol as the separate agent process.
    rt.channel.register(name, make_handler(client))
    return ChannelRfcCaller(rt.channel, name)


def ping(rt: Any, name: str, cfg: Any) -> str:
    """RFC_PING round trip and RFC_SYSTEM_INFO: proves network, logon, client and authorizations."""
    caller = rt.connection(name)
    t0 = time.perf_counter()
    caller.call("RFC_PING", {})
    rtt = (time.perf_counter() - t0) * 1000
    info = caller.call("RFC_SYSTEM_INFO", {}).get("RFCSI_EXPORT", {})
    return (f"RFC_PING {rtt:.0f} ms; system {str(info.get('RFCSYSID', '?')).strip()} "
            f"client {cfg.client} release {str(info.get('RFCSAPRL', '?')).strip()} "
            f"host {str(info.get('RFCHOST', '?')).strip()}")
