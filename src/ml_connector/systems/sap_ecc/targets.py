"""What the flows write to SAP ECC, each with its exactly-once strategy (see core/flow.py `Target`).

`VendorInvoiceTarget`: FI vendor invoices (credit memos) posted through `DocumentPoster`. The
document's reference (XBLNR) is derived from the source record, so the strategy is
post-with-reference-lookup: BKPF is searched by XBLNR before posting and after any uncertain
call, and an entry left in doubt is resolved by the same lookup (never posted twice).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ml_connector.core.flow import Outcome, Report, RunContext, Target
from ml_connector.core.ledger import Change
from ml_connector.core.outbox import Entry
from ml_connector.systems.sap_ecc.posting import (
    DocRef,
    DocumentPoster,
    OutcomeUnknownError,
    PostingError,
    VendorInvoice,
    document_xblnr,
    fiscal_year_of,
)


class NotPostable(Exception):
    """The payload cannot become a document (the flow's mapping found problems): fail it, with
    this message, without calling SAP."""


#: What a flow may do after a document is known to be posted (e.g. report it to the source):
#: given the posted outcome, return the entry's final outcome.
AfterPost = Callable[[RunContext, Entry, Outcome], Outcome]
#: What a flow may do after a refusal (e.g. report it to the source): a note appended to the error.
AfterRefusal = Callable[[RunContext, Entry, str], str]


def _posted(e: Entry, belnr: str, bukrs: str, gjahr: str, xblnr: str, *, already_posted: bool,
            recovered: bool) -> Outcome:
    doc = f"{belnr}/{bukrs}/{gjahr}"
    return Outcome(e.id, "posted", target_id=doc, request=e.payload,
                   response={"document": doc, "xblnr": xblnr, "already_posted": already_posted,
                             "recovered": recovered})


class VendorInvoiceTarget(Target):
    """Vendor invoices posted exactly once, one entry per call.

    `invoice_of(payload)`: the flow's payload as a `VendorInvoice` (raises `NotPostable`).
    `after_post` / `after_refusal`: the flow's follow-ups (called for documents found by the
    lookup too, so a follow-up lost in a crash is done on recovery; they must be idempotent).
    `refusal_note` / `posted_note`: what the dry run adds for a payload that is not postable / a
    document already posted (e.g. what the follow-up would still do).
    """

    batch_size = 1

    def __init__(self, connection: str, invoice_of: Callable[[dict[str, Any]], VendorInvoice], *,
                 after_post: AfterPost | None = None, after_refusal: AfterRefusal | None = None,
                 refusal_note: str = "", posted_note: str = "") -> None:
        self.connection = connection
        self.invoice_of = invoice_of
        self.after_post = after_post
        self.after_refusal = after_refusal
        self.refusal_note = refusal_note
        self.posted_note = posted_note

    def poster(self, ctx: RunContext) -> DocumentPoster:
        return DocumentPoster(ctx.runtime.connection(self.connection))

    def _finish(self, ctx: RunContext, e: Entry, outcome: Outcome) -> Outcome:
        return self.after_post(ctx, e, outcome) if self.after_post else outcome

    def _refused(self, ctx: RunContext, e: Entry, message: str) -> Outcome:
        note = self.after_refusal(ctx, e, message) if self.after_refusal else ""
        return Outcome(e.id, "failed", error=message + note, request=e.payload)

    def lookup(self, ctx: RunContext, entries: list[Entry]) -> list[Outcome]:
        poster = self.poster(ctx)
        outs = []
        for e in entries:
            try:
                inv = self.invoice_of(e.payload)
            except NotPostable:
                continue  # never sent to SAP: `write` fails it again
            ref: DocRef | None = poster.find_posted(inv.company_code, document_xblnr(inv), fiscal_year_of(inv))
            if ref is not None:
                outs.append(self._finish(ctx, e, _posted(e, ref.belnr, ref.bukrs, ref.gjahr, ref.xblnr,
                                                         already_posted=True, recovered=False)))
        return outs

    def write(self, ctx: RunContext, entries: list[Entry], report: Report) -> None:
        poster = self.poster(ctx)
        for e in entries:
            try:
                inv = self.invoice_of(e.payload)
            except NotPostable as exc:
                report([self._refused(ctx, e, str(exc))])
                continue
            try:
                # Exactly once: BKPF lookup by XBLNR first; an uncertain call is resolved by lookup.
                res = poster.post(inv)
            except PostingError as exc:
                report([self._refused(ctx, e, f"SAP refused the document: {exc}")])
                continue
            except OutcomeUnknownError as exc:
                report([Outcome(e.id, "uncertain", error=str(exc), request=e.payload)])
                continue
            report([self._finish(ctx, e, _posted(e, res.belnr, res.bukrs, res.gjahr, res.xblnr,
                                                 already_posted=res.already_posted, recovered=res.recovered))])

    def preview(self, ctx: RunContext, change: Change) -> str | None:
        """Dry run: BAPI_ACC_DOCUMENT_CHECK (writes nothing), after the BKPF lookup by XBLNR."""
        try:
            inv = self.invoice_of(change.payload)
        except NotPostable as exc:
            return f"would FAIL{self.refusal_note}: {exc}"
        try:
            poster = self.poster(ctx)
            ref = poster.find_posted(inv.company_code, document_xblnr(inv), fiscal_year_of(inv))
            if ref is not None:
                return f"already posted in SAP as {ref.belnr}/{ref.bukrs}/{ref.gjahr}{self.posted_note}"
            poster.check(inv)
            return "SAP check (BAPI_ACC_DOCUMENT_CHECK): OK, SAP would accept it"
        except PostingError as exc:
            return f"SAP check (BAPI_ACC_DOCUMENT_CHECK): SAP would REFUSE it: {exc}"
        except Exception as exc:  # the preview must not break the listing
            return f"SAP check not possible: {type(exc).__name__}: {exc}"
