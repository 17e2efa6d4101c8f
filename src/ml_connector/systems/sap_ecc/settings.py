"""The settings of an `sap_ecc` connection in ml-connector.yaml (found through the registry)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from ml_connector.core.providers import RateLimitFacts, facts
from ml_connector.core.settings import AgentSystemSettings, BaseUrl, Duration, SecretName, SettingsModel, Text


class SapAuth(SettingsModel):
    username: Text = Field(min_length=1)
    password_secret: SecretName


def _rate_limit() -> RateLimitFacts:
    rl = facts("sap_ecc").rate_limit
    if rl is None:
        raise ValueError("systems/sap_ecc/provider.yaml: rate_limit is required")
    return rl


# Defaults and the allowed range come from provider.yaml (rate_limit), the one place they are kept.
_RL = _rate_limit()
_RANGE = _RL.limit_range or (1, _RL.limit)


class SapLimits(SettingsModel):
    max_concurrent: int = Field(default=_RL.max_concurrent or 8, ge=1, le=64)
    calls_per_second: float = Field(default=_RL.limit / _RL.period, ge=_RANGE[0], le=_RANGE[1])


class SapEccConnection(SettingsModel):
    """An SAP ECC system, normally reached through the agent on the customer's network."""

    type: Literal["sap_ecc"]
    base_url: BaseUrl = Field(min_length=1)
    client: Text
    language: Text = Field(default="EN", min_length=1, max_length=2)
    via: Literal["agent", "direct"] = "agent"
    auth: SapAuth
    limits: SapLimits = Field(default_factory=lambda: SapLimits())
    timeout: Duration = 60.0
    transport: Literal["soap_rfc", "pyrfc"] = Field(
        default="soap_rfc", description="RFC transport: SOAP-RFC over HTTP, or PyRFC (needs the SAP NW RFC SDK)")
    odata: dict[str, str] | None = Field(
        default=None, description="Gateway OData services by name, e.g. {vendors: /sap/opu/odata/sap/ZMLC_VENDOR_SRV}")

    @field_validator("client")
    @classmethod
    def _check_client(cls, value: str) -> str:
        if not re.fullmatch(r"\d{3}", value):
            raise PydanticCustomError(
                "sap_client", "expected the SAP client as 3 digits in quotes, like \"100\", got '{value}'",
                {"value": value},
            )
        return value


class EccAgentSystem(AgentSystemSettings):
    """An SAP ECC system in the agent's agent.yaml (the agent holds its password)."""

    type: Literal["sap_ecc"] = "sap_ecc"
    # pyrfc: native RFC to the application server of base_url (instance number from the ICM port)
    transport: Literal["soap_rfc", "pyrfc"] = "soap_rfc"
    client: Text = "100"
    user: Text = Field(min_length=1)
    language: Text | None = "EN"
    calls_per_second: int = Field(default=20, ge=10, le=50)
    max_concurrent: int = Field(default=4, ge=1, le=64)
