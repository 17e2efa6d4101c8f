from __future__ import annotations

import itertools
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ml_connector.config import (
    AppConfig,
    ConfigError,
    Schedule,
    example_config,
    load_config,
    parse_config,
    parse_duration,
)
from tests.support.config_files import errors_of, replace, write
from tests.support.installed import IN_TREE, PAIRS, one_of

GOOD = """\
engine:
  data_dir: ./state
connections:
  sap_ecc:
    type: sap_ecc
    base_url: http://127.0.0.1:8010
    client: "100"
    auth:
      username: RFC_USER
      password_secret: sap_ecc_password
  ramp:
    type: ramp
    base_url: http://127.0.0.1:8020
    auth:
      client_id: ramp_demo_client
      client_secret_secret: ramp_client_secret
flows:
  vendors_to_ramp:
    pair: sap_ecc_ramp
    source: sap_ecc
    target: ramp
    streams: [vendors]
    schedule: {interval: 7d}
"""


def test_good_config_loads_with_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLC_DATABASE_URL", raising=False)
    cfg = load_config(write(tmp_path, GOOD))
    sap = cfg.connections["sap_ecc"]
    assert sap.type == "sap_ecc"
    assert sap.client == "100" and sap.language == "EN" and sap.via == "agent"
    assert sap.limits.max_concurrent == 8 and sap.limits.calls_per_second == 20
    assert sap.timeout == 60
    assert cfg.server.port == 8080 and cfg.server.host == "127.0.0.1"
    assert cfg.engine.queue_polling_interval == 0.2
    flow = cfg.flows["vendors_to_ramp"]
    assert flow.schedule is not None and flow.schedule.seconds == 7 * 86400
    assert flow.options == {} and flow.mappings == {}
    assert cfg.data_dir_resolved() == (tmp_path / "state").resolve()
    assert cfg.database_url_resolved() == f"sqlite:///{(tmp_path / 'state').resolve()}/ml-connector.sqlite"
    assert cfg.path == (tmp_path / "ml-connector.yaml").resolve()


def test_directory_path_means_the_file_inside(tmp_path: Path) -> None:
    write(tmp_path, GOOD)
    assert "sap_ecc" in load_config(tmp_path).connections


def test_env_overrides_database_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLC_DATABASE_URL", "postgresql://mlc@db:5432/mlc")
    cfg = load_config(write(tmp_path, GOOD.replace("  data_dir: ./state\n", "  database_url: sqlite:///x.db\n")))
    assert cfg.engine.database_url == "postgresql://mlc@db:5432/mlc"
    assert cfg.database_url_resolved() == "postgresql://mlc@db:5432/mlc"


def test_relative_sqlite_url_is_relative_to_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLC_DATABASE_URL", raising=False)
    cfg = load_config(write(tmp_path, replace(GOOD, "  data_dir: ./state\n", "  database_url: sqlite:///db/x.db\n")))
    assert cfg.database_url_resolved() == f"sqlite:///{(tmp_path / 'db' / 'x.db').resolve()}"


def test_missing_file_says_run_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ml-connector init"):
        load_config(tmp_path / "nope.yaml")


def test_wrong_type_names_line_field_and_expectation(tmp_path: Path) -> None:
    text = replace(GOOD, "engine:\n", "server:\n  port: eighty\nengine:\n")
    errs = errors_of(tmp_path, text)
    assert len(errs) == 1
    assert errs[0].endswith(":2: server.port: expected a whole number, got 'eighty'")


def test_unknown_key_suggests(tmp_path: Path) -> None:
    text = replace(GOOD, "    base_url: http://127.0.0.1:8020\n", "    base_ulr: http://127.0.0.1:8020\n")
    errs = errors_of(tmp_path, text)
    assert len(errs) == 1
    assert ":13: connections.ramp.base_ulr: unknown key 'base_ulr'; did you mean 'base_url'?" in errs[0]


def test_unknown_key_in_sap_connection_uses_its_type(tmp_path: Path) -> None:
    text = replace(GOOD, '    client: "100"\n', '    client: "100"\n    langauge: DE\n')
    errs = errors_of(tmp_path, text)
    expected = "connections.sap_ecc.langauge: unknown key 'langauge'; did you mean 'language'?"
    assert any(expected in e for e in errs), errs


def test_bad_duration(tmp_path: Path) -> None:
    errs = errors_of(tmp_path, replace(GOOD, "{interval: 7d}", "{interval: 7 days}"))
    assert errs == [
        f"{tmp_path / 'ml-connector.yaml'}:23: flows.vendors_to_ramp.schedule.interval: "
        "expected a duration like 30s, 15m, 1h or 7d, got '7 days'"
    ]


def test_bad_cron(tmp_path: Path) -> None:
    errs = errors_of(tmp_path, replace(GOOD, "{interval: 7d}", '{cron: "0 25 * * *"}'))
    assert len(errs) == 1
    assert ":23: flows.vendors_to_ramp.schedule.cron: expected a cron expression" in errs[0]
    assert "'0 25 * * *'" in errs[0]


def test_both_interval_and_cron(tmp_path: Path) -> None:
    text = replace(GOOD, "    schedule: {interval: 7d}\n",
                   "    schedule:\n      interval: 7d\n      cron: '0 3 * * 1'\n")
    errs = errors_of(tmp_path, text)
    assert errs == [f"{tmp_path / 'ml-connector.yaml'}:23: flows.vendors_to_ramp.schedule: "
                    "give exactly one of 'interval' or 'cron'"]


def test_neither_interval_nor_cron(tmp_path: Path) -> None:
    errs = errors_of(tmp_path, replace(GOOD, "{interval: 7d}", "{}"))
    assert "give exactly one of 'interval' or 'cron'" in errs[0]


def test_secret_value_inline_is_rejected_without_echoing_it(tmp_path: Path) -> None:
    text = replace(GOOD, "      password_secret: sap_ecc_password\n", "      password: Hunter2-Secret\n")
    errs = errors_of(tmp_path, text)
    joined = "\n".join(errs)
    assert "Hunter2-Secret" not in joined
    line = next(e for e in errs if "connections.sap_ecc.auth.password:" in e)
    assert ":10:" in line
    assert "password_secret: NAME" in line and "ml-connector secrets set NAME" in line
    # the now-missing password_secret is reported too
    assert any("connections.sap_ecc.auth.password_secret: required field is missing" in e for e in errs)


def test_secret_value_inline_in_options(tmp_path: Path) -> None:
    text = replace(GOOD, "    schedule: {interval: 7d}\n",
                   "    schedule: {interval: 7d}\n    options: {token: abcdef}\n")
    errs = errors_of(tmp_path, text)
    assert len(errs) == 1 and "flows.vendors_to_ramp.options.token" in errs[0] and "abcdef" not in errs[0]


def test_secret_name_is_validated(tmp_path: Path) -> None:
    text = replace(GOOD, "client_secret_secret: ramp_client_secret", "client_secret_secret: 'p@ss word!'")
    errs = errors_of(tmp_path, text)
    assert len(errs) == 1
    assert "connections.ramp.auth.client_secret_secret: expected the NAME of a secret" in errs[0]
    assert "p@ss word!" not in errs[0]


def test_missing_connection_referenced_by_flow(tmp_path: Path) -> None:
    errs = errors_of(tmp_path, replace(GOOD, "    target: ramp\n", "    target: rampp\n"))
    assert errs == [f"{tmp_path / 'ml-connector.yaml'}:21: flows.vendors_to_ramp.target: no connection "
                    "named 'rampp'; did you mean 'ramp'? (connections: 'sap_ecc', 'ramp')"]


def test_reference_errors_reported_with_other_errors(tmp_path: Path) -> None:
    text = replace(GOOD, "    target: ramp\n", "    target: nothere\n")
    text = replace(text, "{interval: 7d}", "{interval: x}")
    errs = errors_of(tmp_path, text)
    assert len(errs) == 2
    assert "flows.vendors_to_ramp.target: no connection named 'nothere'" in errs[0]
    assert "flows.vendors_to_ramp.schedule.interval" in errs[1]


def test_unknown_connection_type(tmp_path: Path) -> None:
    errs = errors_of(tmp_path, replace(GOOD, "    type: ramp\n", "    type: rampp\n"))
    assert len(errs) == 1
    assert f":12: connections.ramp.type: expected one of {one_of(IN_TREE)}, got 'rampp'" in errs[0]


def test_sap_client_must_be_three_digits(tmp_path: Path) -> None:
    errs = errors_of(tmp_path, replace(GOOD, 'client: "100"', "client: 10"))
    assert ":7: connections.sap_ecc.client: expected the SAP client as 3 digits" in errs[0]


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    text = replace(GOOD, "    streams: [vendors]\n", "    streams: [vendors\n")
    errs = errors_of(tmp_path, text)
    assert len(errs) == 1
    assert "YAML syntax error" in errs[0]
    assert "flow sequence started on line 22" in errs[0]
    assert errs[0].startswith(f"{tmp_path / 'ml-connector.yaml'}:23:"), errs


def test_duplicate_key_is_an_error(tmp_path: Path) -> None:
    errs = errors_of(tmp_path, GOOD + "server:\n  port: 1\nserver:\n  port: 2\n")
    assert any(":26: server: duplicate key" in e for e in errs), errs


def test_several_problems_one_line_each_sorted(tmp_path: Path) -> None:
    text = replace(GOOD, "  data_dir: ./state\n", "  data_dirr: ./state\n")
    text = replace(text, "{interval: 7d}", "{cron: x}")
    errs = errors_of(tmp_path, text)
    assert len(errs) == 2
    assert ":2: engine.data_dirr: unknown key 'data_dirr'; did you mean 'data_dir'?" in errs[0]
    assert ":23: flows.vendors_to_ramp.schedule.cron" in errs[1]


def test_top_level_must_be_mapping(tmp_path: Path) -> None:
    errs = errors_of(tmp_path, "- a\n- b\n")
    assert "expected a mapping" in errs[0]


def test_empty_file_is_refused(tmp_path: Path) -> None:
    # Issue 16 item 12: an empty file was accepted silently as "no flows".
    for text in ("", "# only a comment\n"):
        errs = errors_of(tmp_path, text)
        assert len(errs) == 1 and ":1: the file is empty" in errs[0] and "ml-connector init" in errs[0]


def test_example_config_round_trips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLC_DATABASE_URL", raising=False)
    text = example_config("http://127.0.0.1:8010", "http://127.0.0.1:8020")
    assert "ml-connector secrets set" in text
    assert "#" in text
    p = tmp_path / "ml-connector.yaml"
    p.write_text(text, encoding="utf-8")
    cfg = load_config(p)
    sap = cfg.connections["sap_ecc"]
    ramp = cfg.connections["ramp"]
    assert sap.base_url == "http://127.0.0.1:8010"
    assert ramp.base_url == "http://127.0.0.1:8020"
    assert sap.type == "sap_ecc" and sap.auth.password_secret == "sap_ecc_password"
    assert ramp.type == "ramp" and ramp.auth.client_secret_secret == "ramp_client_secret"
    flow = cfg.flows["vendors_to_ramp"]
    assert (flow.pair, flow.source, flow.target) == ("sap_ecc_ramp", "sap_ecc", "ramp")
    assert flow.streams == ["vendors", "gl_accounts", "cost_centers", "company_codes", "plants", "departments"]
    assert flow.options == {"company_codes": ["1000", "2000", "3000"], "page_size": 5000}
    assert cfg.database_url_resolved().endswith("/data/ml-connector.sqlite")
    # the parsed model dumps and re-validates to the same thing
    assert AppConfig.model_validate(cfg.model_dump()).model_dump() == cfg.model_dump()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("1h", 3600), ("7d", 604800), ("1h30m", 5400), ("500ms", 0.5),
     ("2w", 1209600), (90, 90), ("45", 45), (" 1H ", 3600)],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["7 days", "", "h", "1x", "-5s", "0s", "1.5.2h", "s30"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("interval", "cron"),
    [("30s", "*/30 * * * * *"), ("1s", "*/1 * * * * *"), ("15m", "0 */15 * * * *"), ("1h", "0 0 */1 * * *"),
     ("6h", "0 0 */6 * * *"), ("1d", "0 0 0 * * *"), ("7d", None), ("90s", None), ("45m", None), ("5h", None),
     ("1.5s", None)],
)
def test_interval_as_cron(interval: str, cron: str | None) -> None:
    assert Schedule.model_validate({"interval": interval}).as_cron() == cron


def test_cron_as_cron() -> None:
    assert Schedule.model_validate({"cron": "0 3 * * 1"}).as_cron() == "0 0 3 * * 1"
    assert Schedule.model_validate({"cron": "*/10 * * * * *"}).as_cron() == "*/10 * * * * *"
    assert Schedule.model_validate({"cron": "0 3 * * 1"}).seconds is None


@given(st.sampled_from([1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200,
                        10800, 14400, 21600, 28800, 43200, 86400]))
def test_interval_cron_fires_every_interval(seconds: int) -> None:
    from datetime import datetime

    from croniter import croniter

    expr = Schedule.model_validate({"interval": seconds}).as_cron()
    assert expr is not None
    it = croniter(expr, datetime(2026, 1, 1, 0, 0, 0), second_at_beginning=True)
    times = [it.get_next(datetime) for _ in range(4)]
    gaps = {(b - a).total_seconds() for a, b in itertools.pairwise(times)}
    assert gaps == {float(seconds)}


def test_parse_config_without_file() -> None:
    with pytest.raises(ConfigError) as ei:
        parse_config("server: {port: 0}\n", filename="inline.yaml")
    assert ei.value.problems == ["inline.yaml:1: server.port: expected a value >= 1, got 0"]


def test_yaml_boolean_for_text_field_says_quote_it(tmp_path: Path) -> None:
    errs = errors_of(tmp_path, replace(GOOD, '    client: "100"\n', '    client: "100"\n    language: NO\n'))
    assert len(errs) == 1
    assert ":8: connections.sap_ecc.language: expected text, got the YAML boolean false" in errs[0]
    assert "quotes" in errs[0]


def test_unknown_key_in_optional_nested_model(tmp_path: Path) -> None:
    text = replace(GOOD, "      client_secret_secret: ramp_client_secret\n",
                   "      client_secret_secret: ramp_client_secret\n    limits: {requets: 5, period: 1s}\n")
    errs = errors_of(tmp_path, text)
    assert any("connections.ramp.limits.requets: unknown key 'requets'; did you mean 'requests'?" in e
               for e in errs), errs


def test_cron_schedule_keeps_its_time_zone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from ml_connector.core.engine import schedule_entries

    monkeypatch.delenv("MLC_DATABASE_URL", raising=False)
    cfg = load_config(write(tmp_path, replace(GOOD, "{interval: 7d}",
                                              "{cron: '0 6 * * 1', timezone: Europe/Berlin}")))
    (entry,) = schedule_entries(SimpleNamespace(config=cfg))  # type: ignore[arg-type]
    assert entry["schedule"] == "0 0 6 * * 1" and entry["cron_timezone"] == "Europe/Berlin"
    cfg = load_config(write(tmp_path, GOOD))
    (entry,) = schedule_entries(SimpleNamespace(config=cfg))  # type: ignore[arg-type]
    assert "cron_timezone" not in entry and entry["context"]["interval"] == 7 * 86400


ALERTS_GOOD = """\
alerts:
  webhooks:
    - {url: "https://alerts.example.com/hook", secret_header: {name: X-Alert-Token, value_secret: alert_token}}
    - {url_secret: slack_webhook_url, format: slack}
  events: [agent.offline, run.failed]
  interval: 30m
"""


def test_alerts_section_loads_with_defaults() -> None:
    cfg = parse_config(ALERTS_GOOD)
    assert cfg.alerts is not None
    assert [w.format for w in cfg.alerts.webhooks] == ["json", "slack"]
    assert cfg.alerts.webhooks[0].secret_header is not None
    assert cfg.alerts.webhooks[0].secret_header.value_secret == "alert_token"
    assert cfg.alerts.events == ["agent.offline", "run.failed"]
    assert (cfg.alerts.interval, cfg.alerts.timeout, cfg.alerts.attempts) == (1800.0, 5.0, 3)
    assert parse_config("engine: {}\n").alerts is None


def test_alerts_errors_name_line_and_field() -> None:
    bad = textwrap.dedent("""\
        alerts:
          webhooks:
            - {url: "ftp://x", format: teams}
            - {format: json}
            - {url: "https://x", secret_header: {name: X-Token, secret: s3cr3t-value}}
          events: [agent.gone]
          interval: never
        """)
    with pytest.raises(ConfigError) as ei:
        parse_config(bad)
    text = str(ei.value)
    assert "ml-connector.yaml:3: alerts.webhooks[0].url: expected an http(s) URL like https://" in text
    assert "ml-connector.yaml:3: alerts.webhooks[0].format: expected 'json' or 'slack', got 'teams'" in text
    assert "ml-connector.yaml:4: alerts.webhooks[1]: give exactly one of 'url' or 'url_secret'" in text
    assert "alerts.webhooks[2].secret_header.secret: 'secret' must not hold a secret value" in text
    assert "s3cr3t-value" not in text
    from ml_connector.core.alerts import ALERT_EVENTS

    assert f"ml-connector.yaml:6: alerts.events[0]: expected one of {', '.join(ALERT_EVENTS)}, got 'agent.gone'" in text
    assert "ml-connector.yaml:7: alerts.interval: expected a duration" in text
    with pytest.raises(ConfigError, match=r"alerts: give at least one receiver: 'webhooks' or 'email'"):
        parse_config("alerts: {webhooks: []}\n")
    with pytest.raises(ConfigError, match=r"alerts.email: give both 'username' and 'password_secret', or neither"):
        parse_config("alerts: {email: {host: smtp.example.com, sender: a@example.com, to: [b@example.com], "
                     "username: u}}\n")


# --------------------------------------------------------------------------- flow pairs and streams


def test_unknown_flow_pair_is_rejected_at_load_with_line_and_known_pairs(tmp_path: Path) -> None:
    errs = errors_of(tmp_path, GOOD.replace("pair: sap_ecc_ramp", "pair: sap_ecc_rmap"))
    assert len(errs) == 1
    assert errs[0].endswith(":19: flows.vendors_to_ramp.pair: no flow module named 'sap_ecc_rmap'; did you mean "
                            f"'sap_ecc_ramp'? (pairs: {one_of(PAIRS)}; a pair is a module "
                            "ml_connector.flows.<pair>)")


def test_unknown_flow_pair_is_reported_with_the_other_problems(tmp_path: Path) -> None:
    text = GOOD.replace("pair: sap_ecc_ramp", "pair: procore_ramp").replace('client: "100"', 'client: "1"')
    errs = errors_of(tmp_path, text)
    assert any(":19: flows.vendors_to_ramp.pair: no flow module named 'procore_ramp'" in e for e in errs)
    assert any(":7: connections.sap_ecc.client: expected the SAP client as 3 digits" in e for e in errs)


@pytest.fixture
def flows_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An extra directory on the flows package's path (as an installed flow module would be)."""
    import ml_connector.flows

    d = tmp_path / "more_flows"
    d.mkdir()
    monkeypatch.setattr(ml_connector.flows, "__path__", [*ml_connector.flows.__path__, str(d)])
    return d


def test_streams_of_a_flow_that_declares_them_are_checked(tmp_path: Path, flows_dir: Path) -> None:
    (flows_dir / "zz_example_pair.py").write_text('STREAMS = ("vendors", "bills")\n', encoding="utf-8")
    text = GOOD.replace("pair: sap_ecc_ramp", "pair: zz_example_pair").replace(
        "streams: [vendors]", "streams: [vendors, bill]")
    errs = errors_of(tmp_path, text)
    assert len(errs) == 1
    assert errs[0].endswith(":22: flows.vendors_to_ramp.streams[1]: flow pair 'zz_example_pair' has no stream "
                            "'bill'; did you mean 'bills'? (streams: vendors, bills)")
    ok = write(tmp_path, GOOD.replace("pair: sap_ecc_ramp", "pair: zz_example_pair"))
    assert load_config(ok).flows["vendors_to_ramp"].pair == "zz_example_pair"


def test_streams_are_not_checked_when_the_flow_declares_none(tmp_path: Path, flows_dir: Path) -> None:
    (flows_dir / "zz_silent_pair.py").write_text("FLOW = None\n", encoding="utf-8")
    text = GOOD.replace("pair: sap_ecc_ramp", "pair: zz_silent_pair").replace("streams: [vendors]",
                                                                               "streams: [anything]")
    assert load_config(write(tmp_path, text)).flows["vendors_to_ramp"].streams == ["anything"]


def test_unknown_stream_of_the_ecc_ramp_flow_is_rejected(tmp_path: Path) -> None:
    errs = errors_of(tmp_path, replace(GOOD, "streams: [vendors]", "streams: [vendors, vendorz]"))
    assert len(errs) == 1
    assert ":22: flows.vendors_to_ramp.streams[1]: flow pair 'sap_ecc_ramp' has no stream 'vendorz'" in errs[0]
    assert "did you mean 'vendors'" in errs[0]
