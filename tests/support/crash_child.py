"""The CLI in a forked process (tests.support.crashes): imported once by the fork server, so that each
forked `ml-connector` starts with the engine, every system and every flow loaded already."""

from __future__ import annotations

import os
import sys

import ml_connector.cli
import ml_connector.core.engine
import ml_connector.flows.concur_sap_b1
import ml_connector.flows.sap_ecc_procore
import ml_connector.flows.sap_ecc_ramp
import ml_connector.flows.sap_ecc_sfmc
from ml_connector.core import registry

for _entry in registry.entries():  # each system's client, settings and connector modules
    pass

__all__ = ["main"]
_LOADED = (ml_connector.core.engine, ml_connector.flows.concur_sap_b1, ml_connector.flows.sap_ecc_procore,
           ml_connector.flows.sap_ecc_ramp, ml_connector.flows.sap_ecc_sfmc)


def main(workdir: str, args: list[str], environ: dict[str, str], log: str) -> None:
    """In the forked process: the CLI's `main()` with `args`, in `workdir`, under exactly `environ`,
    its output appended to `log`."""
    os.chdir(workdir)
    os.environ.clear()
    os.environ.update(environ)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.argv = ["ml-connector", *args]
    ml_connector.cli.main()
