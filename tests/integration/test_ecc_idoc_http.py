"""IDocs over real HTTP: the receiver router (dedupe, durability, auth, limits), the sandbox's
/sap/bc/idoc_xml with IdocSender, and sandbox outbound IDocs delivered to the receiver."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse

from ml_connector.core.db import Database
from ml_connector.core.servers import ServerHandle, serve_in_thread
from ml_connector.systems.sap_ecc.errors import LogonError
from ml_connector.systems.sap_ecc.idoc import (
    IdocPolicy,
    build_idoc_xml,
    debmas_customer,
    parse_idoc_xml,
)
from ml_connector.systems.sap_ecc.idoc_receiver import BasicAuth, SqlIdocStore, idoc_router
from ml_connector.systems.sap_ecc.idoc_sender import IdocSender, IdocSendError
from ml_connector.systems.sap_ecc.sandbox.app import EccSandbox, create_app
from ml_connector.systems.sap_ecc.sandbox.idoc_xml import idoc_state
from ml_connector.systems.sap_ecc.sandbox.outbound import outbound_idocs
from tests.support import wait_until
from tests.support.idocs import PARTNERS, PASSWORD, USER, FlakyStore, idoc_body, inbound_idoc, post_idoc


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerHandle, FlakyStore]]:
    db = Database(f"sqlite:///{tmp_path_factory.mktemp('idoc')}/idocs.db")
    db.migrate()
    store = FlakyStore(db)
    secrets = {"sap-idoc-password": PASSWORD}
    vault = type("V", (), {"get": staticmethod(lambda name: secrets[name])})()
    app = FastAPI()
    app.include_router(idoc_router(store, BasicAuth.from_vault(vault, USER, "sap-idoc-password"),
                                   policy=IdocPolicy(direct="1", partners=PARTNERS), max_bytes=64 * 1024),
                       prefix="/sap")
    handle = serve_in_thread(app, name="idoc-receiver")
    yield handle, store
    handle.stop()
    db.dispose()


def test_receive_dedupes_by_docnum(receiver: tuple[ServerHandle, FlakyStore]) -> None:
    handle, store = receiver
    before = store.count()
    r1 = post_idoc(handle, idoc_body(1001))
    assert r1.status_code == 200, r1.text
    assert r1.json()["idocs"][0] == {"docnum": "0000000000001001", "mestyp": "DEBMAS", "idoctyp": "DEBMAS07",
                                     "sndprn": "ECDCLNT100", "duplicate": False,
                                     "conflict": False}
    r2 = post_idoc(handle, idoc_body(1001, name="Changed in resend"))
    assert r2.status_code == 200 and r2.json()["idocs"][0]["duplicate"] is True
    assert store.count() == before + 1
    row = store.get("0000000000001001")
    assert row is not None and row["status"] == "received" and b"Acme" in row["raw"]
    assert row["parsed"]["segments"][0]["fields"]["NAME1"] == "Acme"
    # concurrent re-sends of a new DOCNUM: stored once, all acknowledged
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(post_idoc(handle, idoc_body(1002)).status_code))
               for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 6
    assert store.count() == before + 2


def test_several_idocs_per_document_and_same_docnum_other_sender(receiver: tuple[ServerHandle, FlakyStore]) -> None:
    handle, store = receiver
    a = parse_idoc_xml(idoc_body(2001))[0]
    b = parse_idoc_xml(idoc_body(2002))[0]
    c = parse_idoc_xml(idoc_body(2001, sndprn="EQ2CLNT100"))[0]
    r = post_idoc(handle, build_idoc_xml([a, b, c]))
    assert r.status_code == 200, r.text
    assert [i["duplicate"] for i in r.json()["idocs"]] == [False, False, False]
    row = store.get("0000000000002002")
    assert row is not None and parse_idoc_xml(row["raw"])[0].docnum == "0000000000002002"


def test_invalid_control_record_is_4xx_naming_the_field(receiver: tuple[ServerHandle, FlakyStore]) -> None:
    handle, store = receiver
    before = store.count()
    r = post_idoc(handle, idoc_body(3001, direct="2"))
    assert r.status_code == 400 and "EDI_DC40-DIRECT" in r.text
    r = post_idoc(handle, idoc_body(3002, sndprn="INTRUDER"))
    assert r.status_code == 400 and "EDI_DC40-SNDPRN" in r.text
    good = parse_idoc_xml(idoc_body(3003))[0]
    bad = parse_idoc_xml(idoc_body(3004))[0]
    bad.control["DOCNUM"] = "12"
    r = post_idoc(handle, build_idoc_xml([good, bad]))
    assert r.status_code == 400 and "EDI_DC40-DOCNUM" in r.text and "IDOC #2" in r.text
    r = post_idoc(handle, b"<DEBMAS07><IDOC BEGIN='1'>")
    assert r.status_code == 400 and "malformed XML" in r.text
    r = post_idoc(handle, b'<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><DEBMAS07>&x;</DEBMAS07>')
    assert r.status_code == 400 and "forbidden" in r.text and "root:" not in r.text
    assert store.count() == before  # nothing of a rejected document is stored


def test_auth_and_size_limit(receiver: tuple[ServerHandle, FlakyStore]) -> None:
    handle, _ = receiver
    r = post_idoc(handle, idoc_body(4001), auth=None)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
    assert post_idoc(handle, idoc_body(4001), auth=(USER, "wrong")).status_code == 401
    big = idoc_body(4002, name="x" * 70_000)
    r = post_idoc(handle, big)
    assert r.status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the streamed size counts
        for _ in range(70):
            yield b"<!-- " + b"y" * 1000 + b" -->"

    r = httpx.post(f"{handle.url}/sap/idoc", content=chunks(), auth=(USER, PASSWORD), timeout=10)
    assert r.status_code == 413


def test_store_failure_is_5xx_and_nothing_acked(receiver: tuple[ServerHandle, FlakyStore]) -> None:
    handle, store = receiver
    store.broken = True
    try:
        r = post_idoc(handle, idoc_body(5001))
        assert r.status_code == 503 and "not acknowledged" in r.text
    finally:
        store.broken = False
    assert store.get("0000000000005001") is None
    r = post_idoc(handle, idoc_body(5001))  # SAP re-sends: now stored
    assert r.status_code == 200 and r.json()["idocs"][0]["duplicate"] is False


# -- sandbox ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox() -> Iterator[tuple[EccSandbox, ServerHandle]]:
    state = EccSandbox(vendors=20)
    handle = serve_in_thread(create_app(state), name="ecc-idoc")
    yield state, handle
    outbound_idocs(state).stop()
    handle.stop()


def test_send_to_sap_idoc_xml(sandbox: tuple[EccSandbox, ServerHandle]) -> None:
    state, handle = sandbox
    ext = idoc_state(state)
    with IdocSender(handle.url, "100", "RFC_USER", "Sandbox-1234") as sender:
        res = sender.send([inbound_idoc(), inbound_idoc()])
        assert res.status == 200 and len(res.docnums) == 2
        assert [i["docnum"] for i in ext.received[-2:]] == res.docnums
        assert ext.received[-1]["status"] == "64"
        bad = inbound_idoc()
        bad.control["DIRECT"] = "1"
        with pytest.raises(IdocSendError) as exc:
            sender.send(bad)
        assert exc.value.status == 400 and "EDI_DC40-DIRECT" in exc.value.body
        other = inbound_idoc()
        other.control["SNDPRN"] = "STRANGER"
        with pytest.raises(IdocSendError, match="EDI_DC40-SNDPRN"):
            sender.send(other)
        ext.update(fail_next=1, fail_status=500, fail_body="boom")
        with pytest.raises(IdocSendError) as exc:
            sender.send(inbound_idoc())
        assert exc.value.status == 500 and exc.value.body == "boom"
    with IdocSender(handle.url, "100", "RFC_USER", "wrong", content_type="text/xml") as sender, \
            pytest.raises(LogonError):
        sender.send(inbound_idoc())
    r = httpx.post(f"{handle.url}/_sandbox/idoc/inbound", json={"ok_body": "OK {docnums}"})
    assert r.status_code == 200 and r.json()["ok_body"] == "OK {docnums}"


def test_outbound_idoc_delivered_when_a_vendor_changes_with_retry(
        sandbox: tuple[EccSandbox, ServerHandle], receiver: tuple[ServerHandle, FlakyStore]) -> None:
    state, handle = sandbox
    recv, store = receiver
    # The receiver must know the sandbox's message types and sender.
    out = outbound_idocs(state)
    r = httpx.post(f"{handle.url}/_sandbox/idoc/outbound",
                   json={"url": f"{recv.url}/sap/idoc", "user": USER, "password": PASSWORD, "backoff_base": 0.05})
    assert r.status_code == 200 and r.json()["password_set"] is True and "password" not in r.json()
    lifnr = state.data.rows("LFA1", "100")[0]["LIFNR"]
    refused = store.refused
    store.broken = True  # first attempts fail with 503 -> retried with backoff
    state.data.update_vendor(lifnr, NAME1="Renamed Vendor GmbH")
    wait_until(lambda: store.refused > refused, timeout=10)  # at least one attempt failed
    store.broken = False
    assert out.wait_idle(10)
    item = out.delivered[-1]
    assert item.mestyp == "CREMAS" and item.attempts >= 2
    row = store.get(item.docnum, "ECDCLNT100")
    assert row is not None and row["mestyp"] == "CREMAS" and row["idoctyp"] == "CREMAS05"
    idoc = parse_idoc_xml(row["raw"])[0]
    assert idoc.control["DIRECT"] == "1" and idoc.control["STATUS"] == "30" and len(idoc.docnum) == 16
    assert idoc.control["SNDPOR"] == "SAPECD" and len(idoc.control["SERIAL"]) == 14
    head = idoc.find("E1LFA1M")
    assert head is not None and head.get("NAME1") == "Renamed Vendor GmbH" and head.get("LIFNR") == lifnr
    # deletion flag: one IDoc, not two (the nested update_vendor call does not emit)
    n = len(out.delivered)
    state.data.flag_vendor_for_deletion(lifnr)
    assert out.wait_idle(10) and len(out.delivered) == n + 1


def test_emit_endpoint_debmas_orders_delvry_with_rows(
        sandbox: tuple[EccSandbox, ServerHandle], receiver: tuple[ServerHandle, FlakyStore]) -> None:
    state, handle = sandbox
    recv, store = receiver
    out = outbound_idocs(state)
    out.configure(url=f"{recv.url}/sap/idoc", user=USER, password=PASSWORD)
    kna1 = {"KUNNR": "0000200001", "NAME1": "Customer One", "LAND1": "DE", "KTOKD": "0001"}
    vbak = {"VBELN": "0000004711", "AUART": "TA", "WAERK": "EUR", "VKORG": "1000", "KUNNR": "0000200001",
            "AUDAT": "20260105", "NETWR": "120.00"}
    vbap = [{"VBELN": "0000004711", "POSNR": "000010", "MATNR": "M-01", "ARKTX": "Bolt", "KWMENG": "10.000",
             "VRKME": "ST", "NETWR": "120.00", "WERKS": "1000"}]
    likp = {"VBELN": "0080000001", "VSTEL": "1000", "VKORG": "1000", "KUNNR": "0000200001"}
    lips = [{"VBELN": "0080000001", "POSNR": "000010", "MATNR": "M-01", "LFIMG": "10.000", "VRKME": "ST",
             "VGBEL": "0000004711", "VGPOS": "000010"}]
    docnums = {}
    for mestyp, key, row, items in (("DEBMAS", "200001", kna1, None), ("ORDRSP", "4711", vbak, vbap),
                                    ("DELVRY", "80000001", likp, lips), ("ORDERS", "4500000001", None, None)):
        r = httpx.post(f"{handle.url}/_sandbox/idoc/emit",
                       json={"mestyp": mestyp, "key": key, "row": row, "items": items})
        assert r.status_code == 202, r.text
        docnums[mestyp] = r.json()["docnum"]
    assert out.wait_idle(10)
    cust = debmas_customer(parse_idoc_xml(store.get(docnums["DEBMAS"])["raw"])[0])  # type: ignore[index]
    assert cust.kunnr == "0000200001" and cust.name1 == "Customer One"
    orders = store.get(docnums["ORDRSP"])
    assert orders is not None and orders["idoctyp"] == "ORDERS05" and orders["mestyp"] == "ORDRSP"
    from ml_connector.systems.sap_ecc.idoc import delivery_document, orders_document
    order = orders_document(parse_idoc_xml(orders["raw"])[0])
    assert order.belnr == "0000004711" and order.items[0].material == "M-01" and order.total == "120.00"
    po = store.get(docnums["ORDERS"])  # the seeded purchase order 4500000001 (EKKO/EKPO)
    assert po is not None and (po["mestyp"], po["idoctyp"]) == ("ORDERS", "ORDERS05")
    purchase = orders_document(parse_idoc_xml(po["raw"])[0])
    assert purchase.belnr == "4500000001" and purchase.items and purchase.partners[0]["PARVW"] == "LF"
    dl = store.get(docnums["DELVRY"])
    assert dl is not None and dl["mestyp"] == "DESADV" and dl["idoctyp"] == "DELVRY07"
    assert delivery_document(parse_idoc_xml(dl["raw"])[0]).items[0].vgbel == "0000004711"
    r = httpx.post(f"{handle.url}/_sandbox/idoc/emit", json={"mestyp": "DEBMAS", "key": "999"})
    assert r.status_code == 404
    r = httpx.post(f"{handle.url}/_sandbox/idoc/emit", json={"mestyp": "MATMAS", "key": "1", "row": {}})
    assert r.status_code == 400


def test_outbound_gives_up_after_max_attempts(sandbox: tuple[EccSandbox, ServerHandle]) -> None:
    state, _ = sandbox
    app = FastAPI()
    hits: list[str] = []

    @app.post("/down")
    async def down(request: Request) -> PlainTextResponse:
        hits.append((await request.body()).decode()[:10])
        return PlainTextResponse("nope", status_code=500)

    h = serve_in_thread(app, name="down")
    try:
        out = outbound_idocs(state)
        out.configure(url=f"{h.url}/down", user="", password="", max_attempts=3, backoff_base=0.01)
        item = out.emit("CREMAS", state.data.rows("LFA1", "100")[1]["LIFNR"])
        assert out.wait_idle(10)
        assert item in out.failed and item.attempts == 3 and "HTTP 500" in item.last_error and len(hits) == 3
    finally:
        out.configure(max_attempts=8, url="")
        h.stop()


def test_receiver_in_memory_path(tmp_path: Path) -> None:
    """The router works mounted at any path, without auth (behind another layer)."""
    db = Database(f"sqlite:///{tmp_path}/r.db")
    db.migrate()
    app = FastAPI()
    app.include_router(idoc_router(SqlIdocStore(db), None, path="/in"))
    h = serve_in_thread(app, name="noauth")
    try:
        r = httpx.post(f"{h.url}/in", content=idoc_body(1, sndprn="ANY"))
        assert r.status_code == 200
    finally:
        h.stop()
        db.dispose()


def test_outbound_idocs_when_a_customer_a_sales_order_or_a_delivery_changes(
        sandbox: tuple[EccSandbox, ServerHandle], receiver: tuple[ServerHandle, FlakyStore]) -> None:
    state, handle = sandbox
    recv, store = receiver
    out = outbound_idocs(state)
    r = httpx.post(f"{handle.url}/_sandbox/idoc/outbound",
                   json={"url": f"{recv.url}/sap/idoc", "user": USER, "password": PASSWORD, "backoff_base": 0.05})
    assert r.status_code == 200
    kunnr = state.data.rows("KNA1", "100")[0]["KUNNR"]
    vbeln = state.data.rows("VBAK", "100")[0]["VBELN"]
    delivery = state.data.rows("LIKP", "100")[0]["VBELN"]
    n = len(out.delivered)
    state.data.update_customer(kunnr, NAME1="Renamed Customer Inc")
    state.data.update_sales_order(vbeln, BSTNK="PO-CHANGED-1")
    state.data.update_delivery(delivery, BTGEW="12.500")
    assert out.wait_idle(10)
    sent = out.delivered[n:]
    assert [i.mestyp for i in sent] == ["DEBMAS", "ORDRSP", "DESADV"]
    debmas = parse_idoc_xml(store.get(sent[0].docnum, "ECDCLNT100")["raw"])[0]
    head = debmas.find("E1KNA1M")
    assert head is not None and head.get("NAME1") == "Renamed Customer Inc" and head.get("KUNNR") == kunnr
    assert [s.name for s in head.children].count("E1KNB1M") == sum(
        r["KUNNR"] == kunnr for r in state.data.rows("KNB1", "100"))
    assert any(s.name == "E1KNVVM" for s in head.children)
    delvry = parse_idoc_xml(store.get(sent[2].docnum, "ECDCLNT100")["raw"])[0]
    l20 = delvry.find("E1EDL20")
    assert l20 is not None and l20.get("BTGEW") == "12.500"
    assert len([s for s in l20.children if s.name == "E1EDL24"]) == sum(
        r["VBELN"] == delivery for r in state.data.rows("LIPS", "100")) > 0
    # a purchase-order change (ME22N) sends ORDERS
    ebeln = state.data.rows("EKKO", "100")[0]["EBELN"]
    state.data.update_purchase_order(ebeln, EKGRP="002")
    assert out.wait_idle(10)
    assert out.delivered[-1].mestyp == "ORDERS" and out.delivered[-1].key == ebeln
