"""Shared fixtures for the scale-out tests: a fresh database on the test Postgres server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest

PG = os.environ.get("MLC_TEST_PG_URL")


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
