"""Approval before posting in tests: a flow's `approval` rule in a configuration, a vendor blocked
for posting and unblocked (so that SAP's own check refuses a document, then accepts it), a console session over
HTTP to a running control plane, and approval-queue entries staged directly in the outbox."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from sqlalchemy import select

from ml_connector.core import audit, outbox
from ml_connector.core.ledger import content_hash
from ml_connector.core.models import OutboxRow
from ml_connector.core.runtime import Runtime
from ml_connector.sandbox import SandboxHandle


def with_approval(text: str, flow: str, rule: dict[str, Any]) -> str:
    """The configuration `text` with `approval: rule` added to `flow`."""
    marker = f"  {flow}:\n"
    assert marker in text
    return text.replace(marker, f"{marker}    approval: {json.dumps(rule)}\n", 1)


@contextmanager
def vendor_blocked(handles: dict[str, SandboxHandle], lifnr: str, bukrs: str = "1000") -> Iterator[None]:
    """XK05 in the SAP sandbox: the vendor blocked for posting in `bukrs` meanwhile (LFB1-SPERR; SAP's check
    refuses F5 351, the flow's master-data check does not look at it), lifted after."""
    ecc = handles["sap_ecc"].state
    row = ecc.data.store("LFB1", ecc.client).get((lifnr, bukrs))  # the stored row (`get` hands out copies)
    assert row is not None
    with ecc.data.lock:
        row["SPERR"] = "X"
    try:
        yield
    finally:
        with ecc.data.lock:
            row["SPERR"] = ""


def console_session(base: str, username: str, password: str) -> tuple[httpx.Client, str]:
    """A logged-in console session on a running control plane, and its CSRF token."""
    client = httpx.Client(base_url=base, timeout=120)
    page = client.get("/login").text
    token = re.search(r'name="csrf" value="([^"]*)"', page)
    assert token is not None
    resp = client.post("/login", data={"username": username, "password": password, "csrf": token.group(1),
                                       "next": "/approvals"})
    assert resp.status_code == 303, resp.text
    csrf = re.search(r'name="csrf" value="([^"]*)"', client.get("/approvals").text)
    assert csrf is not None
    return client, csrf.group(1)


def stage_approvals(rt: Runtime, flow: str = "bills_to_sap", stream: str = "bills",
                    keys: tuple[str, ...] = ("bill-a1", "bill-a2")) -> dict[str, int]:
    """Outbox entries waiting for approval (no target is asked), the first with a refused verdict on record."""
    ids: dict[str, int] = {}
    with rt.db.session() as s:
        for key in keys:
            payload = {"id": key, "company_code": "1000", "password": "Hidden-Password-1"}
            h = content_hash(payload)
            outbox.add(s, flow=flow, stream=stream, run_id=f"sync:{flow}:{stream}:test", batch=1, rows=[{
                "idempotency_key": outbox.idempotency_key(flow, stream, key, h, "create"), "source_key": key,
                "op": "create", "payload": payload, "content_hash": h, "state": "approval"}])
        s.flush()
        for key in keys:
            ids[key] = s.scalars(select(OutboxRow.id).where(OutboxRow.source_key == key)).one()
        audit.record(s, "approval.checked", outcome="failed", flow=flow, stream=stream,
                     source=f"{flow}:{keys[0]}", detail={"outbox_id": ids[keys[0]], "accepted": False,
                                                          "messages": ["E F5 201 Posting period 006 2025 is not open"],
                                                          "checked_by": "the target's check"})
    return ids
