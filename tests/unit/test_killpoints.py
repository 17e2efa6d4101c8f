"""The test-only crash points (core/killpoints.py): off unless named, a bad value refused clearly,
the N-th matching hit kills (checked in a forked child, which must die by SIGKILL there)."""

from __future__ import annotations

import os
import signal

import pytest

from ml_connector.core import killpoints


def test_a_spec_names_a_point_a_match_and_a_count():
    assert killpoints.parse("deliver.written") == ("deliver.written", "", 1)
    assert killpoints.parse("http.sent@POST /developer/v1/accounting/syncs#2") == (
        "http.sent", "POST /developer/v1/accounting/syncs", 2)
    with pytest.raises(ValueError, match=r"unknown point 'deliver\.sent'"):
        killpoints.parse("deliver.sent")
    with pytest.raises(ValueError, match="positive integer"):
        killpoints.parse("deliver.claimed#0")


def test_unset_is_off(monkeypatch):
    monkeypatch.delenv(killpoints.ENV, raising=False)
    killpoints.hit("deliver.written", "bills")  # still alive


def test_the_nth_matching_hit_kills_the_process(monkeypatch):
    monkeypatch.setenv(killpoints.ENV, "deliver.written@bills#2")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a hit of another stream, of another point, the first hit, the second
        os.close(r)
        killpoints.hit("deliver.written", "bill_status")
        killpoints.hit("deliver.claimed", "bills")
        killpoints.hit("deliver.written", "bills")
        os.write(w, b"past the first hit")
        killpoints.hit("deliver.written", "bills")
        os.write(w, b"; past the second")
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        said = f.read()
    _, status = os.waitpid(pid, 0)
    assert said == b"past the first hit"
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
