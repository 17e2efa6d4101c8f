"""The fault matrix's shared base (one SAP sandbox and one migrated working directory per module), and
the Marketing Cloud master-data rows' SAP sandbox and reference (one per worker)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ml_connector.sandbox import SandboxHandle, start_sandboxes
from tests.support import fault_pairs
from tests.support.faults import Base, base


@pytest.fixture(scope="module")
def fault_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Base]:
    with base(tmp_path_factory.mktemp("faults")) as b:
        yield b


@pytest.fixture(scope="module")
def ecc() -> Iterator[SandboxHandle]:
    """SAP ECC with 60 vendors, one per module (the crash and pair rows that post to it)."""
    handles = start_sandboxes(vendors=60, systems=("sap_ecc",))
    try:
        yield handles["sap_ecc"]
    finally:
        handles["sap_ecc"].stop()


@pytest.fixture(scope="session")
def small_ecc() -> Iterator[SandboxHandle]:
    """SAP ECC with a small customer seed, read by the Marketing Cloud master-data rows (not changed by them)."""
    with fault_pairs.small_ecc() as handle:
        yield handle


@pytest.fixture(scope="session")
def sfmc_expected(small_ecc: SandboxHandle,
                  tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, str]]]:
    """The customers, hierarchy and contacts Data Extensions as one uninterrupted sync leaves them."""
    return fault_pairs.sfmc_master_expected(small_ecc, tmp_path_factory.mktemp("sfmc-reference"))


@pytest.fixture()
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """An in-process case's retries as many, their waits a twentieth as long (steps and HTTP calls):
    the figures depend on how many calls a fault strikes, not on how long the client waits between."""
    monkeypatch.setenv("MLC_STEP_RETRY_SCALE", "0.05")
    monkeypatch.setenv("MLC_HTTP_RETRY_SCALE", "0.05")
