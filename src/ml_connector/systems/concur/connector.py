"""Builds a Concur connection from the configuration: the company grant's credentials from the vault,
tokens in the shared token store, the credential's rate budget."""

from __future__ import annotations

from typing import Any

from ml_connector.core import audit
from ml_connector.core.ratelimit import budgets_for
from ml_connector.systems.concur.auth import ConcurCompanyAuth
from ml_connector.systems.concur.client import ConcurClient
from ml_connector.systems.concur.facts import concur_facts


def connect(rt: Any, name: str, cfg: Any) -> ConcurClient:
    base = cfg.base_url_resolved()
    rl = concur_facts().need_rate_limit()
    # Counted per credential (provider.yaml rate_limit.scope): one window per client id.
    limit, period = (int(cfg.limits.requests), float(cfg.limits.period)) if cfg.limits else (rl.limit, rl.period)
    limiter = budgets_for(rt.db).window("concur", f"{rl.scope}:{cfg.auth.client_id}", limit, period)
    auth = ConcurCompanyAuth(base, cfg.auth.client_id, rt.vault.get(cfg.auth.client_secret_secret),
                             company_uuid=cfg.company_uuid,
                             request_token=rt.vault.get(cfg.auth.company_request_token_secret),
                             store=rt.tokens, key=name, limiter=limiter,
                             audit=audit.hook_for(rt, name))
    return ConcurClient(base, auth, limiter=limiter, timeout=float(cfg.timeout))


def ping(rt: Any, name: str, cfg: Any) -> str:
    client: ConcurClient = rt.connection(name)
    seconds = client.ping()
    return f"authenticated (datacenter {client.auth.home()}); GET expense reports in {seconds * 1000:.0f} ms"
