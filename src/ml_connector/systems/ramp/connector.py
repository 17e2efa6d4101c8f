"""Builds a Ramp connection from the configuration: OAuth client credentials with
the token kept (encrypted) in the database, and the egress-wide rate budget."""

from __future__ import annotations

import math
from typing import Any

from ml_connector.core.providers import fact
from ml_connector.core.ratelimit import budgets_for
from ml_connector.systems.ramp.auth import RampClientCredentialsAuth
from ml_connector.systems.ramp.client import RampClient


def rate_budget(cfg: Any) -> tuple[int, float]:
    """(requests, period) the client allows itself: the provider's limit (or the
    configured one) less a small headroom for send/arrival skew."""
    limit = int(cfg.limits.requests) if cfg.limits else int(fact("ramp", "rate_limit", "limit", default=200))
    period = float(cfg.limits.period) if cfg.limits else float(fact("ramp", "rate_limit", "period", default=10))
    headroom = float(fact("ramp", "rate_limit", "client_headroom", default=0.01))
    return max(1, limit - max(1, math.ceil(limit * headroom))), period


def connect(rt: Any, name: str, cfg: Any) -> RampClient:
    base = cfg.base_url_resolved().rstrip("/")
    limit, period = rate_budget(cfg)
    # Ramp counts requests per source IP: every Ramp connection behind this egress draws
    # from the same window; with Postgres that is every worker process, kept in the database.
    limiter = budgets_for(rt.db).window("ramp", "egress", limit, period)
    auth = RampClientCredentialsAuth.for_base_url(
        base, cfg.auth.client_id, rt.vault.get(cfg.auth.client_secret_secret), store=rt.tokens, key=name,
        scope=cfg.auth.scope, limiter=limiter)
    return RampClient(base, auth, limiter=limiter, timeout=float(cfg.timeout))


def ping(rt: Any, name: str, cfg: Any) -> str:
    client: RampClient = rt.connection(name)
    seconds = client.ping()
    return f"authenticated; GET accounting vendors in {seconds * 1000:.0f} ms"
