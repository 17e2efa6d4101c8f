"""Issue 10 item 6: a credential the provider refuses fails the run within seconds, with one clear
line (which connection, what the provider said), and the refusal is not retried."""

from __future__ import annotations

import sqlite3
import time

import pytest

from ml_connector.sandbox import start_sandboxes
from tests.support import make_env


@pytest.fixture()
def sandboxes():
    handles = start_sandboxes(vendors=50)
    yield handles
    for h in handles.values():
        h.stop()


def test_wrong_ramp_client_secret_fails_the_run_within_seconds(tmp_path, sandboxes):
    ramp = sandboxes["ramp"].state
    env = make_env(tmp_path, sandboxes["sap_ecc"].url, sandboxes["ramp"].url, ramp_secret="Wrong-Ramp-Secret-1")
    t0 = time.monotonic()
    proc = env.cli("sync", "vendors_to_ramp", "--stream", "vendors", check=False)
    elapsed = time.monotonic() - t0
    assert proc.returncode != 0
    assert elapsed < 25, elapsed  # the CLI's own start-up included; about 75 s without should_retry
    assert ramp.stats()["requests_by_path"]["/developer/v1/token"] == {"401": 1}  # asked once, never retried
    db = sqlite3.connect(tmp_path / "data" / "ml-connector.sqlite")
    rows = db.execute("select status, error from mlc_runs where stream = 'vendors'").fetchall()
    assert len(rows) == 1 and rows[0][0] == "failed", rows
    error = rows[0][1]
    assert "ramp: Ramp refused the credential (HTTP 401 invalid_client" in error, error
    assert "Wrong-Ramp-Secret-1" not in error + proc.stdout + proc.stderr


def test_token_events_are_audited_without_token_values(tmp_path, sandboxes):
    ramp = sandboxes["ramp"].state
    ramp.token_lifetime = 1.0  # born inside the refresh margin: every use refreshes
    env = make_env(tmp_path, sandboxes["sap_ecc"].url, sandboxes["ramp"].url, options={"page_size": 20})
    env.cli("sync", "vendors_to_ramp", "--stream", "vendors")
    db = sqlite3.connect(tmp_path / "data" / "ml-connector.sqlite")
    rows = db.execute("select event, outcome, target, detail from mlc_audit where event like 'token.%' "
                      "order by id").fetchall()
    events = [r[0] for r in rows]
    assert events[0] == "token.issued" and "token.refreshed" in events, events
    assert all(r[1] == "ok" and r[2] == "ramp" for r in rows)
    assert len(rows) == ramp.tokens_issued  # one row per token the provider issued, no more
    trail = repr(rows)
    assert not any(tok in trail for tok in ramp.tokens) and "ramp_tok_" not in trail
    assert '"connection": "ramp"' in rows[0][3] and '"grant": "client_credentials"' in rows[0][3]
