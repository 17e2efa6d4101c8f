"""Token-store tests: a migrated database with a DbTokenStore, expired tokens, the worker process script."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

from ml_connector.core.db import Database
from ml_connector.core.models import TokenRow
from ml_connector.core.token_store import DbTokenStore
from ml_connector.core.tokens import Token
from ml_connector.core.vault import (
    MasterKey,
    Vault,
)

WORKER = textwrap.dedent(
    """
    import os, sys, threading, time
    from pathlib import Path
    from ml_connector.core.db import Database
    from ml_connector.core.token_store import DbTokenStore
    from ml_connector.core.tokens import Token
    from ml_connector.core.vault import MasterKey, Vault

    url, tmp, ident, key = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[5]
    nthreads = int(sys.argv[4])
    db = Database(url)
    db.migrate()
    store = DbTokenStore(db, Vault(db, MasterKey.load(tmp / "data")))
    calls = tmp / "fetch_calls.txt"

    def fetch():
        with open(calls, "a") as f:   # one line per fetch, from whichever process
            f.write(f"{ident}-{threading.get_ident()}\\n")
        time.sleep(0.5)               # a slow token endpoint widens the race window
        return Token(access_token=f"fresh-{ident}-{threading.get_ident()}", expires_at=time.time() + 3600)

    (tmp / f"ready-{ident}").write_text("")
    while not (tmp / "go").exists():
        time.sleep(0.005)
    results, errors = [], []

    def worker():
        try:
            results.append(store.refresh(key, 60, fetch).access_token)
        except Exception as exc:  # reported to the parent
            errors.append(repr(exc))

    threads = [threading.Thread(target=worker) for _ in range(nthreads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in errors:
        print("ERROR", e)
    for r in results:
        print("TOKEN", r)
    """
)


def token_store_setup(tmp_path: Path, url: str | None = None) -> tuple[str, Database, DbTokenStore]:
    url = url or f"sqlite:///{tmp_path / 'mlc.sqlite'}"
    db = Database(url)
    db.migrate()
    store = DbTokenStore(db, Vault(db, MasterKey.load(tmp_path / "data")))
    return url, db, store


def expired_token(name: str = "expired-token-0000") -> Token:
    return Token(access_token=name, expires_at=time.time() - 10)


def token_ciphertext(db: Database, conn: str) -> tuple[bytes, bytes]:
    with db.session() as s:
        row = s.get(TokenRow, conn)
        assert row is not None
        return row.nonce, row.ciphertext


def stored_token(db: Database, vault: Vault, conn: str, access: str) -> DbTokenStore:
    store = DbTokenStore(db, vault)
    store.refresh(conn, 60, lambda: Token(access_token=access, expires_at=time.time() + 3600))
    return store
