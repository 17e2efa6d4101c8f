"""The Concur sandbox's Financial Integration Service over HTTP, the FIS sources paging it, and the v3
sources (`read_from: v3`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ml_connector.sandbox import SandboxHandle, start_sandboxes
from ml_connector.systems.concur.client import FIS, ConcurError
from ml_connector.systems.concur.sources import (
    ApprovedPaymentRequestsSource,
    FisExpenseSource,
    FisInvoiceSource,
    ReadyExpenseReportsSource,
)
from tests.support.concur import concur_client, read_all, source_context

pytestmark = pytest.mark.smoke  # `make test-fast` runs it (this system's or flow's loopback smoke)

R1, R2, R3, R4 = (f"R000{n}F9A3C2E1B0" for n in (1, 2, 3, 4))


@pytest.fixture(scope="module")
def concur() -> Iterator[SandboxHandle]:
    handles = start_sandboxes(systems=("concur",))
    try:
        yield handles["concur"]
    finally:
        for h in handles.values():
            h.stop()


def test_fis_pages_documents_acknowledgements_and_confirmations(concur: SandboxHandle) -> None:
    with concur_client(concur.info) as client:
        ctx = source_context({"concur": client})
        # four READY expense documents, two a page: FIS's page/limit, totalPages, a `next` link
        assert read_all(FisExpenseSource("concur", page_size=2), ctx) == [
            [f"report:{R1}", f"report:{R2}"], [f"report:{R3}", f"report:{R4}"]]
        first = client.fis_page("expense", 0, limit=3)
        assert first["page"] == {"size": 3, "totalElements": 4, "totalPages": 2, "number": 0}
        assert [ln["rel"] for ln in first["links"]] == ["first", "self", "last", "next"]
        assert first["content"][0]["docStatus"] == "READY" and isinstance(first["content"][0]["document"], dict)
        r = httpx.get(concur.info["regions"]["us2"] + f"{FIS}/expense/transactions",
                      headers={"concur-correlationid": "cid-1"})
        assert r.headers["concur-correlationid"] == "cid-1"  # echoed, even on a refusal (no token here)
        as_text = client.get(f"{FIS}/expense/transactions", {"limit": 1}, headers={"DocumentFormatAs": "text"})
        assert isinstance(as_text["content"][0]["document"], str)
        # the invoice source reads the v3 field FIS lacks (the vendor's tax id) from the payment request
        pages = read_all(FisInvoiceSource("concur", v3_fields=("Custom5",)), ctx)
        assert pages == [["payment_request:PR00017D5E", "payment_request:PR00027D5E"]]
        doc = f"fis-exp-{R1}"
        post = client.post_json
        # a confirmation before the acknowledgement is refused (111); acknowledged, it leaves the list
        [no] = post(f"{FIS}/expense/transactions/postingconfirmations",
                    {"systemId": "B1", "postingConfirmations": [{"docId": doc, "overallPostingStatusCode": "success",
                                                                 "postingDocs": [], "systemMessages": []}]})
        assert no["code"] == 111
        [ack] = post(f"{FIS}/expense/transactions/acknowledgements", {"ids": [doc], "systemId": "B1"})
        assert (ack["code"], ack["acknowledgeResult"]) == (0, "SUCCESS")
        assert read_all(FisExpenseSource("concur", page_size=2), ctx) == [
            [f"report:{R2}", f"report:{R3}"], [f"report:{R4}"]]
        [again] = post(f"{FIS}/expense/transactions/acknowledgements", {"ids": [doc, "nope"], "systemId": "B1"})[:1]
        assert again["code"] == 101
        body: dict[str, Any] = {"postingConfirmations": [{"docId": doc, "overallPostingStatusCode": "success",
                                                          "postingDocs": [], "systemMessages": []}]}
        assert post(f"{FIS}/expense/transactions/postingconfirmations", {**body, "systemId": "OTHER"})[0]["code"] == 99
        assert post(f"{FIS}/expense/transactions/postingconfirmations", {**body, "systemId": "B1"})[0]["code"] == 0
        assert post(f"{FIS}/expense/transactions/postingconfirmations", {**body, "systemId": "B1"})[0]["code"] == 113
        # by docId (the document's or its report's id), whatever its status with ignoreDocumentStatus=yes
        by_id = client.get(f"{FIS}/expense/transactions", {"docId": R1, "ignoreDocumentStatus": "yes"})
        assert [(d["id"], d["docStatus"]) for d in by_id["content"]] == [(doc, "POSTING_CONFIRMED_SUCCESS")]
        assert client.get(f"{FIS}/expense/transactions", {"docId": doc})["content"] == []
        # unknown document types are refused; an empty list has no pages
        with pytest.raises(ConcurError, match=r"HTTP 400.*unknown transaction type"):
            client.fis_page("nonsense")
        empty = client.fis_page("cashadvance")
        assert empty["content"] == [] and empty["page"]["totalPages"] == 0


def test_v3_sources_for_a_company_without_fis_access(concur: SandboxHandle) -> None:
    with concur_client(concur.info) as client:
        ctx = source_context({"concur": client})
        # approved reports in Processing Payment, paged by Concur's absolute NextPage; each with its lines
        reports = ReadyExpenseReportsSource("concur", page_size=3)
        assert read_all(reports, ctx) == [[f"report:{R1}", f"report:{R2}", f"report:{R3}"], [f"report:{R4}"]]
        first = reports.read_page(ctx, reports.begin(ctx, {}))
        r1 = first.records[0][1]
        assert [len(e["Allocations"]) for e in r1["Entries"]] == [1, 2, 1]
        assert read_all(ApprovedPaymentRequestsSource("concur"), ctx) == [
            ["payment_request:PR00017D5E", "payment_request:PR00027D5E"]]
