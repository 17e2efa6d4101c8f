"""The Ramp sandbox over HTTP: clients wired to it, raw token requests, vendor batches."""

from __future__ import annotations

from typing import Any

import httpx

from ml_connector.core.ratelimit import RollingWindowLimiter
from ml_connector.core.servers import ServerHandle
from ml_connector.core.tokens import MemoryTokenStore
from ml_connector.systems.ramp.auth import RampClientCredentialsAuth
from ml_connector.systems.ramp.client import RampClient
from ml_connector.systems.ramp.sandbox.state import DEMO_CLIENT_ID

SECRET = "integration-secret-XYZ-123"
ALL_SCOPES = "accounting:read accounting:write business:read"


def make_client(h: ServerHandle, *, limiter: RollingWindowLimiter | None = None, scope: str = ALL_SCOPES,
                secret: str = SECRET, store: MemoryTokenStore | None = None, timeout: float = 5.0,
                **kw: Any) -> RampClient:
    """A RampClient with client-credentials auth against the sandbox at `h`, quick backoffs."""
    auth = RampClientCredentialsAuth.for_base_url(h.url, DEMO_CLIENT_ID, secret,
                                                  store=store or MemoryTokenStore(), key="ramp-test",
                                                  scope=scope, limiter=limiter, backoff_base=0.05,
                                                  backoff_cap=0.4)
    return RampClient(h.url, auth, limiter=limiter, timeout=timeout, backoff_base=0.05, backoff_cap=0.4, **kw)


def raw_token(h: ServerHandle, scope: str = ALL_SCOPES, secret: str = SECRET, **form: str) -> httpx.Response:
    data = {"grant_type": "client_credentials", "scope": scope, **form}
    return httpx.post(h.url + "/developer/v1/token", auth=(DEMO_CLIENT_ID, secret), data=data)


def vendors(prefix: str, n: int, start: int = 0) -> list[dict[str, Any]]:
    """`n` vendor records with ids `prefix`00000, `prefix`00001, ..."""
    return [{"id": f"{prefix}{i:05d}", "name": f"Vendor {prefix}{i}"} for i in range(start, start + n)]


def add_billpay_vendor(state: Any, name: str, country: str = "US", **extra: Any) -> str:
    """A Bill Pay vendor someone created in Ramp by hand (not linked to an accounting vendor): its id."""
    import bisect

    with state.lock:
        vid = state.new_ramp_id()
        state.billpay_vendors[vid] = {
            "id": vid, "name": name, "country": country, "vendor_owner_id": None, "is_active": True,
            "is_deletable": True, "accounting_vendor_remote_id": None, "address": None, "state": None,
            "created_at": "2026-01-05T10:00:00+00:00", "contacts": [], "vendor_type": "BUSINESS", **extra}
        bisect.insort(state.billpay_order, vid)
    return str(vid)


def upload_accounting_vendor(h: Any, remote_id: str, name: str) -> str:
    """An accounting vendor Ramp had before this integration (a previous ERP connection, a CSV upload),
    uploaded through the API under its own remote id: its ramp_id."""
    tok = raw_token(h, secret=h.state.client_secret).json()["access_token"]
    r = httpx.post(h.url + "/developer/v1/accounting/vendors", json={"vendors": [{"id": remote_id, "name": name}]},
                   headers={"Authorization": f"Bearer {tok}"}, timeout=30)
    assert r.status_code == 201, r.text
    return str(r.json()["vendors"][0]["ramp_id"])


def active_sap_vendors(handles: dict[str, Any], bukrs: str = "1000") -> list[dict[str, Any]]:
    """The SAP sandbox's vendors the vendor stream uploads as active (LFA1 with an LFB1 row in `bukrs`)."""
    ecc = handles["sap_ecc"].state
    in_cc = {r["LIFNR"] for r in ecc.data.rows("LFB1", ecc.client) if r["BUKRS"] == bukrs and not r.get("LOEVM")}
    return [r for r in ecc.data.rows("LFA1", ecc.client)
            if r["LIFNR"] in in_cc and not r.get("LOEVM") and not r.get("SPERR") and r.get("NAME1")]


def sap_vendor_name(r: dict[str, Any]) -> str:
    return " ".join(p for p in (r.get("NAME1", "").strip(), r.get("NAME2", "").strip()) if p)
