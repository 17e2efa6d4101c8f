"""Shared test support, by job: processes (the CLI, stopping workers), env (a configuration wired to the
sandboxes, the CLI in a subprocess), sandboxes (emulators and what tests read from them), agents (control
plane and agent processes), waiting (polling with a deadline), clock (a clock the test moves).

Test modules hold tests only; their helpers live here, their shared fixtures in conftest.py."""

from tests.support.agents import CP_ENV, AgentProc, ControlPlane, DropProxy, World
from tests.support.clock import FakeClock
from tests.support.env import SAP_PASSWORD, Env, make_env, summary, summary_rows
from tests.support.processes import BIN, CLI, PY, ROOT, free_port, stop, stop_all
from tests.support.sandboxes import (
    assert_ramp_matches_sap,
    in_scope_vendors,
    ramp_state,
    ramp_vendors,
    running_sandboxes,
    sap_faults,
    sap_stats,
    start_sandbox,
)
from tests.support.waiting import wait_for, wait_healthy, wait_http, wait_until

__all__ = [
    "BIN",
    "CLI",
    "CP_ENV",
    "PY",
    "ROOT",
    "SAP_PASSWORD",
    "AgentProc",
    "ControlPlane",
    "DropProxy",
    "Env",
    "FakeClock",
    "World",
    "assert_ramp_matches_sap",
    "free_port",
    "in_scope_vendors",
    "make_env",
    "ramp_state",
    "ramp_vendors",
    "running_sandboxes",
    "sap_faults",
    "sap_stats",
    "start_sandbox",
    "stop",
    "stop_all",
    "summary", "summary_rows",
    "wait_for",
    "wait_healthy",
    "wait_http",
    "wait_until",
]
