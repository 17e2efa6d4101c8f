"""Marketing Cloud clients on the sandbox for tests (a token store per simulated process)."""

from __future__ import annotations

from typing import Any

from ml_connector.core.providers import Backoff
from ml_connector.core.tokens import MemoryTokenStore, TokenStore
from ml_connector.systems.sfmc.auth import SfmcAuth
from ml_connector.systems.sfmc.client import SfmcClient

FAST_THROTTLE = Backoff(base=0.02, cap=0.1)


def sfmc_client(mc: dict[str, Any], *, store: TokenStore | None = None, connection: str = "sfmc") -> SfmcClient:
    auth = SfmcAuth(mc["auth_base"], mc["client_id"], mc["client_secret"], account_id=mc["account_id"],
                    connection=connection, store=store or MemoryTokenStore())
    return SfmcClient(auth, throttle_backoff=FAST_THROTTLE)
