"""Sync processes SIGKILLed at a chosen step of their writes (the fault matrix's crash rows).

A crash case runs `ml-connector sync` with `$MLC_TEST_KILL_AT` naming the step (core/killpoints.py):
the process kills itself there with SIGKILL, deterministically, then the operator's recovery runs
(the next `sync`, `replay --all` of what still waits) in a new process, and the targets are counted.

The CLI runs in processes forked from a server that has imported it once (multiprocessing's
forkserver): the same `main()` as the console script, without a second of imports per start (a case
starts two or three). Each process gets exactly the environment given, its output in a log file in
the working directory."""

from __future__ import annotations

import multiprocessing
import signal
from pathlib import Path
from typing import Any

from tests.support import crash_child
from tests.support.env import Env

_FORK = multiprocessing.get_context("forkserver")
_FORK.set_forkserver_preload(["tests.support.crash_child"])

KILLED = -signal.SIGKILL  # a multiprocessing exit code: killed by that signal

#: The steps of a write a sync is killed at (the fault matrix's names), as core/killpoints.py points.
STEPS = {
    "page staged, not delivered": "page.staged",
    "in flight, target not called": "deliver.claimed",
    "target committed, not recorded": "deliver.written",
    "recorded, step not completed": "deliver.recorded",
}


def cli(env: Env, *args: str, kill_at: str | None = None, timeout: float = 180) -> int:
    """`ml-connector ARGS -c CONFIG` in a process of its own; its exit code (KILLED: it killed itself
    at `kill_at`, a `POINT[@MATCH][#N]` of core/killpoints.py)."""
    environ = {k: v for k, v in env.env.items() if k != "MLC_TEST_KILL_AT"}
    environ["MLC_STEP_RETRY_SCALE"] = "0.05"  # no sandbox faults here: a retried step need not wait long
    if kill_at:
        environ["MLC_TEST_KILL_AT"] = kill_at
    log = env.workdir / "cli.log"
    with log.open("a", encoding="utf-8") as f:
        f.write(f"\n$ ml-connector {' '.join(args)}{f'  (killed at {kill_at})' if kill_at else ''}\n")
    p = _FORK.Process(target=crash_child.main,
                      args=(str(env.workdir), [*args, "-c", str(env.config)], environ, str(log)))
    p.start()
    p.join(timeout)
    if p.is_alive():
        p.kill()
        p.join(10)
        raise AssertionError(f"ml-connector {' '.join(args)} still running after {timeout}s:\n{tail(log)}")
    assert p.exitcode is not None
    return p.exitcode


def tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]) if log.exists() else ""


def crash_then_recover(env: Env, flow: str, kill_at: str, *, streams: tuple[str, ...] = (),
                       db: Any = None) -> None:
    """`sync FLOW` (only `streams` when given) killed at `kill_at`; then the operator's recovery: the
    same sync again, and `replay --all` when writes still wait (failed or in doubt)."""
    sel = [a for s in streams for a in ("--stream", s)]
    code = cli(env, "sync", flow, *sel, kill_at=kill_at)
    log = tail(env.workdir / "cli.log")
    assert code == KILLED, f"the sync should have been killed at {kill_at} (exit {code})\n{log}"
    cli(env, "sync", flow, *sel)
    if db is not None and waiting(db, flow):
        cli(env, "replay", "--all")


def waiting(db: Any, flow: str) -> bool:
    """Writes of `flow` an operator must see to (failed, in doubt, in flight after their run)."""
    from ml_connector.core import outbox

    with db.session() as s:
        return bool(outbox.failures(s, flow=flow, limit=1))
