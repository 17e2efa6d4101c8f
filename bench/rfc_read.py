"""RFC_READ_TABLE extraction through `SoapRfcClient` + `TableReader`, in its own process.

    python -m bench.rfc_read SPEC.json

SPEC: {"sap": <ECC sandbox info>, "table": "LFA1", "page_size": 10000, "calls_per_second": 50,
"cases": [{"name": "full width", "fields": null}, {"name": "2 columns", "fields": ["LIFNR", "NAME1"]}]}.
Each case reads the whole table once (after one warm-up describe) and reports rows, wall time,
rows/s, RFC calls, column groups and the client's CPU time. Prints one JSON object.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def run(spec: dict[str, Any]) -> dict[str, Any]:
    from ml_connector.systems.sap_ecc.client import SoapRfcClient
    from ml_connector.systems.sap_ecc.table_reader import TableReader, plan_groups

    sap = spec["sap"]
    table = spec.get("table", "LFA1")
    page_size = int(spec.get("page_size", 10000))
    cps = int(spec.get("calls_per_second", 50))
    out: list[dict[str, Any]] = []
    with SoapRfcClient(sap["base_url"], sap["client"], sap["user"], sap["password"],
                       calls_per_second=cps, max_concurrency=8, timeout=120.0) as client:
        reader = TableReader(client)
        infos = reader.describe(table)  # warm-up: DDIC probe, connection, logon
        by_name = {f.name: f for f in infos}
        for case in spec["cases"]:
            fields = case.get("fields")
            names = [f.upper() for f in fields] if fields else [f.name for f in infos]
            keys = ["LIFNR"]
            groups = plan_groups([by_name[n] for n in names if n not in keys],
                                 [by_name[k] for k in keys], reader.row_width, table=table)
            calls0 = reader.calls
            cpu0 = _cpu()
            t0 = time.perf_counter()
            rows = 0
            pages = 0
            for page in reader.read(table, fields, key_fields=keys, page_size=page_size):
                rows += len(page.rows)
                pages += 1
            wall = time.perf_counter() - t0
            calls = reader.calls - calls0
            out.append({
                "name": case["name"], "fields": len(names), "page_size": page_size,
                "row_chars": sum(by_name[n].length for n in names),
                "column_groups": len(groups), "rows": rows, "pages": pages, "rfc_calls": calls,
                "wall_s": wall, "rows_per_s": rows / wall if wall else 0.0, "client_cpu_s": _cpu() - cpu0,
                "call_budget_floor_s": calls / cps,  # the client's calls/s budget alone
            })
    return {"table": table, "page_size": page_size, "calls_per_second": cps, "cases": out}


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    print(json.dumps(run(spec)), flush=True)


if __name__ == "__main__":
    main()
