"""What the flows write to SAP ECC, each with its exactly-once strategy (see core/flow.py `Target`).

`VendorInvoiceTarget`: FI vendor invoices (credit memos), or MM invoices for PO-based bills (RBKP
searched by XBLNR and vendor instead of BKPF), posted through `DocumentPoster`. The
document's reference (XBLNR) is derived from the source record, so the strategy is
post-with-reference-lookup: BKPF is searched by XBLNR before posting and after any uncertain
call, and an entry left in doubt is resolved by the same lookup (never posted twice).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ml_connector.core.flow import Outcome, Report, RunContext, Target, Verdict
from ml_connector.core.ledger import Change
from ml_connector.core.outbox import Entry
from ml_connector.systems.sap_ecc.posting import (
    DocRef,
    DocumentPoster,
    MMInvoice,
    OutcomeUnknownError,
    PostingError,
    VendorInvoice,
    build_acc_document,
    build_incoming_invoice,
    document_xblnr,
    fiscal_year_of,
    mm_invoice_key,
)


def _find(poster: DocumentPoster, inv: VendorInvoice | MMInvoice) -> DocRef | None:
    """The posted document: an MM invoice by RBKP (XBLNR + vendor), an FI invoice by BKPF (XBLNR)."""
    if isinstance(inv, MMInvoice):
        return poster.find(inv)
    return poster.find_posted(inv.company_code, document_xblnr(inv), fiscal_year_of(inv))


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
                             "recovered": recovered},
                   resolved="lookup" if recovered or already_posted else None)


class VendorInvoiceTarget(Target):
    """Vendor invoices posted exactly once, one entry per call.

    `invoice_of(payload)`: the flow's payload as a `VendorInvoice` (raises `NotPostable`).
    `after_post` / `after_refusal`: the flow's follow-ups (called for documents found by the
    lookup too, so a follow-up lost in a crash is done on recovery; they must be idempotent).
    `refusal_note` / `posted_note`: what the dry run adds for a payload that is not postable / a
    document already posted (e.g. what the follow-up would still do).
    """

    batch_size = 1

    def __init__(self, connection: str, invoice_of: Callable[[dict[str, Any]], VendorInvoice | MMInvoice], *,
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
            ref: DocRef | None = _find(poster, inv)
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
            ref = _find(poster, inv)
            if ref is not None:
                return f"already posted in SAP as {ref.belnr}/{ref.bukrs}/{ref.gjahr}{self.posted_note}"
            if isinstance(inv, MMInvoice):  # no check BAPI for it: the PO items were matched when mapped
                return "MM invoice: its PO items match SAP's purchase order (EKPO); SAP has no check call for it"
            poster.check(inv)
            return "SAP check (BAPI_ACC_DOCUMENT_CHECK): OK, SAP would accept it"
        except PostingError as exc:
            return f"SAP check (BAPI_ACC_DOCUMENT_CHECK): SAP would REFUSE it: {exc}"
        except Exception as exc:  # the preview must not break the listing
            return f"SAP check not possible: {type(exc).__name__}: {exc}"


    def scope(self, payload: dict[str, Any]) -> str | None:
        """The company code (BUKRS) the invoice is posted in."""
        try:
            return self.invoice_of(payload).company_code
        except NotPostable:
            return None

    def document(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The BAPI_ACC_DOCUMENT_POST parameters SAP will receive (header, vendor and G/L items, amounts)."""
        try:
            inv = self.invoice_of(payload)
            return build_incoming_invoice(inv) if isinstance(inv, MMInvoice) else build_acc_document(inv)
        except NotPostable as exc:
            return {"not_postable": str(exc), "payload": payload}

    def check(self, ctx: RunContext, payload: dict[str, Any]) -> Verdict | None:
        """SAP's own verdict (BAPI_ACC_DOCUMENT_CHECK, writes nothing), after the BKPF lookup by XBLNR."""
        by = "BAPI_ACC_DOCUMENT_CHECK"
        try:
            inv = self.invoice_of(payload)
        except NotPostable as exc:
            return Verdict(False, [f"Not sent to SAP: {exc}"], "mapping")
        poster = self.poster(ctx)
        ref = _find(poster, inv)
        if ref is not None:
            return Verdict(True, [f"Already posted in SAP as {ref.belnr}/{ref.bukrs}/{ref.gjahr}: approving "
                                  "records it, nothing is posted twice"], "lookup by XBLNR")
        if isinstance(inv, MMInvoice):
            # SAP has no check call for an MM invoice; its PO items were matched against EKPO when mapped.
            return Verdict(True, ["MM invoice: its lines match the purchase order's items in SAP (EKPO); "
                                  "SAP has no check call for it"], "EKKO/EKPO match")
        try:
            messages = poster.check(inv)
        except PostingError as exc:
            return Verdict(False, [str(m) for m in exc.causes] or [str(exc)], by)
        return Verdict(True, [str(m) for m in messages] or ["SAP would accept the document"], by)


#: What a flow does after a status change is known to be in SAP (e.g. report the payment to the source).
AfterStatus = Callable[[RunContext, Entry, Outcome], Outcome]

STATUS_ACTIONS = ("clear", "block", "unblock", "reverse")


class NotYetPosted(Exception):
    """The invoice a status change is for is not in SAP (yet): the entry is parked, and mapped and
    delivered again at the start of the next run."""


class InvoiceStatusTarget(Target):
    """Status changes decided outside SAP applied to posted invoices, exactly once, one per call.

    Payload: {action, document: "BELNR/BUKRS/GJAHR", payment_date?, reference?, text?, block_key?,
    reason?, posting_date?}. `clear`: the payment clears the invoice's open vendor items
    (Z_MLC_CLEAR_VENDOR_ITEMS); `block` / `unblock`: the payment block ZLSPR set / lifted
    (Z_MLC_SET_PAYMENT_BLOCK, idempotent by value); `reverse`: the invoice reversed
    (Z_MLC_ACC_DOCUMENT_REVERSE, FB08; the FI document of an MM invoice, AWTYP RMRP, through
    Z_MLC_INCOMINGINVOICE_CANCEL = BAPI_INCOMINGINVOICE_CANCEL, MR8M, with RBKP-STBLG as its state).
    The invoice's state in SAP is the deterministic key: it is read
    before every call and after any uncertain one (BSIK/BSAK for clearing, BKPF-STBLG for the
    reversal, ZLSPR for blocks), so a retry after a crash or timeout never posts a second payment or
    reversal. `after_status`: the flow's follow-up (called for found states too; must be idempotent).
    """

    batch_size = 1

    def __init__(self, connection: str, *, after_status: AfterStatus | None = None) -> None:
        self.connection = connection
        self.after_status = after_status

    def poster(self, ctx: RunContext) -> DocumentPoster:
        return DocumentPoster(ctx.runtime.connection(self.connection))

    @staticmethod
    def _doc(poster: DocumentPoster, p: dict[str, Any]) -> tuple[str, str, str]:
        """(BUKRS, BELNR, GJAHR) of the invoice: the payload's `document`, else found by its XBLNR
        (`company_code`, `xblnr`, `fiscal_year`); NotYetPosted when SAP has no such document."""
        if p.get("document"):
            belnr, bukrs, gjahr = str(p["document"]).split("/")
            return bukrs, belnr, gjahr
        docs = poster.find_documents(str(p["company_code"]), str(p["xblnr"]), str(p["fiscal_year"]))
        live = [d for d in docs if not d.reversed] or [d for d in docs if d.blart == "KR" or d.blart == "KG"] or docs
        if not live:
            raise NotYetPosted(f"no SAP document with XBLNR {p['xblnr']} in {p['company_code']}/{p['fiscal_year']} "
                               f"yet: the {p.get('action')} waits for the invoice to be posted")
        d = min(live, key=lambda r: r.belnr)
        return d.bukrs, d.belnr, d.gjahr

    def _done(self, ctx: RunContext, e: Entry, target_id: str, *, found: bool, **detail: Any) -> Outcome:
        out = Outcome(e.id, "posted", target_id=target_id, request=e.payload,
                      response={"action": e.payload["action"], "document": e.payload["document"],
                                "already_done": found, **detail}, resolved="lookup" if found else None)
        return self.after_status(ctx, e, out) if self.after_status else out

    def _state(self, poster: DocumentPoster, e: Entry) -> str | None:
        """The target id when SAP already shows the change (None: not yet)."""
        p = e.payload
        bukrs, belnr, gjahr = self._doc(poster, p)
        action = p["action"]
        if action == "reverse":
            ref = poster.document(bukrs, belnr, gjahr)
            inv = mm_invoice_key(ref) if ref is not None else None
            if inv is not None:  # an MM invoice: reversed in MM, RBKP-STBLG/STJAH says by which document
                doc = poster.mm_invoice_doc(*inv)
                return f"{doc.stblg}/{bukrs}/{doc.stjah or gjahr}" if doc is not None and doc.stblg else None
            return f"{ref.stblg}/{bukrs}/{(p.get('posting_date') or gjahr)[:4]}" if ref and ref.stblg else None
        st = poster.payment_status(bukrs, belnr, gjahr)
        if action == "clear":
            return f"{st.clearing_document}/{bukrs}/{gjahr}" if st.status in ("paid", "reversed") else None
        if st.status != "open" and st.status != "partially_paid":
            return None
        want = str(p.get("block_key") or "A")[:1] if action == "block" else ""
        return f"{belnr}/{bukrs}/{gjahr}" if st.payment_block == want else None

    def lookup(self, ctx: RunContext, entries: list[Entry]) -> list[Outcome]:
        poster = self.poster(ctx)
        outs = []
        for e in entries:
            try:
                tid = self._state(poster, e)
            except (NotYetPosted, PostingError):
                continue  # `write` says why
            if tid is not None:
                outs.append(self._done(ctx, e, tid, found=True))
        return outs

    def write(self, ctx: RunContext, entries: list[Entry], report: Report) -> None:
        from datetime import date as _date

        poster = self.poster(ctx)
        for e in entries:
            p = e.payload
            action = p.get("action")
            try:
                if action not in STATUS_ACTIONS:
                    raise NotPostable(f"unknown status action {action!r} (one of {', '.join(STATUS_ACTIONS)})")
                bukrs, belnr, gjahr = self._doc(poster, p)
                if action == "clear":
                    when = _date.fromisoformat(p["payment_date"]) if p.get("payment_date") else None
                    aug, found = poster.clear_by_payment(bukrs, belnr, gjahr, payment_date=when,
                                                         reference=str(p.get("reference") or ""),
                                                         text=str(p.get("text") or ""),
                                                         bank_account=str(p.get("bank_account") or ""))
                    out = self._done(ctx, e, f"{aug}/{bukrs}/{gjahr}", found=found, clearing_document=aug)
                elif action == "reverse":
                    when = _date.fromisoformat(p["posting_date"]) if p.get("posting_date") else None
                    reason = str(p.get("reason") or "01")
                    ref = poster.document(bukrs, belnr, gjahr)
                    inv = mm_invoice_key(ref) if ref is not None else None
                    if inv is not None:
                        # The FI document of an MM invoice: SAP reverses it only in MM (MR8M,
                        # BAPI_INCOMINGINVOICE_CANCEL), which reverses the FI document with it; never FB08.
                        rev, year, found = poster.cancel_mm_invoice(*inv, posting_date=when, reason=reason)
                        out = self._done(ctx, e, f"{rev}/{bukrs}/{year}", found=found, mm_invoice=f"{inv[0]}/{inv[1]}",
                                         reversal_invoice=f"{rev}/{year}", via="BAPI_INCOMINGINVOICE_CANCEL")
                    else:
                        rev, found = poster.reverse(bukrs, belnr, gjahr, posting_date=when, reason=reason)
                        year = (p.get("posting_date") or gjahr)[:4]
                        out = self._done(ctx, e, f"{rev}/{bukrs}/{year}", found=found, reversal_document=rev)
                else:
                    found = self._state(poster, e) is not None
                    if not found:
                        key = str(p.get("block_key") or "A")[:1] if action == "block" else ""
                        poster.set_payment_block(bukrs, belnr, gjahr, key)
                    out = self._done(ctx, e, f"{belnr}/{bukrs}/{gjahr}", found=found)
            except NotYetPosted as exc:
                report([Outcome(e.id, "parked", error=str(exc), request=p)])
                continue
            except NotPostable as exc:
                report([Outcome(e.id, "failed", error=str(exc), request=p)])
                continue
            except PostingError as exc:
                report([Outcome(e.id, "failed", error=f"SAP refused the {action}: {exc}", request=p)])
                continue
            except OutcomeUnknownError as exc:
                report([Outcome(e.id, "uncertain", error=str(exc), request=p)])
                continue
            report([out])

    def describe(self, op: str, payload: dict[str, Any]) -> str:
        where = payload.get("document") or f"XBLNR {payload.get('xblnr')} in {payload.get('company_code')}"
        return f"{payload.get('action')} SAP invoice {where} (Ramp bill {payload.get('bill_id', '')})"
