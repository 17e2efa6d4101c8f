"""Provider data kept with a token (`Token.extra`): Concur's datacenter, stored and read back, and a
token stored before `geolocation` became a key of `extra` still read with it."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ml_connector.core.models import TokenRow
from ml_connector.core.tokens import Token
from ml_connector.core.vault import token_secret_name
from tests.support.tokens import token_store_setup


def test_extra_is_stored_with_the_token_and_a_legacy_geolocation_is_read_into_it(tmp_path: Path) -> None:
    _, db, store = token_store_setup(tmp_path)
    try:
        geo = {"geolocation": "https://us2.api.concursolutions.com"}
        store.refresh("concur", 60, lambda: Token(access_token="a-1", expires_at=time.time() + 3600,
                                                  refresh_token="r-1", extra=geo))
        with db.session() as s:
            row = s.get(TokenRow, "concur")
            assert row is not None
            plain = json.loads(store.vault.decrypt(token_secret_name("concur"), row.key_id, row.nonce,
                                                   row.ciphertext))
        assert plain["extra"] == geo and "geolocation" not in plain
        # a row written by the earlier layout: `geolocation` beside the token, no `extra`
        legacy = {"access_token": "a-0", "token_type": "Bearer", "refresh_token": "r-0",
                  "geolocation": "https://eu2.api.concursolutions.com"}
        key_id, nonce, ct = store.vault.encrypt(token_secret_name("old"), json.dumps(legacy))
        with db.session() as s:
            s.add(TokenRow(connection="old", key_id=key_id, nonce=nonce, ciphertext=ct,
                           expires_at=int(time.time() + 3600), scope=""))
        tok = store.load("old")
        assert tok is not None and tok.refresh_token == "r-0"
        assert tok.extra == {"geolocation": "https://eu2.api.concursolutions.com"}
    finally:
        db.dispose()
