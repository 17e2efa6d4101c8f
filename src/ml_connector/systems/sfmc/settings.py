"""The settings of an `sfmc` connection in ml-connector.yaml (found through the registry)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ml_connector.core.settings import Duration, SecretName, SettingsModel, Text


class SfmcAuth(SettingsModel):
    client_id: Text = Field(min_length=1)
    client_secret_secret: SecretName
    account_id: Text | None = Field(default=None, description="MID of the business unit (default: the package's)")
    scope: str | None = Field(default=None, description="Default: the installed package's scopes")


class SfmcConnection(SettingsModel):
    type: Literal["sfmc"]
    #: The tenant's auth base URI (https://<subdomain>.auth.marketingcloudapis.com); the REST and SOAP
    #: bases come from the token response.
    auth_base: str = Field(min_length=1)
    auth: SfmcAuth
    #: The account's edition: its yearly API allowance is in provider.yaml `allowance`.
    edition: Literal["pro", "corporate", "enterprise"] = "corporate"
    #: Override the edition's yearly API allowance (contracted volume).
    yearly_allowance: int | None = Field(default=None, ge=1)
    timeout: Duration = 60.0
