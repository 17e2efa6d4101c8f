"""SAP Business One's own sections of provider.yaml (the common frame is core.providers.ProviderFacts)."""

from __future__ import annotations

from typing import cast

from pydantic import Field

from ml_connector.core.providers import ProviderFacts, Section, facts


class Service(Section):
    default_root: str
    login: str
    logout: str


class Session(Section):
    cookies: list[str]
    timeout_minutes: float = Field(gt=0)
    relogin_margin_seconds: float = Field(ge=0)
    invalid_session_code: int
    invalid_session_message: str


class Paging(Section):
    default_page_size: int = Field(gt=0)
    page_size_header: str
    next_link: list[str]


class JournalEntries(Section):
    entity_set: str
    key: str
    idempotency_field: str
    idempotency_field_max_length: int = Field(gt=0)


class Sandbox(Section):
    company_db: str
    user: str
    version: str
    route_id: str
    login_seconds: float = Field(ge=0)


class Facts(ProviderFacts):
    service: Service
    session: Session
    paging: Paging
    journal_entries: JournalEntries
    sandbox: Sandbox


def b1_facts() -> Facts:
    return cast(Facts, facts("sap_b1"))
