"""Polling with a deadline instead of fixed sleeps: a test waits exactly as long as the condition takes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import httpx

T = TypeVar("T")


def wait_until(pred: Callable[[], T], timeout: float = 60, interval: float = 0.05,
               what: str = "condition") -> T:
    """Poll `pred` until it returns a truthy value (returned); AssertionError after `timeout` s, with
    what the test's worker processes said last (tests/support/processes.py)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            from tests.support.processes import output_report  # what the test's children said, if any

            report = output_report()
            raise AssertionError(f"{what} not met in time ({timeout:g} s)" + (f"\n{report}" if report else ""))
        time.sleep(interval)


def wait_for(pred: Callable[[], T], timeout: float = 45.0, what: str = "condition") -> T:
    """`wait_until` with the agent tests' default deadline."""
    return wait_until(pred, timeout=timeout, what=what)


def wait_http(url: str, timeout: float = 20.0) -> None:
    """Wait until `url` answers with a status below 500."""
    def up() -> bool:
        try:
            return httpx.get(url, timeout=1).status_code < 500
        except httpx.HTTPError:
            return False

    wait_until(up, timeout=timeout, interval=0.1, what=f"{url} up")


def wait_healthy(base: str, timeout: float = 90) -> None:
    """Wait until the server at `base` answers /health."""
    def up() -> bool:
        try:
            return httpx.get(f"{base}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(up, timeout=timeout, interval=0.2, what=f"{base}/health")
