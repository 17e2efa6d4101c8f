"""The calls a run makes (core/calls.py), in tests: the SAP ECC and Ramp emulators on loopback, the engine in
this process (a CLI start per sync would cost seconds), and what each emulator itself saw to compare with."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import select

from tests.support.env import make_env
from tests.support.faults import World, runtime
from tests.support.sandboxes import running_sandboxes

FLOW = "vendors_to_ramp"
RAMP_VENDORS = "/developer/v1/accounting/vendors"


@contextmanager
def engine_world(tmp: Path, *, vendors: int = 30, page_size: int = 10) -> Iterator[World]:
    """Fresh emulators of SAP ECC and Ramp, a fresh database and the engine launched in this process.
    Small pages, so that the vendor source reads the next page ahead on its own thread."""
    from ml_connector.core import engine

    with running_sandboxes(vendors=vendors, systems=("sap_ecc", "ramp")) as handles:
        env = make_env(tmp, handles["sap_ecc"].url, handles["ramp"].url, options={"page_size": page_size})
        env.config.write_text(env.config.read_text().replace("queue_polling_interval: 0.2",
                                                             "queue_polling_interval: 0.02"))
        with runtime(env) as rt:
            assert engine.connect(rt, role="sync") == "executor"
            try:
                yield World(handles, env, rt)
            finally:
                engine.shutdown()


def received(w: World) -> dict[str, int]:
    """Requests each emulator has answered so far (SOAP-RFC posts to SAP; every Ramp request, the token's too)."""
    return {"sap_ecc": int(w.ecc.stats.requests), "ramp": int(w.ramp.stats()["requests_total"])}


def received_since(w: World, before: dict[str, int]) -> dict[str, int]:
    now = received(w)
    return {k: now[k] - before[k] for k in sorted(now) if now[k] != before[k]}


def sync(w: World, stream: str, *, full: bool = False) -> str:
    """One run of `stream` of the vendor flow, to its end (a run that failed is returned all the same)."""
    from ml_connector.core import engine

    run_id = engine.start_sync(FLOW, stream, full=full)
    with contextlib.suppress(RuntimeError):
        engine.wait(run_id, timeout=180, poll=0.05)
    return run_id


def calls_events(w: World, run_id: str) -> list[Any]:
    """The run's `run.calls` audit events, oldest first."""
    from ml_connector.core.models import AuditRow

    with w.rt.db.read() as s:
        return list(s.scalars(select(AuditRow).where(AuditRow.run_id == run_id, AuditRow.event == "run.calls")
                              .order_by(AuditRow.id)))


def steps_with_calls(w: World, run_id: str) -> set[str]:
    return {str(ev.detail.get("step")) for ev in calls_events(w, run_id)}
