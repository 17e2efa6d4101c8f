"""Builds a Marketing Cloud connection from the configuration: server-to-server OAuth with the token
kept (encrypted) in the shared token store, the shared rate budget and the API call meter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ml_connector.core import audit
from ml_connector.core.ratelimit import budgets_for
from ml_connector.systems.sfmc.auth import SfmcAuth
from ml_connector.systems.sfmc.client import SfmcClient
from ml_connector.systems.sfmc.facts import sfmc_facts
from ml_connector.systems.sfmc.meter import ApiMeter


def allowance(cfg: Any) -> int:
    return int(cfg.yearly_allowance or sfmc_facts().allowance[cfg.edition])


def meter_for(rt: Any, name: str, cfg: Any) -> ApiMeter:
    data_dir = getattr(rt, "data_dir", None)
    path = Path(data_dir) / "sfmc" / f"{name}-api-calls.json" if data_dir else None
    return ApiMeter(path, allowance(cfg))


def connect(rt: Any, name: str, cfg: Any) -> SfmcClient:
    f = sfmc_facts()
    rl = f.need_rate_limit()
    limit, _ = rl.client_budget()
    # Counted per credential: every connection of this installed package shares one window.
    limiter = budgets_for(rt.db).window("sfmc", f"{rl.scope}:{cfg.auth.client_id}", limit, rl.period)
    auth = SfmcAuth(cfg.auth_base, cfg.auth.client_id, rt.vault.get(cfg.auth.client_secret_secret),
                    account_id=cfg.auth.account_id, scope=cfg.auth.scope, connection=name, store=rt.tokens,
                    limiter=limiter, audit=audit.hook_for(rt, name),
                    timeout=float(cfg.timeout))
    return SfmcClient(auth, limiter=limiter, timeout=float(cfg.timeout), meter=meter_for(rt, name, cfg))


def ping(rt: Any, name: str, cfg: Any) -> str:
    client: SfmcClient = rt.connection(name)
    seconds = client.ping()
    burn = f"; {client.meter.burn().text()}" if client.meter is not None else ""
    return f"authenticated; GET /platform/v1/tokenContext in {seconds * 1000:.0f} ms{burn}"
