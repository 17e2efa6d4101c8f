"""Referential integrity of the ECC sandbox seed across its parts (data.py vendors, seed_logistics.py,
fi.py), and outbound IDocs that carry the item segments of the tables they are built from.

Every foreign key a connector or a test would follow must resolve: a PO account assignment names a
cost center that exists in CSKS in the same controlling area, every plant a cost center names is in
T001W, every delivery item points at its delivery and its sales order item, every customer has
sales data in the sales area of its partner functions, and so on."""

from __future__ import annotations

from collections import Counter, defaultdict
from decimal import Decimal
from typing import Any

import pytest

from ml_connector.systems.sap_ecc.idoc import (
    debmas_customer,
    delivery_document,
    orders_document,
)
from ml_connector.systems.sap_ecc.sandbox.app import EccSandbox
from ml_connector.systems.sap_ecc.sandbox.outbound import outbound_idocs
from ml_connector.systems.sap_ecc.sandbox.seed_logistics import COST_CENTERS, cost_center
from tests.support.ecc_data import CLIENT, csks_valid_on, dangling, parsed_outbound, rows


@pytest.fixture(scope="module")
def sandbox() -> EccSandbox:
    return EccSandbox(client=CLIENT)  # vendors, logistics and FI, as the HTTP sandbox seeds them


# ------------------------------------------------------------------------------------------ organisation


def test_company_codes_plants_and_controlling_areas(sandbox: EccSandbox) -> None:
    t001 = {r["BUKRS"] for r in rows(sandbox, "T001")}
    assert t001 == {"1000", "2000", "3000"}
    assert not dangling(sandbox, "T001K", ("BUKRS",), "T001", ("BUKRS",))
    assert not dangling(sandbox, "T001W", ("BWKEY",), "T001K", ("BWKEY",))
    assert not dangling(sandbox, "TKA02", ("BUKRS",), "T001", ("BUKRS",))
    kokrs_of = {r["BUKRS"]: r["KOKRS"] for r in rows(sandbox, "TKA02")}
    assert set(kokrs_of) == t001
    plant_bukrs = {r["BWKEY"]: r["BUKRS"] for r in rows(sandbox, "T001K")}
    for c in rows(sandbox, "CSKS"):
        assert c["BUKRS"] in t001, c
        assert kokrs_of[c["BUKRS"]] == c["KOKRS"], c  # TKA02 and CSKS agree
        assert c["WERKS"] in plant_bukrs, f"CSKS {c['KOSTL']} names plant {c['WERKS']}, not in T001W"
        assert plant_bukrs[c["WERKS"]] == c["BUKRS"], c
    assert not dangling(sandbox, "CSKT", ("KOKRS", "KOSTL", "DATBI"), "CSKS", ("KOKRS", "KOSTL", "DATBI"))
    # seed_logistics' view of the cost centers is the one fi.py seeded
    assert set(COST_CENTERS) == {r["KOSTL"] for r in rows(sandbox, "CSKS")}
    for r in rows(sandbox, "CSKS"):
        c = cost_center(r["KOSTL"])
        assert (c.kokrs, c.bukrs, c.werks, c.prctr) == (r["KOKRS"], r["BUKRS"], r["WERKS"], r["PRCTR"])
    # every plant has at least one cost center of its own
    assert {r["WERKS"] for r in rows(sandbox, "T001W")} == {r["WERKS"] for r in rows(sandbox, "CSKS")}


# ------------------------------------------------------------------------------------------ purchasing


def test_purchase_orders_reference_vendors_plants_cost_centers_and_accounts(sandbox: EccSandbox) -> None:
    assert not dangling(sandbox, "EKKO", ("LIFNR", "BUKRS"), "LFB1", ("LIFNR", "BUKRS"))
    assert not dangling(sandbox, "EKKO", ("BUKRS",), "T001", ("BUKRS",))
    assert not dangling(sandbox, "EKPO", ("EBELN",), "EKKO", ("EBELN",))
    assert not dangling(sandbox, "EKPO", ("WERKS",), "T001W", ("WERKS",))
    plant_bukrs = {r["BWKEY"]: r["BUKRS"] for r in rows(sandbox, "T001K")}
    assert all(plant_bukrs[i["WERKS"]] == i["BUKRS"] for i in rows(sandbox, "EKPO"))
    assert not dangling(sandbox, "EKKN", ("EBELN", "EBELP"), "EKPO", ("EBELN", "EBELP"))
    kokrs_of = {r["BUKRS"]: r["KOKRS"] for r in rows(sandbox, "TKA02")}
    items = {(i["EBELN"], i["EBELP"]): i for i in rows(sandbox, "EKPO")}
    ekkn = rows(sandbox, "EKKN")
    with_kostl = [a for a in ekkn if a.get("KOSTL")]
    assert len(with_kostl) > 500
    # EKKN.KOSTL -> CSKS in the same controlling area, valid on the PO date
    assert not dangling(sandbox, "EKKN", ("KOKRS", "KOSTL"), "CSKS", ("KOKRS", "KOSTL"))
    csks = {(r["KOKRS"], r["KOSTL"]): r for r in rows(sandbox, "CSKS")}
    for a in with_kostl:
        item = items[(a["EBELN"], a["EBELP"])]
        assert a["KOKRS"] == kokrs_of[item["BUKRS"]], a
        assert csks[(a["KOKRS"], a["KOSTL"])]["BUKRS"] == item["BUKRS"], a
        assert csks_valid_on(sandbox, a["KOKRS"], a["KOSTL"], item["AEDAT"]), a
        assert a["PRCTR"] == csks[(a["KOKRS"], a["KOSTL"])]["PRCTR"], a
    # EKKN.SAKTO -> SKB1 of the PO's company code, not blocked for posting
    skb1 = {(r["BUKRS"], r["SAKNR"]): r for r in rows(sandbox, "SKB1")}
    for a in ekkn:
        if a.get("SAKTO"):
            acct = skb1.get((items[(a["EBELN"], a["EBELP"])]["BUKRS"], a["SAKTO"]))
            assert acct is not None and not acct.get("XSPEB"), a
    assert Counter(a["KOKRS"] for a in with_kostl).keys() == {"1000", "2000", "3000"}


def test_fi_documents_reference_master_data(sandbox: EccSandbox) -> None:
    assert rows(sandbox, "BSEG")
    assert not dangling(sandbox, "BSEG", ("BUKRS", "BELNR", "GJAHR"), "BKPF", ("BUKRS", "BELNR", "GJAHR"))
    assert not dangling(sandbox, "BSEG", ("BUKRS", "HKONT"), "SKB1", ("BUKRS", "SAKNR"))
    assert not dangling(sandbox, "BSEG", ("LIFNR", "BUKRS"), "LFB1", ("LIFNR", "BUKRS"))
    assert not dangling(sandbox, "BSEG", ("KOKRS", "KOSTL"), "CSKS", ("KOKRS", "KOSTL"))
    bkpf = {(r["BUKRS"], r["BELNR"], r["GJAHR"]): r for r in rows(sandbox, "BKPF")}
    kokrs_of = {r["BUKRS"]: r["KOKRS"] for r in rows(sandbox, "TKA02")}
    for line in rows(sandbox, "BSEG"):
        if line.get("KOSTL"):
            assert line.get("KOKRS", kokrs_of[line["BUKRS"]]) == kokrs_of[line["BUKRS"]]
            budat = bkpf[(line["BUKRS"], line["BELNR"], line["GJAHR"])]["BUDAT"]
            assert csks_valid_on(sandbox, kokrs_of[line["BUKRS"]], line["KOSTL"], budat), line
    assert not dangling(sandbox, "LFB1", ("BUKRS", "AKONT"), "SKB1", ("BUKRS", "SAKNR"))
    assert not dangling(sandbox, "KNB1", ("BUKRS", "AKONT"), "SKB1", ("BUKRS", "SAKNR"))


# ------------------------------------------------------------------------------------------ customers, sales


def test_customers_sales_areas_partners_and_credit(sandbox: EccSandbox) -> None:
    assert rows(sandbox, "KNVV")
    assert not dangling(sandbox, "KNVV", ("KUNNR",), "KNA1", ("KUNNR",))
    assert not dangling(sandbox, "KNB1", ("KUNNR",), "KNA1", ("KUNNR",))
    assert not dangling(sandbox, "KNB1", ("BUKRS",), "T001", ("BUKRS",))
    assert not dangling(sandbox, "KNKK", ("KUNNR",), "KNA1", ("KUNNR",))
    assert not dangling(sandbox, "KNKK", ("KNKLI",), "KNA1", ("KUNNR",))
    # a partner function lives in a sales area of the customer, and names an existing customer
    assert not dangling(sandbox, "KNVP", ("KUNNR", "VKORG", "VTWEG", "SPART"), "KNVV",
                        ("KUNNR", "VKORG", "VTWEG", "SPART"))
    assert not dangling(sandbox, "KNVP", ("KUNN2",), "KNA1", ("KUNNR",))
    assert {r["KUNNR"] for r in rows(sandbox, "KNVV")} == {r["KUNNR"] for r in rows(sandbox, "KNA1")}
    # the customer hierarchy: a node in a sales area of the customer, below a node of the hierarchy in
    # that sales area; contact persons belong to an existing customer
    assert rows(sandbox, "KNVH") and rows(sandbox, "KNVK")
    assert not dangling(sandbox, "KNVH", ("KUNNR", "VKORG", "VTWEG", "SPART"), "KNVV",
                        ("KUNNR", "VKORG", "VTWEG", "SPART"))
    assert not dangling(sandbox, "KNVH", ("HKUNNR", "HVKORG", "HVTWEG", "HSPART"), "KNVH",
                        ("KUNNR", "VKORG", "VTWEG", "SPART"))
    assert all(r["DATAB"] <= r["DATBI"] for r in rows(sandbox, "KNVH"))
    assert not dangling(sandbox, "KNVK", ("KUNNR",), "KNA1", ("KUNNR",))
    assert not dangling(sandbox, "KNVV", ("VWERK",), "T001W", ("WERKS",))
    t001 = {r["BUKRS"]: r for r in rows(sandbox, "T001")}
    plant_bukrs = {r["BWKEY"]: r["BUKRS"] for r in rows(sandbox, "T001K")}
    knb1 = {(r["KUNNR"], r["BUKRS"]): r for r in rows(sandbox, "KNB1")}
    for v in rows(sandbox, "KNVV"):
        assert v["VKORG"] in t001 and plant_bukrs[v["VWERK"]] == v["VKORG"], v
        assert v["WAERS"] == t001[v["VKORG"]]["WAERS"] and v["KKBER"] == t001[v["VKORG"]]["KKBER"], v
        if (v["KUNNR"], v["VKORG"]) in knb1:
            assert v["ZTERM"] == knb1[(v["KUNNR"], v["VKORG"])]["ZTERM"], v
    assert not dangling(sandbox, "KNKK", ("KKBER",), "T001", ("KKBER",))


def test_sales_orders_deliveries_and_items(sandbox: EccSandbox) -> None:
    assert not dangling(sandbox, "VBAK", ("KUNNR", "VKORG", "VTWEG", "SPART"), "KNVV",
                        ("KUNNR", "VKORG", "VTWEG", "SPART"))
    assert not dangling(sandbox, "VBAK", ("BUKRS_VF",), "T001", ("BUKRS",))
    assert not dangling(sandbox, "VBAP", ("VBELN",), "VBAK", ("VBELN",))
    assert not dangling(sandbox, "VBAP", ("WERKS",), "T001W", ("WERKS",))
    assert not dangling(sandbox, "LIKP", ("KUNAG",), "KNA1", ("KUNNR",))
    assert not dangling(sandbox, "LIKP", ("KUNNR",), "KNA1", ("KUNNR",))
    # the ship-to party of a delivery is a WE partner of its sold-to party
    assert not dangling(sandbox, "LIKP", ("KUNAG", "VKORG", "KUNNR"), "KNVP", ("KUNNR", "VKORG", "KUNN2"))
    lips = rows(sandbox, "LIPS")
    assert len(lips) > 1000
    assert not dangling(sandbox, "LIPS", ("VBELN",), "LIKP", ("VBELN",))
    assert not dangling(sandbox, "LIPS", ("VGBEL",), "VBAK", ("VBELN",))
    assert not dangling(sandbox, "LIPS", ("VGBEL", "VGPOS"), "VBAP", ("VBELN", "POSNR"))
    assert not dangling(sandbox, "LIPS", ("WERKS",), "T001W", ("WERKS",))
    # every delivery has items, from one order, sold to the delivery's sold-to party
    vbak = {r["VBELN"]: r for r in rows(sandbox, "VBAK")}
    vbap = {(r["VBELN"], r["POSNR"]): r for r in rows(sandbox, "VBAP")}
    by_delivery: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for i in lips:
        by_delivery[i["VBELN"]].append(i)
        order_item = vbap[(i["VGBEL"], i["VGPOS"])]
        assert not order_item.get("ABGRU") and i["MATNR"] == order_item["MATNR"], i
        assert Decimal(i["LFIMG"]) == Decimal(order_item["KWMENG"]) and i["VGTYP"] == "C", i
    for d in rows(sandbox, "LIKP"):
        items = by_delivery[d["VBELN"]]
        assert items, f"delivery {d['VBELN']} has no items"
        orders = {i["VGBEL"] for i in items}
        assert len(orders) == 1 and vbak[orders.pop()]["KUNNR"] == d["KUNAG"], d
        assert Decimal(d["BTGEW"]) == sum(Decimal(i["BRGEW"]) for i in items), d
        assert {i["WERKS"] for i in items} == {d["VSTEL"]}, d


# ------------------------------------------------------------------------------------------ outbound IDocs


def test_delvry_carries_one_e1edl24_per_lips_row(sandbox: EccSandbox) -> None:
    out = outbound_idocs(sandbox)
    lips: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for i in rows(sandbox, "LIPS"):
        lips[i["VBELN"]].append(i)
    multi = next(v for v, items in lips.items() if len(items) >= 3)
    for vbeln in (rows(sandbox, "LIKP")[0]["VBELN"], multi):
        idoc = parsed_outbound(out, "DESADV", vbeln)
        assert (idoc.mestyp, idoc.idoctyp) == ("DESADV", "DELVRY07")
        doc = delivery_document(idoc)
        assert doc.vbeln == vbeln and len(doc.items) == len(lips[vbeln]) > 0
        assert [(i.posnr, i.vgbel, i.vgpos, i.quantity) for i in doc.items] == [
            (r["POSNR"], r["VGBEL"], r["VGPOS"], r["LFIMG"]) for r in lips[vbeln]]


def test_debmas_carries_sales_areas_company_codes_credit_and_partners(sandbox: EccSandbox) -> None:
    out = outbound_idocs(sandbox)
    kunnr = rows(sandbox, "KNA1")[0]["KUNNR"]
    idoc = parsed_outbound(out, "DEBMAS", kunnr)
    cust = debmas_customer(idoc)
    knb1 = [r for r in rows(sandbox, "KNB1") if r["KUNNR"] == kunnr]
    knvv = [r for r in rows(sandbox, "KNVV") if r["KUNNR"] == kunnr]
    knvp = [r for r in rows(sandbox, "KNVP") if r["KUNNR"] == kunnr]
    knkk = [r for r in rows(sandbox, "KNKK") if r["KUNNR"] == kunnr]
    assert knb1 and knvv and knvp and knkk
    assert [c["BUKRS"] for c in cust.company_codes] == [r["BUKRS"] for r in knb1]
    assert cust.company_codes[0]["AKONT"] == knb1[0]["AKONT"] and cust.company_codes[0]["MSGFN"] == "005"
    assert [(a["VKORG"], a["VTWEG"], a["SPART"]) for a in cust.sales_areas] == [
        (r["VKORG"], r["VTWEG"], r["SPART"]) for r in knvv]
    assert cust.sales_areas[0]["VWERK"] == knvv[0]["VWERK"]
    assert sorted((p["PARVW"], p["KUNN2"]) for p in cust.partners) == sorted((r["PARVW"], r["KUNN2"]) for r in knvp)
    assert len(cust.credit) == len(knkk)
    head = idoc.find("E1KNA1M")
    expected = ["E1KNVVM"] * len(knvv) + ["E1KNB1M"] * len(knb1) + ["E1KNKKM"] * len(knkk)
    assert head is not None and [s.name for s in head.children] == expected


def test_order_changes_emit_ordrsp_and_purchase_order_changes_emit_orders(
        sandbox: EccSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    out = outbound_idocs(sandbox)  # hooks the EccData change methods
    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(out, "emit", lambda mestyp, key, **kw: sent.append((mestyp, key)))
    out.config.url = "http://127.0.0.1:9/unused"  # emission needs a URL; nothing is delivered here
    try:
        vbeln = rows(sandbox, "VBAK")[3]["VBELN"]
        ebeln = rows(sandbox, "EKKO")[3]["EBELN"]
        delivery = rows(sandbox, "LIKP")[3]["VBELN"]
        sandbox.data.update_sales_order(vbeln, BSTNK="PO-4711")  # type: ignore[attr-defined]
        sandbox.data.update_purchase_order(ebeln, ZTERM="NT45")  # type: ignore[attr-defined]
        sandbox.data.update_delivery(delivery, BTGEW="1.000")  # type: ignore[attr-defined]
    finally:
        out.config.url = ""
    assert sent == [("ORDRSP", vbeln), ("ORDERS", ebeln), ("DESADV", delivery)]
    # ORDRSP: the sales order confirmation, basic type ORDERS05, from VBAK/VBAP
    rsp = parsed_outbound(out, "ORDRSP", vbeln)
    assert (rsp.mestyp, rsp.idoctyp) == ("ORDRSP", "ORDERS05")
    order = orders_document(rsp)
    assert order.belnr == vbeln and len(order.items) == sum(r["VBELN"] == vbeln for r in rows(sandbox, "VBAP"))
    # ORDERS: the purchase order to the vendor, from EKKO/EKPO
    po = parsed_outbound(out, "ORDERS", ebeln)
    assert (po.mestyp, po.idoctyp) == ("ORDERS", "ORDERS05")
    doc = orders_document(po)
    ekko = next(r for r in rows(sandbox, "EKKO") if r["EBELN"] == ebeln)
    ekpo = [r for r in rows(sandbox, "EKPO") if r["EBELN"] == ebeln and not r.get("LOEKZ")]
    assert doc.belnr == ebeln and doc.header["ZTERM"] == "NT45" and doc.currency == ekko["WAERS"]
    assert [i.posex for i in doc.items] == [r["EBELP"] for r in ekpo]
    assert {"PARVW": "LF", "PARTN": ekko["LIFNR"]} in doc.partners
    assert Decimal(doc.total) == sum(Decimal(r["NETWR"]) for r in ekpo)
