"""The calls a run makes (core/calls.py): counted for the run whose step (or replay) is running, on its own
thread and on threads it hands work to with `carry`; kept once at the step's end; named after the
connection whose URL has the host."""

from __future__ import annotations

import ast
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

from ml_connector.core import calls
from ml_connector.core.db import Database
from tests.support.databases import audit_rows

SRC = Path(__file__).resolve().parents[2] / "src" / "ml_connector"
#: Threads under systems/ and flows/ that make no call on behalf of a run, and why.
NOT_FOR_A_RUN = {
    ("systems/ramp/webhooks.py", "ramp-webhook-verify"): "verifies a webhook subscription (an admin action)",
    ("systems/ramp/webhooks.py", "ramp-webhook-then"): "waits for one run and starts the next (no call)",
}


def _kept(db: Database) -> list[tuple[str | None, str, dict[str, int]]]:
    return [(r.run_id, r.detail["step"], r.detail["calls"]) for r in audit_rows(db, calls.EVENT)]


def test_a_steps_calls_on_its_thread_and_carried_threads_are_kept_once_at_its_end(db: Database) -> None:
    calls.drain()  # counts an earlier test left waiting in this process are not this one's
    calls.note("nobody-counts")  # outside a step: ignored
    with calls.counting(db, "run-1", "f", "s", "page"):
        calls.note("127.0.0.1:8001")
        calls.note("127.0.0.1:8001", 2)
        calls.note("sap_ecc")
        plain = threading.Thread(target=calls.note, args=("a-thread-of-its-own",))  # no context: not counted
        plain.start()
        plain.join()
        with ThreadPoolExecutor(2) as pool:
            for f in [pool.submit(calls.carry(calls.note), "127.0.0.1:8001") for _ in range(4)]:
                f.result()
        assert _kept(db) == []  # nothing written per call
    calls.note("127.0.0.1:8001")
    assert _kept(db) == [("run-1", "page", {"127.0.0.1:8001": 7, "sap_ecc": 1})]
    calls.flush(db)  # nothing is kept twice
    assert len(_kept(db)) == 1


def test_a_carried_call_after_its_steps_end_goes_with_the_next_flush(db: Database) -> None:
    calls.drain()  # counts an earlier test left waiting in this process are not this one's
    go, done = threading.Event(), threading.Event()

    def late() -> None:
        go.wait(10)
        calls.note("127.0.0.1:9000")
        done.set()

    with ThreadPoolExecutor(1) as pool:
        with calls.counting(db, "run-1", "f", "s", "page"):
            calls.note("127.0.0.1:9000")
            pool.submit(calls.carry(late))
        go.set()
        assert done.wait(10)
    with calls.counting(db, "run-2", "f", "s", "deliver"):
        calls.note("127.0.0.1:9001")
    assert sorted(_kept(db)) == [("run-1", "page", {"127.0.0.1:9000": 1}), ("run-1", "page", {"127.0.0.1:9000": 1}),
                                 ("run-2", "deliver", {"127.0.0.1:9001": 1})]


def test_on_behalf_counts_a_call_made_outside_a_step_for_the_records_run(db: Database) -> None:
    calls.drain()  # counts an earlier test left waiting in this process are not this one's
    assert calls.on_behalf(db, "run-1", "f", "s", "recheck", lambda n: calls.note("sap_ecc", n) or n, 2) == 2
    assert _kept(db) == [("run-1", "recheck", {"sap_ecc": 2})]


def test_totals_name_hosts_after_their_connections_and_keep_replays_apart() -> None:
    conns = {"ramp": SimpleNamespace(model_dump=lambda: {"base_url": "http://127.0.0.1:8001/developer/v1",
                                                         "auth": {"token_url": "http://user@127.0.0.1:8002/t"}}),
             "erp": SimpleNamespace(model_dump=lambda: {"url": "https://erp.example:8443/sap", "n": 3})}
    events = [SimpleNamespace(detail={"step": "page", "calls": {"127.0.0.1:8001": 2, "127.0.0.1:8002": 1}}),
              SimpleNamespace(detail={"step": "deliver", "calls": {"erp.example:8443": 4, "site-agent": 1}}),
              SimpleNamespace(detail={"step": "replay", "calls": {"erp.example:8443": 2}}),
              SimpleNamespace(detail={"step": "recheck", "calls": {"site-agent": 1}})]
    assert calls.totals(events[:2], conns) == {"erp": 4, "ramp": 3, "site-agent": 1}
    assert calls.split(events, conns) == ({"erp": 4, "ramp": 3, "site-agent": 1}, {"erp": 2, "site-agent": 1})


def _threads_started(tree: ast.AST) -> list[tuple[int, str, bool]]:
    """(line, what, carried) of each `.submit(...)` and `threading.Thread(...)` call."""
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        fn = node.func
        if isinstance(fn, ast.Attribute) and fn.attr == "submit" and node.args:
            first = node.args[0]
            carried = (isinstance(first, ast.Call) and isinstance(first.func, ast.Attribute)
                       and first.func.attr == "carry")
            out.append((node.lineno, "submit", carried))
        elif getattr(fn, "attr", getattr(fn, "id", None)) == "Thread":
            name = next((k.value.value for k in node.keywords if k.arg == "name" and isinstance(k.value, ast.Constant)),
                        "")
            out.append((node.lineno, str(name), False))
    return out


def test_every_pool_and_thread_of_a_system_or_flow_carries_the_runs_attribution() -> None:
    """A call handed to another thread counts for the run only if the work was carried (calls.carry)."""
    bad = []
    for path in sorted([*SRC.glob("systems/**/*.py"), *SRC.glob("flows/**/*.py")]):
        rel = path.relative_to(SRC).as_posix()
        if "/sandbox/" in rel:
            continue  # the emulators: they are the systems called, not the callers
        for line, what, carried in _threads_started(ast.parse(path.read_text(encoding="utf-8"))):
            if not carried and (rel, what) not in NOT_FOR_A_RUN:
                bad.append(f"{rel}:{line} {what}")
    assert bad == [], "hand work to other threads with calls.carry(fn), or say why its calls are no run's"
