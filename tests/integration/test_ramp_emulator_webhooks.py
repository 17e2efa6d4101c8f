"""Ramp emulator webhooks over real HTTP: subscribe, verification challenge, signed deliveries of
bills.approved / bills.paid / bills.rejected driven by the admin endpoints, Ramp's retry schedule
(429, 5xx and timeouts retried under the same event id, up to 10 attempts; 4xx fail at once).

The receiver is a small FastAPI app on loopback that checks `X-Ramp-Webhook-Signature` (hex
HMAC-SHA256 of the raw body, keyed with the subscription's secret) on every request.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from ml_connector.core.servers import ServerHandle, serve_in_thread
from ml_connector.systems.ramp.sandbox.app import create_app
from ml_connector.systems.ramp.sandbox.state import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_SCOPES, RampSandbox

API = "/developer/v1"


@dataclass
class Receiver:
    """What the receiver saw, and how it answers: `plan[event type]` is a list of statuses used
    one per request (then 200); `sleep` delays every answer."""

    secrets: list[str] = field(default_factory=list)
    seen: list[dict[str, Any]] = field(default_factory=list)
    plan: dict[str, list[int]] = field(default_factory=dict)
    sleep: float = 0.0
    bad_signatures: int = 0


def receiver_app(rx: Receiver) -> FastAPI:
    app = FastAPI()

    @app.post("/hook")
    async def hook(request: Request) -> Response:
        raw = await request.body()
        sig = request.headers.get("x-ramp-webhook-signature", "")
        valid = any(hmac.compare_digest(hmac.new(s.encode(), raw, hashlib.sha256).hexdigest(), sig)
                    for s in rx.secrets)
        event = json.loads(raw)
        if not valid:
            rx.bad_signatures += 1
        planned = rx.plan.get(event["type"]) or []
        status = planned.pop(0) if planned else 200
        rx.seen.append({"event": event, "raw": raw, "valid": valid, "status": status, "headers": dict(request.headers),
                        "at": time.monotonic()})
        if rx.sleep:
            await asyncio.sleep(rx.sleep)
        return JSONResponse({"received": True}, status_code=status)

    return app


@pytest.fixture
def env() -> Iterator[tuple[RampSandbox, ServerHandle, Receiver, ServerHandle, dict[str, str]]]:
    st = RampSandbox()
    st.rate_limit.enabled = False
    h = serve_in_thread(create_app(st), name="ramp-webhooks")
    rx = Receiver()
    rh = serve_in_thread(receiver_app(rx), name="webhook-receiver")
    try:
        r = httpx.post(h.url + API + "/token", auth=(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET),
                       data={"grant_type": "client_credentials", "scope": DEMO_SCOPES})
        hdr = {"Authorization": "Bearer " + r.json()["access_token"]}
        httpx.post(h.url + API + "/accounting/vendors", headers=hdr,
                   json={"vendors": [{"id": "0000100001", "name": "Grainger"}]}).raise_for_status()
        # delays of 0-60 ms, doubling: a test sees 10 attempts within seconds, not hours
        sw = httpx.post(h.url + "/_sandbox/faults", json={"webhook_retry_scale": 0.001})
        assert sw.json()["webhook_retry_scale"] == 0.001 and sw.json()["webhook_max_attempts"] == 10
        yield st, h, rx, rh, hdr
    finally:
        st.stop_webhooks()
        rh.stop()
        h.stop()


def wait_for(cond: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def deliveries(h: ServerHandle) -> list[dict[str, Any]]:
    return list(httpx.get(h.url + "/_sandbox/state/webhook_deliveries").json()["webhook_deliveries"])


def subscribe(h: ServerHandle, rh: ServerHandle, rx: Receiver, hdr: dict[str, str], types: list[str],
              verify: bool = True, **extra: Any) -> dict[str, Any]:
    r = httpx.post(h.url + API + "/webhooks", headers=hdr,
                   json={"endpoint_url": rh.url + "/hook", "event_types": types, **extra})
    assert r.status_code == 201, r.text
    sub = dict(r.json())
    rx.secrets.append(sub["secret"])
    if verify:
        wait_for(lambda: any(s["event"]["type"] == "webhooks.verification"
                             and s["event"]["object"]["id"] == sub["id"] for s in rx.seen))
        ch = next(s["event"]["challenge"] for s in rx.seen if s["event"]["object"]["id"] == sub["id"])
        ok = httpx.post(h.url + API + f"/webhooks/{sub['id']}/verify", headers=hdr, json={"challenge": ch})
        assert ok.status_code == 200 and ok.json() == {"success": True}
    return sub


def new_bill(h: ServerHandle, **over: Any) -> str:
    r = httpx.post(h.url + "/_sandbox/bills", json={
        "vendor": "0000100001", "line_items": [{"amount": "10"}], **over})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def of_type(rx: Receiver, etype: str) -> list[dict[str, Any]]:
    return [s for s in rx.seen if s["event"]["type"] == etype]


def test_subscribe_verify_manage(env: Any) -> None:
    st, h, rx, rh, hdr = env
    sub = subscribe(h, rh, rx, hdr, ["bills.approved"], verify=False,
                    additional_headers={"X-Tenant": "acme"})
    assert sub["status"] == "pending_verification" and len(sub["secret"]) >= 32
    assert set(sub) >= {"id", "endpoint_url", "event_types", "status", "secret", "business_id",
                        "additional_headers", "created_at", "updated_at"}
    wait_for(lambda: bool(of_type(rx, "webhooks.verification")))
    challenge = of_type(rx, "webhooks.verification")[0]
    assert challenge["valid"] and challenge["event"]["business_id"] == st.business_id
    assert challenge["headers"]["x-tenant"] == "acme"
    # not yet verified: events are not sent
    new_bill(h)
    time.sleep(0.3)
    assert of_type(rx, "bills.approved") == []
    wrong = httpx.post(h.url + API + f"/webhooks/{sub['id']}/verify", headers=hdr, json={"challenge": "nope"})
    assert wrong.status_code == 400 and wrong.json()["error_v2"]["error_code"] == "DEVELOPER_7001"
    ok = httpx.post(h.url + API + f"/webhooks/{sub['id']}/verify", headers=hdr,
                    json={"challenge": challenge["event"]["challenge"]})
    assert ok.status_code == 200
    got = httpx.get(h.url + API + f"/webhooks/{sub['id']}", headers=hdr).json()
    assert got["status"] == "active" and "secret" not in got
    listed = httpx.get(h.url + API + "/webhooks", headers=hdr).json()
    assert isinstance(listed, list) and [w["id"] for w in listed] == [sub["id"]] and "secret" not in listed[0]
    bid = new_bill(h)
    wait_for(lambda: bool(of_type(rx, "bills.approved")))
    seen = of_type(rx, "bills.approved")[0]
    assert seen["valid"] and seen["event"]["object"] == {"id": bid}
    assert set(seen["event"]) == {"id", "type", "created_at", "business_id", "object"}
    # errors: unknown event type, a scope the token lacks, no token, unknown id; delete
    bad = httpx.post(h.url + API + "/webhooks", headers=hdr,
                     json={"endpoint_url": rh.url + "/hook", "event_types": ["bills.exploded"]})
    assert bad.status_code == 400
    ro = httpx.post(h.url + API + "/token", auth=(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET),
                    data={"grant_type": "client_credentials", "scope": "accounting:read"}).json()["access_token"]
    ro_hdr = {"Authorization": f"Bearer {ro}"}
    denied = httpx.post(h.url + API + "/webhooks", headers=ro_hdr,
                        json={"endpoint_url": rh.url + "/hook", "event_types": ["bills.paid"]})
    assert denied.status_code == 403
    assert denied.json()["error_v2"]["additional_info"] == {"required_scope": ["bills:read"]}
    assert httpx.post(h.url + API + "/webhooks", headers=ro_hdr, json={
        "endpoint_url": rh.url + "/hook", "event_types": ["tests.test_event"]}).status_code == 201  # no scope needed
    assert httpx.get(h.url + API + "/webhooks").status_code == 401
    assert httpx.delete(h.url + API + f"/webhooks/{sub['id']}", headers=hdr).status_code == 204
    assert httpx.get(h.url + API + f"/webhooks/{sub['id']}", headers=hdr).status_code == 404
    n = len(of_type(rx, "bills.approved"))
    new_bill(h)
    time.sleep(0.3)
    assert len(of_type(rx, "bills.approved")) == n  # deleted: nothing more


def test_bill_life_events_signed_and_retried_under_one_event_id(env: Any) -> None:
    _, h, rx, rh, hdr = env
    subscribe(h, rh, rx, hdr, ["bills.approved", "bills.paid", "bills.rejected"])
    rx.plan["bills.approved"] = [500, 503]  # the receiver fails twice, then takes it
    bid = new_bill(h, approval_status="PENDING")
    assert httpx.post(h.url + f"/_sandbox/bills/{bid}/approve").status_code == 200
    wait_for(lambda: any(s["status"] == 200 for s in of_type(rx, "bills.approved")))
    tries = of_type(rx, "bills.approved")
    assert [s["status"] for s in tries] == [500, 503, 200]
    assert len({s["event"]["id"] for s in tries}) == 1 and len({s["raw"] for s in tries}) == 1
    assert all(s["valid"] for s in rx.seen) and rx.bad_signatures == 0
    d = next(x for x in deliveries(h) if x["event_type"] == "bills.approved")
    assert d["status"] == "delivered" and [a["status_code"] for a in d["attempts"]] == [500, 503, 200]
    assert d["event_id"] == tries[0]["event"]["id"] and d["object_id"] == bid
    # paid and rejected
    assert httpx.post(h.url + f"/_sandbox/bills/{bid}/pay", json={"reference": "T1"}).status_code == 200
    other = new_bill(h)
    assert httpx.post(h.url + f"/_sandbox/bills/{other}/reject", json={"reason": "dup"}).status_code == 200
    wait_for(lambda: bool(of_type(rx, "bills.paid")) and bool(of_type(rx, "bills.rejected")))
    assert of_type(rx, "bills.paid")[0]["event"]["object"]["id"] == bid
    assert of_type(rx, "bills.rejected")[0]["event"]["object"]["id"] == other
    # the receiver acts on the current state, fetched from the API
    assert httpx.get(h.url + API + f"/bills/{other}", headers=hdr).json()["approval_status"] == "REJECTED"


def test_retry_rules(env: Any) -> None:
    st, h, rx, rh, hdr = env
    subscribe(h, rh, rx, hdr, ["tests.test_event", "bills.created"])

    def emit(etype: str = "tests.test_event") -> str:
        r = httpx.post(h.url + "/_sandbox/webhooks/emit", json={"type": etype, "object_id": str(uuid.uuid4())})
        assert r.status_code == 200
        return str(r.json()["event_id"])

    def attempts(event_id: str) -> list[dict[str, Any]]:
        return [s for s in rx.seen if s["event"]["id"] == event_id]

    def settled(event_id: str) -> dict[str, Any] | None:
        for d in deliveries(h):
            if d["event_id"] == event_id and d["status"] != "pending":
                return d
        return None

    def final(event_id: str, timeout: float = 15.0) -> dict[str, Any]:
        wait_for(lambda: settled(event_id) is not None, timeout)
        d = settled(event_id)
        assert d is not None
        return d

    # 4xx (other than 429) fails at once, no retry
    rx.plan["tests.test_event"] = [400]
    ev = emit()
    assert final(ev)["status"] == "failed" and len(attempts(ev)) == 1
    # 3xx likewise
    rx.plan["tests.test_event"] = [302]
    ev = emit()
    assert [a["status_code"] for a in final(ev)["attempts"]] == [302]
    # 429 is retried
    rx.plan["tests.test_event"] = [429, 429]
    ev = emit()
    assert final(ev)["status"] == "delivered" and [s["status"] for s in attempts(ev)] == [429, 429, 200]
    # always 5xx: exactly 10 attempts under the same id, then failed
    httpx.post(h.url + "/_sandbox/faults", json={"webhook_first_delay": 1.0}).raise_for_status()
    rx.plan["tests.test_event"] = [500] * 50
    ev = emit()
    d = final(ev, 30)
    assert d["status"] == "failed" and len(d["attempts"]) == 10 == len(attempts(ev))
    assert len({s["raw"] for s in attempts(ev)}) == 1 and all(s["valid"] for s in attempts(ev))
    rx.plan["tests.test_event"] = []
    # a timeout is retried
    httpx.post(h.url + "/_sandbox/faults", json={"webhook_timeout": 0.3}).raise_for_status()
    rx.sleep = 0.6
    ev = emit()
    wait_for(lambda: len(attempts(ev)) >= 2)
    rx.sleep = 0.0
    d = final(ev)
    assert d["status"] == "delivered" and d["attempts"][0]["error"] == "timeout"
    # the retry delays back off: with the scale at 1 and a 10 s window the second attempt waits
    httpx.post(h.url + "/_sandbox/faults", json={"webhook_retry_scale": 1.0, "webhook_first_delay": 10.0,
                                                 "webhook_timeout": 10.0}).raise_for_status()
    st.dispatcher._rng.seed(7)  # a delay well above 0.5 s for this seed
    delay = st.dispatcher.delay(1)
    assert 0 <= delay <= 10
    st.dispatcher._rng.seed(7)
    rx.plan["bills.created"] = [500]
    bid = new_bill(h)
    wait_for(lambda: any(s["event"]["object"]["id"] == bid for s in of_type(rx, "bills.created")))
    time.sleep(min(delay, 1.0) * 0.5)
    assert len([s for s in of_type(rx, "bills.created") if s["event"]["object"]["id"] == bid]) == 1
    pending = next(d for d in deliveries(h) if d["object_id"] == bid)
    assert pending["status"] == "pending" and pending["next_attempt_at"] > time.time() - 0.1


def test_purchase_order_transaction_and_reimbursement_events(env: Any) -> None:
    st, h, rx, rh, hdr = env
    subscribe(h, rh, rx, hdr, ["purchase_orders.created", "transactions.ready_to_sync", "transactions.cleared",
                               "reimbursements.ready_to_sync"])
    po = httpx.post(h.url + "/_sandbox/purchase_orders", json={
        "purchase_order_number": "4500000100", "line_items": [{"unit_quantity": 1, "unit_price": "10"}]})
    assert po.status_code == 201, po.text
    tx = next(t["id"] for t in st.transactions.values() if t["state"] == "PENDING")
    assert httpx.post(h.url + f"/_sandbox/transactions/{tx}/cleared").json()["state"] == "CLEARED"
    assert httpx.post(h.url + f"/_sandbox/transactions/{tx}/ready_to_sync").status_code == 200
    rb = next(r["id"] for r in st.reimbursements.values() if r["sync_status"] == "NOT_SYNC_READY")
    assert httpx.post(h.url + f"/_sandbox/reimbursements/{rb}/ready_to_sync").status_code == 200
    wanted = {("purchase_orders.created", po.json()["id"]), ("transactions.cleared", tx),
              ("transactions.ready_to_sync", tx), ("reimbursements.ready_to_sync", rb)}
    wait_for(lambda: wanted <= {(s["event"]["type"], s["event"]["object"]["id"]) for s in rx.seen})
    assert all(s["valid"] for s in rx.seen)
    # the transaction is now what the event says, fetched from the API
    got = httpx.get(h.url + API + f"/transactions/{tx}", headers=hdr).json()
    assert (got["state"], got["sync_status"]) == ("CLEARED", "SYNC_READY")


def test_pending_deliveries_resume_after_a_restore(env: Any) -> None:
    st, h, rx, rh, hdr = env
    subscribe(h, rh, rx, hdr, ["bills.paid"])
    httpx.post(h.url + "/_sandbox/faults", json={"webhook_retry_scale": 1000.0}).raise_for_status()
    rx.plan["bills.paid"] = [503]
    bid = new_bill(h)
    httpx.post(h.url + f"/_sandbox/bills/{bid}/pay").raise_for_status()
    wait_for(lambda: len(of_type(rx, "bills.paid")) == 1)
    wait_for(lambda: any(d["event_type"] == "bills.paid" and d["attempts"] for d in deliveries(h)))
    st.stop_webhooks()  # the process ends with the retry still due
    snapshot = json.loads(json.dumps({"webhooks": st.webhooks, "webhook_deliveries": st.webhook_deliveries}))
    restored = RampSandbox()
    restored.webhooks, restored.webhook_deliveries = snapshot["webhooks"], snapshot["webhook_deliveries"]
    for d in restored.webhook_deliveries.values():
        d["next_attempt_at"] = time.time()  # due now (the original delay was scaled up)
    try:
        assert restored.resume_webhooks() == 1
        wait_for(lambda: len(of_type(rx, "bills.paid")) == 2)
        first, second = of_type(rx, "bills.paid")
        assert first["event"]["id"] == second["event"]["id"] and first["raw"] == second["raw"] and second["valid"]
        d = next(x for x in restored.webhook_deliveries.values() if x["event_type"] == "bills.paid")
        # The receiver has the body before the sandbox records its answer: wait for this delivery's record
        # (waiting on the first delivery in the dict raced when that was another event's).
        wait_for(lambda: d["status"] == "delivered")
        assert [a["status_code"] for a in d["attempts"]] == [503, 200]
    finally:
        restored.stop_webhooks()
