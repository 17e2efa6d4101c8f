"""The settings of an `sap_b1` connection in ml-connector.yaml (found through the registry)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ml_connector.core.settings import AgentSystemSettings, BaseUrl, Duration, SecretName, SettingsModel, Text


class B1Auth(SettingsModel):
    username: Text = Field(min_length=1)
    password_secret: SecretName


class B1Limits(SettingsModel):
    """The call budget of the company database (default: provider.yaml `rate_limit`)."""

    calls_per_second: int = Field(ge=1, le=1000)
    max_concurrent: int = Field(ge=1, le=100)


class SapB1Connection(SettingsModel):
    """An SAP Business One company, through its Service Layer; normally reached through the agent."""

    type: Literal["sap_b1"]
    base_url: BaseUrl = Field(min_length=1, description="https://host:50000 (the service root /b1s/v1 is added), "
                          "or the service root itself, e.g. https://host:50000/b1s/v2")
    company_db: Text = Field(min_length=1, description="CompanyDB of the Service Layer login")
    via: Literal["agent", "direct"] = "agent"
    auth: B1Auth
    timeout: Duration = 60.0
    tls_verify: bool | str = Field(default=True, description="true, false, or a CA bundle path")
    page_size: int | None = Field(default=None, ge=1, le=10000,
                                  description="B1S-PageSize per request; default the server's (20)")
    limits: B1Limits | None = Field(default=None, description="Calls per second and at once to this company "
                                    "database (default: provider.yaml rate_limit)")


class B1AgentSystem(AgentSystemSettings):
    """An SAP Business One company in the agent's agent.yaml (the agent holds the password)."""

    type: Literal["sap_b1"] = "sap_b1"
    company_db: Text = Field(min_length=1, description="CompanyDB of the Service Layer login")
    user: Text = Field(min_length=1)
    limits: B1Limits | None = Field(default=None, description="The agent's pacing of this company database "
                                    "(default: provider.yaml rate_limit)")
