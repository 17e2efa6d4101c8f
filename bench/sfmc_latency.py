"""SAP ECC → Marketing Cloud: latency from a customer change in SAP to its row in Marketing Cloud,
rows upserted per API call and per second, token requests.

    .venv/bin/python -m bench.sfmc_latency [--changes 20]

Not part of `run_all` yet. The emulators and the IDoc receiver run in this process (threads), the
engine too (SQLite). The latency of one change is measured from the SAP change (XD02 in the
sandbox) through the pushed DEBMAS IDoc, its storage by the control plane's receiver, one
incremental run of the `customers` stream, to the row read back from Marketing Cloud; under
`ml-connector run` the schedule's interval (5 s in the docs' example) adds up to one period.
Targets (issue 14): p99 < 5 s; token requests ≤ 72 a day (one per 20 minutes: 1 here).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--changes", type=int, default=20)
    args = ap.parse_args()
    import httpx
    from fastapi import FastAPI

    from ml_connector.config import load_config
    from ml_connector.core import engine
    from ml_connector.core.runtime import Runtime
    from ml_connector.core.servers import serve_in_thread
    from ml_connector.demo_ecc_sfmc import _config
    from ml_connector.sandbox import start_sandboxes
    from ml_connector.systems.sap_ecc.idoc_receiver import BasicAuth, SqlIdocStore, idoc_router
    from ml_connector.systems.sfmc.client import SfmcClient

    work = Path(tempfile.mkdtemp(prefix="bench-sfmc-"))
    handles = start_sandboxes(vendors=20, systems=("sap_ecc", "sfmc"))
    ecc, mc, sap = handles["sap_ecc"].state, handles["sfmc"].info, handles["sap_ecc"].info
    cfg = work / "ml-connector.yaml"
    cfg.write_text(_config(sap, mc), encoding="utf-8")
    rt = Runtime(load_config(cfg), cfg)
    rt.vault.set("sap_ecc_password", sap["password"])
    rt.vault.set("sfmc_client_secret", mc["client_secret"])
    store = SqlIdocStore(rt.db)
    app = FastAPI()
    app.include_router(idoc_router(store, BasicAuth("SAPIDOC", "bench-idoc")), prefix="/sap")
    receiver = serve_in_thread(app, name="bench-idoc")
    httpx.post(f"{sap['base_url']}/_sandbox/idoc/outbound", json={"url": f"{receiver.url}/sap/idoc",
                                                                  "user": "SAPIDOC", "password": "bench-idoc",
                                                                  "backoff_base": 0.05}, timeout=10)
    out: dict[str, Any] = {}
    engine.start(rt, role="bench")
    try:
        t0 = time.perf_counter()
        counts = engine.wait(engine.start_sync("customers_to_sfmc", "customers", full=True))
        wall = time.perf_counter() - t0
        stats = httpx.get(f"{mc['admin']}/stats").json()
        rows = int(stats["rows_upserted"])
        out["full_sync"] = {"records": counts.get("read"), "seconds": round(wall, 2),
                            "rows_per_second": round(rows / wall, 1),
                            "rows_per_rowset_call": round(rows / max(1, stats["rowset_calls"]), 1)}
        mcc: SfmcClient = rt.connection("sfmc")
        sold_to = sorted(r["KUNNR"] for r in ecc.data.rows("KNA1", ecc.client) if r["KUNNR"].startswith("00002000"))
        lat: list[float] = []
        for i in range(args.changes):
            kunnr = sold_to[(i // 2) * 7 % len(sold_to)]  # blocked, then unblocked again
            block = "" if i % 2 else "01"
            seen = store.count()
            t = time.perf_counter()
            ecc.data.update_customer(kunnr, AUFSD=block or "")
            deadline = time.monotonic() + 30
            while store.count() <= seen and time.monotonic() < deadline:
                time.sleep(0.01)
            engine.wait(engine.start_sync("customers_to_sfmc", "customers"))
            row = mcc.retrieve_rows("ML_SAP_Customer_Status", ["OrderBlock"],
                                    mcc.simple_filter("CustomerNumber", "equals", kunnr))
            lat.append(time.perf_counter() - t)
            assert row and row[0]["OrderBlock"] == block, (kunnr, row, block)
        lat.sort()
        out["idoc_to_row_seconds"] = {"n": len(lat), "p50": round(statistics.median(lat), 3),
                                      "p99": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 3),
                                      "target_p99": 5.0}
        stats = httpx.get(f"{mc['admin']}/stats").json()
        out["token_requests"] = stats["token_requests"]
        out["api_calls"] = mcc.meter.total if mcc.meter else None
    finally:
        engine.shutdown()
        receiver.stop()
        rt.close()
        for h in handles.values():
            h.stop()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
