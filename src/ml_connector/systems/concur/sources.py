"""What the flows read from Concur (see core/flow.py `Source`).

Through the Financial Integration Service (the main path; `fis.py` turns its documents into records):

- `FisExpenseSource`, `FisInvoiceSource`: the READY documents of FIS (`docType` expense / invoice),
  paged by FIS's `page` (0-based) and `limit`. FIS itself is the increment: it lists a document until
  it is acknowledged, so a run reads what is waiting and nothing else, with no cursor of ours.
  Acknowledging is the flow's option (`confirm_to_concur`): without it, nothing is written to Concur,
  every run lists the same documents until Concur moves them on, and the ledger's content hashes
  make a document read twice cost nothing. An acknowledgement sent while a run is still paging
  shrinks the list under it (a later page starts further on): a document skipped that way is still
  READY and is read by the next run.
- For what FIS lacks, the v3 API: an invoice's `v3_fields` (e.g. the payment-request field where the
  company keeps the vendor's tax id, which the FIS invoice document does not carry) are read from
  the v3 payment request.

Through the v3 APIs only (a company without FIS access, option `read_from: v3`):

- `ReadyExpenseReportsSource`: approved expense reports in Processing Payment (v3 reports,
  `user=ALL`), each with its entries and their allocations. A report leaves that set once Concur
  pays it, and nothing is written back by default, so every run reads the set from the start and
  keeps no cursor: the ledger's content hashes make a record read twice cost nothing.
- `ApprovedPaymentRequestsSource`: approved payment requests (v3 digests, then each request).

The page position is Concur's own NextPage (an absolute URI on the company's datacenter).
"""

from __future__ import annotations

from typing import Any

from ml_connector.core.flow import Page, RunContext, Source
from ml_connector.systems.concur import fis
from ml_connector.systems.concur.client import ConcurClient


class _FisSource(Source):
    doc_type = ""
    prefix = ""

    def __init__(self, connection: str, *, page_size: int | None = None, system_id: str | None = None) -> None:
        self.connection = connection
        self.page_size = page_size
        self.system_id = system_id

    def begin(self, ctx: RunContext, cursor: dict[str, Any]) -> dict[str, Any]:
        return {"page": 0}

    def record(self, concur: ConcurClient, item: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def read_page(self, ctx: RunContext, state: dict[str, Any]) -> Page:
        concur: ConcurClient = ctx.runtime.connection(self.connection)
        page = int(state.get("page") or 0)
        body = concur.fis_page(self.doc_type, page, limit=self.page_size, system_id=self.system_id)
        records = []
        for item in body["content"]:
            rec = self.record(concur, item)
            records.append((f"{self.prefix}:{rec['ID']}", rec))
        total_pages = int((body.get("page") or {}).get("totalPages") or 0)
        done = not body["content"] or page + 1 >= total_pages
        return Page(records, {"page": page + 1}, done)

    def finish(self, ctx: RunContext, state: dict[str, Any]) -> dict[str, Any]:
        return {}


class FisExpenseSource(_FisSource):
    """READY FIS expense documents → expense report records (`report:<reportId>`)."""

    doc_type = "expense"
    prefix = "report"

    def record(self, concur: ConcurClient, item: dict[str, Any]) -> dict[str, Any]:
        return fis.expense_record(item)


class FisInvoiceSource(_FisSource):
    """READY FIS invoice documents → payment request records (`payment_request:<requestId>`); the
    `v3_fields` FIS does not carry are read from the v3 payment request."""

    doc_type = "invoice"
    prefix = "payment_request"

    def __init__(self, connection: str, *, page_size: int | None = None, system_id: str | None = None,
                 v3_fields: tuple[str, ...] = ()) -> None:
        super().__init__(connection, page_size=page_size, system_id=system_id)
        self.v3_fields = v3_fields

    def record(self, concur: ConcurClient, item: dict[str, Any]) -> dict[str, Any]:
        rec = fis.invoice_record(item)
        if self.v3_fields:
            v3 = concur.payment_request(rec["ID"])
            rec.update({f: v3.get(f) for f in self.v3_fields})
        return rec


class ReadyExpenseReportsSource(Source):
    def __init__(self, connection: str, *, page_size: int | None = None) -> None:
        self.connection = connection
        self.page_size = page_size

    def begin(self, ctx: RunContext, cursor: dict[str, Any]) -> dict[str, Any]:
        return {"next": None}

    def read_page(self, ctx: RunContext, state: dict[str, Any]) -> Page:
        concur: ConcurClient = ctx.runtime.connection(self.connection)
        reports, nxt = concur.ready_reports_page(state.get("next"), limit=self.page_size)
        records = [(f"report:{r['ID']}", concur.report_with_lines(r)) for r in reports]
        return Page(records, {"next": nxt}, nxt is None)

    def finish(self, ctx: RunContext, state: dict[str, Any]) -> dict[str, Any]:
        return {}


class ApprovedPaymentRequestsSource(Source):
    def __init__(self, connection: str, *, page_size: int | None = None) -> None:
        self.connection = connection
        self.page_size = page_size

    def begin(self, ctx: RunContext, cursor: dict[str, Any]) -> dict[str, Any]:
        return {"next": None}

    def read_page(self, ctx: RunContext, state: dict[str, Any]) -> Page:
        concur: ConcurClient = ctx.runtime.connection(self.connection)
        digests, nxt = concur.approved_payment_requests_page(state.get("next"), limit=self.page_size)
        records = []
        for d in digests:
            if str(d.get("IsDeleted", "")).lower() == "true":
                continue
            rid = str(d.get("PaymentRequestId") or d["ID"])
            records.append((f"payment_request:{rid}", concur.payment_request(rid)))
        return Page(records, {"next": nxt}, nxt is None)

    def finish(self, ctx: RunContext, state: dict[str, Any]) -> dict[str, Any]:
        return {}
