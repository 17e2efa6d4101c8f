"""What the flows write to SAP Business One (see core/flow.py `Target`).

`JournalEntriesTarget`: balanced journal entries, each posted exactly once. Business One has no
idempotency key, so each entry carries a deterministic external id (derived from its source
document) in the idempotency field of provider.yaml (`Reference3`): before a post the entry is
looked up by it (`$filter`), and an uncertain answer (a dropped connection, a gateway page after
sending) is resolved by the same lookup before anything is sent again. The engine keeps the
JdtNum it learns as the entry's target id.

Payload: {"external_id": str, "entry": <JournalEntries body>, "problems": [str]} - a payload
with problems is refused without a call (the mapping found what B1 would refuse for certain).

For the approval queue: `document` is the exact JournalEntries body posted (the external id in
`Reference3`), `check` Business One's verdict on it without posting (journal_check.py: what is B1's
own answer and what is a check of its master data read from it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ml_connector.core.flow import Outcome, Report, RunContext, Target, Verdict
from ml_connector.core.ledger import Change
from ml_connector.core.outbox import Entry
from ml_connector.systems.sap_b1.client import JournalPosting, ServiceLayerApi
from ml_connector.systems.sap_b1.errors import B1CommunicationError, B1Error, B1SessionError
from ml_connector.systems.sap_b1.facts import b1_facts
from ml_connector.systems.sap_b1.journal_check import check_journal_entry


class JournalEntriesTarget(Target):
    batch_size = 20  # entries in doubt after a crash: at most one batch, each looked up

    def __init__(self, connection: str, *, describe: Callable[[str, dict[str, Any]], str] | None = None,
                 after_post: Callable[[RunContext, Entry, Outcome], Outcome] | None = None) -> None:
        self.connection = connection
        self._describe = describe
        # A follow-up the flow wants once an entry is in B1 (posted now or found): e.g. a posting
        # confirmation to the source. Its outcome replaces the posted one (failed: replay runs the
        # follow-up again, the lookup finds the journal entry).
        self._after_post = after_post

    def _done(self, ctx: RunContext, e: Entry, posted: Outcome) -> Outcome:
        return posted if self._after_post is None else self._after_post(ctx, e, posted)

    def _b1(self, ctx: RunContext) -> ServiceLayerApi:
        client: ServiceLayerApi = ctx.runtime.connection(self.connection)
        return client

    @staticmethod
    def _posted(e: Entry, p: JournalPosting) -> Outcome:
        return Outcome(e.id, "posted", target_id=str(p.jdt_num), adopted=not p.created,
                       response={"JdtNum": p.jdt_num, "Number": p.number, "created": p.created},
                       found=None if p.created else p.entry)

    def lookup(self, ctx: RunContext, entries: list[Entry]) -> list[Outcome]:
        b1 = self._b1(ctx)
        out = []
        for e in entries:
            rows = b1.find_journal_entries(str(e.payload["external_id"]))
            if rows:
                row = rows[0]
                number = row.get("Number")
                out.append(self._done(ctx, e, self._posted(e, JournalPosting(
                    int(row["JdtNum"]), int(number) if number is not None else None, False, row))))
        return out

    def write(self, ctx: RunContext, entries: list[Entry], report: Report) -> None:
        b1 = self._b1(ctx)
        for e in entries:
            p = e.payload
            if p.get("problems"):
                report([Outcome(e.id, "failed", request=p, error="; ".join(p["problems"]))])
                continue
            try:
                posting = b1.post_journal_entry_once(p["entry"], str(p["external_id"]))
            except (B1CommunicationError, B1SessionError):
                raise  # temporary, or in doubt: the engine retries the step, looking the entry up first
            except B1Error as exc:
                if exc.status is not None and exc.status >= 500:
                    raise
                report([Outcome(e.id, "failed", request=p["entry"],
                                error=f"Business One refused journal entry {p['external_id']}: {exc.message}")])
                continue
            report([self._done(ctx, e, self._posted(e, posting))])

    def document(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The JournalEntries body Business One will receive (post_journal_entry_once's: the external
        id in the idempotency field)."""
        entry = payload.get("entry")
        if not isinstance(entry, dict):
            return payload
        return {**entry, b1_facts().journal_entries.idempotency_field: str(payload.get("external_id"))}

    def check(self, ctx: RunContext, payload: dict[str, Any]) -> Verdict | None:
        """Business One's verdict on the entry, writing nothing (journal_check.py)."""
        if payload.get("problems"):
            return Verdict(False, [f"Not sent to Business One: {p}" for p in payload["problems"]], "mapping")
        return check_journal_entry(self._b1(ctx), self.document(payload), str(payload["external_id"]), ctx.cache)

    def preview(self, ctx: RunContext, change: Change) -> str | None:
        """Dry run: the same verdict as the approval queue's, in one line."""
        try:
            v = self.check(ctx, change.payload)
        except Exception as exc:  # the preview must not break the listing
            return f"Business One check not possible: {type(exc).__name__}: {exc}"
        if v is None:
            return None
        return " | ".join(v.messages) if v.ok else f"Business One would REFUSE it: {' | '.join(v.messages)}"

    def describe(self, op: str, payload: dict[str, Any]) -> str:
        if self._describe is not None:
            return self._describe(op, payload)
        return f"post journal entry {payload.get('external_id')}"
