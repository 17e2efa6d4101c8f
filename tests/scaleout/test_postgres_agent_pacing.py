"""Scale-out: two control-plane processes on one Postgres database, each serving one of the two
agents of a site. Their claims are paced together (counts in the claim transaction under a
per-site advisory lock), so both agents together stay within the SAP system's budget."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ml_connector.core.vault import MasterKey
from tests.scaleout.conftest import PG
from tests.support.pacing import PacedSite, check_pacing

pytestmark = [pytest.mark.scaleout,
              pytest.mark.skipif(not PG, reason="MLC_TEST_PG_URL not set (make test starts Postgres)")]


@pytest.fixture()
def site(tmp_path: Path, pg_database: str) -> Iterator[PacedSite]:
    # One master key for both control planes: they share the vault (and the control plane's key) in the database.
    s = PacedSite(tmp_path, database_url=pg_database, control_planes=2,
                  env={"MLC_MASTER_KEY": MasterKey.generate().encode()})
    try:
        yield s
    finally:
        s.close()


def test_two_control_planes_pace_two_agents_within_one_sap_budget(site: PacedSite) -> None:
    assert len({a.config.read_text().split("control_plane: ")[1].split()[0] for a in site.agents}) == 2
    check_pacing(site)
