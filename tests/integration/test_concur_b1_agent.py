"""SAP Concur → SAP Business One with Business One behind the on-prem agent, every party its own
process: the control plane, the agent (`ml-connector agent`, B1's resource allow-list and its pacing of
the company database) and the flow's CLI; the two emulators on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ml_connector.core.channel import ChannelError
from tests.support import summary_rows
from tests.support.concur import FLOW, ConcurAgentSite, ConcurWorld, concur_world

pytestmark = pytest.mark.slow  # separate OS processes: control plane, agent, CLI

R1, R2, R3, R4 = (f"R000{n}F9A3C2E1B0" for n in (1, 2, 3, 4))


@pytest.fixture()
def site(tmp_path: Path) -> Iterator[tuple[ConcurWorld, ConcurAgentSite]]:
    with concur_world() as w:
        s = ConcurAgentSite(tmp_path, w, limits={"calls_per_second": 20, "max_concurrent": 1})
        try:
            yield w, s
        finally:
            s.close()


def test_reports_post_through_the_agent_within_its_allow_list_and_pacing(site) -> None:
    w, s = site
    w.b1_admin("faults", latency=0.02)  # calls take a while: overlapping ones would show
    out = s.env.cli("sync", FLOW).stdout
    assert summary_rows(out)[0][:2] == [4, 3]
    for rid in (R1, R2, R4):
        assert len(w.entries_for(f"report:{rid}")) == 1
    calls = s.calls()
    functions = {f for _, f, _ in calls}
    # every Business One call went through the agent (the flow's CLI has no B1 password)
    assert {system for system, _, _ in calls} == {"sap_b1"} and {st for _, _, st in calls} == {"done"}
    assert {"GET ChartOfAccounts", "GET BusinessPartners", "GET JournalEntries", "POST JournalEntries"} <= functions
    assert w.b1_stats()["by_resource"]["POST JournalEntries"] == 3
    executed = [e for e in s.agent.audit() if e["event"] == "call.executed"]
    assert len(executed) == len(calls) and not [e for e in s.agent.audit() if e["event"] == "call.refused"]
    stats = w.b1_stats()
    assert stats["logins"] == 1  # the agent's one session
    assert stats["peak_in_flight"] == 1  # the agent's pacing: one call at a time to the company database
    password = w.b1.info["password"].encode()
    assert all(password not in p.read_bytes() for p in s.cp.dir.rglob("*") if p.is_file())
    # a resource outside the allow-list (the flow's needs) is refused by the agent; nothing reaches B1
    before = w.b1_stats()["requests"]
    with pytest.raises(ChannelError) as ei:
        s.b1_client().get_all("Projects")
    assert ei.value.fault.type == "NotAllowed" and ei.value.fault.key == "Projects"
    assert w.b1_stats()["requests"] == before
    assert [e["key"] for e in s.agent.audit() if e["event"] == "call.refused"] == ["Projects"]
