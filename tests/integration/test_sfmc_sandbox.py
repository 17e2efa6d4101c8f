"""The Marketing Cloud client against its emulator over loopback: token life and reuse across
processes, SOAP 1.1 and 1.2, Data Extensions created or validated, rowset batches, the async rows
API, journey events, throttling storms and lost answers; and the IDoc side of the flow's sources."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import httpx
import pytest

from ml_connector.core.db import Database
from ml_connector.core.flow import RunContext
from ml_connector.core.providers import Backoff
from ml_connector.core.token_store import DbTokenStore
from ml_connector.core.vault import MasterKey, Vault
from ml_connector.flows.sap_ecc_sfmc import customer_de
from ml_connector.sandbox import SandboxHandle
from ml_connector.systems.sap_ecc.idoc import Idoc, Segment, build_idoc_xml, make_control, parse_idoc_xml
from ml_connector.systems.sap_ecc.idoc_receiver import SqlIdocStore
from ml_connector.systems.sap_ecc.sources import SalesDocumentIdocSource
from ml_connector.systems.sfmc import soap as S  # noqa: N812
from ml_connector.systems.sfmc.client import SfmcClient, SfmcRefused, SfmcUncertainWrite
from ml_connector.systems.sfmc.schema import DeField, DeSpec, SchemaMismatch
from tests.support.sandboxes import running_sandboxes
from tests.support.sfmc import make_sfmc_env, mc_events, mc_faults, mc_stats
from tests.support.sfmc_clients import sfmc_client

pytestmark = pytest.mark.smoke  # `make test-fast` runs it (this system's or flow's loopback smoke)

SPEC = DeSpec("Cust", "Customers", (DeField("CustomerNumber", "Text", 10, primary=True), DeField("Name", "Text", 40),
                                    DeField("Limit", "Decimal", precision=18, scale=2)))


@pytest.fixture()
def mc() -> Iterator[SandboxHandle]:
    with running_sandboxes(systems=("sfmc",)) as handles:
        yield handles["sfmc"]


def test_token_is_reused_across_processes_with_its_instance_urls(tmp_path, mc):
    info = mc.info
    url = f"sqlite:///{tmp_path}/t.db"
    stores = []
    for _ in range(2):  # two processes: their own database handles and stores on one database
        db = Database(url)
        db.migrate()
        stores.append(DbTokenStore(db, Vault(db, MasterKey.load(tmp_path))))
    first, second = sfmc_client(info, store=stores[0]), sfmc_client(info, store=stores[1])
    first.ensure_de(SPEC)
    assert second.describe_de("Cust") is not None  # knows the SOAP URL from the stored token
    second.upsert_rows("Cust", [({"CustomerNumber": "1"}, {"Name": "a"})])
    assert mc_stats(info)["token_requests"] == 1
    # Expired behind our back: REST (401) and SOAP (Security fault) get one new token, shared.
    httpx.post(f"{info['admin']}/tokens/expire")
    first.upsert_rows("Cust", [({"CustomerNumber": "2"}, {"Name": "b"})])
    assert len(second.retrieve_rows("Cust", ["CustomerNumber"])) == 2
    assert mc_stats(info)["token_requests"] == 2


def test_data_extension_created_or_validated_naming_the_field_that_differs(mc):
    c = sfmc_client(mc.info)
    assert c.ensure_de(SPEC) == "created" and c.ensure_de(SPEC) == "exists"
    other = DeSpec("Cust", "Customers", (DeField("CustomerNumber", "Text", 10, primary=True),
                                         DeField("Name", "Text", 40), DeField("Limit", "Number")))
    with pytest.raises(SchemaMismatch, match="'Limit' is Decimal, the flow declares Number"):
        c.ensure_de(other)


def test_rowset_batches_soap_filters_update_add_delete_and_async(mc):
    c = sfmc_client(mc.info)
    c.ensure_de(SPEC)
    assert c.upsert_rows("Cust", [({"CustomerNumber": f"{i:04d}"}, {"Name": f"n{i}", "Limit": "1.50"})
                                  for i in range(120)]) == 3  # 50 rows per call
    assert c.upsert_rows("Cust", [({"CustomerNumber": "0001"}, {"Name": "again"})]) == 1  # upsert: no duplicate
    rows = c.retrieve_rows("Cust", ["CustomerNumber", "Name"])
    assert len(rows) == 120
    gt = c.retrieve_rows("Cust", ["CustomerNumber"], c.simple_filter("CustomerNumber", "greaterThan", "0117"))
    assert sorted(r["CustomerNumber"] for r in gt) == ["0118", "0119"]
    c.update_rows("Cust", [({"CustomerNumber": "0001"}, {"Name": "soap"}), ({"CustomerNumber": "9999"}, {"Name": "x"})])
    with pytest.raises(SfmcRefused, match="does not exist"):
        c.update_rows("Cust", [({"CustomerNumber": "8888"}, {"Name": "x"})], upsert=False)
    c.delete_rows("Cust", [{"CustomerNumber": "9999"}])
    assert c.retrieve_rows("Cust", ["Name"], c.simple_filter("CustomerNumber", "IN", "0001", "9999")) == [
        {"Name": "soap"}]
    assert len(c.async_upsert("Cust", [{"CustomerNumber": f"A{i}", "Name": "a"} for i in range(30)])) == 1
    assert len(c.retrieve_rows("Cust", ["CustomerNumber"])) == 150
    with pytest.raises(SfmcRefused, match="longer than 40"):
        c.async_upsert("Cust", [{"CustomerNumber": "B1", "Name": "x" * 41}])


def test_soap_12_envelope_wsdl_and_hostile_xml(mc):
    c = sfmc_client(mc.info)
    c.ensure_de(SPEC)
    tok = c.auth.current_token().access_token
    body = S.root("RetrieveRequestMsg")
    rr = S.sub(body, "RetrieveRequest")
    S.sub(rr, "ObjectType", "DataExtension")
    S.sub(rr, "Properties", "CustomerKey")
    soap = mc.info["soap_base"] + "Service.asmx"
    r = httpx.post(soap, content=S.envelope(body, token=tok, version="1.2", action="Retrieve", to=soap),
                   headers={"Content-Type": 'application/soap+xml; charset=utf-8; action="Retrieve"'})
    assert r.status_code == 200 and "soap+xml" in r.headers["content-type"]
    doc = S.parse(r.content)
    assert S.text(S.body_of(doc), "OverallStatus") == "OK" and b"<CustomerKey>Cust</CustomerKey>" in r.content
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>'
    assert httpx.post(soap, content=bomb, headers={"Content-Type": "text/xml"}).status_code == 400
    wsdl = httpx.get(mc.info["wsdl"]).text
    assert f'location="{soap}"' in wsdl and 'soapAction="Create"' in wsdl
    assert httpx.get(mc.info["soap_base"] + "ETFrameworkFault.xsd").status_code == 200
    r = httpx.post(soap, content=S.envelope(body, token="not-a-token"), headers={"Content-Type": "text/xml"})
    assert r.status_code == 500 and b"Security" in r.content


def test_throttling_storms_are_paced_not_failed(mc):
    c = sfmc_client(mc.info)
    c.ensure_de(SPEC)
    mc_faults(mc.info, throttle_next=3, retry_after=0)
    assert c.upsert_rows("Cust", [({"CustomerNumber": "1"}, {"Name": "a"})]) == 1  # REST 429 three times, then OK
    mc_faults(mc.info, throttle_next=3)
    assert c.retrieve_rows("Cust", ["Name"]) == [{"Name": "a"}]  # SOAP "Rate Limited" three times, then OK
    assert c.transport.stats.throttled == 3 and c.soap_throttled == 3
    assert mc_stats(mc.info)["throttled"] == 6


def test_a_per_minute_limit_throttles_and_the_client_paces_within_it(mc):
    # SOAP throttling has no Retry-After: the client backs off (provider.yaml: base 1 s, cap 30 s over
    # a 60 s minute); here scaled to the 2 s minute below.
    c = SfmcClient(sfmc_client(mc.info).auth, throttle_backoff=Backoff(base=0.1, cap=1.0))
    c.ensure_de(SPEC)
    # At most 4 calls per (shortened) minute of 2 s, REST and SOAP together, as the service counts them.
    mc_faults(mc.info, calls_per_minute=4, rate_window=2.0)
    try:
        for i in range(10):  # REST rowsets: 429 with Retry-After above the limit, waited out
            assert c.upsert_rows("Cust", [({"CustomerNumber": str(i)}, {"Name": f"n{i}"})]) == 1
        for _ in range(3):   # SOAP Retrieves: "Rate Limited" faults above the limit, paced
            assert len(c.retrieve_rows("Cust", ["CustomerNumber"])) == 10
    finally:
        mc_faults(mc.info, calls_per_minute=0)
    stats = mc_stats(mc.info)
    assert stats["throttled"] == c.transport.stats.throttled + c.soap_throttled
    assert c.transport.stats.throttled > 0 and stats["rowset_calls"] >= 10  # paced, not failed


def test_journey_entry_event_and_a_lost_answer_is_uncertain(mc):
    c = sfmc_client(mc.info)
    iid = c.fire_event("0000200001", "ml-post-purchase", {"OrderNumber": "1"})
    assert [e["eventInstanceId"] for e in mc_events(mc.info)] == [iid]
    with pytest.raises(SfmcRefused, match="400"):
        c.fire_event("0000200001", "no-such-journey", {})
    mc_faults(mc.info, fail_next=1, kind="timeout_after_commit")
    with pytest.raises(SfmcUncertainWrite):
        c.fire_event("0000200002", "ml-post-purchase", {"OrderNumber": "2"})
    assert len(mc_events(mc.info)) == 2  # applied: never re-sent blindly


def _order_idoc(docnum: str, vbeln: str, amount: str) -> Idoc:
    ctl = make_control(docnum=docnum, mestyp="ORDRSP", idoctyp="ORDERS05", direct="1", sndprn="ECDCLNT100")
    return Idoc(ctl, [Segment("E1EDK01", {"BELNR": vbeln, "CURCY": "EUR"}),
                      Segment("E1EDKA1", {"PARVW": "AG", "PARTN": "0000200001"}),
                      Segment("E1EDS01", {"SUMID": "002", "SUMME": amount, "SUNIT": "EUR"})])


def test_order_idocs_stored_twice_or_changed_are_one_record_each(tmp_path):
    db = Database(f"sqlite:///{tmp_path}/i.db")
    db.migrate()
    store = SqlIdocStore(db)
    first = _order_idoc("0000000000000101", "0000004711", "10.00")
    raw = build_idoc_xml([first])
    store.store(parse_idoc_xml(raw), raw)
    assert store.store(parse_idoc_xml(raw), raw)[0].duplicate  # SAP re-sends the same IDoc
    change = build_idoc_xml([_order_idoc("0000000000000102", "0000004711", "12.00")])
    store.store(parse_idoc_xml(change), change)
    other = build_idoc_xml([_order_idoc("0000000000000103", "0000004712", "5.00")])
    store.store(parse_idoc_xml(other), other)
    src = SalesDocumentIdocSource(page_size=100)
    ctx = RunContext(SimpleNamespace(db=db), "f", "orders", "r", "incremental")  # type: ignore[arg-type]
    page = src.read_page(ctx, src.begin(ctx, {}))
    assert [(k, r["amount"]) for k, r in page.records] == [("ORDER:0000004711", "12.00"), ("ORDER:0000004712", "5.00")]
    cursor = src.finish(ctx, page.position)
    assert src.read_page(ctx, src.begin(ctx, cursor)).records == []


def test_a_sync_into_a_data_extension_that_differs_stops_naming_the_field(tmp_path):
    with running_sandboxes(vendors=20, systems=("sap_ecc", "sfmc")) as h:
        mc = h["sfmc"].info
        declared = customer_de()  # as the flow declares it, but for one field marketing changed
        fields = tuple(DeField("CreditLimit", "Number") if f.name == "CreditLimit" else f for f in declared.fields)
        sfmc_client(mc).create_de(DeSpec(declared.key, declared.name, fields))
        env = make_sfmc_env(tmp_path, h["sap_ecc"].url, mc)
        run = env.cli("sync", "customers_to_sfmc", "--stream", "customers", "--full", check=False)
        assert run.returncode != 0
        assert "Data Extension 'ML_SAP_Customer_Status': field 'CreditLimit' is Number, the flow declares " \
               "Decimal" in run.stderr + run.stdout


def test_debmas_idocs_malformed_refused_duplicated_read_once(tmp_path):
    """What the customers stream reads: the DEBMAS IDocs the receiver stored. A malformed one is
    refused with the field named (SAP keeps it for a re-send), a re-sent one is one record."""
    from fastapi import FastAPI

    from ml_connector.core.servers import serve_in_thread
    from ml_connector.systems.sap_ecc.idoc_receiver import BasicAuth, idoc_router
    from ml_connector.systems.sap_ecc.sources import idoc_keys, segments
    from tests.support.idocs import PASSWORD, USER, idoc_body, post_idoc

    db = Database(f"sqlite:///{tmp_path}/r.db")
    db.migrate()
    app = FastAPI()
    app.include_router(idoc_router(SqlIdocStore(db), BasicAuth(USER, PASSWORD)), prefix="/sap")
    handle = serve_in_thread(app, name="idoc-sfmc")
    try:
        bad = post_idoc(handle, idoc_body(7001, direct="2"))
        assert bad.status_code == 400 and "EDI_DC40-DIRECT" in bad.text
        assert post_idoc(handle, b"<DEBMAS07><IDOC><EDI_DC40>").status_code == 400
        assert post_idoc(handle, idoc_body(7002)).json()["idocs"][0]["duplicate"] is False
        assert post_idoc(handle, idoc_body(7002)).json()["idocs"][0]["duplicate"] is True
    finally:
        handle.stop()
    idocs, newest = idoc_keys(db, ("DEBMAS",), 0)
    assert [f["KUNNR"] for _, p in idocs for f in segments(p, "E1KNA1M")] == ["0000200001"]
    assert idoc_keys(db, ("DEBMAS",), newest) == ([], newest)
