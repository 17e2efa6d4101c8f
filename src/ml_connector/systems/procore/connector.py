"""Builds a Procore connection from the configuration: DMSA client credentials (token shared across
processes in the token store) and the company's hourly budget."""

from __future__ import annotations

from typing import Any

from ml_connector.core import audit
from ml_connector.core.http import OAuth2Auth, RetryPolicy
from ml_connector.core.ratelimit import budgets_for
from ml_connector.systems.procore.client import ProcoreClient
from ml_connector.systems.procore.facts import procore_facts


def connect(rt: Any, name: str, cfg: Any) -> ProcoreClient:
    f = procore_facts()
    limit, period = procore_facts().need_rate_limit().client_budget(cfg.limits)
    # The budget is per company (rate_limit.scope credential): every connection to the same company
    # draws from one window, across worker processes when the database is Postgres.
    limiter = budgets_for(rt.db).window("procore", f"company:{cfg.company_id}", limit, period)
    assert f.auth.token_path is not None  # an OAuth2 mode (checked by the schema)
    auth = OAuth2Auth(cfg.login_url_resolved() + f.auth.token_path, cfg.auth.client_id,
                      rt.vault.get(cfg.auth.client_secret_secret), connection=name, store=rt.tokens,
                      facts=f.auth, retry=RetryPolicy.from_facts(f.need_retry()), provider="Procore",
                      audit=audit.hook_for(rt, name))
    return ProcoreClient(cfg.base_url_resolved(), cfg.company_id, auth, limiter=limiter, timeout=float(cfg.timeout))


def ping(rt: Any, name: str, cfg: Any) -> str:
    client: ProcoreClient = rt.connection(name)
    seconds = client.ping()
    return f"authenticated; GET companies (company {cfg.company_id}) in {seconds * 1000:.0f} ms"
