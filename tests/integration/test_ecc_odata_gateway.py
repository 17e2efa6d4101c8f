"""The OData client against the sandbox's Gateway service ZMLC_VENDOR_SRV over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from ml_connector.core.servers import ServerHandle, serve_in_thread
from ml_connector.systems.sap_ecc.errors import LogonError
from ml_connector.systems.sap_ecc.odata import CsrfError, GatewayError, GatewayNotFound, ODataClient
from ml_connector.systems.sap_ecc.sandbox.app import EccSandbox, create_app
from ml_connector.systems.sap_ecc.sandbox.gateway import gateway_state

SERVICE = "/sap/opu/odata/sap/ZMLC_VENDOR_SRV"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[tuple[EccSandbox, ServerHandle]]:
    state = EccSandbox(vendors=120)
    handle = serve_in_thread(create_app(state), name="ecc-gateway")
    yield state, handle
    handle.stop()


@pytest.fixture
def svc(sandbox: tuple[EccSandbox, ServerHandle]) -> Iterator[ODataClient]:
    gateway_state(sandbox[0]).update(page_size=50, reject_csrf_next=0)
    with ODataClient(sandbox[1].url, SERVICE, "100", "RFC_USER", "Sandbox-1234") as c:
        yield c


def test_collection_paging_filter_and_entity(svc: ODataClient, sandbox: tuple[EccSandbox, ServerHandle]) -> None:
    state, _ = sandbox
    all_ = list(svc.query("VendorSet"))
    assert len(all_) == state.data.count("LFA1", "100") == 120
    assert len({v["Lifnr"] for v in all_}) == 120 and all_[0]["__metadata"]["type"] == "ZMLC_VENDOR_SRV.Vendor"
    assert [v["Lifnr"] for v in svc.query("VendorSet", top=70, skip=10)] == [v["Lifnr"] for v in all_[10:80]]
    first = all_[0]
    hit = list(svc.query("VendorSet", filter=f"Lifnr eq '{first['Lifnr']}'"))
    assert hit == [first]
    assert svc.get_entity(f"VendorSet('{first['Lifnr']}')") == first
    d = svc.get("VendorSet", {"$top": "3", "$inlinecount": "allpages"})
    assert d["__count"] == "120" and len(d["results"]) == 3 and "__next" not in d
    r = httpx.get(f"{sandbox[1].url}{SERVICE}/$metadata", params={"sap-client": "100"},
                  auth=("RFC_USER", "Sandbox-1234"))
    assert r.status_code == 200 and b'EntitySet Name="VendorSet"' in r.content


def test_update_create_delete_with_csrf(svc: ODataClient, sandbox: tuple[EccSandbox, ServerHandle]) -> None:
    state, _ = sandbox
    lifnr = state.data.rows("LFA1", "100")[3]["LIFNR"]
    svc.update(f"VendorSet('{lifnr}')", {"Name1": "Gateway Renamed"})
    assert state.data.get("LFA1", (lifnr,), "100")["NAME1"] == "Gateway Renamed"  # type: ignore[index]
    assert svc.csrf_fetches == 1
    created = svc.create("VendorSet", {"Name1": "New via OData", "Land1": "DE", "Ort01": "Berlin"})
    assert created["Name1"] == "New via OData" and created["Ort01"] == "Berlin"
    svc.delete(f"VendorSet('{created['Lifnr']}')")
    assert svc.get_entity(f"VendorSet('{created['Lifnr']}')")["Loevm"] == "X"
    assert svc.csrf_fetches == 1


def test_expired_token_refetch_and_retry_once(svc: ODataClient, sandbox: tuple[EccSandbox, ServerHandle]) -> None:
    state, _ = sandbox
    gw = gateway_state(state)
    lifnr = state.data.rows("LFA1", "100")[4]["LIFNR"]
    svc.update(f"VendorSet('{lifnr}')", {"Name1": "One"})
    gw.update(expire_tokens=True)
    svc.update(f"VendorSet('{lifnr}')", {"Name1": "Two"})
    assert svc.csrf_fetches == 2 and state.data.get("LFA1", (lifnr,), "100")["NAME1"] == "Two"  # type: ignore[index]
    gw.update(reject_csrf_next=5)
    with pytest.raises(CsrfError):
        svc.update(f"VendorSet('{lifnr}')", {"Name1": "Three"})
    assert gw.to_dict()["reject_csrf_next"] == 3  # exactly two attempts
    gw.update(reject_csrf_next=0)


def test_token_without_cookie_is_rejected(sandbox: tuple[EccSandbox, ServerHandle]) -> None:
    _, handle = sandbox
    auth = ("RFC_USER", "Sandbox-1234")
    r = httpx.get(f"{handle.url}{SERVICE}/", params={"sap-client": "100"}, auth=auth,
                  headers={"X-CSRF-Token": "Fetch"})
    token = r.headers["x-csrf-token"]
    r = httpx.post(f"{handle.url}{SERVICE}/VendorSet", params={"sap-client": "100"}, auth=auth,
                   headers={"X-CSRF-Token": token}, json={"Name1": "x", "Land1": "DE"})  # cookies dropped
    assert r.status_code == 403 and r.headers["x-csrf-token"] == "Required"
    assert r.text == "CSRF token validation failed"


def test_gateway_errors(svc: ODataClient, sandbox: tuple[EccSandbox, ServerHandle]) -> None:
    state, handle = sandbox
    with pytest.raises(GatewayNotFound) as exc:
        svc.get_entity("VendorSet('9999999999')")
    assert exc.value.status == 404 and exc.value.transactionid and exc.value.code == "/IWBEP/CM_MGW_RT/020"
    with pytest.raises(GatewayNotFound, match="/IWFND/CM_MGW/051"):
        svc.get("NoSuchSet")
    with ODataClient(handle.url, "/sap/opu/odata/sap/ZNOPE_SRV", "100", "RFC_USER", "Sandbox-1234") as other, \
            pytest.raises(GatewayNotFound) as exc2:
        other.get("VendorSet")
    assert exc2.value.code == "/IWFND/MED/170" and exc2.value.service_id == "ZNOPE_SRV"
    lifnr = state.data.rows("LFA1", "100")[5]["LIFNR"]
    with pytest.raises(GatewayError) as exc3:
        svc.update(f"VendorSet('{lifnr}')", {"Name1": "x" * 80})
    assert exc3.value.status == 400 and exc3.value.details[0].propertyref == "Name1"
    with pytest.raises(GatewayError) as exc4:
        svc.create("VendorSet", {"Name1": "no country"})
    assert [d.propertyref for d in exc4.value.details] == ["Land1"]
    with pytest.raises(GatewayError, match="Invalid filter"):
        list(svc.query("VendorSet", filter="substringof('a', Name1)"))
    with ODataClient(handle.url, SERVICE, "100", "RFC_USER", "wrong") as bad, pytest.raises(LogonError):
        bad.get("VendorSet")
