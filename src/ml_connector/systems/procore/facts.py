"""Procore's own sections of provider.yaml (the common frame is core.providers.ProviderFacts)."""

from __future__ import annotations

from typing import cast

from pydantic import Field

from ml_connector.core.providers import ProviderFacts, Section, facts


class Headers(Section):
    company: str
    limit: str
    remaining: str
    reset: str


class Pacing(Section):
    reserve: int = Field(ge=0)
    max_wait: float = Field(gt=0)
    spike_window: float = Field(gt=0)


class Paging(Section):
    per_page: int = Field(gt=0)


class Batch(Section):
    max_items: int = Field(gt=0)


class Facts(ProviderFacts):
    login_urls: dict[str, str]
    headers: Headers
    pacing: Pacing
    paging: Paging
    batch: Batch


def procore_facts() -> Facts:
    return cast(Facts, facts("procore"))
