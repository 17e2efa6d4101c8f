"""Builds a Ramp connection from the configuration: OAuth client credentials with
the token kept (encrypted) in the database, and the egress-wide rate budget."""

from __future__ import annotations

import math
from typing import Any

from ml_connector.core import audit
from ml_connector.core.http import AuditHook
from ml_connector.core.ratelimit import budgets_for
from ml_connector.systems.ramp.auth import RampClientCredentialsAuth
from ml_connector.systems.ramp.client import RampClient
from ml_connector.systems.ramp.facts import ramp_facts


def rate_budget(cfg: Any) -> tuple[int, float]:
    """(requests, period) the client allows itself: the provider's limit (or the
    configured one) less a small headroom for send/arrival skew."""
    facts = ramp_facts().need_rate_limit()
    limit = int(cfg.limits.requests) if cfg.limits else facts.limit
    period = float(cfg.limits.period) if cfg.limits else facts.period
    return max(1, limit - max(1, math.ceil(limit * facts.client_headroom))), period


def token_audit(rt: Any, name: str) -> AuditHook:
    """Token events (issued, refreshed, failed) into the audit trail; never a token value."""

    def record(event: str, outcome: str, detail: dict[str, Any]) -> None:
        with rt.db.session() as s:
            audit.record(s, event, outcome=outcome, target=name, detail=detail)

    return record


def connect(rt: Any, name: str, cfg: Any) -> RampClient:
    base = cfg.base_url_resolved().rstrip("/")
    limit, period = rate_budget(cfg)
    # Ramp counts requests per source IP (provider.yaml rate_limit.scope): every Ramp connection
    # behind this egress draws from the same window; with Postgres that is every worker process,
    # kept in the database.
    limiter = budgets_for(rt.db).window("ramp", ramp_facts().need_rate_limit().scope, limit, period)
    auth = RampClientCredentialsAuth.for_base_url(
        base, cfg.auth.client_id, rt.vault.get(cfg.auth.client_secret_secret), store=rt.tokens, key=name,
        scope=cfg.auth.scope, limiter=limiter, audit=token_audit(rt, name) if getattr(rt, "db", None) else None)
    return RampClient(base, auth, limiter=limiter, timeout=float(cfg.timeout))


def ping(rt: Any, name: str, cfg: Any) -> str:
    client: RampClient = rt.connection(name)
    seconds = client.ping()
    return f"authenticated; GET accounting vendors in {seconds * 1000:.0f} ms"
