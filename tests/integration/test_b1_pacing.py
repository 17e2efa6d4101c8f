"""Business One pacing per company database: every client of one company database in a process shares
its budget (systems/sap_b1/pacing.py); the control plane keys its budget the same way."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from ml_connector.config import load_config
from ml_connector.sandbox import SandboxHandle, start_sandboxes
from ml_connector.server.agents.pacing import Pacing
from ml_connector.systems.sap_b1.client import ServiceLayerClient
from ml_connector.systems.sap_b1.pacing import company_key, pacing_for
from ml_connector.systems.sap_b1.settings import B1Limits
from tests.support.b1 import b1_faults, b1_stats


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxHandle]:
    handles = start_sandboxes(systems=("sap_b1",))
    try:
        handles["sap_b1"].state.set_config(login_seconds=0)
        yield handles["sap_b1"]
    finally:
        for h in handles.values():
            h.stop()


def _burst(clients: list[ServiceLayerClient], calls: int = 3) -> None:
    """Each client pinged `calls` times from two threads at once."""
    with ThreadPoolExecutor(max_workers=2 * len(clients)) as pool:
        for f in [pool.submit(lambda c=c: [c.ping() for _ in range(calls)]) for c in clients for _ in range(2)]:
            f.result()


def test_clients_of_one_company_database_share_its_budget(sandbox: SandboxHandle) -> None:
    i = sandbox.info

    def client(limits: B1Limits | None) -> ServiceLayerClient:
        root = f"{i['base_url']}/b1s/v1"
        return ServiceLayerClient(i["base_url"], i["company_db"], i["user"], i["password"], retry_base=0,
                                  timeout=30, pacing=pacing_for(root, i["company_db"], limits) if limits else None)

    b1_faults(sandbox, latency=0.05)  # each call takes a while: calls overlap unless paced
    try:
        free = [client(None), client(None)]
        _burst(free)
        assert b1_stats(sandbox)["peak_in_flight"] >= 2  # without pacing the calls overlap
        sandbox.state.peak_in_flight = 0
        paced = [client(B1Limits(calls_per_second=50, max_concurrent=1)) for _ in range(2)]
        _burst(paced)
        assert b1_stats(sandbox)["peak_in_flight"] == 1  # two clients, four threads: one call at a time
        for c in (*free, *paced):
            c.close()
    finally:
        b1_faults(sandbox, clear_faults=True)


def test_budget_keys_are_per_company_database(tmp_path: Path) -> None:
    a = pacing_for("https://b1:50000/b1s/v1", "SBO_A", B1Limits(calls_per_second=5, max_concurrent=2))
    assert a.key == company_key("https://b1:50000/b1s/v1/", "SBO_A") == "https://b1:50000/b1s/v1|SBO_A"
    again = pacing_for("https://b1:50000/b1s/v1", "SBO_A", B1Limits(calls_per_second=5, max_concurrent=2))
    other = pacing_for("https://b1:50000/b1s/v1", "SBO_B", B1Limits(calls_per_second=5, max_concurrent=2))
    assert again._cap is a._cap and other._cap is not a._cap  # one budget per company database
    default = pacing_for("https://b1:50000/b1s/v1", "SBO_C")
    assert (default.calls_per_second, default.max_concurrent) == (25, 8)  # provider.yaml rate_limit

    def conn(company: str, limits: dict[str, int] | None = None) -> dict[str, object]:
        return {"type": "sap_b1", "base_url": "https://b1:50000", "company_db": company, "via": "agent",
                "auth": {"username": "manager", "password_secret": "b1"}, **({"limits": limits} if limits else {})}

    cfg = tmp_path / "ml-connector.yaml"
    cfg.write_text(yaml.safe_dump({"engine": {"agent": "remote", "agent_site": "plant1"}, "connections": {
        "us": conn("SBO_US", {"calls_per_second": 10, "max_concurrent": 4}),
        "us_ap": conn("SBO_US", {"calls_per_second": 6, "max_concurrent": 5}),  # same company: one budget
        "de": conn("SBO_DE")}}), encoding="utf-8")
    budgets = sorted(Pacing.from_config(load_config(cfg)).for_site("plant1"), key=lambda b: b.key)
    assert [(b.key, b.systems, b.calls_per_second, b.max_concurrent) for b in budgets] == [
        ("sap_b1:https://b1:50000/b1s/v1|SBO_DE", frozenset({"de"}), 25, 8),
        ("sap_b1:https://b1:50000/b1s/v1|SBO_US", frozenset({"us", "us_ap"}), 6, 4)]
