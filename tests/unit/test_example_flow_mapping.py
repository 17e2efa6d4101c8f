"""The example flow's mapping function (pure: no database, no HTTP) and its configuration check,
with the example installed through the registry and the flows package path only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ml_connector.config import ConfigError, parse_config
from ml_connector.core.ledger import Desired, Parked
from tests.example_system.flows.example_catalog import item_to_record
from tests.example_system.launch import install, uninstall


def _mapped(table: str, value: str) -> str | None:
    return {("groups", "tools"): "Hardware"}.get((table, value))


def test_an_item_becomes_a_record_keyed_by_its_external_id() -> None:
    got = item_to_record("7", {"id": 7, "name": "  blue   widget ", "seq": 3}, mapped=_mapped)
    assert got == Desired("7", {"external_id": "item-7", "title": "Blue widget"}, active=True)
    assert item_to_record("8", {"name": ""}, mapped=_mapped, prefix="x-") == \
        Desired("8", {"external_id": "x-8", "title": "Item 8"}, active=True)


def test_a_retired_item_deactivates_its_record() -> None:
    got = item_to_record("7", {"name": "old", "retired": True}, mapped=_mapped)
    assert isinstance(got, Desired) and got.active is False


def test_a_group_maps_through_the_groups_table_or_parks_the_item() -> None:
    ok = item_to_record("1", {"name": "saw", "group": "tools"}, mapped=_mapped)
    assert isinstance(ok, Desired) and ok.payload["category"] == "Hardware"
    item = {"name": "pear", "group": "fruit"}
    parked = item_to_record("2", item, mapped=_mapped)
    assert parked == Parked("2", "groups:fruit", payload=item)  # the SOURCE record, mapped again later


CONFIG = """\
connections:
  shop: {{type: example, base_url: "http://127.0.0.1:1", api_key_secret: k}}
flows:
  f:
    pair: example_catalog
    source: shop
    target: shop
    streams: [{stream}]
"""


@pytest.fixture
def installed() -> Iterator[None]:
    install()
    try:
        yield
    finally:
        uninstall()


def test_the_configuration_finds_the_example_pair_and_checks_its_streams(installed: None) -> None:
    assert parse_config(CONFIG.format(stream="items")).flows["f"].pair == "example_catalog"
    with pytest.raises(ConfigError) as ei:
        parse_config(CONFIG.format(stream="itemz"))
    assert ei.value.problems == ["ml-connector.yaml:8: flows.f.streams[0]: flow pair 'example_catalog' has no "
                                 "stream 'itemz'; did you mean 'items'? (streams: items)"]


def test_without_installing_the_pair_is_unknown() -> None:
    with pytest.raises(ConfigError) as ei:
        parse_config(CONFIG.format(stream="items"))
    assert any("no flow module named 'example_catalog'" in p for p in ei.value.problems), ei.value.problems


def test_a_system_registered_after_the_config_module_is_imported_is_accepted_by_the_first_parse() -> None:
    """In a fresh process (the order of other tests cannot hide it): import config, register, parse."""
    import subprocess
    import sys

    from tests.example_system.launch import ROOT

    code = ("import ml_connector.config as c\n"
            "from tests.example_system.launch import install\n"
            "install()\n"
            f"print(c.parse_config({CONFIG.format(stream='items')!r}).connections['shop'].type)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={"PYTHONPATH": f"{ROOT}:{ROOT / 'src'}", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0 and proc.stdout.strip() == "example", proc.stderr
