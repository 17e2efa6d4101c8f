"""Builds a Concur connection from the configuration: the company grant's credentials from the vault,
tokens in the shared token store, the credential's rate budget."""

from __future__ import annotations

from typing import Any

from ml_connector.core import audit
from ml_connector.core.http import AuditHook
from ml_connector.core.ratelimit import budgets_for
from ml_connector.systems.concur.auth import ConcurCompanyAuth
from ml_connector.systems.concur.client import ConcurClient
from ml_connector.systems.concur.facts import concur_facts


def token_audit(rt: Any, name: str) -> AuditHook:
    """Token events into the audit trail; never a token value."""

    def record(event: str, outcome: str, detail: dict[str, Any]) -> None:
        with rt.db.session() as s:
            audit.record(s, event, outcome=outcome, target=name, detail=detail)

    return record


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
                             audit=token_audit(rt, name) if getattr(rt, "db", None) else None)
    return ConcurClient(base, auth, limiter=limiter, timeout=float(cfg.timeout))


def ping(rt: Any, name: str, cfg: Any) -> str:
    client: ConcurClient = rt.connection(name)
    seconds = client.ping()
    return f"authenticated (datacenter {client.auth.home()}); GET expense reports in {seconds * 1000:.0f} ms"
