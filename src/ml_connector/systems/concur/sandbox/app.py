"""SAP Concur emulator (FastAPI), per cloud-apis.md §3. Every datacenter is a path prefix on the
loopback server (`/us2`, `/eu2`, `/apj1`, `/cn`; `/glz` the Global Landing Zone):

    POST /<dc>/oauth2/v0/token                       company grant (password + credtype=authtoken) at any
                                                     datacenter; refresh only at the token's own
    GET  /<dc>/api/v3.0/expense/reports[/{id}]       {Items, NextPage} with limit/offset; approvalStatusCode,
                                                     paymentStatusCode, modifiedDateAfter/Before,
                                                     submitDateAfter, processingPaymentDateAfter,
                                                     paidDateAfter, user
    GET  /<dc>/api/v3.0/expense/entries[/{id}]       reportID
    GET  /<dc>/api/v3.0/expense/allocations          reportID | entryID
    GET  /<dc>/api/v3.0/expense/entryattendeeassociations   entryID;  /expense/attendees/{id}
    GET  /<dc>/api/v3.0/invoice/paymentrequestdigests[/{id}]   approvalStatus; TotalCount
    GET  /<dc>/api/v3.0/invoice/paymentrequest/{id}
    GET  /<dc>/financialintegration/fi/v4/companies/transactiontypes/{docType}/transactions   page, limit
    POST /<dc>/financialintegration/fi/v4/companies/transactiontypes/{docType}/transactions/acknowledgements
    POST /<dc>/financialintegration/fi/v4/companies/transactiontypes/{docType}/transactions/postingconfirmations

Data calls need a live bearer token of the company's datacenter (401 otherwise, also for a token of
another datacenter), count against the rate limit (429 with Retry-After) and pass the fault switches.

Admin (no auth; loopback only): `GET|POST /_sandbox/faults` (latency, fail_next + fail_kind 429/500/503
+ fail_path, expire_tokens, revoke_refresh_tokens, clear_faults), `GET|POST /_sandbox/config`
(token_lifetime, refresh_lifetime, old_refresh_tokens_valid, request_token_valid, rate_limit_requests,
rate_limit_period, retry_after_zero), `GET /_sandbox/stats`, `GET /_sandbox/state/{reports|entries|
allocations|payment_requests}`, `POST /_sandbox/reports/{id}` (change a report's fields, e.g. pay it),
`POST /_sandbox/add_reports` {"count": N} (N more postable reports, copies of the seed's: volume).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from ml_connector.core.sandbox_admin import Switches, admin_router
from ml_connector.systems.concur.sandbox.seed import GLZ, REGIONS
from ml_connector.systems.concur.sandbox.state import ConcurApiError, ConcurSandbox, oauth_error, v3_error

__all__ = ["ConcurSandbox", "create_app"]

DATACENTERS = (*REGIONS, GLZ)


def _root(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _limit(request: Request, default: int, maximum: int = 1000) -> tuple[int, int]:
    q = request.query_params
    try:
        limit = int(q.get("limit", default))
        offset = int(q.get("offset", 0) or 0)
    except ValueError:
        raise v3_error(400, "limit and offset must be integers") from None
    if limit < 1 or limit > maximum or offset < 0:
        raise v3_error(400, f"limit must be 1-{maximum}, offset not negative")
    return limit, offset


def _v3_page(request: Request, items: list[dict[str, Any]], default: int, *, total: bool = False) -> dict[str, Any]:
    limit, offset = _limit(request, default)
    page = items[offset: offset + limit]
    nxt = None
    if offset + limit < len(items):
        # Absolute, on the datacenter the client called, keeping every other parameter.
        nxt = str(request.url.include_query_params(offset=str(offset + limit), limit=str(limit)))
    body: dict[str, Any] = {"Items": page, "NextPage": nxt}
    if total:
        body["TotalCount"] = str(len(items))
    return body


def create_app(state: ConcurSandbox | None = None) -> FastAPI:
    st = state or ConcurSandbox()
    app = FastAPI(title="SAP Concur sandbox", docs_url=None, redoc_url=None)
    app.state.sandbox = st

    @app.middleware("http")
    async def correlation_id(request: Request, call_next: Any) -> Response:
        """`concur-correlationid` on every answer; a value the client sent is echoed back."""
        cid = request.headers.get("concur-correlationid") or str(uuid.uuid4())
        response: Response = await call_next(request)
        response.headers["concur-correlationid"] = cid
        return response

    @app.exception_handler(ConcurApiError)
    async def api_error(request: Request, exc: ConcurApiError) -> Response:
        return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)

    async def guard(request: Request, dc: str) -> None:
        """Datacenter, faults, latency, token, rate limit: in that order."""
        if dc not in REGIONS:
            raise v3_error(404, f"no API at datacenter {dc!r}; data lives at the company's datacenter")
        kind = st.take_fault(request.url.path)
        if st.faults.latency > 0:
            await asyncio.sleep(st.faults.latency)
        if kind == "429":
            with st.lock:
                st.throttled += 1
            raise ConcurApiError(429, {"httpStatus": "429 - Too Many Requests",
                                       "error": {"id": "security.rate.limit.reached", "message": "Too many requests"},
                                       "path": request.url.path}, {"Retry-After": "0"})
        if kind is not None:
            raise v3_error(int(kind), "Service unavailable: maintenance" if kind == "503" else "Internal error")
        st.authorize(request.headers.get("authorization"), dc, _root(request))
        st.admit()

    # ---- OAuth ------------------------------------------------------------------------------

    @app.post("/{dc}/oauth2/v0/token")
    async def token(dc: str, request: Request) -> Response:
        if dc not in DATACENTERS:
            return JSONResponse({"error": "not found"}, status_code=404)
        if request.url.query:
            raise oauth_error(400, 135, "invalid_request", "credentials belong in the body, not the URL")
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("application/x-www-form-urlencoded") or "charset" in ctype:
            raise oauth_error(400, 135, "invalid_request",
                              "unsupported format: application/x-www-form-urlencoded without charset expected")
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
        return JSONResponse(st.token(form, dc, _root(request)))

    # ---- v3 expense -------------------------------------------------------------------------

    @app.get("/{dc}/api/v3.0/expense/reports")
    async def reports(dc: str, request: Request) -> Response:
        await guard(request, dc)
        q = request.query_params
        rows = st.report_rows()
        for param, fieldname in (("approvalStatusCode", "ApprovalStatusCode"),
                                 ("paymentStatusCode", "PaymentStatusCode")):
            if q.get(param):
                wanted = set(q[param].split(","))
                rows = [r for r in rows if r[fieldname] in wanted]
        for param, fieldname in (("modifiedDateAfter", "LastModifiedDate"), ("submitDateAfter", "SubmitDate"),
                                 ("processingPaymentDateAfter", "ProcessingPaymentDate"),
                                 ("paidDateAfter", "PaidDate")):
            if q.get(param):
                rows = [r for r in rows if (r.get(fieldname) or "") > q[param]]
        if q.get("modifiedDateBefore"):
            rows = [r for r in rows if r["LastModifiedDate"] < q["modifiedDateBefore"]]
        user = q.get("user")
        if user and user != "ALL":
            rows = [r for r in rows if r["OwnerLoginID"].lower() == user.lower()]
        return JSONResponse(_v3_page(request, rows, 25))

    @app.get("/{dc}/api/v3.0/expense/reports/{rid}")
    async def report(dc: str, rid: str, request: Request) -> Response:
        await guard(request, dc)
        if request.query_params.get("user") == "ALL":
            raise v3_error(400, "user=ALL is not allowed here; name the report owner")
        with st.lock:
            r = st.reports.get(rid)
        if r is None:
            raise v3_error(404, f"report {rid} not found")
        return JSONResponse(r)

    @app.get("/{dc}/api/v3.0/expense/entries")
    async def entries(dc: str, request: Request) -> Response:
        await guard(request, dc)
        rid = request.query_params.get("reportID")
        with st.lock:
            rows = [e for e in st.entries.values() if rid is None or e["ReportID"] == rid]
        return JSONResponse(_v3_page(request, rows, 25))

    @app.get("/{dc}/api/v3.0/expense/entries/{eid}")
    async def entry(dc: str, eid: str, request: Request) -> Response:
        await guard(request, dc)
        with st.lock:
            e = st.entries.get(eid)
        if e is None:
            raise v3_error(404, f"entry {eid} not found")
        return JSONResponse(e)

    @app.get("/{dc}/api/v3.0/expense/allocations")
    async def allocations(dc: str, request: Request) -> Response:
        await guard(request, dc)
        q = request.query_params
        if "userId" in q:
            raise v3_error(400, "userId is not supported")
        with st.lock:
            if q.get("entryID"):
                rows = [a for a in st.allocations.values() if a["EntryID"] == q["entryID"]]
            elif q.get("reportID"):
                ids = {e["ID"] for e in st.entries.values() if e["ReportID"] == q["reportID"]}
                rows = [a for a in st.allocations.values() if a["EntryID"] in ids]
            else:
                raise v3_error(400, "one of reportID, entryID or itemizationID is required")
        _limit(request, 25, 100)  # the documented maximum for allocations
        return JSONResponse(_v3_page(request, rows, 25))

    @app.get("/{dc}/api/v3.0/expense/entryattendeeassociations")
    async def attendee_links(dc: str, request: Request) -> Response:
        await guard(request, dc)
        eid = request.query_params.get("entryID")
        with st.lock:
            rows = [a for a in st.attendee_links if eid is None or a["EntryID"] == eid]
        return JSONResponse(_v3_page(request, rows, 25))

    @app.get("/{dc}/api/v3.0/expense/attendees/{aid}")
    async def attendee(dc: str, aid: str, request: Request) -> Response:
        await guard(request, dc)
        with st.lock:
            a = st.attendees.get(aid)
        if a is None:
            raise v3_error(404, f"attendee {aid} not found")
        return JSONResponse(a)

    # ---- v3 payment requests ----------------------------------------------------------------

    def _digest(p: dict[str, Any]) -> dict[str, Any]:
        return {"ID": p["ID"], "PaymentRequestId": p["ID"], "PaymentRequestUri": None,
                "ApprovalStatusCode": p["ApprovalStatusCode"], "PaymentStatusCode": p["PaymentStatusCode"],
                "VendorName": p["VendorRemitAddress"]["Name"], "InvoiceNumber": p["InvoiceNumber"],
                "Total": p["InvoiceAmount"], "IsDeleted": "false", "CurrencyCode": p["CurrencyCode"],
                "OwnerLoginID": p["OwnerLoginID"], "CreateDate": p["CreateDate"], "PaidDate": p["PaidDate"],
                "PurchaseOrderNumber": None, "LastModifiedDate": p["LastModifiedDate"],
                "ExtractedDate": p["ExtractDate"]}

    @app.get("/{dc}/api/v3.0/invoice/paymentrequestdigests")
    async def digests(dc: str, request: Request) -> Response:
        await guard(request, dc)
        q = request.query_params
        with st.lock:
            rows = [_digest(p) for p in st.payment_requests.values()]
        if q.get("approvalStatus"):
            rows = [d for d in rows if d["ApprovalStatusCode"] == q["approvalStatus"]]
        if q.get("paymentStatus"):
            rows = [d for d in rows if d["PaymentStatusCode"] == q["paymentStatus"]]
        body = _v3_page(request, rows, 1000, total=True)
        body["PaymentRequestDigest"] = body["Items"]  # live answers fill this key [unverified C-P]
        return JSONResponse(body)

    @app.get("/{dc}/api/v3.0/invoice/paymentrequestdigests/{pid}")
    async def digest(dc: str, pid: str, request: Request) -> Response:
        await guard(request, dc)
        with st.lock:
            p = st.payment_requests.get(pid)
        if p is None:
            raise v3_error(404, f"payment request {pid} not found")
        return JSONResponse(_digest(p))

    @app.get("/{dc}/api/v3.0/invoice/paymentrequest/{pid}")
    async def payment_request(dc: str, pid: str, request: Request) -> Response:
        await guard(request, dc)
        with st.lock:
            p = st.payment_requests.get(pid)
        if p is None:
            raise v3_error(404, f"payment request {pid} not found")
        return JSONResponse(p)

    # ---- FIS v4 -----------------------------------------------------------------------------

    def _fis_docs(doc_type: str) -> list[dict[str, Any]]:
        if doc_type == "expense":
            return st.fis_expense_documents()
        if doc_type == "invoice":
            return st.fis_invoice_documents()
        if doc_type in ("cashadvance", "payroll", "requestobligation", "reportobligation"):
            return []
        raise ConcurApiError(400, {"ErrorMessage": {"errorId": "fis.doctype", "httpStatus": 400,
                                                    "errorMessage": f"unknown transaction type {doc_type}"}})

    def _source_id(d: dict[str, Any]) -> str:
        doc = d["document"]
        return str((doc.get("report") or {}).get("reportId") or (doc.get("requestHeader") or {}).get("requestId")
                   or "")

    @app.get("/{dc}/financialintegration/fi/v4/companies/transactiontypes/{doc_type}/transactions")
    async def fis(dc: str, doc_type: str, request: Request) -> Response:
        await guard(request, dc)
        q = request.query_params
        docs = _fis_docs(doc_type)
        if q.get("docId"):  # the document's id, or the report / payment request id it carries
            docs = [d for d in docs if q["docId"] in (d["id"], _source_id(d))
                    and (q.get("ignoreDocumentStatus") == "yes" or d["docStatus"] == "READY")]
        else:  # only READY, unacknowledged documents are listed
            docs = [d for d in docs if d["docStatus"] == "READY"]
        try:
            page = int(q.get("page", 0))
            limit = int(q.get("limit", 25))
        except ValueError:
            raise v3_error(400, "page and limit must be integers") from None
        if page < 0 or limit < 1:
            raise v3_error(400, "page must be >= 0 and limit >= 1")
        pages = -(-len(docs) // limit)  # Spring: 0 pages when nothing is READY
        content = docs[page * limit: (page + 1) * limit]
        if request.headers.get("documentformatas", "JSON").lower() == "text":
            content = [{**d, "document": json.dumps(d["document"])} for d in content]
        self_url = str(request.url)
        links = [{"rel": "first", "href": str(request.url.include_query_params(page="0"))},
                 {"rel": "self", "href": self_url},
                 {"rel": "last", "href": str(request.url.include_query_params(page=str(max(pages - 1, 0))))}]
        if page + 1 < pages:
            links.append({"rel": "next", "href": str(request.url.include_query_params(page=str(page + 1)))})
        return JSONResponse({"links": links, "content": content,
                             "page": {"size": limit, "totalElements": len(docs), "totalPages": pages,
                                      "number": page}})

    @app.post("/{dc}/financialintegration/fi/v4/companies/transactiontypes/{doc_type}/transactions/"
              "acknowledgements")
    async def acknowledge(dc: str, doc_type: str, request: Request) -> Response:
        await guard(request, dc)
        _fis_docs(doc_type)
        body = await request.json()
        ids = body.get("ids") if isinstance(body, dict) else None
        if not isinstance(ids, list):
            raise v3_error(400, "ids: a list of document ids is expected")
        system_id = body.get("systemId")
        return JSONResponse(st.acknowledge(doc_type, [str(i) for i in ids],
                                           str(system_id) if system_id is not None else None))

    @app.post("/{dc}/financialintegration/fi/v4/companies/transactiontypes/{doc_type}/transactions/"
              "postingconfirmations")
    async def confirm(dc: str, doc_type: str, request: Request) -> Response:
        await guard(request, dc)
        _fis_docs(doc_type)
        return JSONResponse(st.confirm_postings(doc_type, await request.json()))

    # ---- admin ------------------------------------------------------------------------------

    app.include_router(admin_router(
        faults=Switches(st.faults.to_dict, lambda body: st.set_faults(**body)),
        config=Switches(st.config.to_dict, lambda body: st.set_config(**body)),
        stats=st.stats))

    @app.get("/_sandbox/state/{name}")
    async def state_rows(name: str) -> Response:
        if name == "confirmations":
            with st.lock:
                return JSONResponse({name: list(st.confirmations)})
        if name not in ("reports", "entries", "allocations", "payment_requests"):
            return JSONResponse({"error": f"no collection {name!r}"}, status_code=404)
        with st.lock:
            return JSONResponse({name: list(getattr(st, name).values())})

    @app.post("/_sandbox/add_reports")
    async def add_reports(request: Request) -> Response:
        body = await request.json()
        try:
            count = int((body or {}).get("count", 0))
        except (TypeError, ValueError):
            return JSONResponse({"error": "count: an integer is expected"}, status_code=400)
        return JSONResponse({"added": len(st.add_reports(max(count, 0)))})

    @app.post("/_sandbox/reports/{rid}")
    async def change_report(rid: str, request: Request) -> Response:
        body = await request.json()
        with st.lock:
            r = st.reports.get(rid)
            if r is None:
                return JSONResponse({"error": f"no report {rid}"}, status_code=404)
            r.update(body or {})
            return JSONResponse(r)

    return app
