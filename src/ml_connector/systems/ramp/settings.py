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


class RampWebhooks(SettingsModel):
    """Receive Ramp's webhooks on the control plane's HTTP server (`ml-connector run`)."""

    path: str | None = Field(default=None, description="Default /webhooks/<connection name>")
    secret_secret: SecretName = Field(default="ramp_webhook_secret", description="Vault secret holding the "
                                      "subscription's signing secret (`ml-connector webhooks-subscribe` stores it)")
    flows: list[str] = Field(default_factory=list, description="Flows whose bill streams an event starts; "
                             "default: every flow with a `bills` or `bill_status` stream on this connection")
    max_bytes: int = Field(default=65536, ge=1024, le=1048576)


class RampConnection(SettingsModel):
    type: Literal["ramp"]
    base_url: BaseUrl | None = Field(default=None, description="Default from systems/ramp/provider.yaml")
    auth: RampAuth
    limits: RateLimit | None = None
    timeout: Duration = 60.0
    webhooks: RampWebhooks | None = Field(default=None, description="Receive bills.* webhooks (hints that "
                                          "start the bill streams at once; the scheduled poll still reconciles)")

    def base_url_resolved(self) -> str:
        if self.base_url:
            return self.base_url
        from ml_connector.core.providers import fact

        url = fact("ramp", "base_urls", "production")
        if not url:
            raise ConfigError("ramp: no base_url in the configuration and none in the provider facts")
        return str(url)
