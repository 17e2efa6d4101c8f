"""A whole flow through the contracts only: the example system's source and target
(tests/example_system) and its flow module, run by the real CLI in a subprocess against the
example emulator on loopback. Nothing under src/ knows the example (docs/adding-a-system.md)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ml_connector.sandbox import SandboxHandle, start_sandboxes
from tests.example_system import DEMO_KEY, ExampleState
from tests.example_system.launch import cli, install, uninstall
from tests.support.env import summary as _summary

pytestmark = pytest.mark.smoke  # `make test-fast` runs it (this system's or flow's loopback smoke)

FLOW = "items_to_catalog"
CONFIG = """\
engine:
  data_dir: ./data
connections:
  shop:
    type: example
    base_url: {url}
    api_key_secret: example_api_key
  catalog:
    type: example
    base_url: {url}
    api_key_secret: example_api_key
flows:
  items_to_catalog:
    pair: example_catalog
    source: shop
    target: catalog
    streams: [items]
    options: {{page_size: 4}}
    mappings:
      groups: {{tools: Hardware}}
"""


@pytest.fixture
def sandbox() -> Iterator[SandboxHandle]:
    install()  # the sandbox starts the emulator through the registry in this process
    handles = start_sandboxes(systems=("example",), vendors=10)
    try:
        yield handles["example"]
    finally:
        for h in handles.values():
            h.stop()
        uninstall()


def _records(state: ExampleState) -> dict[str, list[dict[str, Any]]]:
    """Catalog records by external id (a list: a duplicate would show as two)."""
    out: dict[str, list[dict[str, Any]]] = {}
    with state.lock:
        for r in state.records.values():
            out.setdefault(str(r["external_id"]), []).append(dict(r))
    return out


def _entry(config: Path, source_key: str) -> tuple[str, int]:
    db = sqlite3.connect(config.parent / "data" / "ml-connector.sqlite")
    try:
        row = db.execute("select state, attempts from mlc_outbox where flow = ? and source_key = ? "
                         "order by id desc limit 1", (FLOW, source_key)).fetchone()
    finally:
        db.close()
    assert row is not None, source_key
    return str(row[0]), int(row[1])


def test_example_flow_syncs_once_updates_and_resolves_a_lost_answer_by_lookup(
        tmp_path: Path, sandbox: SandboxHandle) -> None:
    state: ExampleState = sandbox.state
    config = tmp_path / "ml-connector.yaml"
    config.write_text(CONFIG.format(url=sandbox.url), encoding="utf-8")
    cli(config, "secrets", "set", "example_api_key", "--stdin", input_=DEMO_KEY)

    # First run: every item becomes a record, read in pages of 4 (10 items: 3 pages).
    first = _summary(cli(config, "sync", FLOW).stdout)
    assert (first["read"], first["created"], first["failed"]) == (10, 10, 0)
    recs = _records(state)
    assert sorted(recs) == sorted(f"item-{i}" for i in range(1, 11))
    assert all(len(v) == 1 and v[0]["active"] for v in recs.values())
    assert recs["item-3"][0]["title"] == "Item 3"
    posts = state.record_posts

    # Nothing changed: the incremental run reads nothing, a full re-read writes nothing.
    again = _summary(cli(config, "sync", FLOW).stdout)
    assert again["read"] == 0 and again["created"] == again["updated"] == 0
    full = _summary(cli(config, "sync", FLOW, "--full").stdout)
    assert (full["read"], full["unchanged"]) == (10, 10)
    assert full["created"] == full["updated"] == full["deactivated"] == 0
    assert state.record_posts == posts

    # A change at the source: the next run reads only it and updates its record in place.
    state.change_item(4, name="  renamed   item ", group="tools")
    state.change_item(7, retired=True)
    inc = _summary(cli(config, "sync", FLOW).stdout)
    assert (inc["read"], inc["updated"], inc["deactivated"], inc["created"]) == (2, 1, 1, 0)
    recs = _records(state)
    assert recs["item-4"] == [{**recs["item-4"][0], "title": "Renamed item", "category": "Hardware"}]
    assert recs["item-7"][0]["active"] is False
    assert state.record_posts == posts  # updates are PATCHes: no new record

    # A create whose answer is lost: applied, then the connection drops. The engine retries the
    # step, the target's lookup finds the record by its external id: posted once, no duplicate.
    new_id = state.add_item("lost answer")
    state.drop_after_commit = 1
    lost = _summary(cli(config, "sync", FLOW).stdout)
    assert (lost["read"], lost["created"], lost["failed"]) == (1, 1, 0)
    assert state.drop_after_commit == 0, "the fault did not fire"
    assert state.record_posts == posts + 1  # one POST, applied once; never re-sent
    assert len(_records(state)[f"item-{new_id}"]) == 1
    assert _entry(config, str(new_id)) == ("posted", 1)  # one attempt; the lookup resolved it
