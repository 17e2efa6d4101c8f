"""Marketing Cloud's own sections of provider.yaml (the common frame is core.providers.ProviderFacts)."""

from __future__ import annotations

from typing import cast

from pydantic import Field

from ml_connector.core.providers import Backoff, ProviderFacts, Section, facts


class TokenFacts(Section):
    reported_early: float = Field(ge=0)


class SoapFacts(Section):
    path: str
    retrieve_page: int = Field(gt=0)
    throttle_backoff: Backoff
    max_throttle_waits: int = Field(ge=0)


class BatchFacts(Section):
    rowset_max_rows: int = Field(gt=0)
    rowset_max_bytes: int = Field(gt=0)
    async_max_rows: int = Field(gt=0)
    async_from_rows: int = Field(gt=0)
    async_poll: Backoff
    async_timeout: float = Field(gt=0)


class Facts(ProviderFacts):
    token: TokenFacts
    soap: SoapFacts
    batch: BatchFacts
    allowance: dict[str, int]


def sfmc_facts() -> Facts:
    return cast(Facts, facts("sfmc"))
