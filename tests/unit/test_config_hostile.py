"""Issue 16 items 12 and 13: configuration files that used to pass or hang are refused at load with
the file and the line."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ml_connector.config import MAX_EXPANDED_NODES, ConfigError, load_config, parse_config


def alias_bomb(levels: int, fan: int = 9) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels + 1):
        refs = ", ".join(f"*a{i - 1}" for _ in range(fan))
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("levels", [6, 8, 30])
def test_alias_bomb_is_refused_quickly(levels: int) -> None:
    started = time.monotonic()
    with pytest.raises(ConfigError) as ei:
        parse_config(alias_bomb(levels), filename="bomb.yaml")
    # Refused while counting, long before any walk over the expanded data (8 levels never finished).
    assert time.monotonic() - started < 5
    (problem,) = ei.value.problems
    assert problem.startswith("bomb.yaml:") and f"more than {MAX_EXPANDED_NODES:,} nodes" in problem


def test_a_few_aliases_are_still_fine() -> None:
    text = """\
connections:
  sap_ecc:
    type: sap_ecc
    base_url: http://127.0.0.1:8010
    client: "100"
    auth: {username: RFC_USER, password_secret: sap_ecc_password}
  ramp:
    type: ramp
    base_url: http://127.0.0.1:8020
    auth: {client_id: ramp_demo_client, client_secret_secret: ramp_client_secret}
flows:
  vendors_to_ramp:
    pair: sap_ecc_ramp
    source: sap_ecc
    target: ramp
    streams: [vendors]
    schedule: &weekly {interval: 7d}
  chart_to_ramp:
    pair: sap_ecc_ramp
    source: sap_ecc
    target: ramp
    streams: [gl_accounts]
    schedule: *weekly
"""
    cfg = parse_config(text, filename="f.yaml")
    assert cfg.flows["chart_to_ramp"].schedule == cfg.flows["vendors_to_ramp"].schedule


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    p = tmp_path / "ml-connector.yaml"
    p.write_bytes(b"engine:\n  data_dir: ./state\nconnections: {}\n# caf\xe9 au lait\nflows: {}\n")
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    (problem,) = ei.value.problems
    assert problem.startswith(f"{p}:4: not valid UTF-8") and "0xe9" in problem and "column 6" in problem


CONNECTED = """\
connections:
  sap_ecc:
    type: sap_ecc
    base_url: http://127.0.0.1:8010
    client: "100"
    auth: {username: RFC_USER, password_secret: sap_ecc_password}
  ramp:
    type: ramp
    base_url: http://127.0.0.1:8020
    auth: {client_id: ramp_demo_client, client_secret_secret: ramp_client_secret}
flows:
  vendors_to_ramp:
    pair: sap_ecc_ramp
    source: sap_ecc
    target: ramp
    streams: [vendors]
    options:
      company_codes: ["1000", "2000"]
      page_size: 500
"""


@pytest.mark.parametrize("url", ["htp:/sap-host", "not a url", "http://", "sap-host:8000", "http://host:99999"])
def test_a_base_url_that_is_no_http_url_is_refused_at_load(url: str) -> None:
    """Issue 16 §12: `base_url: htp:/sap-host` passed validation and failed at the first call."""
    text = CONNECTED.replace("base_url: http://127.0.0.1:8010", f"base_url: {url}")
    with pytest.raises(ConfigError) as ei:
        parse_config(text, filename="c.yaml")
    assert ei.value.problems == [
        f"c.yaml:4: connections.sap_ecc.base_url: expected an http(s) URL like https://host:port, got {url!r}"]


def test_flow_options_are_validated_by_the_flow_modules_model() -> None:
    """Issue 16 §12: `options.company_codes: 1000` passed validation and failed later with a traceback."""
    text = CONNECTED.replace('company_codes: ["1000", "2000"]', "company_codes: 1000").replace(
        "page_size: 500", "page_sise: 500\n      deactivate_blocked: maybe")
    with pytest.raises(ConfigError) as ei:
        parse_config(text, filename="c.yaml")
    assert ei.value.problems == [
        "c.yaml:18: flows.vendors_to_ramp.options.company_codes: expected a list like [a, b], got 1000",
        "c.yaml:19: flows.vendors_to_ramp.options.page_sise: unknown option 'page_sise' for flow pair "
        "'sap_ecc_ramp'; did you mean 'page_size'?",
        "c.yaml:20: flows.vendors_to_ramp.options.deactivate_blocked: expected true or false, got 'maybe'"]


def test_valid_flow_options_load_and_reach_the_flow_unchanged() -> None:
    cfg = parse_config(CONNECTED, filename="c.yaml")
    assert cfg.flows["vendors_to_ramp"].options == {"company_codes": ["1000", "2000"], "page_size": 500}


def test_a_flow_module_without_an_options_model_takes_no_options(tmp_path: Path, monkeypatch) -> None:
    import ml_connector.flows

    (tmp_path / "bare_pair_16.py").write_text('STREAMS = ("vendors",)\n', encoding="utf-8")
    monkeypatch.setattr(ml_connector.flows, "__path__", [*ml_connector.flows.__path__, str(tmp_path)])
    text = CONNECTED.replace("pair: sap_ecc_ramp", "pair: bare_pair_16")
    with pytest.raises(ConfigError) as ei:
        parse_config(text, filename="c.yaml")
    assert ei.value.problems == [
        "c.yaml:18: flows.vendors_to_ramp.options.company_codes: flow pair 'bare_pair_16' takes no options",
        "c.yaml:19: flows.vendors_to_ramp.options.page_size: flow pair 'bare_pair_16' takes no options"]
    assert parse_config(text.split("    options:")[0], filename="c.yaml").flows["vendors_to_ramp"].options == {}



def test_a_flow_module_that_cannot_be_imported_is_reported_at_its_pair(tmp_path: Path, monkeypatch) -> None:
    import ml_connector.flows

    (tmp_path / "broken_pair_16.py").write_text('STREAMS = ("vendors",)\nimport no_such_module_16\n',
                                                encoding="utf-8")
    monkeypatch.setattr(ml_connector.flows, "__path__", [*ml_connector.flows.__path__, str(tmp_path)])
    with pytest.raises(ConfigError) as ei:
        parse_config(CONNECTED.replace("pair: sap_ecc_ramp", "pair: broken_pair_16"), filename="c.yaml")
    assert ei.value.problems == ["c.yaml:13: flows.vendors_to_ramp.pair: the flow module 'broken_pair_16' cannot "
                                 "be imported: No module named 'no_such_module_16'"]
