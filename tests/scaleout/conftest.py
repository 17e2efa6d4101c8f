"""Shared fixtures for the scale-out tests: a fresh database on the test Postgres server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest

PG = os.environ.get("MLC_TEST_PG_URL")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # `make test` always starts Postgres: in CI a missing server is a failure, not a quiet skip.
    if os.environ.get("CI") and not PG and any("scaleout" in str(i.fspath) for i in items):
        raise pytest.UsageError("CI: MLC_TEST_PG_URL is not set, so the scale-out tests would be skipped; "
                                "run them through `make test`, which starts Postgres (scripts/postgres.sh)")


@pytest.fixture()
def pg_database() -> Iterator[str]:
    assert PG
    name = f"mlc_scaleout_{uuid.uuid4().hex[:8]}"
    admin = PG.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield PG.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
