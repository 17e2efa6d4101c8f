"""Ramp bills → SAP ECC, driven by Ramp's webhooks: bills posted per second against the SAP call cap, and
the latency from a webhook delivered to the control plane to the state in SAP.

    .venv/bin/python -m bench.ramp_bills [--burst 100] [--single 20]

A scenario of `make bench` (bench/run_all.py runs it in its own process; the last line of the output is
the JSON of its figures). As in production with webhooks: the Ramp emulator delivers signed webhooks
(`bills.approved`, `bills.paid`) to the control plane's intake (`systems/ramp/webhooks.py`, mounted on
an HTTP server here as `ml-connector run` mounts it, the subscription made by `subscribe` and verified
through Ramp's challenge); each stored event starts the bill streams' run, which reads the bill's current
state from Ramp and posts (or clears) in SAP. The flow's schedule is an hour long: nothing but webhooks
starts a bill run. The emulators, the intake and the engine share this process (threads; SQLite), as in
`bench/sfmc_latency.py`.

- Throughput: `--burst` bills waiting for approval are approved at once in Ramp; bills posted per second
  from the first approval to the last SAP document, against the SAP connection's call cap (calls/s), with
  the SOAP-RFC calls SAP answered (the emulator's count) per bill and per second.
- Latency `bills.approved` → SAP document: `--single` bills approved one at a time (the next once the
  previous is posted), from the event's arrival at the control plane (its `webhook.received` audit row,
  stored before the answer) to the vendor invoice's insert into BKPF (stamped in the emulator).
- Latency `bills.paid` → SAP status: the same bills paid one at a time in Ramp, from the event's arrival
  to the open item's clearing in SAP (options.paid_action `clear`: BSIK → BSAK, stamped in the emulator).

Percentiles are nearest-rank (p99 of 20 samples is the largest).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BILLS_FLOW = "bills_to_sap"
MASTER_FLOW = "vendors_to_ramp"
WAIT_S = 120.0


def percentile(values: list[float], p: float) -> float:
    """Nearest rank: the smallest value with at least p % of the values at or below it."""
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def _stamp_inserts(store: Any, key: Callable[[dict[str, Any]], Any], into: dict[Any, float],
                   lock: threading.Lock) -> None:
    """Record when rows are inserted into an emulator table store (the first insert per key)."""
    original = store.insert

    def stamped(row: dict[str, Any]) -> None:
        original(row)
        at, k = time.time(), key(row)
        with lock:
            into.setdefault(k, at)
    setattr(store, "insert", stamped)  # noqa: B010 (an instance attribute over the method)


def _epoch(at: datetime) -> float:
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


def _wait(cond: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not within {timeout:g} s: {what}")
        time.sleep(0.01)


def run(burst: int = 100, single: int = 20) -> dict[str, Any]:
    import httpx
    from fastapi import FastAPI
    from sqlalchemy import select

    from ml_connector.config import load_config
    from ml_connector.core import engine
    from ml_connector.core.models import AuditRow
    from ml_connector.core.runtime import Runtime
    from ml_connector.core.servers import serve_in_thread
    from ml_connector.demo import init_example
    from ml_connector.sandbox import start_sandboxes
    from ml_connector.systems.ramp.webhooks import routers, subscribe
    from ml_connector.systems.sap_ecc.posting import xblnr_for

    work = Path(tempfile.mkdtemp(prefix="bench-bills-"))
    handles = start_sandboxes(vendors=200, systems=("sap_ecc", "ramp"))
    sap, ramp = handles["sap_ecc"], handles["ramp"]
    ecc = sap.state
    text = init_example(sap.url, ramp.url)
    marker = "    # limits: {requests: 200, period: 10s}"
    assert marker in text, "the Ramp example connection changed: put the webhooks section elsewhere"
    cfg = work / "ml-connector.yaml"
    cfg.write_text(text.replace(marker, "    webhooks: {}\n" + marker, 1), encoding="utf-8")
    rt = Runtime(load_config(cfg), cfg)
    rt.vault.set("sap_ecc_password", sap.info["password"])
    rt.vault.set("ramp_client_secret", ramp.info["client_secret"])
    cap = float(rt.config.connections["sap_ecc"].limits.calls_per_second)
    lock = threading.Lock()
    documents: dict[str, tuple[str, str, str]] = {}  # XBLNR -> (BUKRS, BELNR, GJAHR)
    posted_at: dict[str, float] = {}  # XBLNR -> when BKPF got the document
    cleared_at: dict[tuple[str, str, str], float] = {}  # invoice document -> when its item was cleared

    def doc_key(row: dict[str, Any]) -> str:
        with lock:
            documents.setdefault(str(row.get("XBLNR") or ""), (row["BUKRS"], row["BELNR"], row["GJAHR"]))
        return str(row.get("XBLNR") or "")
    _stamp_inserts(ecc.data.store("BKPF", ecc.client), doc_key, posted_at, lock)
    _stamp_inserts(ecc.data.store("BSAK", ecc.client), lambda r: (r["BUKRS"], r["BELNR"], r["GJAHR"]),
                   cleared_at, lock)
    app = FastAPI()
    for r in routers(rt):
        app.include_router(r)
    intake = serve_in_thread(app, name="bench-ramp-webhooks")
    out: dict[str, Any] = {"cap_calls_per_second": cap, "burst_bills": burst, "single_bills": single}
    engine.start(rt, role="bench")
    http = httpx.Client(base_url=ramp.url, timeout=30)
    try:
        for stream in rt.config.flows[MASTER_FLOW].streams:  # the master data (and accounting fields) into Ramp
            engine.wait(engine.start_sync(MASTER_FLOW, stream, full=True))
        hook = f"{intake.url}/webhooks/ramp"
        subscribe(rt, "ramp", hook, ("bills.approved", "bills.paid"))
        _wait(lambda: [w["status"] for w in http.get("/_sandbox/state/webhooks").json()["webhooks"]
                       if w["endpoint_url"] == hook] == ["active"], "the webhook subscription verified")
        vendors = _postable_vendors(handles)
        seq = [0]

        def new_bill(i: int) -> str:
            seq[0] += 1
            lines = [{"amount": f"{100 + i % 50}.{i % 100:02d}", "memo": f"bench line {seq[0]}",
                      "gl_account": "0000600000", "cost_center": "0000001000"}]
            body = {"vendor": vendors[i % len(vendors)], "invoice_number": f"BENCH-{seq[0]}", "currency": "USD",
                    "issued_at": "2025-06-15", "due_at": "2025-07-15", "approval_status": "PENDING",
                    "line_items": lines}
            r = http.post("/_sandbox/bills", json=body)
            r.raise_for_status()
            return str(r.json()["id"])

        def received() -> dict[tuple[str, str], float]:
            """(event type, bill id) -> when the control plane stored the event (first delivery)."""
            got: dict[tuple[str, str], float] = {}
            with rt.db.read() as s:
                for at, detail in s.execute(select(AuditRow.at, AuditRow.detail).where(
                        AuditRow.event == "webhook.received").order_by(AuditRow.id)):
                    got.setdefault((str(detail.get("type")), str(detail.get("object_id"))), _epoch(at))
            return got

        def sap_calls() -> int:
            stats = httpx.get(f"{sap.url}/_sandbox/stats", timeout=30).json()
            return int(sum(stats["calls"].values()))

        # -- throughput: a burst of approvals
        ids = [new_bill(i) for i in range(burst)]
        calls0 = sap_calls()
        t0 = time.time()
        for bid in ids:
            http.post(f"/_sandbox/bills/{bid}/approve").raise_for_status()
        xblnrs = [xblnr_for(b, "RMP") for b in ids]
        _wait(lambda: all(x in posted_at for x in xblnrs), f"{burst} approved bills posted in SAP", 600)
        t1 = max(posted_at[x] for x in xblnrs)
        calls = sap_calls() - calls0
        rate = burst / (t1 - t0)
        out["burst"] = {"bills": burst, "seconds": round(t1 - t0, 2), "bills_per_second": round(rate, 2),
                        "bills_per_second_fraction_of_cap": round(rate / cap, 3),
                        "sap_calls": calls, "sap_calls_per_bill": round(calls / burst, 2),
                        "sap_calls_per_second_fraction_of_cap": round(calls / (t1 - t0) / cap, 3)}
        # -- latency: one bill at a time, approved, then paid
        singles = [new_bill(i) for i in range(single)]
        for bid in singles:
            http.post(f"/_sandbox/bills/{bid}/approve").raise_for_status()
            x = xblnr_for(bid, "RMP")
            _wait(lambda x=x: x in posted_at, f"bill {bid} posted in SAP")  # type: ignore[misc]
        for bid in singles:
            x = xblnr_for(bid, "RMP")
            doc = documents[x]
            http.post(f"/_sandbox/bills/{bid}/pay", json={"payment_date": "2025-07-02",
                                                          "reference": f"BENCH-PAY-{bid[-8:]}"}).raise_for_status()
            _wait(lambda doc=doc: doc in cleared_at, f"bill {bid} cleared in SAP")  # type: ignore[misc]
        hooks = received()
        approved = [posted_at[xblnr_for(b, "RMP")] - hooks[("bills.approved", b)] for b in singles]
        paid = [cleared_at[documents[xblnr_for(b, "RMP")]] - hooks[("bills.paid", b)] for b in singles]
        burst_lat = [posted_at[xblnr_for(b, "RMP")] - hooks[("bills.approved", b)] for b in ids]
        for name, values in (("approved_to_document", approved), ("paid_to_cleared", paid),
                             ("burst_approved_to_document", burst_lat)):
            out[name] = {"n": len(values), "p50": round(percentile(values, 50), 3),
                         "p99": round(percentile(values, 99), 3), "max": round(max(values), 3)}
        out["documents_per_bill"] = max(sum(1 for x in documents if x == xblnr_for(b, "RMP"))
                                        for b in [*ids, *singles])
    finally:
        http.close()
        engine.shutdown()
        intake.stop()
        rt.close()
        for h in handles.values():
            h.stop()
    return out


def _postable_vendors(handles: dict[str, Any]) -> list[str]:
    """Up to 20 SAP vendors the demo's bills could post on (demo_ramp_bills.postable_vendors)."""
    from ml_connector.demo_ramp_bills import postable_vendors

    return postable_vendors(handles)[:20]


def main() -> None:
    ap = argparse.ArgumentParser(description="Ramp bills → SAP ECC through webhooks (a make bench scenario)")
    ap.add_argument("--burst", type=int, default=100, help="bills approved at once (throughput)")
    ap.add_argument("--single", type=int, default=20, help="bills approved, then paid, one at a time (latency)")
    args = ap.parse_args()
    print(json.dumps(run(args.burst, args.single)), flush=True)


if __name__ == "__main__":
    main()
