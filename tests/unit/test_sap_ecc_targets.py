"""The vendor-invoice target's exactly-once strategy (post with XBLNR lookup) over a fake poster:
no SAP, no database."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from ml_connector.core.flow import Outcome, RunContext
from ml_connector.core.ledger import Change
from ml_connector.core.outbox import Entry
from ml_connector.systems.sap_ecc.posting import (
    DocRef,
    GLLine,
    OutcomeUnknownError,
    PostingError,
    PostResult,
    ReturnMessage,
    VendorInvoice,
)
from ml_connector.systems.sap_ecc.targets import NotPostable, VendorInvoiceTarget


class FakePoster:
    def __init__(self, *, posted: dict[str, DocRef] | None = None, fail: Exception | None = None) -> None:
        self.posted = dict(posted or {})
        self.fail = fail
        self.calls: list[str] = []

    def find_posted(self, bukrs: str, xblnr: str, gjahr: str) -> DocRef | None:
        self.calls.append(f"find {bukrs} {xblnr} {gjahr}")
        return self.posted.get(xblnr)

    def post(self, inv: VendorInvoice) -> PostResult:
        self.calls.append(f"post {inv.reference}")
        if self.fail:
            raise self.fail
        return PostResult(belnr="1900000001", bukrs=inv.company_code, gjahr="2025", xblnr=inv.reference)

    def check(self, inv: VendorInvoice) -> None:
        self.calls.append(f"check {inv.reference}")


def _invoice(p: dict[str, Any]) -> VendorInvoice:
    if p.get("problems"):
        raise NotPostable("; ".join(p["problems"]))
    return VendorInvoice(source_id=p["id"], company_code="1000", vendor="0000100042", currency="USD",
                         doc_date=date(2025, 6, 15), posting_date=date(2025, 6, 15),
                         lines=(GLLine(gl_account="0000600000", amount=Decimal(10)),), reference=p["xblnr"])


class Target(VendorInvoiceTarget):
    def __init__(self, poster: FakePoster, **kw: Any) -> None:
        self.followups: list[str] = []

        def after_post(ctx: RunContext, e: Entry, o: Outcome) -> Outcome:
            self.followups.append(f"synced {o.target_id}")
            return replace(o, response={**(o.response or {}), "sync_id": "s-1"})

        def after_refusal(ctx: RunContext, e: Entry, message: str) -> str:
            self.followups.append(f"failed {message}")
            return " (reported)"

        super().__init__("sap", _invoice, after_post=after_post, after_refusal=after_refusal, **kw)
        self.fake = poster

    def poster(self, ctx: RunContext) -> Any:
        return self.fake


CTX = RunContext(SimpleNamespace(), "f", "bills", "r1", "incremental")  # type: ignore[arg-type]


def _entry(i: int, **payload: Any) -> Entry:
    return Entry(i, f"b-{i}", "create", {"id": f"b-{i}", "xblnr": f"RMPX{i}", **payload}, "h", None,
                 "in_flight", 1, f"k{i}")


def _write(target: VendorInvoiceTarget, entries: list[Entry]) -> dict[int, Outcome]:
    got: dict[int, Outcome] = {}
    target.write(CTX, entries, lambda outs: got.update((o.entry_id, o) for o in outs))
    return got


def test_lookup_of_an_entry_in_doubt_finds_the_document_and_does_the_follow_up():
    t = Target(FakePoster(posted={"RMPX1": DocRef("1900000007", "1000", "2025", "RMPX1")}))
    outs = t.lookup(CTX, [_entry(1), _entry(2), _entry(3, problems=["no lines"])])
    assert [(o.entry_id, o.state, o.target_id) for o in outs] == [(1, "posted", "1900000007/1000/2025")]
    assert outs[0].response == {"document": "1900000007/1000/2025", "xblnr": "RMPX1", "already_posted": True,
                                "recovered": False, "sync_id": "s-1"}
    assert t.followups == ["synced 1900000007/1000/2025"]
    assert t.fake.calls == ["find 1000 RMPX1 2025", "find 1000 RMPX2 2025"]  # not-postable: never looked up


def test_write_posts_and_does_the_follow_up():
    t = Target(FakePoster())
    got = _write(t, [_entry(1)])
    assert (got[1].state, got[1].target_id) == ("posted", "1900000001/1000/2025")
    assert t.followups == ["synced 1900000001/1000/2025"]


def test_problems_and_refusals_fail_with_the_follow_up_note_unknown_outcomes_stay_uncertain():
    t = Target(FakePoster())
    got = _write(t, [_entry(1, problems=["line 1: no GL account selected"])])
    assert (got[1].state, got[1].error) == ("failed", "line 1: no GL account selected (reported)")
    assert t.fake.calls == []
    refused = PostingError([ReturnMessage("E", "KI", "248", "Cost center 9999 does not exist",
                                          parameter="ACCOUNTGL", row=1, field="COSTCENTER")])
    t = Target(FakePoster(fail=refused))
    got = _write(t, [_entry(1)])
    assert got[1].state == "failed"
    assert got[1].error == f"SAP refused the document: {refused} (reported)"
    unknown = OutcomeUnknownError("no answer", bukrs="1000", xblnr="RMPX1", gjahr="2025", cause=TimeoutError())
    got = _write(Target(FakePoster(fail=unknown)), [_entry(1)])
    assert (got[1].state, got[1].error) == ("uncertain", "no answer")


@pytest.mark.parametrize(("poster", "payload", "want"), [
    (FakePoster(), {}, "SAP check (BAPI_ACC_DOCUMENT_CHECK): OK, SAP would accept it"),
    (FakePoster(posted={"RMPX1": DocRef("1900000007", "1000", "2025")}), {},
     "already posted in SAP as 1900000007/1000/2025: only the report"),
    (FakePoster(), {"problems": ["the bill has no line items"]}, "would FAIL (reported): the bill has no line items"),
])
def test_preview(poster, payload, want):
    t = Target(poster, refusal_note=" (reported)", posted_note=": only the report")
    p = {"id": "b-1", "xblnr": "RMPX1", **payload}
    assert t.preview(CTX, Change("b-1", "create", p, "h", None)) == want
