"""What the flows read from Ramp, each with the cursor the engine persists (see core/flow.py `Source`).

`ApprovedBillsSource`: bills ready to sync to the ERP (`sync_ready=true`), page by page. A bill
leaves that set once its accounting sync is reported, so every run reads the set from the start
and keeps no cursor.
"""

from __future__ import annotations

from typing import Any

from ml_connector.core.flow import Page, RunContext, Source
from ml_connector.systems.ramp.client import RampClient


class ApprovedBillsSource(Source):
    def __init__(self, connection: str, *, page_size: int = 100, entity_id: str | None = None) -> None:
        self.connection = connection
        self.page_size = max(2, min(int(page_size), 100))  # Ramp's page sizes
        self.entity_id = entity_id

    def begin(self, ctx: RunContext, cursor: dict[str, Any]) -> dict[str, Any]:
        return {"start": None}

    def read_page(self, ctx: RunContext, state: dict[str, Any]) -> Page:
        ramp: RampClient = ctx.runtime.connection(self.connection)
        bills, nxt = ramp.list_bills_page(sync_ready=True, entity_id=self.entity_id,
                                          page_size=self.page_size, start=state.get("start"))
        return Page([(str(b["id"]), b) for b in bills], {"start": nxt}, nxt is None)

    def finish(self, ctx: RunContext, state: dict[str, Any]) -> dict[str, Any]:
        return {}
