"""The Procore emulator's wire behaviour and the client on it, over loopback: DMSA tokens, the company
header, paging headers, sync actions by origin_id, refused credentials, ping through the runtime."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ml_connector.config import load_config
from ml_connector.core.http import CredentialRefused
from ml_connector.core.runtime import Runtime
from ml_connector.demo_ecc_procore import DEMO_MAPPINGS, JOB_SITE_PROJECTS
from ml_connector.sandbox import SandboxHandle, start_sandboxes
from ml_connector.systems.procore.client import ProcoreApiError
from ml_connector.systems.procore.targets import check_mappings
from tests.support.procore import procore_client
from tests.support.receivers import Receiver
from tests.support.waiting import wait_until

pytestmark = pytest.mark.smoke  # `make test-fast` runs it (this system's or flow's loopback smoke)


@pytest.fixture(scope="module")
def procore() -> Iterator[SandboxHandle]:
    handles = start_sandboxes(systems=("procore",), vendors=0)
    try:
        yield handles["procore"]
    finally:
        handles["procore"].stop()


def test_token_endpoint_and_the_company_header_are_required(procore: SandboxHandle) -> None:
    info = procore.info
    assert set(info) >= {"base_url", "login_url", "client_id", "client_secret", "company_id"}
    tok = httpx.post(info["login_url"] + "/oauth/token", data={
        "grant_type": "client_credentials", "client_id": info["client_id"], "client_secret": info["client_secret"]},
        timeout=10).json()
    assert tok["token_type"] == "bearer" and tok["expires_in"] == 5400 and tok["created_at"] > 0
    bearer = {"Authorization": f"Bearer {tok['access_token']}"}
    url = info["base_url"] + "/rest/v1.0/companies"
    missing = httpx.get(url, headers=bearer, timeout=10)
    assert (missing.status_code, missing.json()) == (400, {"message": "Missing Procore-Company-Id header!"})
    other = httpx.get(url, headers={**bearer, "Procore-Company-Id": "1"}, timeout=10)
    assert other.status_code == 403
    ok = httpx.get(url, headers={**bearer, "Procore-Company-Id": str(info["company_id"])}, timeout=10)
    assert ok.status_code == 200 and ok.json()[0]["id"] == info["company_id"]
    assert all(ok.headers.get(k) for k in ("X-Rate-Limit-Limit", "X-Rate-Limit-Remaining", "X-Rate-Limit-Reset"))
    assert httpx.get(url, headers={"Authorization": "Bearer nope", "Procore-Company-Id": "1"},
                     timeout=10).status_code == 401


def test_pages_carry_total_per_page_and_the_documented_link_rels(procore: SandboxHandle) -> None:
    info = procore.info
    tok = httpx.post(info["login_url"] + "/oauth/token", json={
        "grant_type": "client_credentials", "client_id": info["client_id"], "client_secret": info["client_secret"]},
        timeout=10).json()["access_token"]
    h = {"Authorization": f"Bearer {tok}", "Procore-Company-Id": str(info["company_id"])}

    def page(n: int) -> httpx.Response:
        return httpx.get(info["base_url"] + "/rest/v1.0/projects", headers=h, timeout=10,
                         params={"company_id": info["company_id"], "page": n, "per_page": 50})

    rels = {n: set(page(n).links) for n in (1, 2, 3, 4)}
    assert rels == {1: {"next", "last"}, 2: {"first", "next", "last"}, 3: {"first", "prev", "next", "last"},
                    4: {"first", "prev"}}
    first = page(1)
    assert (first.headers["Total"], first.headers["Per-Page"], len(first.json())) == ("160", "50", 50)
    assert "company_id=" in first.links["next"]["url"]  # the query is kept, only page changes
    assert page(9).json() == []


def test_client_lists_and_syncs_by_origin_id_and_a_refused_secret_is_permanent(procore: SandboxHandle) -> None:
    with procore_client(procore) as client:
        assert len(client.projects()) == 152  # active only (8 closed jobs)
        pid = client.projects()[0]["id"]
        assert len(client.cost_codes(pid)) == 22
        first = client.sync_vendors([{"origin_id": "0000100001", "name": "Acme Steel"}, {"origin_id": "x"}])
        assert [v["origin_id"] for v in first["entities"]] == ["0000100001"]
        assert first["errors"][0]["errors"] == {"name": ["can't be blank"]}
        again = client.sync_vendors([{"origin_id": "0000100001", "name": "Acme Steel Inc."}])
        assert again["entities"][0]["id"] == first["entities"][0]["id"]  # updated, not duplicated
        assert [v["name"] for v in client.vendors(origin_id="0000100001")] == ["Acme Steel Inc."]
        with pytest.raises(ProcoreApiError) as ei:
            client.create_direct_cost(pid, {"invoice_number": "1"})
        assert ei.value.status == 422 and "vendor_id" in ei.value.message
    with procore_client(procore, secret="wrong") as bad, pytest.raises(CredentialRefused):
        bad.companies()


def test_webhooks_send_the_custom_header_verbatim_and_retry_until_acknowledged(procore: SandboxHandle) -> None:
    receiver = Receiver()
    try:
        receiver.status = 500
        httpx.post(procore.url + "/_sandbox/webhooks", json={"backoff_base": 0.05, "backoff_cap": 0.2},
                   timeout=10).raise_for_status()
        with procore_client(procore) as client:
            cid = procore.info["company_id"]
            spec = {"api_version": "v2.0", "namespace": "ml-connector", "destination_url": receiver.url + "/events",
                    "destination_headers": {"Authorization": "Bearer hook-token-12345"}}
            hook = client.request("POST", "/rest/v1.0/webhooks/hooks", json={"company_id": cid, "hook": spec}).json()
            assert hook["destination_headers"]["Authorization"].endswith("12345")
            assert not hook["destination_headers"]["Authorization"].startswith("Bearer")  # masked
            client.request("POST", f"/rest/v1.0/webhooks/hooks/{hook['id']}/triggers", json={
                "company_id": cid, "api_version": "v2.0",
                "trigger": {"resource_name": "Company Vendors", "event_type": "create"}})
            vid = client.sync_vendors([{"origin_id": "0000100777", "name": "Webhook Vendor"}])["entities"][0]["id"]
            wait_until(lambda: len(receiver.requests) >= 2, timeout=10)  # refused, retried
            receiver.status = 200
            wait_until(lambda: any(d["outcome"] == "ok" for d in client.request(
                "GET", f"/rest/v1.0/webhooks/hooks/{hook['id']}/deliveries", params={"company_id": cid}).json()),
                timeout=10)
        first = receiver.requests[0]
        assert first["headers"]["authorization"] == "Bearer hook-token-12345"  # verbatim, the only auth
        event = first["json"]
        assert (event["resource_name"], event["event_type"], event["resource_id"], event["company_id"]) == (
            "Company Vendors", "create", vid, cid)
        assert len(event["ulid"]) == 26 and event["api_version"] == "v2.0"
        assert {r["json"]["id"] for r in receiver.requests} == {event["id"]}  # the same event each time
    finally:
        receiver.close()


def test_mapping_tables_are_checked_against_procore_projects_and_cost_codes(procore: SandboxHandle) -> None:
    # The job sites' 150 projects are checked once; the rest of the test uses the other cost centers.
    sites = {k: v for k, v in DEMO_MAPPINGS["cost_centers"].items() if k in JOB_SITE_PROJECTS}
    projects = {**{k: v for k, v in DEMO_MAPPINGS["cost_centers"].items() if k not in JOB_SITE_PROJECTS},
                **{f"plant {k}": v for k, v in DEMO_MAPPINGS["plants"].items()}}
    codes = {**DEMO_MAPPINGS["cost_codes"], **DEMO_MAPPINGS["material_groups"]}
    with procore_client(procore) as client:
        assert len(set(sites.values())) == 150 and check_mappings(client, sites, codes) == []
        assert check_mappings(client, projects, codes) == []
        bad_projects = {**projects, "1300": "26-020", "1900": "99-999"}
        assert check_mappings(client, bad_projects, {**codes, "699999": "99-000"}) == [
            "1300 → project 26-020: no active Procore project has this number",  # a closed job
            "1900 → project 99-999: no active Procore project has this number",
            "699999 → cost code 99-000: not in project(s) 26-001, 26-002, 26-003, 26-004, 26-005, 26-006"]


def test_requisitions_bill_against_a_commitment_once_per_origin_id(procore: SandboxHandle) -> None:
    with procore_client(procore) as client:
        pid = client.projects()[1]["id"]
        vid = client.sync_vendors([{"origin_id": "0000100099", "name": "Req Vendor"}])["entities"][0]["id"]
        po = client.sync_po_contracts(pid, [{"origin_id": "SAP-PO-REQ", "vendor_id": vid, "title": "PO"}])
        cid = po["entities"][0]["id"]
        body = {"project_id": pid, "commitment_id": cid,
                "requisition": {"invoice_number": "INV-7", "origin_id": "SAP-REQ-1", "status": "under_review"}}
        req = client.request("POST", "/rest/v1.0/requisitions", json=body).json()
        assert (req["number"], req["vendor_id"], req["status"]) == (1, vid, "under_review")
        with pytest.raises(ProcoreApiError) as ei:
            client.request("POST", "/rest/v1.0/requisitions", json=body)
        assert ei.value.status == 422 and "origin_id" in ei.value.message
        found = list(client.iterate("/rest/v1.0/requisitions", {"project_id": pid, "filters[origin_id]": "SAP-REQ-1"}))
        assert [r["id"] for r in found] == [req["id"]]


def test_runtime_connects_through_the_token_store_and_pings(procore: SandboxHandle, tmp_path: Path) -> None:
    info = procore.info
    path = tmp_path / "ml-connector.yaml"
    path.write_text(f"""\
engine: {{data_dir: ./data}}
connections:
  procore:
    type: procore
    base_url: {info['base_url']}
    login_url: {info['login_url']}
    company_id: {info['company_id']}
    auth: {{client_id: {info['client_id']}, client_secret_secret: procore_client_secret}}
""", encoding="utf-8")
    rt = Runtime(load_config(path), path)
    try:
        rt.vault.set("procore_client_secret", info["client_secret"])
        ok, detail = rt.ping_connection("procore")
        assert ok and detail.startswith(f"authenticated; GET companies (company {info['company_id']}) in "), detail
        assert rt.tokens.load("procore") is not None  # kept (encrypted) for every process of this database
    finally:
        rt.close()
