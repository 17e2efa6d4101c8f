"""`ml-connector agent -c CONFIG` with the SAP call budget raised, for bench/agent_dispatch.py.

    python -m bench.agent_proc --calls-per-second 100000 -c agent.yaml

The agent code is the installed one (`ml_connector.cli`'s `agent` command, as `ml-connector
agent` runs it); only two things change, in this process alone: the SAP call budget may go
past its production range of 10-50 calls/s (`call_policy.MAX_CALLS_PER_SECOND`), and every
system of agent.yaml gets `calls_per_second` set to the given value after the file was
validated (agent.yaml itself must stay within 10-50). The benchmark raises the budget of its
direct client the same way, so that the throughput ratio measures the dispatch path, not the
budget both paths share.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--calls-per-second", type=int, required=True)
    ap.add_argument("-c", "--config", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.calls_per_second < 1:
        raise SystemExit(f"--calls-per-second must be at least 1, got {args.calls_per_second}")

    from ml_connector.agent import config as agent_config
    from ml_connector.systems.sap_ecc import call_policy

    call_policy.MAX_CALLS_PER_SECOND = max(call_policy.MAX_CALLS_PER_SECOND, args.calls_per_second)
    load = agent_config.load_agent_config

    def load_raised(path: Any) -> Any:
        cfg = load(path)
        for system in cfg.systems.values():
            system.calls_per_second = args.calls_per_second  # assignment is not validated (bench only)
        return cfg

    # agent/cli.py imports load_agent_config from the module when it runs, so this one is used.
    agent_config.load_agent_config = load_raised
    from ml_connector.cli import main as cli_main

    sys.argv = ["ml-connector", "agent", "-c", str(args.config)]
    cli_main()


if __name__ == "__main__":
    main()
