"""`bulk.executemany`: a statement shape compiled once per dialect, each call's own values bound."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import bindparam, insert, select, update

from ml_connector.core import bulk, ledger
from ml_connector.core.db import Database, one_of
from ml_connector.core.models import OutboxRow, RecordRow


def test_each_call_binds_its_own_values_through_the_kept_compiled_statement(tmp_path) -> None:
    db = Database(f"sqlite:///{tmp_path}/b.sqlite")
    db.migrate()
    t = bulk.table(OutboxRow)
    try:
        for run, batch in (("r1", 1), ("r2", 7)):  # the same shape, other values: compiled once
            at = datetime(2026, 1, batch, tzinfo=UTC)
            with db.session() as s:
                n = bulk.session_executemany(s, insert(t).values(flow="f", stream="s", run_id=run, batch=batch,
                                                                 created_at=at, updated_at=at),
                                             [{"idempotency_key": f"{run}-{i}", "source_key": str(i), "op": "create",
                                               "payload": {"i": i}, "content_hash": "h", "state": "pending"}
                                              for i in range(3)])
                assert n == 3
        with db.session() as s:
            got = {(r.run_id, r.batch, r.created_at.day, r.payload["i"]) for r in s.scalars(select(OutboxRow))}
            assert got == {(run, b, b, i) for run, b in (("r1", 1), ("r2", 7)) for i in range(3)}
            for state in ("failed", "posted"):
                changed = bulk.session_executemany(s, update(t).where(t.c.id == bindparam("b_id")).values(
                    state=state, target_id=bindparam("b_t")), [{"b_id": 1, "b_t": state}, {"b_id": 99, "b_t": "x"}])
                assert changed == 1  # the driver's count: row 99 does not exist
                assert s.get(OutboxRow, 1).state == state  # type: ignore[union-attr]
            for h in ("h1", "h2"):  # the ledger's upsert (common values per call), twice
                ledger.confirm_many(s, "f", "s", [("k", "T1", h, True)])
                s.expire_all()
                rec = s.get(RecordRow, ("f", "s", "k"))
                assert rec is not None and rec.content_hash == h and rec.target_id == "T1"
    finally:
        db.dispose()


def test_rows_given_by_column_and_one_parameter_membership(tmp_path) -> None:
    """`executemany_columns` stores what `executemany` of the same rows stores; `one_of` matches exactly
    the listed values, however many (past the IN-list chunk size), and an empty list matches nothing."""
    db = Database(f"sqlite:///{tmp_path}/c.sqlite")
    db.migrate()
    t = bulk.table(OutboxRow)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    stmt = insert(t).values(flow="f", stream="s", run_id="r", batch=1, created_at=at, updated_at=at)
    try:
        with db.session() as s:
            rows = [{"idempotency_key": f"a{i}", "source_key": f"{i:05d}", "op": "create",
                     "payload": {"i": i, "é": "ü"}, "content_hash": "h", "state": "pending"} for i in range(1500)]
            assert bulk.session_executemany(s, stmt, rows) == 1500
            assert bulk.session_executemany_columns(s, stmt, {
                k: [dict(r, idempotency_key="b" + r["idempotency_key"][1:])[k] for r in rows] for k in rows[0]}) == 1500
            got = {(r.idempotency_key[0], r.idempotency_key[1:], r.source_key, r.payload["é"], r.payload["i"])
                   for r in s.scalars(select(OutboxRow))}
            assert got == {(p, str(i), f"{i:05d}", "ü", i) for p in "ab" for i in range(1500)}
            wanted = [f"{i:05d}" for i in range(0, 1500, 2)] + ["00002", "nope"]
            found = s.scalars(select(OutboxRow.source_key).where(
                OutboxRow.idempotency_key.like("a%"), one_of(db.dialect, OutboxRow.source_key, wanted))).all()
            assert sorted(found) == [f"{i:05d}" for i in range(0, 1500, 2)]
            ids = s.scalars(select(OutboxRow.id).where(one_of(db.dialect, OutboxRow.id, [3, 1200, 2999, 10**6]))).all()
            assert sorted(ids) == [3, 1200, 2999]
            assert s.scalars(select(OutboxRow.id).where(one_of(db.dialect, OutboxRow.id, []))).all() == []
    finally:
        db.dispose()
