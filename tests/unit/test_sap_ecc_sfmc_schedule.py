"""The scheduled full comparison of the SAP ECC → Marketing Cloud flow (`options.full`): a DBOS
schedule of its own beside the flow's `schedule`, at night by default, validated at load."""

from __future__ import annotations

import pytest

from ml_connector.config import ConfigError, load_config
from ml_connector.core import engine
from ml_connector.core.runtime import Runtime
from tests.support.sfmc import sfmc_config

MC = {"auth_base": "http://127.0.0.1:9/", "client_id": "cid", "account_id": "1"}


def entries(tmp_path, options: str) -> dict[str, dict]:
    path = tmp_path / "ml-connector.yaml"
    path.write_text(sfmc_config("http://127.0.0.1:8", MC, options=options), encoding="utf-8")
    rt = Runtime(load_config(path), path)
    try:
        return {e["schedule_name"]: e for e in engine.schedule_entries(rt)}
    finally:
        rt.close()


def test_the_full_comparison_runs_at_night_by_default(tmp_path):
    got = entries(tmp_path, "      page_size: 1000\n")
    assert set(got) == {"mlc:customers_to_sfmc", "mlc:customers_to_sfmc:full"}
    full = got["mlc:customers_to_sfmc:full"]
    assert full["schedule"] == "0 0 2 * * *" and "cron_timezone" not in full
    assert full["context"] == {"flow": "customers_to_sfmc", "streams": ["customers", "hierarchy"],
                               "interval": None, "mode": "full"}
    assert got["mlc:customers_to_sfmc"]["context"].get("mode") is None  # the IDoc-driven runs stay incremental


def test_the_full_comparison_can_be_moved_narrowed_or_switched_off(tmp_path):
    got = entries(tmp_path, '      full: {cron: "30 1 * * 6", timezone: Europe/Berlin, streams: [customers]}\n')
    full = got["mlc:customers_to_sfmc:full"]
    assert (full["schedule"], full["cron_timezone"], full["context"]["streams"]) == \
        ("0 30 1 * * 6", "Europe/Berlin", ["customers"])
    assert set(entries(tmp_path, "      full: null\n")) == {"mlc:customers_to_sfmc"}


@pytest.mark.parametrize(("options", "field"), [
    ('      full: {cron: "at night"}\n', "full.cron"),
    ("      full: {streams: [customer]}\n", "full.streams"),
    ("      full: {cron: '0 2 * * *', at: 2}\n", "full.at"),
])
def test_a_bad_full_comparison_schedule_is_refused_at_load(tmp_path, options, field):
    path = tmp_path / "ml-connector.yaml"
    path.write_text(sfmc_config("http://127.0.0.1:8", MC, options=options), encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert field in str(exc.value)
