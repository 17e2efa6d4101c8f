"""SAP ECC ↔ Ramp: bills changed in Ramp after they were posted in SAP (issue 11 item 9).

A posted bill is read again by the `bills` stream: while Ramp calls it ready to sync (an edit made it
ready again) and in the stream's second pass over the bills synced already and still open
(`ApprovedBillsSource(posted=True)`), so webhooks that start the stream and the scheduled poll both see
it. Its mapping is compared with what was posted (`posting_fingerprint`: company code, vendor,
currency, dates, invoice number and every line's GL account, cost center, amount and text, of the
payload the ledger holds for the posted document); equal → nothing to do (the posted payload is
returned, so the ledger sees no change and no SAP master data is read). Different → the flow's
policy (`options.edited_after_posting`), which an operator's mapping overrides per edit
(`edited_bills`: `<bill id>@<fingerprint>` → `repost` | `keep`):

- `review`: the bill is parked on `edited_bills:<bill>@<fingerprint>` with what changed (listed by
  `ml-connector review`, alerted once per cause as `record.parked`); SAP is not touched.
- `repost`: two outbox entries of the `bills` stream, each exactly once: the reversal of the posted
  document (source key `<bill>:reversal:<BELNR/BUKRS/GJAHR>`, InvoiceStatusTarget: BKPF-STBLG read
  before and after the call; a PO-based bill's MM invoice is reversed in MM, MR8M through
  BAPI_INCOMINGINVOICE_CANCEL, with RBKP-STBLG as its state, never by FB08) and the new invoice (source
  key `<bill>`, payload `replaces` = the old document, posted under the same XBLNR, which the reversed
  document no longer answers to). The repost
  is written only once SAP shows the old document reversed; the reversal is staged before it on the
  same page, so one run does both. A changed bill that cannot be posted (parked on master data, or
  with problems) is not reversed.
- `keep` (operator only): the SAP document stays as it is; the edit is not raised again.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from ml_connector.core import ledger, mapping
from ml_connector.core.flow import Outcome, Page, Report, RunContext, Source, Target, Verdict
from ml_connector.core.ledger import Change, Desired, Parked
from ml_connector.core.models import OutboxRow, RecordRow
from ml_connector.core.outbox import Entry

EDIT_POLICIES = ("review", "repost")
#: the mapping table an operator decides an edit in: `<bill>@<fingerprint>` → repost | keep
EDITS_TABLE = "edited_bills"
EDIT_DECISIONS = ("repost", "keep")
REVERSAL = ":reversal:"

Mapper = Callable[[RunContext, str, dict[str, Any]], Desired | Parked]


def posting_fingerprint(p: dict[str, Any]) -> str:
    """What SAP holds of a mapped bill, hashed: a change here means the posted document is wrong."""
    keep = {k: p.get(k) for k in ("company_code", "vendor", "currency", "credit_memo", "doc_date",
                                  "invoice_number", "problems")}
    keep["posting_date"] = p.get("original_posting_date") or p.get("posting_date")
    keep["lines"] = [_coding(ln) for ln in p.get("lines") or []]
    if p.get("kind"):  # an MM invoice (a PO-based bill); FI invoices hash as they always did
        keep["kind"] = p["kind"]
    return ledger.content_hash(keep)[:16]


def _coding(ln: dict[str, Any]) -> list[Any]:
    """What SAP holds of one line: GL account, cost center, amount and text, and for an MM invoice the PO
    item it is invoiced against (a line moved to another PO item is a change)."""
    out = [ln.get("gl_account"), ln.get("cost_center"), ln.get("amount"), ln.get("text")]
    return [*out, ln.get("po_number"), ln.get("po_item")] if "po_number" in ln else out


def what_changed(old: dict[str, Any], new: dict[str, Any]) -> str:
    """The differences between the posted payload and the new one, in words."""
    def total(p: dict[str, Any]) -> Decimal:
        return sum((Decimal(str(ln.get("amount") or 0)) for ln in p.get("lines") or []), Decimal(0))

    out = []
    if total(old) != total(new) or old.get("currency") != new.get("currency"):
        out.append(f"amount {total(old)} {old.get('currency')} → {total(new)} {new.get('currency')}")
    def coding(p: dict[str, Any]) -> list[list[Any]]:
        return [_coding(ln) for ln in p.get("lines") or []]

    def line(ln: dict[str, Any]) -> str:
        if "po_number" in ln:
            return f"PO {str(ln['po_number']).lstrip('0')}/{str(ln.get('po_item')).lstrip('0')} {ln.get('amount')}"
        return (f"GL {str(ln.get('gl_account')).lstrip('0')}/CC {str(ln.get('cost_center') or '').lstrip('0') or '-'} "
                f"{ln.get('amount')}")

    def lines(p: dict[str, Any]) -> str:
        return ", ".join(line(ln) for ln in p.get("lines") or [])

    if coding(old) != coding(new):
        out.append(f"lines [{lines(old)}] → [{lines(new)}]")
    for k in ("vendor", "company_code", "doc_date", "invoice_number"):
        if old.get(k) != new.get(k):
            out.append(f"{k} {old.get(k)} → {new.get(k)}")
    if (old.get("original_posting_date") or old.get("posting_date")) != new.get("posting_date"):
        out.append(f"posting date {old.get('original_posting_date') or old.get('posting_date')} → "
                   f"{new.get('posting_date')}")
    if new.get("problems"):
        out.append("; ".join(new["problems"]))
    return "; ".join(out) or "content changed"


def posted_invoice(ctx: RunContext, stream: str, key: str) -> tuple[str, dict[str, Any]] | None:
    """(document, payload) the ledger holds as posted for bill `key`, or None (not posted by this flow)."""
    with ctx.runtime.db.read() as s:
        row = s.get(RecordRow, (ctx.flow, stream, key))
        if row is None or not row.target_id:
            return None
        q = select(OutboxRow.payload).where(OutboxRow.flow == ctx.flow, OutboxRow.stream == stream,
                                            OutboxRow.source_key == key, OutboxRow.state == "posted")
        payload = s.scalar(q.where(OutboxRow.content_hash == row.content_hash).order_by(OutboxRow.id.desc()).limit(1))
        if payload is None:
            payload = s.scalar(q.order_by(OutboxRow.id.desc()).limit(1))
        if not isinstance(payload, dict) or "lines" not in payload:
            return None
        return str(row.target_id), dict(payload)


class EditedBills:
    """The bills stream's decisions about posted bills (see the module docstring), once per run and
    bill content: the source (which stages a reversal first) and the mapping ask the same question."""

    def __init__(self, policy: str, *, stream: str, plain: Mapper, validated: Mapper,
                 mapped: Callable[[RunContext, str, str], str | None]) -> None:
        if policy not in EDIT_POLICIES:
            raise ValueError(f"options.edited_after_posting must be one of {', '.join(EDIT_POLICIES)}")
        self.policy = policy
        self.stream = stream
        self.plain = plain  # the bill's mapping without SAP's master data check
        self.validated = validated  # the mapping a new bill gets (with the check)
        self.mapped = mapped
        # decisions the source made for the page being read, taken by the mapping of that page
        self._page: dict[tuple[str, str, str], Desired | Parked] = {}

    def decide(self, ctx: RunContext, key: str, bill: dict[str, Any]) -> Desired | Parked:
        got = self._page.pop((ctx.run_id, key, ledger.content_hash(bill)), None)
        return got if got is not None else self._decide(ctx, key, bill, staged=False)

    def _remember(self, ctx: RunContext, key: str, bill: dict[str, Any]) -> Desired | Parked:
        if len(self._page) > 10_000:  # left over by steps that failed between reading and mapping
            self._page.clear()
        d = self._page[(ctx.run_id, key, ledger.content_hash(bill))] = self._decide(ctx, key, bill, staged=True)
        return d

    def _decide(self, ctx: RunContext, key: str, bill: dict[str, Any], *, staged: bool) -> Desired | Parked:
        """`staged`: called by the source, which stages the reversal before the repost; otherwise (a
        parked bill mapped again, a replay) a repost whose reversal is not in the ledger yet waits for
        the next run, which stages both."""
        posted = posted_invoice(ctx, self.stream, key)
        if posted is None:
            return self.validated(ctx, key, bill)
        doc, old = posted
        new = self.plain(ctx, key, bill)
        if isinstance(new, Parked):
            return new  # changed so that it cannot be mapped (a new dimension, entity …): waits, listed
        fp = posting_fingerprint(new.payload)
        if fp == posting_fingerprint(old):
            return Desired(key, old)  # what was posted stands: no change for the ledger
        edit = f"{key}@{fp}"
        decision = self.mapped(ctx, EDITS_TABLE, edit) or self.policy
        if decision == "keep":
            return Desired(key, old)
        if decision != "repost":
            how = f"`ml-connector mappings set {ctx.flow} {EDITS_TABLE} {edit} repost`"
            return Parked(key, mapping.waits_for(EDITS_TABLE, edit), payload=bill,
                          reason=f"edited in Ramp after it was posted in SAP as {doc}: "
                                 f"{what_changed(old, new.payload)}; {how} reverses and reposts it, `keep` "
                                 "keeps the SAP document as it is")
        m = self.validated(ctx, key, bill)
        if isinstance(m, Parked):
            return m  # the new version waits for master data: the posted document stays until it can post
        if not staged and not m.payload.get("problems") and not self._reversed(ctx, key, doc):
            return Parked(key, mapping.waits_for(EDITS_TABLE, edit), payload=bill,
                          reason=f"edited in Ramp after it was posted in SAP as {doc}: {what_changed(old, m.payload)}; "
                                 f"to be reposted: the next run of the bills stream reverses {doc}, then reposts it")
        return Desired(key, {**m.payload, "replaces": doc}, active=m.active)

    def _reversed(self, ctx: RunContext, key: str, doc: str) -> bool:
        """Whether the ledger holds the reversal of `doc` as done."""
        with ctx.runtime.db.read() as s:
            row = s.get(RecordRow, (ctx.flow, self.stream, reversal_key(key, doc)))
            return row is not None and bool(row.target_id)

    def reversal_of(self, ctx: RunContext, key: str, bill: dict[str, Any]) -> dict[str, Any] | None:
        """The reversal record to stage before bill `key`'s repost (None: no repost now)."""
        d = self._remember(ctx, key, bill)
        if isinstance(d, Parked) or not d.payload.get("replaces") or d.payload.get("problems"):
            return None
        p = d.payload
        doc = str(p["replaces"])
        rev = {"action": "reverse", "document": doc, "bill_id": key, "company_code": p["company_code"],
               "xblnr": p["xblnr"], "fiscal_year": doc.split("/")[-1], "invoice_number": p["invoice_number"],
               "posting_date": p["posting_date"], "reason": "01", "edited": True}
        # An MM invoice is reversed in MM (MR8M); the target tells by the document itself (AWTYP RMRP).
        return {**rev, "kind": "mm"} if p.get("kind") == "mm" else rev


def reversal_key(bill_id: str, document: str) -> str:
    return f"{bill_id}{REVERSAL}{document}"


def is_reversal(key: str) -> bool:
    return REVERSAL in key


class BillsWithEdits(Source):
    """The bills source, with each posted bill that is to be reposted preceded by its reversal record;
    a bill synced in Ramp that this flow never posted (exported by other means) is left out."""

    def __init__(self, inner: Source, edits: EditedBills) -> None:
        self.inner = inner
        self.edits = edits

    def begin(self, ctx: RunContext, cursor: dict[str, Any]) -> dict[str, Any]:
        return self.inner.begin(ctx, cursor)

    def finish(self, ctx: RunContext, state: dict[str, Any]) -> dict[str, Any]:
        return self.inner.finish(ctx, state)

    def read_page(self, ctx: RunContext, state: dict[str, Any]) -> Page:
        page = self.inner.read_page(ctx, state)
        records: list[tuple[str, dict[str, Any]]] = []
        for key, bill in page.records:
            if bill.get("sync_status") not in (None, "NOT_SYNCED") and posted_invoice(
                    ctx, self.edits.stream, key) is None:
                continue  # synced in Ramp, not by this flow: not ours to post or correct
            rev = self.edits.reversal_of(ctx, key, bill)
            if rev is not None:
                records.append((reversal_key(key, rev["document"]), rev))
            records.append((key, bill))
        return Page(records, page.position, page.done, page.estimate_total, page.waiting)


class BillsTarget(Target):
    """Invoices through `invoices` (VendorInvoiceTarget), reversals of edited bills through `reversals`
    (InvoiceStatusTarget); a repost is written only once SAP shows the document it replaces reversed
    (its XBLNR would otherwise find that document and call the repost done)."""

    batch_size = 1

    def __init__(self, invoices: Any, reversals: Any) -> None:
        self.invoices = invoices
        self.reversals = reversals
        self.connection = invoices.connection

    @staticmethod
    def _reversal(e: Entry | Change) -> bool:
        return e.payload.get("action") == "reverse"

    def lookup(self, ctx: RunContext, entries: list[Entry]) -> list[Outcome]:
        out: list[Outcome] = []
        for e in entries:
            if self._reversal(e):
                out += list(self.reversals.lookup(ctx, [e]))
                continue
            found = list(self.invoices.lookup(ctx, [e]))
            # the document found by XBLNR is the replaced one (not reversed yet): the repost is not posted
            out += [o for o in found if not e.payload.get("replaces") or o.target_id != e.payload["replaces"]]
        return out

    def write(self, ctx: RunContext, entries: list[Entry], report: Report) -> None:
        for e in entries:
            if self._reversal(e):
                self.reversals.write(ctx, [e], report)
                continue
            old = e.payload.get("replaces")
            if old and not e.payload.get("problems"):
                belnr, bukrs, gjahr = str(old).split("/")
                poster = self.invoices.poster(ctx)
                ref = poster.document(bukrs, belnr, gjahr)
                if ref is not None and not poster.is_reversed(ref):  # an MM invoice: RBKP-STBLG
                    report([Outcome(e.id, "failed", request=e.payload,
                                    error=f"not reposted: the document it replaces, {old}, is not reversed in SAP "
                                          f"(its reversal, record {reversal_key(e.source_key, str(old))}, failed or "
                                          "is pending); replay both once the reversal can post")])
                    continue
            self.invoices.write(ctx, [e], report)

    def preview(self, ctx: RunContext, change: Change) -> str | None:
        if self._reversal(change):
            how = " in MM (MR8M, BAPI_INCOMINGINVOICE_CANCEL)" if change.payload.get("kind") == "mm" else ""
            return (f"would reverse SAP document {change.payload['document']}{how} (the bill was edited after "
                    "posting)")
        if change.payload.get("replaces"):
            return f"would repost it after the reversal of SAP document {change.payload['replaces']}"
        result: str | None = self.invoices.preview(ctx, change)
        return result

    def describe(self, op: str, payload: dict[str, Any]) -> str:
        if payload.get("action") == "reverse":
            return self.reversals.describe(op, payload)
        return str(self.invoices.describe(op, payload))

    # The approval queue (core/approval.py) asks the target that will write the payload.
    def _for(self, payload: dict[str, Any]) -> Any:
        return self.reversals if payload.get("action") == "reverse" else self.invoices

    def check(self, ctx: RunContext, payload: dict[str, Any]) -> Verdict | None:
        verdict: Verdict | None = self._for(payload).check(ctx, payload)
        return verdict

    def document(self, payload: dict[str, Any]) -> dict[str, Any]:
        return dict(self._for(payload).document(payload))

    def scope(self, payload: dict[str, Any]) -> str | None:
        unit: str | None = self._for(payload).scope(payload)
        return unit
