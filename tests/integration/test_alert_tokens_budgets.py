"""Alerts for what needs a person (issue 15): a connection whose token could not be refreshed (the Ramp
sandbox refusing the client secret, audited by the OAuth client) and an API budget near exhaustion
(the connection's real rate budget after real calls), once when the condition starts and once when it
clears, to a webhook on loopback."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ml_connector.config import load_config
from ml_connector.core import ratelimit
from ml_connector.core.conditions import sweep
from ml_connector.core.runtime import Runtime
from tests.support import make_env, wait_until
from tests.support.budgets import budget_usage
from tests.support.env import RAMP_SECRET
from tests.support.receivers import Receiver

ALERTS = "\nalerts:\n  webhooks: [{{url: \"{url}/hook\"}}]\n  events: [token.failed, budget.low]\n" \
         "  budget_threshold: 0.8\n  backoff: 0.01\n"


@pytest.fixture()
def hook() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_a_refused_token_alerts_once_and_clears_when_a_token_is_issued(tmp_path: Path, sandboxes: Any,
                                                                       hook: Receiver) -> None:
    env = make_env(tmp_path, sandboxes["sap_ecc"].url, sandboxes["ramp"].url, ramp_secret="Not-The-Secret-7")
    env.config.write_text(env.config.read_text() + ALERTS.format(url=hook.url))
    rt = Runtime(load_config(env.config), env.config)
    try:
        ok, detail = rt.ping_connection("ramp")
        assert not ok and "Not-The-Secret-7" not in detail
        assert rt.alerts is not None
        opened = sweep(rt, rt.alerts, time.time())
        assert [(a.event, a.subject) for a in opened] == [("token.failed", "ramp")]
        assert opened[0].details["refused"] is True
        assert "store a valid one with `ml-connector secrets set`" in opened[0].message
        assert sweep(rt, rt.alerts, time.time() + 60) == []  # still open: no second alert
        assert rt.alerts.flush(30)
        [sent] = hook.requests
        assert sent["json"]["event"] == "token.failed" and "Not-The-Secret-7" not in json.dumps(sent["json"])
        rt.vault.set("ramp_client_secret", RAMP_SECRET)
    finally:
        rt.close()
    rt = Runtime(load_config(env.config), env.config)  # a new process: no refresh backoff held
    try:
        assert rt.ping_connection("ramp")[0]
        assert rt.alerts is not None
        cleared = sweep(rt, rt.alerts, time.time() + 120)
        assert [(a.event, a.subject) for a in cleared] == [("token.failed.cleared", "ramp")]
        assert rt.alerts.flush(30)
        assert [r["json"]["event"] for r in hook.requests] == ["token.failed", "token.failed.cleared"]
    finally:
        rt.close()


def test_a_budget_used_beyond_the_threshold_alerts_and_clears(tmp_path: Path, sandboxes: Any,
                                                             hook: Receiver) -> None:
    env = make_env(tmp_path, sandboxes["sap_ecc"].url, sandboxes["ramp"].url,
                   ramp_limits={"requests": 10, "period": "5s"})
    env.config.write_text(env.config.read_text() + ALERTS.format(url=hook.url))
    ratelimit.reset_budgets()
    rt = Runtime(load_config(env.config), env.config)
    try:
        assert rt.alerts is not None
        assert rt.ping_connection("ramp")[0]
        used, limit = budget_usage(rt, "ramp")
        assert 0 < used < 0.8 * limit and sweep(rt, rt.alerts, time.time()) == []  # below the threshold
        while used < 0.8 * limit:  # real calls through the connection's budget
            assert rt.ping_connection("ramp")[0]
            used, limit = budget_usage(rt, "ramp")
        [low] = sweep(rt, rt.alerts, time.time())
        assert (low.event, low.subject.split("/")[0]) == ("budget.low", "ramp")
        assert low.details["limit"] == limit and low.details["used"] >= 0.8 * limit
        assert "calls will wait for it" in low.message
        # The window moves on: the condition clears, once.
        wait_until(lambda: budget_usage(rt, "ramp")[0] == 0, timeout=30, what="the budget's window to empty")
        assert [a.event for a in sweep(rt, rt.alerts, time.time())] == ["budget.low.cleared"]
        assert rt.alerts.flush(30)
        assert [r["json"]["event"] for r in hook.requests] == ["budget.low", "budget.low.cleared"]
    finally:
        rt.close()
        ratelimit.reset_budgets()
