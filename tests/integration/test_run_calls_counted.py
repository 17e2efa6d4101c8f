"""The calls a run makes, by system (core/calls.py), counted once each, wherever they are made on the run's
behalf: in its begin and finish steps, on the vendor source's read-ahead threads, in every retry of the
HTTP transport, and in a later replay of its records (kept apart from the run's own). Each count is compared
with what the emulator on loopback itself answered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from ml_connector.core.servers import serve_in_thread
from ml_connector.systems.sap_ecc.sources import VendorSource, sap_clock
from tests.support.run_calls import (
    RAMP_VENDORS,
    calls_events,
    engine_world,
    received,
    received_since,
    steps_with_calls,
    sync,
)


def _run_calls(rt: Any, run_id: str) -> tuple[dict[str, int], dict[str, int]]:
    from ml_connector.server.console import queries

    return queries.run_calls(rt, run_id), queries.run_replay_calls(rt, run_id)


def test_calls_of_begin_finish_read_ahead_threads_and_retries_are_each_counted_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    finish = VendorSource.finish

    def finish_asking_sap(self: VendorSource, ctx: Any, state: dict[str, Any]) -> dict[str, Any]:
        sap_clock(ctx.runtime.connection(self.connection))  # a finish step that calls SAP (RFC_SYSTEM_INFO)
        return finish(self, ctx, state)

    monkeypatch.setattr(VendorSource, "finish", finish_asking_sap)
    with engine_world(tmp_path, vendors=30, page_size=5) as w:
        w.ramp.fail_next(2, "429", path=RAMP_VENDORS, method="POST")  # two refusals: each retry is a call
        before = received(w)
        run_id = sync(w, "vendors")
        made = received_since(w, before)
        during, replays = _run_calls(w.rt, run_id)
        assert w.ramp.stats()["sent_429"] == 2
        assert set(made) == {"sap_ecc", "ramp"}
        assert during == made and replays == {}
        # SAP was asked the time in the begin and finish steps; the pages were read ahead on a thread of
        # the source's own (more than two pages of five).
        assert {"begin", "page", "deliver", "finish"} <= steps_with_calls(w, run_id)
        with w.rt.db.read() as s:
            from ml_connector.core.models import RunRow

            run = s.get(RunRow, run_id)
            assert run is not None and run.status == "succeeded" and run.counts["read"] > 10


def test_a_replays_calls_are_kept_on_the_records_run_apart_from_the_runs_own(tmp_path: Path) -> None:
    from ml_connector.core import engine, outbox
    from ml_connector.server.app import create_app

    with engine_world(tmp_path, vendors=30, page_size=100) as w:
        w.ramp.fail_next(10**6, "reject", path=RAMP_VENDORS, method="POST")  # every upload refused: failed
        before = received(w)
        run_id = sync(w, "vendors")
        during, replays = _run_calls(w.rt, run_id)
        assert during == received_since(w, before) and replays == {}
        with w.rt.db.read() as s:
            failed = [r.id for r in outbox.failures(s, flow="vendors_to_ramp")]
        assert len(failed) > 3

        w.ramp.faults = []  # the cause is fixed: the operator replays the failed writes
        before = received(w)
        assert engine.replay(failed) == {"posted": len(failed)}
        made = received_since(w, before)
        assert set(made) == {"ramp"}
        after, replays = _run_calls(w.rt, run_id)
        assert after == during  # what the run itself made is not changed by a replay
        assert replays == made
        assert {ev.detail.get("step") for ev in calls_events(w, run_id)} == {"begin", "page", "deliver", "replay"}

        # The runs API says both, per system named after its connection.
        handle = serve_in_thread(create_app(w.rt), name="control-plane")
        try:
            one = httpx.get(f"{handle.url}/api/runs/{run_id}", timeout=30).json()
            listed = httpx.get(f"{handle.url}/api/runs", timeout=30).json()
        finally:
            handle.stop()
        assert (one["calls"], one["replay_calls"]) == (during, made)
        assert [(r["calls"], r["replay_calls"]) for r in listed if r["run_id"] == run_id] == [(during, made)]
