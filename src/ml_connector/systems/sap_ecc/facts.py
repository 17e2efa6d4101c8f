"""SAP ECC's own sections of provider.yaml (the common frame is core.providers.ProviderFacts)."""

from __future__ import annotations

from typing import cast

from pydantic import Field

from ml_connector.core.providers import ProviderFacts, Section, facts


class Paths(Section):
    rfc: str
    idoc_xml: str


class Transport(Section):
    paths: Paths
    namespace: str
    soap_action: str
    content_type: str


class Sessions(Section):
    cookies: list[str]
    server_idle_seconds: float = Field(gt=0)
    idle_seconds: float = Field(gt=0)


class ReadTable(Section):
    row_width: int = Field(gt=0)
    options_line_length: int = Field(gt=0)
    lookup_page_size: int = Field(gt=0)
    items_page_size: int = Field(gt=0)


class TableReaders(Section):
    modules: dict[str, str]
    table_parameters: list[str]
    name_patterns: list[str]


class Sandbox(Section):
    sid: str
    client: str
    default_client: str
    release: str
    demo_user: str
    demo_password: str
    vendors: int = Field(ge=0)
    seed: int


class Facts(ProviderFacts):
    transport: Transport
    sessions: Sessions
    read_table: ReadTable
    table_readers: TableReaders
    sandbox: Sandbox


def ecc_facts() -> Facts:
    return cast(Facts, facts("sap_ecc"))
