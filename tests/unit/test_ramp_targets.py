"""The one Ramp batch-upload strategy (bisection, adopt, lookup after an unknown outcome) over a fake
Ramp client: no server, no database."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from ml_connector.core.flow import Outcome, RunContext
from ml_connector.core.outbox import Entry
from ml_connector.systems.ramp.client import RampApiError, RampUncertainWrite
from ml_connector.systems.ramp.targets import AccountingVendorsTarget, GLAccountsTarget, refuses_field


class FakeRamp:
    """Accounting vendors in memory: uploads are all or nothing; `refuse` ids make an upload fail (4xx)."""

    def __init__(self, *, refuse: set[str] = frozenset(), lose_answers: int = 0, refuse_code: bool = False) -> None:
        self.vendors: dict[str, dict[str, Any]] = {}
        self.refuse = set(refuse)
        self.lose_answers = lose_answers
        self.refuse_code = refuse_code
        self.uploads: list[list[str]] = []
        self.calls: list[str] = []

    def get_accounting_vendor_by_remote_id(self, remote_id: str) -> dict[str, Any] | None:
        self.calls.append(f"GET {remote_id}")
        return self.vendors.get(remote_id)

    def create_accounting_vendors(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        self.uploads.append([i["id"] for i in items])
        if self.refuse_code and any("code" in i for i in items):
            raise RampApiError(422, "DEVELOPER_7001", "Invalid input",
                               {"vendors": {"0": {"code": ["Unknown field."]}}})
        bad = [i["id"] for i in items if i["id"] in self.refuse or i["id"] in self.vendors]
        if bad:
            raise RampApiError(422, "DEVELOPER_7001", f"Invalid input: {bad}")
        created = [dict(i, ramp_id=f"r-{i['id']}") for i in items]
        self.vendors.update({v["id"]: v for v in created})
        if self.lose_answers:
            self.lose_answers -= 1
            raise RampUncertainWrite("POST", "/accounting/vendors", "read timeout")
        return {"vendors": created}

    def update_accounting_vendor(self, ramp_id: str, *, name: str | None = None, code: str | None = None,
                                 reactivate: bool | None = None) -> dict[str, Any]:
        self.calls.append(f"PATCH {ramp_id} {reactivate}")
        return {"ramp_id": ramp_id, "name": name}

    def deactivate_accounting_vendor(self, ramp_id: str) -> None:
        self.calls.append(f"DELETE {ramp_id}")

    def iter_accounting_vendors(self) -> list[dict[str, Any]]:
        self.calls.append("LIST")
        return list(self.vendors.values())


def _ctx(ramp: Any) -> RunContext:
    rt = SimpleNamespace(connection=lambda name: ramp)
    return RunContext(rt, "f", "vendors", "r1", "incremental")  # type: ignore[arg-type]


def _entry(i: int, key: str, op: str = "create", target_id: str | None = None) -> Entry:
    return Entry(i, key, op, {"id": key, "name": f"V {key}", "code": key.lstrip("0")}, "h", target_id,
                 "in_flight", 1, f"k{i}")


def _write(target: Any, ramp: FakeRamp, entries: list[Entry]) -> dict[int, Outcome]:
    got: dict[int, Outcome] = {}

    def report(outs: list[Outcome]) -> None:
        for o in outs:
            assert o.entry_id not in got, "an entry reported twice"
            got[o.entry_id] = o

    target.write(_ctx(ramp), entries, report)
    return got


def test_refused_upload_is_bisected_to_the_refused_record_and_existing_ones_are_adopted():
    ramp = FakeRamp(refuse={"05"})
    ramp.vendors["02"] = {"id": "02", "ramp_id": "r-old-02"}  # already in Ramp (e.g. a lost database)
    entries = [_entry(i, f"0{i}") for i in range(1, 9)]
    got = _write(AccountingVendorsTarget("ramp"), ramp, entries)
    assert {i: o.state for i, o in got.items()} == {i: ("failed" if i == 5 else "posted") for i in range(1, 9)}
    assert got[2].target_id == "r-old-02"
    assert "Invalid input" in (got[5].error or "")
    assert ramp.uploads[0] == [f"0{i}" for i in range(1, 9)]
    assert sorted(ramp.vendors) == ["01", "02", "03", "04", "06", "07", "08"]


def test_lost_upload_answer_is_resolved_by_lookup_never_reuploaded():
    ramp = FakeRamp(lose_answers=1)
    got = _write(AccountingVendorsTarget("ramp"), ramp, [_entry(1, "01"), _entry(2, "02")])
    assert {o.state for o in got.values()} == {"posted"}
    assert ramp.uploads == [["01", "02"]]  # found by the lookup: not uploaded again


def test_upload_that_never_confirms_is_left_uncertain_after_bounded_rounds():
    ramp = FakeRamp(lose_answers=10)
    ramp.create_accounting_vendors = lambda items: (_ for _ in ()).throw(  # type: ignore[method-assign]
        RampUncertainWrite("POST", "/accounting/vendors", "read timeout"))
    got = _write(AccountingVendorsTarget("ramp"), ramp, [_entry(1, "01")])
    assert got[1].state == "uncertain" and "did not confirm" in (got[1].error or "")


def test_a_ramp_refusing_code_gets_id_and_name_only_from_then_on():
    ramp = FakeRamp(refuse_code=True)
    target = AccountingVendorsTarget("ramp")
    got = _write(target, ramp, [_entry(1, "01"), _entry(2, "02")])
    assert {o.state for o in got.values()} == {"posted"}
    assert target.send_code_on_upload is False
    assert all("code" not in v for v in ramp.vendors.values())


def test_updates_and_deactivations_patch_known_ids_and_find_unknown_ones():
    ramp = FakeRamp()
    ramp.vendors["03"] = {"id": "03", "ramp_id": "r-03"}
    entries = [_entry(1, "01", "update", "r-01"), _entry(2, "02", "deactivate", "r-02"),
               _entry(3, "03", "reactivate"), _entry(4, "04", "update")]
    got = _write(AccountingVendorsTarget("ramp"), ramp, entries)
    assert [(o.state, o.target_id) for o in (got[1], got[2], got[3])] == [
        ("posted", "r-01"), ("posted", "r-02"), ("posted", "r-03")]
    assert got[4].state == "failed" and got[4].error == "vendor 04 is not in Ramp to update"
    assert ramp.calls == ["PATCH r-01 None", "DELETE r-02", "GET 03", "PATCH r-03 True", "GET 04"]


def test_lookup_finds_only_in_doubt_creates():
    ramp = FakeRamp()
    ramp.vendors["01"] = {"id": "01", "ramp_id": "r-01"}
    outs = AccountingVendorsTarget("ramp").lookup(_ctx(ramp), [_entry(1, "01"), _entry(2, "02"),
                                                               _entry(3, "03", "update", "r-03")])
    assert [(o.entry_id, o.state, o.target_id) for o in outs] == [(1, "posted", "r-01")]
    assert ramp.calls == ["GET 01", "GET 02"]  # updates are idempotent: sent again, not looked up


def test_describe_lines():
    assert AccountingVendorsTarget("ramp").describe("create", {"id": "0000100042", "name": "Acme", "code": "100042"}) \
        == "create Ramp accounting vendor id=0000100042 name='Acme' code=100042"
    assert GLAccountsTarget("ramp").describe("update", {"id": "1", "name": "A", "code": "1",
                                                        "classification": "ASSET"}) \
        == "update Ramp GL account id=1 code=1 name='A' classification=ASSET"


def test_refuses_field():
    assert refuses_field({"vendors": {"0": {"code": ["Unknown field."]}}}, "vendors", "code")
    assert not refuses_field({"vendors": {"0": {"name": ["Unknown field."]}}}, "vendors", "code")
    assert not refuses_field(None, "vendors", "code")


def test_an_existing_record_is_handed_over_with_what_ramp_holds_for_the_engine_to_compare():
    """Issue 16 §1: an adopted record carries Ramp's content (`found`), flagged adopted, so that the
    engine compares it instead of recording the source's content as what Ramp holds."""
    ramp = FakeRamp()
    ramp.vendors["02"] = {"id": "02", "ramp_id": "r-old-02", "name": "Old", "code": "2", "is_active": True}
    got = _write(AccountingVendorsTarget("ramp"), ramp, [_entry(1, "01"), _entry(2, "02")])
    assert got[2].found == ramp.vendors["02"] and got[2].adopted and not got[1].adopted
    lookups = list(AccountingVendorsTarget("ramp").lookup(_ctx(ramp), [_entry(2, "02")]))
    assert lookups[0].found == ramp.vendors["02"]


def test_compare_says_which_write_makes_ramp_hold_the_content():
    t = AccountingVendorsTarget("ramp")
    held = {"id": "01", "ramp_id": "r-01", "name": "V 01", "code": "1", "is_active": True}
    want = {"id": "01", "name": "V 01", "code": "1"}
    assert t.compare(held, want, True) is None
    assert t.compare(held, dict(want, name="Renamed"), True) == "update"
    assert t.compare(held, want, False) == "deactivate"
    assert t.compare(dict(held, is_active=False), want, False) is None
    assert t.compare(dict(held, is_active=False), want, True) == "reactivate"
    assert t.compare(dict(held, code=None), want, True) is None  # a Ramp that takes no code on upload
    gl = GLAccountsTarget("ramp")
    acct = {"id": "1", "ramp_id": "r", "name": "A", "code": "1", "classification": "ASSET", "is_active": True}
    # Ramp cannot change a classification: comparing it would ask for an impossible correction.
    assert gl.compare(acct, {"id": "1", "name": "A", "code": "1", "classification": "EXPENSE"}, True) is None


def test_deactivating_a_record_the_ledger_never_knew():
    """Issue 16 §1: a vendor deleted in SAP with no ledger row is looked up and deactivated if Ramp has
    it active; absent or already inactive, nothing is written."""
    ramp = FakeRamp()
    ramp.vendors["01"] = {"id": "01", "ramp_id": "r-01", "is_active": True}
    ramp.vendors["02"] = {"id": "02", "ramp_id": "r-02", "is_active": False}
    got = _write(AccountingVendorsTarget("ramp"), ramp, [_entry(1, "01", "deactivate"), _entry(2, "02", "deactivate"),
                                                         _entry(3, "03", "deactivate")])
    assert [(o.state, o.target_id, o.adopted) for o in (got[1], got[2], got[3])] == [
        ("posted", "r-01", True), ("posted", "r-02", True), ("posted", None, False)]
    assert ramp.calls == ["GET 01", "DELETE r-01", "GET 02", "GET 03"]


def test_current_lists_the_kind_once_per_run():
    ramp = FakeRamp()
    ramp.vendors["01"] = {"id": "01", "ramp_id": "r-01", "name": "V", "is_active": True}
    t = AccountingVendorsTarget("ramp")
    ctx = _ctx(ramp)
    assert t.current(ctx, [{"id": "01"}, {"id": "02"}]) == {0: ("r-01", ramp.vendors["01"])}
    assert t.current(ctx, [{"id": "02"}]) == {}
    assert ramp.calls == ["LIST"]


def test_many_records_in_doubt_are_found_with_one_listing(monkeypatch):
    """Issue 16 §5: one listing of the kind instead of one GET per record in doubt."""
    from ml_connector.systems.ramp import targets

    monkeypatch.setattr(targets, "LIST_FROM", 3)
    ramp = FakeRamp()
    for k in ("01", "03"):
        ramp.vendors[k] = {"id": k, "ramp_id": f"r-{k}", "name": f"V {k}", "code": k.lstrip("0"), "is_active": True}
    outs = AccountingVendorsTarget("ramp").lookup(_ctx(ramp), [_entry(i, f"0{i}") for i in range(1, 5)])
    assert [(o.entry_id, o.target_id) for o in outs] == [(1, "r-01"), (3, "r-03")]
    assert ramp.calls == ["LIST"]


def test_a_refused_batch_adopts_the_existing_records_from_one_listing_then_uploads_the_rest(monkeypatch):
    """Issue 16 §5: after a lost database, a batch refused because its records exist costs one listing,
    not one bisection down to each record and one GET each."""
    from ml_connector.systems.ramp import targets

    monkeypatch.setattr(targets, "LIST_FROM", 3)
    ramp = FakeRamp()
    for k in ("01", "02", "04"):
        ramp.vendors[k] = {"id": k, "ramp_id": f"r-{k}", "name": f"V {k}", "code": k.lstrip("0"), "is_active": True}
    got = _write(AccountingVendorsTarget("ramp"), ramp, [_entry(i, f"0{i}") for i in range(1, 7)])
    assert {i: (o.state, o.adopted) for i, o in got.items()} == {
        1: ("posted", True), 2: ("posted", True), 3: ("posted", False), 4: ("posted", True), 5: ("posted", False),
        6: ("posted", False)}
    assert ramp.uploads == [[f"0{i}" for i in range(1, 7)], ["03", "05", "06"]]
    assert ramp.calls == ["LIST"]


def test_many_deactivations_of_records_the_ledger_never_knew_cost_one_listing(monkeypatch):
    """Issue 16 §5: vendors deleted in SAP before the first sync (no ledger row) cost one GET each to
    find in Ramp; many are found with one listing of the kind."""
    from ml_connector.systems.ramp import targets

    monkeypatch.setattr(targets, "LIST_FROM", 3)
    ramp = FakeRamp()
    ramp.vendors["01"] = {"id": "01", "ramp_id": "r-01", "is_active": True}
    ramp.vendors["02"] = {"id": "02", "ramp_id": "r-02", "is_active": False}
    got = _write(AccountingVendorsTarget("ramp"), ramp, [_entry(1, "01", "deactivate"), _entry(2, "02", "deactivate"),
                                                         _entry(3, "03", "deactivate"), _entry(4, "04", "update",
                                                                                               "r-04")])
    assert [(o.state, o.target_id, o.adopted) for o in (got[1], got[2], got[3], got[4])] == [
        ("posted", "r-01", True), ("posted", "r-02", True), ("posted", None, False), ("posted", "r-04", False)]
    assert ramp.calls == ["LIST", "DELETE r-01", "PATCH r-04 None"]


def test_a_lookup_yields_what_it_finds_as_it_finds_it():
    """Issue 16 §5: the engine records a recovery's progress as the lookup finds records (one GET at a
    time here), instead of after the whole batch."""
    ramp = FakeRamp()
    for k in ("01", "02"):
        ramp.vendors[k] = {"id": k, "ramp_id": f"r-{k}"}
    outs = AccountingVendorsTarget("ramp").lookup(_ctx(ramp), [_entry(1, "01"), _entry(2, "02"), _entry(3, "03")])
    assert next(iter(outs)).entry_id == 1
    assert ramp.calls == ["GET 01"]  # nothing more asked yet
