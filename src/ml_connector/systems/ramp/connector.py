"""Builds a Ramp connection from the configuration: OAuth client credentials with
the token kept (encrypted) in the database, and the egress-wide rate budget."""

from __future__ import annotations

from typing import Any

from ml_connector.core import audit
from ml_connector.core.ratelimit import budgets_for
from ml_connector.systems.ramp.auth import RampClientCredentialsAuth
from ml_connector.systems.ramp.client import RampClient
from ml_connector.systems.ramp.facts import ramp_facts


def connect(rt: Any, name: str, cfg: Any) -> RampClient:
    base = cfg.base_url_resolved().rstrip("/")
    limit, period = ramp_facts().need_rate_limit().client_budget(cfg.limits)
    # Ramp counts requests per source IP (provider.yaml rate_limit.scope): every Ramp connection
    # behind this egress draws from the same window; with Postgres that is every worker process,
    # kept in the database.
    limiter = budgets_for(rt.db).window("ramp", ramp_facts().need_rate_limit().scope, limit, period)
    auth = RampClientCredentialsAuth.for_base_url(
        base, cfg.auth.client_id, rt.vault.get(cfg.auth.client_secret_secret), store=rt.tokens, key=name,
        scope=cfg.auth.scope, limiter=limiter, audit=audit.hook_for(rt, name))
    return RampClient(base, auth, limiter=limiter, timeout=float(cfg.timeout))


def ping(rt: Any, name: str, cfg: Any) -> str:
    client: RampClient = rt.connection(name)
    seconds = client.ping()
    return f"authenticated; GET accounting vendors in {seconds * 1000:.0f} ms"
