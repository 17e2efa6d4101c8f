"""The settings of a `concur` connection in ml-connector.yaml (found through the registry)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ml_connector.core.settings import ConfigError, Duration, SecretName, SettingsModel, Text


class ConcurAuth(SettingsModel):
    client_id: Text = Field(min_length=1)
    client_secret_secret: SecretName
    # The company request token (valid 24 h) from Concur's Company Request Token tool; only the
    # first grant uses it, the rotating refresh tokens (kept in the token store) do the rest.
    company_request_token_secret: SecretName


class RateLimit(SettingsModel):
    requests: int = Field(ge=1)
    period: Duration


class ConcurConnection(SettingsModel):
    """An SAP Concur company, as a company-level (ERP integration) app."""

    type: Literal["concur"]
    base_url: str | None = Field(default=None, description="Where the first grant is asked (default: the Global "
                                 "Landing Zone of systems/concur/provider.yaml); later calls go to the datacenter "
                                 "the token answer names")
    company_uuid: Text = Field(min_length=1)
    auth: ConcurAuth
    limits: RateLimit | None = Field(default=None, description="Override the provider's request budget")
    timeout: Duration = 60.0

    def base_url_resolved(self) -> str:
        if self.base_url:
            return self.base_url.rstrip("/")
        from ml_connector.core.providers import fact

        url = fact("concur", "base_urls", "production", default=None)
        if not url:
            raise ConfigError("concur: no base_url in the configuration and none in the provider facts")
        return str(url).rstrip("/")
