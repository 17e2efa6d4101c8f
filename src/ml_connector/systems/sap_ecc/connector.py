"""Builds an SAP ECC connection from the configuration.

SAP is on-premises: the SOAP-RFC client (and the SAP password) belong to the
agent. The flows get a `ChannelRfcCaller`, which sends every call through the
agent channel; with `via: direct` (tests, a control plane inside the network)
they get the client itself behind the same `call()` interface.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from ml_connector.core.ratelimit import budgets_for
from ml_connector.systems.sap_ecc.client import ChannelRfcCaller, SoapRfcClient, make_handler
from ml_connector.systems.sap_ecc.facts import ecc_facts

if TYPE_CHECKING:
    from ml_connector.systems.sap_ecc.pyrfc_transport import PyRfcClient


def pyrfc_target(base_url: str) -> tuple[str, str]:
    """(ashost, sysnr) for PyRFC from the ICM URL: host, and the instance number NN from the usual
    ICM ports 80NN / 443NN / 5NN00 / 5NN01 ('00' otherwise)."""
    parsed = urlparse(base_url)
    port = str(parsed.port or "")
    m = re.fullmatch(r"(?:80|443)(\d\d)|5(\d\d)0[01]", port)
    sysnr = next((g for g in (m.groups() if m else ()) if g), "00")
    return parsed.hostname or base_url, sysnr


def build_client(rt: Any, name: str, cfg: Any) -> SoapRfcClient | PyRfcClient:
    """The RFC client of the configured transport (`transport: soap_rfc` default, or `pyrfc`)."""
    password = rt.vault.get(cfg.auth.password_secret)
    # With Postgres every worker process may embed an agent calling this system: its calls per
    # second and concurrency cap are then kept in the database, shared by all of them.
    budgets = budgets_for(getattr(rt, "db", None))  # a runtime without a database: in-process
    if getattr(cfg, "transport", "soap_rfc") == "pyrfc":
        from ml_connector.systems.sap_ecc.pyrfc_transport import PyRfcClient

        ashost, sysnr = pyrfc_target(cfg.base_url)
        return PyRfcClient(ashost, sysnr, cfg.client, cfg.auth.username, password, language=cfg.language,
                           config={"timeout": int(float(cfg.timeout))},
                           calls_per_second=int(cfg.limits.calls_per_second),
                           max_concurrency=int(cfg.limits.max_concurrent), budgets=budgets,
                           calls_as=urlparse(cfg.base_url).netloc)
    return SoapRfcClient(
        cfg.base_url, cfg.client, cfg.auth.username, password,
        language=cfg.language, calls_per_second=int(cfg.limits.calls_per_second),
        max_concurrency=int(cfg.limits.max_concurrent), timeout=float(cfg.timeout), budgets=budgets)


def connect(rt: Any, name: str, cfg: Any) -> Any:
    client = build_client(rt, name, cfg)
    if cfg.via == "direct":
        return client
    # The embedded agent: same request/response protocol as the separate agent process.
    rt.channel.register(name, make_handler(client))
    return ChannelRfcCaller(rt.channel, name)


def ping(rt: Any, name: str, cfg: Any) -> str:
    """RFC_PING round trip and RFC_SYSTEM_INFO: proves network, logon, client and authorizations."""
    ping_fm, info_fm = ecc_facts().ping.calls  # provider.yaml ping.calls: a round trip, the system's data
    caller = rt.connection(name)
    t0 = time.perf_counter()
    caller.call(ping_fm, {})
    rtt = (time.perf_counter() - t0) * 1000
    info = caller.call(info_fm, {}).get("RFCSI_EXPORT", {})
    return (f"{ping_fm} {rtt:.0f} ms; system {str(info.get('RFCSYSID', '?')).strip()} "
            f"client {cfg.client} release {str(info.get('RFCSAPRL', '?')).strip()} "
            f"host {str(info.get('RFCHOST', '?')).strip()}")
