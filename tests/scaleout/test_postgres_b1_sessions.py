"""Scale-out: the Business One Service Layer session kept in the token store on Postgres (encrypted),
adopted by the next process instead of a new login."""

from __future__ import annotations

import psycopg
import pytest

from ml_connector.sandbox import start_sandboxes
from tests.scaleout.conftest import PG
from tests.support.b1 import b1_faults, b1_stats, session_run

pytestmark = [pytest.mark.scaleout,
              pytest.mark.skipif(not PG, reason="MLC_TEST_PG_URL not set (make test starts Postgres)")]


def test_b1_session_is_kept_encrypted_in_postgres_and_reused_by_the_next_process(tmp_path, pg_database):
    handles = start_sandboxes(systems=("sap_b1",))
    try:
        b1 = handles["sap_b1"]
        b1.state.set_config(login_seconds=0)
        data = str(tmp_path / "data")
        before = b1_stats(b1)["logins"]
        first = session_run(pg_database, data, b1)
        second = session_run(pg_database, data, b1)  # another process: the same session, no login
        assert first == second and first != "-"
        assert b1_stats(b1)["logins"] == before + 1
        with psycopg.connect(pg_database) as conn:
            rows = conn.execute("SELECT connection, ciphertext FROM mlc_tokens").fetchall()
        [(key, ciphertext)] = rows
        assert key.startswith("b1session:sap_b1:") and first.encode() not in bytes(ciphertext)
        # the server forgets it (restart): the next process logs in once and keeps the new session
        b1_faults(b1, expire_sessions=True)
        third = session_run(pg_database, data, b1)
        assert third not in (first, "-") and b1_stats(b1)["logins"] == before + 2
    finally:
        for h in handles.values():
            h.stop()
