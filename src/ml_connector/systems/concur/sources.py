"""What the flows read from Concur (see core/flow.py `Source`).

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
from ml_connector.systems.concur.client import ConcurClient


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
