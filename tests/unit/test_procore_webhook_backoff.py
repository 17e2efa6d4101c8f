"""The Procore emulator's webhook retries: a hook failing for long keeps its delivery thread alive."""

from __future__ import annotations

import time

import httpx

from ml_connector.core.servers import free_port
from ml_connector.systems.procore.sandbox.webhooks import Webhooks


def test_backoff_after_a_thousand_failed_attempts_stays_at_the_cap() -> None:
    hooks = Webhooks(company_id=1)
    hooks.settings({"backoff_base": 0.05, "backoff_cap": 0.2})
    hid = hooks.add_hook({"destination_url": f"http://127.0.0.1:{free_port()}/hook"}, None)["id"]
    item = {"event": {"id": 1}, "attempts": 1100, "failing_since": time.time(), "next_try": 0.0}
    hooks._queues[hid].append(item)
    with httpx.Client() as http:
        hooks._deliver(http, hid, item)  # nobody listens: a failed attempt, retried later
    assert item["attempts"] == 1101
    assert 0 < item["next_try"] - time.time() <= 0.2
    assert hooks.deliveries[hid][-1]["outcome"] == "retried"
