"""DbTokenStore: one fetch for many threads in many OS processes on one SQLite file."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from ml_connector.core.models import TokenRow
from ml_connector.core.token_store import DbTokenStore
from ml_connector.core.tokens import Token
from ml_connector.core.vault import MasterKey, Vault, known_secret_values
from tests.support import wait_until
from tests.support.tokens import WORKER, expired_token, token_store_setup

pytestmark = pytest.mark.usefixtures("no_master_key_env")

PG_URL = os.environ.get("MLC_TEST_PG_URL")


@pytest.mark.parametrize(
    "backend",
    ["sqlite", pytest.param("postgresql", marks=[
        pytest.mark.scaleout, pytest.mark.skipif(not PG_URL, reason="MLC_TEST_PG_URL not set")])],
)
def test_one_fetch_across_processes_and_threads(tmp_path: Path, backend: str) -> None:
    url, db, store = token_store_setup(tmp_path, PG_URL if backend == "postgresql" else None)
    key = f"ramp-{uuid.uuid4().hex[:12]}"  # a fresh key: a Postgres database is shared between runs
    # an expired token is stored (refresh_count = 1)
    store.refresh(key, 60, expired_token)
    assert store.refresh_count(key) == 1

    script = tmp_path / "worker.py"
    script.write_text(WORKER, encoding="utf-8")
    n_procs, n_threads = 3, 6
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("MLC_MASTER_KEY", None)
    procs = [
        subprocess.Popen([sys.executable, str(script), url, str(tmp_path), f"p{i}", str(n_threads), key],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for i in range(n_procs)
    ]
    try:
        def ready() -> bool:
            dead = [p.communicate() for p in procs if p.poll() is not None]
            assert not dead, dead
            return all((tmp_path / f"ready-p{i}").exists() for i in range(n_procs))

        wait_until(ready, timeout=60, interval=0.02, what="workers started")
        (tmp_path / "go").write_text("")
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
        assert "ERROR" not in out, out

    calls = (tmp_path / "fetch_calls.txt").read_text().splitlines()
    assert len(calls) == 1, calls
    lines = [line for out, _ in outputs for line in out.splitlines()]
    tokens = [line.split(" ", 1)[1] for line in lines if line.startswith("TOKEN ")]
    assert len(tokens) == n_procs * n_threads
    assert len(set(tokens)) == 1, set(tokens)
    assert tokens[0].startswith("fresh-")
    assert store.refresh_count(key) == 2
    # this process sees the stored token too, decrypted
    fresh = DbTokenStore(db, store.vault).load(key)
    assert fresh is not None and fresh.access_token == tokens[0]


def test_threads_in_one_process_single_flight(tmp_path: Path) -> None:
    _, _, store = token_store_setup(tmp_path)
    calls: list[int] = []
    lock = threading.Lock()

    def fetch() -> Token:
        with lock:
            calls.append(1)
        time.sleep(0.2)
        return Token(access_token=f"tok-{len(calls)}-abcdef", expires_at=time.time() + 3600)

    barrier = threading.Barrier(10)
    got: list[str] = []

    def worker() -> None:
        barrier.wait()
        got.append(store.refresh("ramp", 60, fetch).access_token)

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert set(got) == {"tok-1-abcdef"}


def test_fresh_token_is_reused_and_force_if_refetches(tmp_path: Path) -> None:
    _, db, store = token_store_setup(tmp_path)
    n = 0

    def fetch() -> Token:
        nonlocal n
        n += 1
        return Token(access_token=f"token-number-{n}", expires_at=time.time() + 3600, scope="a b")

    t1 = store.refresh("ramp", 60, fetch)
    assert store.refresh("ramp", 60, fetch) is t1 and n == 1
    # another store (another process) sees it without fetching
    other = DbTokenStore(db, store.vault)
    assert other.refresh("ramp", 60, fetch).access_token == t1.access_token and n == 1
    # the caller saw t1 rejected: a new token is fetched once ...
    t2 = other.refresh("ramp", 60, fetch, force_if=t1.access_token)
    assert t2.access_token == "token-number-2" and n == 2
    # ... and a second caller that also saw t1 rejected gets t2 without a fetch
    t3 = store.refresh("ramp", 60, fetch, force_if=t1.access_token)
    assert t3.access_token == "token-number-2" and n == 2
    assert store.refresh_count("ramp") == 2
    # a token inside the margin counts as stale
    short = Token(access_token="short-lived-token", expires_at=time.time() + 30)
    store.refresh("ramp", 60, lambda: short, force_if=t3.access_token)
    assert store.refresh("ramp", 60, fetch).access_token == "token-number-3"


def test_tokens_are_encrypted_and_registered(tmp_path: Path) -> None:
    _, db, store = token_store_setup(tmp_path)
    tok = Token(access_token="plaintext-access-token", expires_at=time.time() + 3600, scope="accounting:read")
    store.refresh("ramp", 60, lambda: tok)
    with db.session() as s:
        row = s.get(TokenRow, "ramp")
        assert row is not None
        assert b"plaintext-access-token" not in row.ciphertext
        assert row.scope == "accounting:read" and row.refresh_count == 1
    assert "plaintext-access-token" in known_secret_values()
    loaded = DbTokenStore(db, store.vault).load("ramp")
    assert loaded is not None and loaded.scope == "accounting:read"


def test_unreadable_token_is_refetched(tmp_path: Path) -> None:
    _, db, store = token_store_setup(tmp_path)
    store.refresh("ramp", 60, lambda: Token("token-under-old-key", time.time() + 3600))
    stranger = DbTokenStore(db, Vault(db, MasterKey.generate()))
    assert stranger.load("ramp") is None
    tok = stranger.refresh("ramp", 60, lambda: Token("token-under-new-key", time.time() + 3600))
    assert tok.access_token == "token-under-new-key"


def test_fetch_error_leaves_store_unchanged(tmp_path: Path) -> None:
    _, _, store = token_store_setup(tmp_path)
    store.refresh("ramp", 60, expired_token)

    def boom() -> Token:
        raise RuntimeError("token endpoint down")

    with pytest.raises(RuntimeError, match="endpoint down"):
        store.refresh("ramp", 60, boom)
    assert store.refresh_count("ramp") == 1
    assert store.refresh("ramp", 60, lambda: Token("recovered-token", time.time() + 3600)).access_token == (
        "recovered-token"
    )


def test_rotating_refresh_tokens_across_stores_always_use_the_newest(tmp_path: Path) -> None:
    """Two stores (two processes) on one database, an IdP that rotates the refresh token on every
    use and refuses a used one: each refresh reads the newest refresh token inside the lock and
    stores its successor in the same write, so no refresh ever sends a stale one."""
    import httpx

    from ml_connector.core.http import OAuth2Auth, RetryPolicy
    from ml_connector.core.providers import AuthFacts, Backoff

    _, db, store_a = token_store_setup(tmp_path)
    store_b = DbTokenStore(db, store_a.vault)
    live = {"rt": "", "n": 0}
    lock = threading.Lock()
    sent: list[str] = []

    def idp(request: httpx.Request) -> httpx.Response:
        from urllib.parse import parse_qs

        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        with lock:
            if form["grant_type"] == "refresh_token":
                sent.append(form["refresh_token"])
                if form["refresh_token"] != live["rt"]:
                    return httpx.Response(400, json={"error": "invalid_grant"})
            live["n"] += 1
            live["rt"] = f"refresh-token-{live['n']:04d}"
            # Beyond the 60 s refresh margin, 0.2-1.2 s of life once stored (the row keeps whole
            # seconds, rounded down): fresh for the threads of one turn, stale by the next turn.
            return httpx.Response(200, json={"access_token": f"access-token-{live['n']:04d}", "expires_in": 61.2,
                                             "token_type": "Bearer", "refresh_token": live["rt"]})

    facts = AuthFacts(mode="oauth2_password", token_path="/token", client_auth="body", token_lifetime=3600,
                      refresh_margin=60, refresh_backoff=Backoff(base=1, cap=2))
    policy = RetryPolicy(frozenset({503}), frozenset({"GET"}), 0, 0.0, 2.0, 1.0, "none", ())

    def auth(store: DbTokenStore) -> OAuth2Auth:
        return OAuth2Auth("https://idp.test/token", "cid", "client-secret-xyz", connection="crm", store=store,
                          facts=facts, retry=policy, username="u", password="user-password-xyz",
                          transport=httpx.MockTransport(idp))

    a, b = auth(store_a), auth(store_b)
    a.current_token()  # password grant: refresh-token-0001 stored with it
    for i in range(6):  # the token goes stale each turn; the two "processes" take turns refreshing
        time.sleep(1.25)
        (a if i % 2 else b).current_token()
    time.sleep(1.25)

    def hammer(x: OAuth2Auth) -> None:
        x.current_token()

    threads = [threading.Thread(target=hammer, args=(x,)) for x in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert live["n"] == 8  # 1 login + 6 refreshes + 1 shared by the 4 threads that saw the same token
    assert sent == [f"refresh-token-{i:04d}" for i in range(1, 8)]  # always the newest, never a stale one
    with db.session() as s:
        row = s.get(TokenRow, "crm")
        assert row is not None and b"refresh-token-" not in row.ciphertext
    assert store_b.load("crm") is not None and store_b.load("crm").refresh_token == "refresh-token-0008"  # type: ignore[union-attr]
