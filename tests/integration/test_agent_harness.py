"""Kept for imports from branches written before the harness moved to tests/support/agents.py
(no tests here); new code imports from tests.support."""

from tests.support.agents import CP_ENV, AgentProc, ControlPlane, DropProxy, World
from tests.support.processes import BIN, PY, free_port
from tests.support.sandboxes import sap_faults, sap_stats, start_sandbox
from tests.support.waiting import wait_for, wait_http

__all__ = ["BIN", "CP_ENV", "PY", "AgentProc", "ControlPlane", "DropProxy", "World", "free_port", "sap_faults",
           "sap_stats", "start_sandbox", "wait_for", "wait_http"]
