"""SAP Concur read client: v3 expense reports / entries / allocations, v3 payment requests, and
Financial Integration Service (FIS) v4 documents (cloud-apis.md §3.3-3.5).

An `httpx.Client` whose auth is `ConcurCompanyAuth` (tokens, datacenter routing) and whose
transport is `core.http.RetryTransport` (the shared rate budget; a 429 waits, 5xx on reads retry).
Paging as Concur defines it: v3 `{Items, NextPage}` (NextPage an absolute URI on the datacenter,
followed as it is), FIS Spring pages (`page`, 0-based, and `limit`).
Nothing is written to Concur unless a flow asks for FIS posting confirmations (`confirm_posting`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from ml_connector.core.http import IDEMPOTENT, PicklableError, RetryPolicy, RetryTransport, one_line
from ml_connector.core.ratelimit import WindowLimiter
from ml_connector.systems.concur.auth import ConcurCompanyAuth
from ml_connector.systems.concur.facts import concur_facts

V3 = "/api/v3.0"
FIS = "/financialintegration/fi/v4/companies/transactiontypes"


class ConcurError(PicklableError):
    """Concur refused or failed a request (after the transport's retries)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _error_text(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return one_line(resp.text, 200)
    if isinstance(body, dict):
        err = body.get("Error") or body.get("ErrorMessage") or body.get("error")
        if isinstance(err, dict):
            return one_line(str(err.get("Message") or err.get("errorMessage") or err.get("message") or err), 200)
        if err:
            return one_line(str(err), 200)
    return one_line(str(body), 200)


def _source_id_of(item: dict[str, Any]) -> str | None:
    """The report or payment request id a FIS document carries."""
    doc = item.get("document")
    if isinstance(doc, str):
        try:
            doc = json.loads(doc)
        except ValueError:
            return None
    if not isinstance(doc, dict):
        return None
    found = (doc.get("report") or {}).get("reportId") or (doc.get("requestHeader") or {}).get("requestId")
    return str(found) if found else None


class ConcurClient:
    def __init__(self, base_url: str, auth: ConcurCompanyAuth, *, limiter: WindowLimiter | None = None,
                 timeout: float = 60.0, transport: httpx.BaseTransport | None = None,
                 retry_base: float | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        f = concur_facts()
        self.paging = f.paging
        self.ready = f.ready_to_post
        self.transport = RetryTransport(transport or httpx.HTTPTransport(),
                                        RetryPolicy.from_facts(f.need_retry(), base=retry_base), limiter=limiter)
        self._http = httpx.Client(auth=auth, timeout=timeout, transport=self.transport,
                                  headers={"Accept": "application/json"})

    def __repr__(self) -> str:
        return f"ConcurClient(base_url={self.base_url!r})"

    def close(self) -> None:
        self._http.close()
        self.auth.close()

    # -- one request ------------------------------------------------------------------------
    def get(self, path_or_url: str, params: Mapping[str, Any] | None = None,
            headers: Mapping[str, str] | None = None) -> Any:
        """GET a path on the configured base (moved to the datacenter by the auth) or an absolute
        URL Concur gave (a NextPage)."""
        url = path_or_url if path_or_url.startswith(("http://", "https://")) else self.base_url + path_or_url
        try:
            resp = self._http.get(url, params={k: v for k, v in (params or {}).items() if v is not None} or None,
                                  headers=dict(headers or {}))
        except httpx.HTTPError as exc:
            raise ConcurError(f"GET {httpx.URL(url).path}: {type(exc).__name__}: {one_line(str(exc), 200)}") from None
        if resp.status_code >= 400:
            raise ConcurError(f"GET {resp.request.url.path}: HTTP {resp.status_code}: {_error_text(resp)}",
                              status=resp.status_code)
        try:
            return resp.json()
        except ValueError:
            raise ConcurError(f"GET {resp.request.url.path}: the answer is not JSON",
                              status=resp.status_code) from None

    def v3_page(self, path_or_url: str, params: Mapping[str, Any] | None = None) -> tuple[list[dict[str, Any]],
                                                                                          str | None]:
        """One v3 page: (Items, NextPage or None)."""
        body = self.get(path_or_url, params)
        items = body.get("Items") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise ConcurError(f"GET {path_or_url}: the answer has no Items list")
        nxt = body.get("NextPage")
        return items, (str(nxt) if nxt else None)

    def v3_all(self, path: str, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        items, nxt = self.v3_page(path, params)
        seen: set[str] = set()
        yield from items
        while nxt:
            if nxt in seen:
                raise ConcurError(f"GET {path}: Concur repeated the NextPage {nxt}")
            seen.add(nxt)
            items, nxt = self.v3_page(nxt)
            yield from items

    # -- expense reports (v3) ---------------------------------------------------------------
    def ready_reports_page(self, next_page: str | None = None, *, limit: int | None = None,
                           modified_after: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """Approved reports in Processing Payment (what FIS would hand over), all owners."""
        if next_page:
            return self.v3_page(next_page)
        return self.v3_page(f"{V3}/expense/reports", {
            "user": "ALL", "approvalStatusCode": self.ready.approval_status,
            "paymentStatusCode": self.ready.payment_status, "modifiedDateAfter": modified_after,
            "limit": min(limit or self.paging.reports_limit, self.paging.reports_limit)})

    def report_entries(self, report_id: str) -> list[dict[str, Any]]:
        return list(self.v3_all(f"{V3}/expense/entries", {"reportID": report_id, "user": "ALL",
                                                          "limit": self.paging.entries_limit}))

    def report_allocations(self, report_id: str) -> list[dict[str, Any]]:
        return list(self.v3_all(f"{V3}/expense/allocations", {"reportID": report_id,
                                                              "limit": self.paging.allocations_limit}))

    def report_with_lines(self, report: dict[str, Any]) -> dict[str, Any]:
        """The report with its entries, each with its allocations (`Entries[].Allocations`)."""
        rid = str(report["ID"])
        allocs: dict[str, list[dict[str, Any]]] = {}
        for a in self.report_allocations(rid):
            allocs.setdefault(str(a.get("EntryID")), []).append(a)
        entries = [{**e, "Allocations": allocs.get(str(e["ID"]), [])} for e in self.report_entries(rid)]
        return {**report, "Entries": entries}

    # -- payment requests (v3) --------------------------------------------------------------
    def approved_payment_requests_page(self, next_page: str | None = None, *, limit: int | None = None
                                       ) -> tuple[list[dict[str, Any]], str | None]:
        if next_page:
            return self.v3_page(next_page)
        return self.v3_page(f"{V3}/invoice/paymentrequestdigests", {
            "approvalStatus": self.ready.payment_request_approval_status,
            "limit": min(limit or self.paging.digests_limit, self.paging.digests_limit)})

    def payment_request(self, request_id: str) -> dict[str, Any]:
        body = self.get(f"{V3}/invoice/paymentrequest/{request_id}")
        if not isinstance(body, dict):
            raise ConcurError(f"payment request {request_id}: the answer is not an object")
        return body

    # -- Financial Integration Service (v4) -------------------------------------------------
    def fis_page(self, doc_type: str, page: int = 0, *, limit: int | None = None,
                 system_id: str | None = None) -> dict[str, Any]:
        """One page of READY, unacknowledged FIS documents of `doc_type` (expense, invoice ...)."""
        body = self.get(f"{FIS}/{doc_type}/transactions",
                        {"page": page, "limit": min(limit or self.paging.fis_limit, self.paging.fis_limit),
                         "systemId": system_id}, headers={"DocumentFormatAs": "JSON"})
        if not isinstance(body, dict) or not isinstance(body.get("content"), list):
            raise ConcurError(f"FIS {doc_type}: the answer has no content list")
        return body

    def fis_document_id(self, doc_type: str, source_id: str) -> str | None:
        """The FIS document of a report (`expense`) or payment request (`invoice`), by its id: asked
        with `docId` (documented as "the expense report ID, payment request ID or cash advance ID"
        [unverified: whether the report's own id is matched, or only the document's]) whatever its
        status, else looked for among the READY documents; None when FIS does not have it."""
        try:
            body = self.get(f"{FIS}/{doc_type}/transactions", {"docId": source_id, "ignoreDocumentStatus": "yes"},
                            headers={"DocumentFormatAs": "JSON"})
        except ConcurError as exc:
            if exc.status not in (400, 404):
                raise
            body = None  # a docId FIS does not take: look among the READY documents
        for d in (body.get("content") or []) if isinstance(body, dict) else []:
            if source_id in (d.get("id"), _source_id_of(d)):
                return str(d["id"])
        page = 0
        while True:
            body = self.fis_page(doc_type, page)
            for d in body["content"]:
                if _source_id_of(d) == source_id:
                    return str(d["id"])
            info = body.get("page") or {}
            page += 1
            if not body["content"] or page >= int(info.get("totalPages") or 0):
                return None

    def post_json(self, path: str, body: Any) -> Any:
        """A write to Concur (FIS acknowledgements and confirmations are keyed by document id:
        a repeat is answered per item with a service code, not applied twice)."""
        try:
            resp = self._http.post(self.base_url + path, json=body, extensions={IDEMPOTENT: True})
        except httpx.HTTPError as exc:
            raise ConcurError(f"POST {path}: {type(exc).__name__}: {one_line(str(exc), 200)}") from None
        if resp.status_code >= 400:
            raise ConcurError(f"POST {resp.request.url.path}: HTTP {resp.status_code}: {_error_text(resp)}",
                              status=resp.status_code)
        return resp.json()

    def confirm_posting(self, doc_type: str, doc_id: str, *, system_id: str, company_id: str, document_number: str,
                        fiscal_year: str, posting_date: str) -> None:
        """Acknowledge the FIS document, then confirm its posting (codes 101 / 113: done before)."""
        base = f"{FIS}/{doc_type}/transactions"
        for item in self.post_json(f"{base}/acknowledgements", {"ids": [doc_id], "systemId": system_id}) or []:
            if item.get("acknowledgeResult") != "SUCCESS" and int(item.get("code", 0)) != 101:
                raise ConcurError(f"FIS {doc_type} {doc_id}: acknowledgement refused: code {item.get('code')} "
                                  f"{item.get('errorMessage') or ''}".strip())
        conf = {"systemId": system_id, "postingConfirmations": [{
            "docId": doc_id, "overallPostingStatusCode": "success",
            "postingDocs": [{"companyId": company_id, "documentNumber": document_number, "fiscalYear": fiscal_year,
                             "postingDate": posting_date, "paymentRelevantLineItems": []}],
            "systemMessages": []}]}
        for item in self.post_json(f"{base}/postingconfirmations", conf) or []:
            if int(item.get("code", 0)) not in (0, 113):
                raise ConcurError(f"FIS {doc_type} {doc_id}: posting confirmation refused: code {item.get('code')} "
                                  f"{item.get('errorMessage') or ''}".strip())

    def ping(self) -> float:
        t0 = time.perf_counter()
        p = concur_facts().ping
        self.get(str(p.path), dict(p.params))
        return time.perf_counter() - t0
