"""Ledger and outbox in tests: planning changes for desired records, ledger rows."""

from __future__ import annotations

from ml_connector.core import ledger


def plan(db, items):
    with db.session() as s:
        return ledger.plan_changes(s, "f", "vendors", items)


def ledger_row(key, src, h="h"):
    return {"idempotency_key": key, "source_key": src, "op": "create", "payload": {"id": src},
            "content_hash": h, "target_id": None}
