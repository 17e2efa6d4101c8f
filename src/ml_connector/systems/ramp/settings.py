"""The settings of a `ramp` connection in ml-connector.yaml (found through the registry)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ml_connector.core.settings import BaseUrl, ConfigError, Duration, SecretName, SettingsModel, Text


class RampAuth(SettingsModel):
    client_id: Text = Field(min_length=1)
    client_secret_secret: SecretName
    scope: str | None = Field(default=None, description="Default: the provider's scopes")


class RateLimit(SettingsModel):
    requests: int = Field(ge=1)
    period: Duration


class RampConnection(SettingsModel):
    type: Literal["ramp"]
    base_url: BaseUrl | None = Field(default=None, description="Default from systems/ramp/provider.yaml")
    auth: RampAuth
    limits: RateLimit | None = None
    timeout: Duration = 60.0

    def base_url_resolved(self) -> str:
        if self.base_url:
            return self.base_url
        from ml_connector.core.providers import fact

        url = fact("ramp", "base_urls", "production")
        if not url:
            raise ConfigError("ramp: no base_url in the configuration and none in the provider facts")
        return str(url)
