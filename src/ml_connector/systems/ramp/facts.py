"""Ramp's own sections of provider.yaml (the common frame is core.providers.ProviderFacts)."""

from __future__ import annotations

from typing import cast

from pydantic import Field

from ml_connector.core.providers import ProviderFacts, Section, facts


class Paging(Section):
    min_page_size: int = Field(gt=0)
    max_page_size: int = Field(gt=0)


class Batch(Section):
    max_items: int = Field(gt=0)


class Facts(ProviderFacts):
    paging: Paging
    batch: Batch


def ramp_facts() -> Facts:
    return cast(Facts, facts("ramp"))
