"""What the flows read from Ramp, each with the cursor the engine persists (see core/flow.py `Source`).

`ApprovedBillsSource`: bills ready to sync to the ERP (`sync_ready=true`), page by page. A bill
leaves that set once its accounting sync is reported, so every run reads the set from the start
and keeps no cursor.

`BillStatusSource`: the reconciliation poll of bill status changes that matter to the ERP after a
bill was synced: paid bills whose payment is not reported yet (`payment_status=PAID`, not
`BILL_AND_PAYMENT_SYNCED`) and rejected bills (`approval_status=REJECTED`, `sync_status=BILL_SYNCED`:
rejected after posting). The ledger's content hashes make a bill already handled cost nothing.
"""

from __future__ import annotations

from typing import Any

from ml_connector.core.flow import Page, RunContext, Source
from ml_connector.core.http import TokenEndpointError
from ml_connector.systems.ramp.client import RampClient


def no_token(exc: TokenEndpointError, state: dict[str, Any]) -> Page:
    """No token can be had (the token endpoint down, failing or timing out; a refused credential
    raises CredentialRefused and fails the run at once): the run ends waiting, not failed, and the
    next run reads from the start again (the bill sources keep no cursor)."""
    if exc.permanent:
        raise exc
    return Page([], state, True, waiting=f"no Ramp token: {exc}")


class ApprovedBillsSource(Source):
    """With `posted`, a second pass reads the bills synced already and still open (approved, not
    paid: they can still be edited in Ramp), so that a bill changed after it was posted is seen
    whether or not Ramp makes it ready to sync again."""

    #: the filters of the second pass: posted (synced) bills that can still change
    POSTED = {"sync_status": "BILL_SYNCED", "payment_status": "OPEN", "approval_status": "APPROVED"}

    def __init__(self, connection: str, *, page_size: int = 100, entity_id: str | None = None,
                 posted: bool = False) -> None:
        self.connection = connection
        self.page_size = max(2, min(int(page_size), 100))  # Ramp's page sizes
        self.entity_id = entity_id
        self.posted = posted

    def begin(self, ctx: RunContext, cursor: dict[str, Any]) -> dict[str, Any]:
        return {"start": None}

    def read_page(self, ctx: RunContext, state: dict[str, Any]) -> Page:
        try:
            return self._read_page(ctx, state)
        except TokenEndpointError as exc:
            return no_token(exc, state)

    def _read_page(self, ctx: RunContext, state: dict[str, Any]) -> Page:
        ramp: RampClient = ctx.runtime.connection(self.connection)
        second = int(state.get("pass", 0)) == 1
        if second:
            f = self.POSTED
            bills, nxt = ramp.list_bills_page(entity_id=self.entity_id, page_size=self.page_size,
                                              start=state.get("start"), sync_status=f["sync_status"],
                                              payment_status=f["payment_status"],
                                              approval_status=f["approval_status"])
        else:
            bills, nxt = ramp.list_bills_page(sync_ready=True, entity_id=self.entity_id,
                                              page_size=self.page_size, start=state.get("start"))
        records = [(str(b["id"]), b) for b in bills]
        if nxt is not None:
            return Page(records, {"start": nxt, **({"pass": 1} if second else {})}, False)
        if second or not self.posted:
            return Page(records, {"start": None, **({"pass": 1} if second else {})}, True)
        return Page(records, {"start": None, "pass": 1}, False)

    def finish(self, ctx: RunContext, state: dict[str, Any]) -> dict[str, Any]:
        return {}


class BillStatusSource(Source):
    #: (filters) of each pass, read one after the other
    PASSES: tuple[dict[str, str], ...] = ({"payment_status": "PAID", "sync_status": "BILL_SYNCED"},
                                          {"approval_status": "REJECTED", "sync_status": "BILL_SYNCED"})

    def __init__(self, connection: str, *, page_size: int = 100, entity_id: str | None = None,
                 passes: tuple[dict[str, str], ...] | None = None) -> None:
        self.connection = connection
        self.page_size = max(2, min(int(page_size), 100))
        self.entity_id = entity_id
        self.passes = self.PASSES if passes is None else passes

    def begin(self, ctx: RunContext, cursor: dict[str, Any]) -> dict[str, Any]:
        return {"pass": 0, "start": None}

    def read_page(self, ctx: RunContext, state: dict[str, Any]) -> Page:
        try:
            return self._read_page(ctx, state)
        except TokenEndpointError as exc:
            return no_token(exc, state)

    def _read_page(self, ctx: RunContext, state: dict[str, Any]) -> Page:
        ramp: RampClient = ctx.runtime.connection(self.connection)
        n = int(state.get("pass", 0))
        if n >= len(self.passes):
            return Page([], state, True)
        f = self.passes[n]
        bills, nxt = ramp.list_bills_page(entity_id=self.entity_id, page_size=self.page_size,
                                          start=state.get("start"), sync_status=f.get("sync_status"),
                                          payment_status=f.get("payment_status"),
                                          approval_status=f.get("approval_status"))
        # A listing leaves out the payment's trace id (R1: only GET /bills/{id} has it), which SAP
        # keeps as the payment's reference: read each paid bill once (few: reported ones leave the pass).
        bills = [ramp.get_bill(str(b["id"])) if b.get("payment") and not b["payment"].get("trace_id") else b
                 for b in bills]
        records = [(str(b["id"]), b) for b in bills]
        if nxt is not None:
            return Page(records, {"pass": n, "start": nxt}, False)
        last = n + 1 >= len(self.passes)
        return Page(records, {"pass": n + 1, "start": None}, last)

    def finish(self, ctx: RunContext, state: dict[str, Any]) -> dict[str, Any]:
        return {}
