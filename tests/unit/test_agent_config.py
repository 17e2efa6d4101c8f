"""agent.yaml systems are validated by the settings model of their type's registry entry."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml_connector.agent.config import AgentConfigError, load_agent_config

HEAD = "control_plane: https://cp.example.com\nsystems:\n"


def problems(tmp_path: Path, systems: str) -> list[str]:
    p = tmp_path / "agent.yaml"
    p.write_text(HEAD + systems, encoding="utf-8")
    with pytest.raises(AgentConfigError) as ei:
        load_agent_config(p)
    return [line.split(": ", 1)[1] for line in str(ei.value).splitlines()]


def test_a_system_without_type_is_the_default_type(tmp_path: Path) -> None:
    p = tmp_path / "agent.yaml"
    p.write_text(HEAD + "  ecc:\n    base_url: http://sap:8000\n    user: RFC\n    password_secret: pw\n",
                 encoding="utf-8")
    ecc = load_agent_config(p).systems["ecc"]
    assert (ecc.type, ecc.password_secret, ecc.allow.functions) == ("sap_ecc", "pw", [])
    assert ecc.model_dump()["transport"] == "soap_rfc"  # a field of that type's own model


def test_unknown_type_lists_the_registered_on_prem_types(tmp_path: Path) -> None:
    assert problems(tmp_path, "  x:\n    type: sap_bq\n    base_url: http://x\n") == [
        "systems.x.type: expected one of 'sap_b1', 'sap_ecc', got 'sap_bq'"]


def test_a_key_of_another_type_is_refused_with_its_path(tmp_path: Path) -> None:
    got = problems(tmp_path, "  b1:\n    type: sap_b1\n    base_url: https://b1:50000\n    company_db: SBO\n"
                             "    user: manager\n    password_secret: pw\n    transport: pyrfc\n")
    assert got == ["systems.b1.transport: Extra inputs are not permitted"]


def test_each_type_checks_its_own_fields(tmp_path: Path) -> None:
    got = problems(tmp_path, "  b1:\n    type: sap_b1\n    base_url: https://b1:50000\n    user: m\n"
                             "    password_secret: pw\n  ecc:\n    base_url: http://sap\n    user: U\n"
                             "    password_secret: p\n    transport: rfc\n")
    assert got == ["systems.b1.company_db: Field required",
                   "systems.ecc.transport: Input should be 'soap_rfc' or 'pyrfc'"]
