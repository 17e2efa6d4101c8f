"""Builds a Procore connection from the configuration: DMSA client credentials (token shared across
processes in the token store) and the company's hourly budget."""

from __future__ import annotations

import math
from typing import Any

from ml_connector.core import audit
from ml_connector.core.http import AuditHook, OAuth2Auth, RetryPolicy
from ml_connector.core.ratelimit import budgets_for
from ml_connector.systems.procore.client import ProcoreClient
from ml_connector.systems.procore.facts import procore_facts


def rate_budget(cfg: Any) -> tuple[int, float]:
    """(requests, period) the client allows itself: the provider's (or the configured) limit less headroom."""
    facts = procore_facts().need_rate_limit()
    limit = int(cfg.limits.requests) if cfg.limits else facts.limit
    period = float(cfg.limits.period) if cfg.limits else facts.period
    return max(1, limit - max(1, math.ceil(limit * facts.client_headroom))), period


def token_audit(rt: Any, name: str) -> AuditHook:
    def record(event: str, outcome: str, detail: dict[str, Any]) -> None:
        with rt.db.session() as s:
            audit.record(s, event, outcome=outcome, target=name, detail=detail)

    return record


def connect(rt: Any, name: str, cfg: Any) -> ProcoreClient:
    f = procore_facts()
    limit, period = rate_budget(cfg)
    # The budget is per company (rate_limit.scope credential): every connection to the same company
    # draws from one window, across worker processes when the database is Postgres.
    limiter = budgets_for(rt.db).window("procore", f"company:{cfg.company_id}", limit, period)
    assert f.auth.token_path is not None  # an OAuth2 mode (checked by the schema)
    auth = OAuth2Auth(cfg.login_url_resolved() + f.auth.token_path, cfg.auth.client_id,
                      rt.vault.get(cfg.auth.client_secret_secret), connection=name, store=rt.tokens,
                      facts=f.auth, retry=RetryPolicy.from_facts(f.need_retry()), provider="Procore",
                      audit=token_audit(rt, name) if getattr(rt, "db", None) else None)
    return ProcoreClient(cfg.base_url_resolved(), cfg.company_id, auth, limiter=limiter, timeout=float(cfg.timeout))


def ping(rt: Any, name: str, cfg: Any) -> str:
    client: ProcoreClient = rt.connection(name)
    seconds = client.ping()
    return f"authenticated; GET companies (company {cfg.company_id}) in {seconds * 1000:.0f} ms"
