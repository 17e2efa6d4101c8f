"""The settings of a `procore` connection in ml-connector.yaml (found through the registry)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ml_connector.core.settings import ConfigError, Duration, SecretName, SettingsModel, Text


class ProcoreAuth(SettingsModel):
    client_id: Text = Field(min_length=1)
    client_secret_secret: SecretName


class RateLimit(SettingsModel):
    requests: int = Field(ge=1)
    period: Duration


class ProcoreConnection(SettingsModel):
    type: Literal["procore"]
    base_url: str | None = Field(default=None, description="API host; default from systems/procore/provider.yaml")
    login_url: str | None = Field(default=None, description="OAuth host; default from the provider facts")
    company_id: int = Field(ge=1, description="The company the DMSA is installed in (Procore-Company-Id)")
    auth: ProcoreAuth
    limits: RateLimit | None = None
    timeout: Duration = 60.0

    def _url(self, given: str | None, key: str) -> str:
        if given:
            return given.rstrip("/")
        from ml_connector.core.providers import fact

        url = fact("procore", key, "production")
        if not url:
            raise ConfigError(f"procore: no {key[:-1]} in the configuration and none in the provider facts")
        return str(url).rstrip("/")

    def base_url_resolved(self) -> str:
        return self._url(self.base_url, "base_urls")

    def login_url_resolved(self) -> str:
        return self._url(self.login_url, "login_urls")
