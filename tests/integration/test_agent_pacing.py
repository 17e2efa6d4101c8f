"""Two agents of one site serve one SAP system: the control plane paces what it hands out so
that together they stay within the system's budget (calls per second, calls in flight).

Every party is a separate OS process (SAP sandbox, control plane, two agents). The SAP
sandbox measures what reached it: the most calls in flight at once and the most calls that
entered processing within any rolling second. The same burst is first sent to an agent system
the control plane has no budget for (`sap_free`, the same SAP sandbox): the two agents, each
within its own CallPolicy, overrun the budget together, so the measurement would catch an
unpaced control plane. Then to `sap_ecc`, whose connection has `limits`: within them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.pacing import PacedSite, check_pacing

# Separate OS processes (SAP sandbox, control plane, agents): `make test`, not `make test-fast`.
pytestmark = pytest.mark.slow


@pytest.fixture()
def site(tmp_path: Path) -> Iterator[PacedSite]:
    s = PacedSite(tmp_path)
    try:
        yield s
    finally:
        s.close()


def test_two_agents_stay_within_one_sap_systems_budget(site: PacedSite) -> None:
    check_pacing(site)
