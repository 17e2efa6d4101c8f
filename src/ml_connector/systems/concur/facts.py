"""SAP Concur's own sections of provider.yaml (the common frame is core.providers.ProviderFacts)."""

from __future__ import annotations

from typing import cast

from pydantic import Field

from ml_connector.core.providers import ProviderFacts, Section, facts


class CompanyGrant(Section):
    credtype: str


class Paging(Section):
    reports_limit: int = Field(gt=0)
    entries_limit: int = Field(gt=0)
    allocations_limit: int = Field(gt=0)
    digests_limit: int = Field(gt=0)
    fis_limit: int = Field(gt=0)


class ReadyToPost(Section):
    approval_status: str
    payment_status: str
    payment_request_approval_status: str


class Facts(ProviderFacts):
    company_grant: CompanyGrant
    paging: Paging
    ready_to_post: ReadyToPost


def concur_facts() -> Facts:
    return cast(Facts, facts("concur"))
