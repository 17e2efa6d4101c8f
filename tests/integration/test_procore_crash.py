"""SAP ECC → Procore: a sync killed (SIGKILL) mid-batch, then run again, leaves every commitment and
direct cost in Procore once, complete, and tying out with SAP."""

from __future__ import annotations

import signal
from collections import Counter

import pytest

from ml_connector.demo_ecc_procore import procore_totals, sap_totals
from ml_connector.sandbox import start_sandboxes
from tests.support import summary_rows, wait_until
from tests.support.procore import FLOW, procore_admin, procore_env


@pytest.mark.slow  # a sync slowed down, killed and run again: separate processes
def test_sigkill_mid_batch_then_rerun_writes_each_record_once(tmp_path):
    handles = start_sandboxes(systems=("sap_ecc", "procore"), vendors=300)
    try:
        procore = handles["procore"].state
        procore_admin(handles, "/_sandbox/limits", {"spike": 100000, "hourly": 100000})
        env = procore_env(tmp_path, handles)
        env.cli("sync", FLOW, "--stream", "vendors")
        procore_admin(handles, "/_sandbox/faults", {"latency": 0.05})  # slow writes: the kill lands mid-batch
        proc = env.popen("sync", FLOW)  # vendors (nothing to do), purchase orders, cost allocations
        wait_until(lambda: len(procore.direct_costs) >= 5, timeout=180)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        procore_admin(handles, "/_sandbox/faults", {"reset": True})
        partial = len(procore.direct_costs)
        rows = summary_rows(env.cli("sync", FLOW).stdout)
        assert [r[-1] for r in rows] == [0, 0, 0]  # no failures
        assert len(procore.direct_costs) > partial
        with procore.lock:
            origins = Counter(d["origin_id"] for d in procore.direct_costs.values())
            origins.update(c["origin_id"] for c in procore.contracts.values())
            lines = Counter((rec["id"], li["origin_id"]) for rec in [*procore.direct_costs.values(),
                                                                      *procore.contracts.values()]
                            for li in rec["line_items"])
        assert set(origins.values()) == {1} and set(lines.values()) == {1}
        want, got = sap_totals(handles["sap_ecc"].state), procore_totals(procore)
        for kind in ("commitments", "direct_costs"):
            assert {k: v for k, v in want[kind].items() if v} == got[kind], kind
    finally:
        for h in handles.values():
            h.stop()
