"""SAP ECC → Marketing Cloud: latency from a customer change in SAP to its row in Marketing Cloud,
rows upserted per API call and per second, token requests.

    .venv/bin/python -m bench.sfmc_latency [--changes 20]

Scenario 9 of `make bench` (bench/run_all.py runs it in its own process; the last line of its
output is the JSON of its figures). The emulators and the IDoc receiver run in this process
(threads), the engine too (SQLite), with the flow's schedule an hour long: nothing but the IDoc
starts a run. The latency of one change is measured from the SAP change (XD02 in the sandbox)
through the pushed DEBMAS IDoc, its storage by the control plane's receiver, the run the stored IDoc
starts (`systems/sap_ecc.start_consumers`, as `ml-connector run` does), to the row as Marketing
Cloud holds it. Targets (issue 14): p99 < 5 s; token requests ≤ 72 a day (one per 20 minutes: 1 here).
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
    from ml_connector.demo_ecc_sfmc import pair_config
    from ml_connector.sandbox import start_sandboxes
    from ml_connector.systems.sap_ecc import start_consumers
    from ml_connector.systems.sap_ecc.idoc_receiver import BasicAuth, SqlIdocStore, idoc_router
    from ml_connector.systems.sfmc.client import SfmcClient

    work = Path(tempfile.mkdtemp(prefix="bench-sfmc-"))
    handles = start_sandboxes(vendors=20, systems=("sap_ecc", "sfmc"))
    ecc, mc, sap = handles["sap_ecc"].state, handles["sfmc"].info, handles["sap_ecc"].info
    cfg = work / "ml-connector.yaml"
    # An hour between scheduled runs: within the measurement only the IDocs start runs.
    cfg.write_text(pair_config(sap, mc, schedule="{interval: 1h}"), encoding="utf-8")
    rt = Runtime(load_config(cfg), cfg)
    rt.vault.set("sap_ecc_password", sap["password"])
    rt.vault.set("sfmc_client_secret", mc["client_secret"])
    store = SqlIdocStore(rt.db)
    app = FastAPI()
    app.include_router(idoc_router(store, BasicAuth("SAPIDOC", "bench-idoc"),
                                   on_stored=lambda stored: start_consumers(rt, stored)), prefix="/sap")
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
        for stream in ("hierarchy", "orders"):  # so a DEBMAS starts incremental runs only, as in production
            engine.wait(engine.start_sync("customers_to_sfmc", stream, full=stream == "hierarchy"))
        mcc: SfmcClient = rt.connection("sfmc")
        sold_to = sorted(r["KUNNR"] for r in ecc.data.rows("KNA1", ecc.client) if r["KUNNR"].startswith("00002000"))
        lat: list[float] = []
        for i in range(args.changes):
            kunnr = sold_to[(i // 2) * 7 % len(sold_to)]  # blocked, then unblocked again
            block = "" if i % 2 else "01"
            t = time.perf_counter()
            ecc.data.update_customer(kunnr, AUFSD=block or "")
            deadline = time.monotonic() + 60
            # Watched through the emulator's admin view, so the polling adds no Marketing Cloud API call.
            while _order_block(mc, kunnr) != block:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"customer {kunnr}: order block {block!r} not in Marketing Cloud after 60 s")
                time.sleep(0.02)
            lat.append(time.perf_counter() - t)
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
    print(json.dumps(out))


def _order_block(mc: dict[str, Any], kunnr: str) -> str | None:
    import httpx

    rows = httpx.get(f"{mc['admin']}/des/ML_SAP_Customer_Status/rows", timeout=30).json()["rows"]
    return next((r["OrderBlock"] for r in rows if r["CustomerNumber"] == kunnr), None)


if __name__ == "__main__":
    main()
