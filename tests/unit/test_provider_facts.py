"""provider.yaml is schema-checked: every shipped file validates; a broken one says file and key."""

from __future__ import annotations

from importlib import resources
from typing import Any

import pytest
import yaml

from ml_connector.core.providers import (
    ProviderFacts,
    ProviderFactsError,
    fact,
    facts,
    model_for,
    validate,
)

SHIPPED = ["procore", "ramp", "sap_b1", "sap_ecc"]


def raw(name: str) -> dict[str, Any]:
    text = resources.files(f"ml_connector.systems.{name}").joinpath("provider.yaml").read_text(encoding="utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_provider_yaml_validates_against_its_system_model(name: str) -> None:
    f = facts(name)
    assert f.name == name
    model = model_for(name)
    assert model is not ProviderFacts and isinstance(f, model)  # the system's own sections are typed
    assert f.ping.calls or (f.ping.method and f.ping.path)


def test_typed_facts_the_code_reads() -> None:
    ramp = facts("ramp")
    assert ramp.auth.mode == "oauth2_client_credentials" and ramp.auth.refresh_margin == 86400
    assert ramp.need_rate_limit().limit == 200 and ramp.need_retry().retry_after_headers == ["Retry-After"]
    assert facts("sap_ecc").need_rate_limit().limit_range == (10, 50)
    assert fact("sap_b1", "retry", "max_retries") == 2


def broken(name: str, path: list[str], value: Any) -> dict[str, Any]:
    data = raw(name)
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


@pytest.mark.parametrize(("name", "path", "value", "expected"), [
    ("ramp", ["auth", "refresh_margin"], "a day", "systems/ramp/provider.yaml: auth.refresh_margin: Input should "
                                                  "be a valid number, unable to parse string as a number "
                                                  "(got 'a day')"),
    ("ramp", ["auth", "token_path"], KeyError, "systems/ramp/provider.yaml: auth: Value error, mode "
                                               "oauth2_client_credentials needs token_path"),
    ("ramp", ["rate_limit", "limt"], 200, "systems/ramp/provider.yaml: rate_limit.limt: unknown key"),
    ("ramp", ["retry", "jitter"], "some", "systems/ramp/provider.yaml: retry.jitter: "),
    ("ramp", ["paging", "max_page_size"], KeyError, "systems/ramp/provider.yaml: paging.max_page_size: "),
    ("sap_b1", ["session", "timeout_minutes"], -1, "systems/sap_b1/provider.yaml: session.timeout_minutes: "),
    ("sap_ecc", ["rate_limit", "limit"], 99, "limit 99 is outside limit_range [10, 50]"),
    ("sap_ecc", ["ping"], {}, "systems/sap_ecc/provider.yaml: ping: Value error, needs method and path, or calls"),
    ("sap_ecc", ["colour"], "blue", "systems/sap_ecc/provider.yaml: colour: unknown key"),
])
def test_a_broken_file_names_the_file_and_the_key(name: str, path: list[str], value: Any, expected: str) -> None:
    where = f"systems/{name}/provider.yaml"
    with pytest.raises(ProviderFactsError) as ei:
        validate(where, broken(name, path, value), model_for(name))
    assert expected in str(ei.value)


def test_not_a_mapping_and_unknown_system() -> None:
    with pytest.raises(ProviderFactsError, match=r"x\.yaml: expected a mapping"):
        validate("x.yaml", ["a"])
    with pytest.raises(ProviderFactsError, match=r"systems/nosuch/provider\.yaml: not found"):
        facts("nosuch")


def test_a_missing_fact_is_an_error_not_a_silent_default() -> None:
    with pytest.raises(ProviderFactsError, match=r"systems/ramp/provider\.yaml: rate_limit\.burst: missing"):
        fact("ramp", "rate_limit", "burst")
    assert fact("ramp", "rate_limit", "burst", default=None) is None  # optional only when the caller says so
