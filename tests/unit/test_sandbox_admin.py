"""Every emulator's admin routes (`/_sandbox/faults`, `/_sandbox/stats`, `/_sandbox/config`) come from one
router factory (core/sandbox_admin.py) and answer alike: bad input is a 400 naming what is wrong, a good
body answers the switches as they now stand."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from ml_connector.core import registry
from tests.support.installed import IN_TREE

EMULATED = [n for n in IN_TREE if registry.get(n).emulator is not None]


def _has_config(name: str) -> bool:
    emulator = registry.get(name).emulator
    assert emulator is not None
    return TestClient(emulator.create_app(emulator.new_state(0))).get("/_sandbox/config").status_code != 404


CONFIGURABLE = [n for n in EMULATED if _has_config(n)]


@pytest.fixture(scope="module", params=EMULATED)
def admin(request: pytest.FixtureRequest) -> TestClient:
    emulator = registry.get(request.param).emulator
    assert emulator is not None
    return TestClient(emulator.create_app(emulator.new_state(0)))


def test_every_in_tree_system_has_an_emulator() -> None:
    assert EMULATED == IN_TREE


def test_faults_read_and_stats(admin: TestClient) -> None:
    faults = admin.get("/_sandbox/faults")
    assert faults.status_code == 200 and isinstance(faults.json(), dict) and faults.json()
    stats = admin.get("/_sandbox/stats")
    assert stats.status_code == 200 and isinstance(stats.json(), dict)


@pytest.mark.parametrize("body", [b"[1, 2]", b"{not json", b'"latency"'])
def test_a_body_that_is_not_a_json_object_is_refused(admin: TestClient, body: bytes) -> None:
    answer = admin.post("/_sandbox/faults", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 400
    assert answer.json()["error"]


def test_an_unknown_switch_is_refused_by_name(admin: TestClient) -> None:
    answer = admin.post("/_sandbox/faults", json={"no_such_switch_xyz": 1})
    assert answer.status_code == 400
    assert "no_such_switch_xyz" in answer.json()["error"]


def test_an_empty_body_changes_nothing(admin: TestClient) -> None:
    before = admin.get("/_sandbox/faults").json()
    answer = admin.post("/_sandbox/faults", content=b"")
    assert answer.status_code == 200
    assert answer.json() == before == admin.get("/_sandbox/faults").json()


@pytest.mark.parametrize("name", CONFIGURABLE)
def test_config_where_the_emulator_has_one(name: str) -> None:
    emulator = registry.get(name).emulator
    assert emulator is not None
    admin = TestClient(emulator.create_app(emulator.new_state(0)))
    config = admin.get("/_sandbox/config")
    assert config.status_code == 200
    assert admin.post("/_sandbox/config", json={"no_such_setting_xyz": 1}).status_code == 400
    same = admin.post("/_sandbox/config", json={})
    assert same.status_code == 200 and same.json() == config.json()
