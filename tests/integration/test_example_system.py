"""A system added through the registry only (tests/example_system): configuration, sandbox, CLI port
option, runtime connection and ping all find it, with no change anywhere else."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ml_connector.config import ConfigError, load_config, parse_config
from ml_connector.core import registry
from ml_connector.core.runtime import Runtime
from ml_connector.sandbox import start_sandboxes
from tests.example_system import DEMO_KEY, ENTRY, ExampleClient, ExampleConnection, ExampleState
from tests.support.installed import IN_TREE, one_of

CONFIG = """\
engine:
  data_dir: ./data
connections:
  ex:
    type: example
    base_url: {url}
    api_key_secret: example_api_key
"""


@pytest.fixture
def example_registered() -> Iterator[None]:
    assert registry.find("example") is None
    registry.register(ENTRY)
    try:
        yield
    finally:
        registry.unregister("example")


def test_without_registration_the_type_is_unknown() -> None:
    with pytest.raises(ConfigError) as ei:
        parse_config(CONFIG.format(url="http://127.0.0.1:1"))
    assert ei.value.problems == ["ml-connector.yaml:5: connections.ex.type: expected one of "
                                 f"{one_of(IN_TREE)}, got 'example'"]


def test_config_accepts_the_registered_type_and_checks_its_settings(example_registered: None) -> None:
    cfg = parse_config(CONFIG.format(url="http://127.0.0.1:1"))
    conn = cfg.connections["ex"]
    assert isinstance(conn, ExampleConnection) and conn.api_key_secret == "example_api_key"
    with pytest.raises(ConfigError) as ei:
        parse_config(CONFIG.format(url="http://127.0.0.1:1") + "    timout: 5s\n")
    assert ei.value.problems == ["ml-connector.yaml:8: connections.ex.timout: unknown key 'timout'; "
                                 "did you mean 'timeout'?"]
    with pytest.raises(ConfigError) as ei:
        parse_config(CONFIG.format(url="http://127.0.0.1:1").replace("type: example", "type: netsuite"))
    assert f"expected one of {one_of([*IN_TREE, 'example'])}, got 'netsuite'" in ei.value.problems[0]


def test_sandbox_serves_it_and_keeps_its_state(example_registered: None, tmp_path: Path) -> None:
    from ml_connector.cli import _sandbox_ports

    assert _sandbox_ports(["example=0"])["example"] == 0
    assert _sandbox_ports([])["example"] == 8090  # the entry's default port
    state_dir = tmp_path / "sandbox"
    handles = start_sandboxes(systems=("example",), vendors=3, state_dir=state_dir)
    try:
        h = handles["example"]
        assert set(handles) == {"example"}
        assert h.info == {"base_url": h.url, "api_key": DEMO_KEY, "items": 3}
        got = httpx.get(f"{h.url}/items", headers={"X-Api-Key": DEMO_KEY}, timeout=10).json()["items"]
        assert [i["id"] for i in got] == [1, 2, 3]
        h.state.items.append({"id": 99, "name": "added"})
    finally:
        for h in handles.values():
            h.stop()
    again = start_sandboxes(systems=("example",), vendors=3, state_dir=state_dir)
    try:
        assert [i["id"] for i in again["example"].state.items] == [1, 2, 3, 99]  # restored, not re-seeded
    finally:
        for h in again.values():
            h.stop()


def test_runtime_connects_and_pings_it(example_registered: None, tmp_path: Path) -> None:
    handles = start_sandboxes(systems=("example",), vendors=2)
    try:
        path = tmp_path / "ml-connector.yaml"
        path.write_text(textwrap.dedent(CONFIG.format(url=handles["example"].url)), encoding="utf-8")
        rt = Runtime(load_config(path), path)
        try:
            rt.vault.set("example_api_key", DEMO_KEY)
            ok, detail = rt.ping_connection("ex")
            assert ok and detail.startswith("authenticated; GET /ping in "), detail
            assert [i["name"] for i in rt.connection("ex").items()] == ["item 1", "item 2"]
            client = rt.connection("ex", ExampleClient)  # typed and checked
            assert client is rt.connection("ex")
            with pytest.raises(TypeError, match="connection 'ex' is a ExampleClient, not a ExampleState"):
                rt.connection("ex", ExampleState)
            rt.vault.set("example_api_key", "wrong")
            rt._connections.clear()
            ok, detail = rt.ping_connection("ex")
            assert not ok and "401" in detail
        finally:
            rt.close()
    finally:
        for h in handles.values():
            h.stop()


@pytest.mark.parametrize("spec, why", [("example", "expected NAME=PORT"), ("example=x", "expected NAME=PORT"),
                                       ("example=70000", "expected NAME=PORT"), ("nope=1", "no sandbox named 'nope'")])
def test_sandbox_port_option_refuses_what_names_no_registered_emulator(
        example_registered: None, spec: str, why: str, capsys: pytest.CaptureFixture[str]) -> None:
    import typer

    from ml_connector.cli import _sandbox_ports

    with pytest.raises(typer.Exit) as ei:
        _sandbox_ports([spec])
    assert ei.value.exit_code == 2
    err = capsys.readouterr().err
    assert why in err and "example" in err, err
