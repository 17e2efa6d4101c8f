"""An OData client on a scripted Gateway (httpx.MockTransport)."""

from __future__ import annotations

import httpx

from ml_connector.systems.sap_ecc.odata import (
    ODataClient,
)

ROOT = "/sap/opu/odata/sap/ZMLC_VENDOR_SRV/"


def client(handler: object) -> ODataClient:
    return ODataClient("http://sap", ROOT, "100", "U", "P", transport=httpx.MockTransport(handler))  # type: ignore[arg-type]
