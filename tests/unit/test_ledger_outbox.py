"""Change detection (ledger) and the outbox state machine, on a real SQLite database."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import event, text

from ml_connector.core import audit, ledger, outbox
from ml_connector.core.db import in_chunks, padded
from ml_connector.core.ledger import Desired
from tests.support.ledger import ledger_row, plan


def test_content_hash_ignores_key_order():
    assert ledger.content_hash({"a": 1, "b": "x"}) == ledger.content_hash({"b": "x", "a": 1})
    assert ledger.content_hash({"a": 1}) != ledger.content_hash({"a": 2})


def test_new_changed_unchanged_deactivated_reactivated(db):
    changes, unchanged = plan(db, [Desired("1", {"name": "A"}), Desired("2", {"name": "B"}, active=False)])
    # A new record is created; a record deleted at the source that the ledger does not know is
    # deactivated in the target if it is there (issue 16 §1: the ledger may have been lost while the
    # target kept it active), by its source key (no target id known).
    assert [(c.source_key, c.op, c.target_id) for c in changes] == [("1", "create", None), ("2", "deactivate", None)]
    assert unchanged == 0
    with db.session() as s:
        ledger.confirm(s, "f", "vendors", "1", "r-1", changes[0].content_hash, active=True)
    changes, unchanged = plan(db, [Desired("1", {"name": "A"})])
    assert changes == [] and unchanged == 1
    changes, _ = plan(db, [Desired("1", {"name": "A2"})])
    assert [(c.op, c.target_id) for c in changes] == [("update", "r-1")]
    changes, _ = plan(db, [Desired("1", {"name": "A"}, active=False)])
    assert [c.op for c in changes] == ["deactivate"]
    with db.session() as s:
        ledger.confirm(s, "f", "vendors", "1", "r-1", changes[0].content_hash, active=False)
    changes, _ = plan(db, [Desired("1", {"name": "A"})])
    assert [c.op for c in changes] == ["reactivate"]
    # A record deactivated while it was never in the target (no target id) is created when it comes back.
    changes, _ = plan(db, [Desired("2", {"name": "B"}, active=False)])
    with db.session() as s:
        ledger.confirm(s, "f", "vendors", "2", None, changes[0].content_hash, active=False)
    changes, _ = plan(db, [Desired("2", {"name": "B"})])
    assert [(c.op, c.target_id) for c in changes] == [("create", None)]


def test_outbox_same_key_is_stored_once_and_open_entries_are_adopted(db):
    row = {"idempotency_key": "k1", "source_key": "1", "op": "create", "payload": {"n": 1},
           "content_hash": "h", "target_id": None}
    with db.session() as s:
        assert outbox.add(s, flow="f", stream="vendors", run_id="run-1", batch=1, rows=[row]) == 1
    with db.session() as s:
        # The same write staged again by a later run: not duplicated, but moved to that run.
        assert outbox.add(s, flow="f", stream="vendors", run_id="run-2", batch=4, rows=[row]) == 1
        assert [e.idempotency_key for e in outbox.batch_entries(s, "run-2", 4)] == ["k1"]
        assert outbox.batch_entries(s, "run-1", 1) == []
        n = s.execute(text("select count(*) from mlc_outbox")).scalar()
    assert n == 1


def test_newer_change_supersedes_failed_write(db):
    a = {"idempotency_key": "k-old", "source_key": "1", "op": "create", "payload": {}, "content_hash": "h1",
         "target_id": None}
    b = dict(a, idempotency_key="k-new", content_hash="h2")
    with db.session() as s:
        outbox.add(s, flow="f", stream="vendors", run_id="r1", batch=1, rows=[a])
        ids = [e.id for e in outbox.batch_entries(s, "r1", 1)]
        outbox.set_state(s, ids, "failed", error="boom")
    with db.session() as s:
        outbox.add(s, flow="f", stream="vendors", run_id="r2", batch=1, rows=[b])
        states = dict(s.execute(text("select idempotency_key, state from mlc_outbox")).all())
    assert states == {"k-old": "superseded", "k-new": "pending"}


def test_cursor_commits_with_the_page_or_not_at_all(db):
    with db.session() as s:
        ledger.save_cursor(s, "f", "vendors", {"after": "0000000010"})
    with pytest.raises(RuntimeError), db.session() as s:
        ledger.save_cursor(s, "f", "vendors", {"after": "0000000020"})
        ledger.confirm(s, "f", "vendors", "20", "r-20", "h", active=True)
        raise RuntimeError("crash before commit")
    with db.session() as s:
        assert ledger.load_cursor(s, "f", "vendors") == {"after": "0000000010"}
        assert ledger.count(s, "f", "vendors") == 0


def test_audit_is_append_only(db):
    with db.session() as s:
        audit.record(s, "test.event", detail={"x": 1})
    with pytest.raises(Exception, match="append-only"), db.session() as s:
        s.execute(text("update mlc_audit set outcome = 'forged'"))
    with pytest.raises(Exception, match="append-only"), db.session() as s:
        s.execute(text("delete from mlc_audit"))


def test_in_chunks_pad_to_power_of_two_lengths():
    assert padded([]) == []
    assert padded([7]) == [7]
    assert padded([1, 2, 3]) == [1, 2, 3, 3]
    values = list(range(1300))
    chunks = list(in_chunks(values))
    assert [len(c) for c in chunks] == [512, 512, 512]  # 276 left over, padded to 512
    assert sorted(set().union(*map(set, chunks))) == values
    assert all(len(c) & (len(c) - 1) == 0 for n in range(1, 600) for c in in_chunks(list(range(n))))
    with pytest.raises(ValueError):
        next(in_chunks(values, size=500))


def test_page_size_does_not_make_new_sql_statements(db):
    """sqlite3 keeps prepared statements by SQL text (128 per connection, ~200 bytes per
    placeholder): IN lists of a page's arbitrary length made a new one per page, and the
    process grew with the number of rows synced. Pages of other sizes reuse the same SQL."""
    seen: set[str] = set()
    event.listen(db.engine, "before_cursor_execute", lambda _c, _cur, stmt, *_: seen.add(stmt))

    def page(run, first, n):
        rows = [ledger_row(f"k{i}", str(i)) for i in range(first, first + n)]
        with db.session() as s:
            ledger.plan_changes(s, "f", "vendors", [Desired(r["source_key"], r["payload"]) for r in rows])
            outbox.add(s, flow="f", stream="vendors", run_id=run, batch=1, rows=rows)
            ids = [e.id for e in outbox.batch_entries(s, run, 1)]
            outbox.set_state(s, ids, "in_flight", bump_attempts=True)
            ledger.confirm_many(s, "f", "vendors", [(r["source_key"], "t", "h", True) for r in rows])

    page("r1", 0, 1301)
    first = set(seen)
    page("r2", 2000, 1297)
    page("r3", 4000, 1283)
    assert seen == first


def test_newer_changes_supersede_across_chunks(db):
    with db.session() as s:
        outbox.add(s, flow="f", stream="vendors", run_id="r1", batch=1,
                   rows=[ledger_row(f"old{i}", str(i), "h1") for i in range(1100)])
        outbox.set_state(s, [e.id for e in outbox.batch_entries(s, "r1", 1)], "failed", error="boom")
        # one write of the new content is already staged (by an interrupted run)
        outbox.add(s, flow="f", stream="vendors", run_id="r0", batch=1, rows=[ledger_row("new1050", "1050", "h2")])
    with db.session() as s:
        assert outbox.add(s, flow="f", stream="vendors", run_id="r2", batch=1,
                          rows=[ledger_row(f"new{i}", str(i), "h2") for i in range(1100)]) == 1100
        states = dict(s.execute(text("select idempotency_key, state from mlc_outbox")).all())
    assert len(states) == 2200
    assert {k for k, v in states.items() if v == "superseded"} == {f"old{i}" for i in range(1100)}
    assert {k for k, v in states.items() if v == "pending"} == {f"new{i}" for i in range(1100)}


def test_entries_by_id_in_order_across_chunks(db):
    with db.session() as s:
        outbox.add(s, flow="f", stream="vendors", run_id="r1", batch=1,
                   rows=[ledger_row(f"k{i}", str(i)) for i in range(700)])
        ids = [e.id for e in outbox.batch_entries(s, "r1", 1)]
        got = outbox.entries_by_id(s, list(reversed(ids)) + ids[:3])
    assert [e.id for e in got] == sorted(ids)


def test_confirm_many_creates_updates_and_keeps_a_known_target_id(db):
    with db.session() as s:
        ledger.confirm_many(s, "f", "vendors", [("1", "t-1", "h1", True), ("2", None, "h2", True)])
    with db.session() as s:
        # A write that reports no target id (an update by a known id) keeps the one known;
        # a new id replaces it; an empty one counts as none.
        ledger.confirm_many(s, "f", "vendors", [("1", None, "h1b", False), ("2", "t-2", "h2b", True),
                                                ("3", "t-3", "h3", True)])
        ledger.confirm_many(s, "f", "vendors", [("3", "", "h3b", True)])
    with db.session() as s:
        rows = s.execute(text("select source_key, target_id, content_hash, seen_hash, active from mlc_records "
                              "order by source_key")).all()
    assert [tuple(r) for r in rows] == [("1", "t-1", "h1b", "h1b", 0), ("2", "t-2", "h2b", "h2b", 1),
                                        ("3", "t-3", "h3b", "h3b", 1)]
    changes, unchanged = plan(db, [Desired("1", {"name": "A"}), Desired("3", {"name": "C"})])
    assert [(c.source_key, c.op, c.target_id) for c in changes] == [("1", "reactivate", "t-1"), ("3", "update", "t-3")]
    assert unchanged == 0


def test_record_many_redacts_each_detail_as_redact_does(db):
    from ml_connector.core.redact import redact

    details = [{"key": "k1"}, {"key": "k2", "error": "login failed: password=hunter2x"},
               # a match that would span two details if they were redacted as one text
               {"note": "<token>abc"}, {"note": "def</token>"}, {"key": "k5"}]
    rows = [{"event": "record.create", "outcome": "ok", "run_id": "r", "source": f"f:{i}", "request": {"i": i},
             "response": None, "detail": d} for i, d in enumerate(details)]
    with db.session() as s:
        audit.record_many(s, rows[:1] + rows[-1:])  # nothing to redact: the joined-text path
        audit.record_many(s, rows)
        stored = [(src, json.loads(d), req, resp) for src, d, req, resp in s.execute(text(
            "select source, detail, request_digest, response_digest from mlc_audit order by id")).all()]
    assert [d for _, d, _, _ in stored] == [details[0], details[-1]] + [
        json.loads(redact(json.dumps(d))) for d in details]
    assert stored[3][1]["error"] == "login failed: password=***"
    assert all(req == audit.digest({"i": int(src.split(":")[1])}) and resp is None for src, _, req, resp in stored)


def test_bulk_statements_follow_pending_orm_changes_of_the_session(db):
    with db.session() as s:
        ledger.confirm(s, "f", "vendors", "1", "t-1", "h1", active=True)  # pending, not flushed
        ledger.confirm_many(s, "f", "vendors", [("1", None, "h2", True)])
    with db.session() as s:
        row = s.execute(text("select target_id, content_hash from mlc_records")).one()
    assert tuple(row) == ("t-1", "h2")
