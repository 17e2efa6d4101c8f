"""Install the example system and its flow in this process, or run the CLI with them installed.

`python -m tests.example_system.launch <ml-connector arguments>` is `ml-connector` as an embedding
application would run it: the system registered with `registry.register` (its entry locates its
provider.yaml in this package), the flow module with `flow_modules.register`. An installed package
names the same two under the entry points `ml_connector.systems` and `ml_connector.flows` instead
(tests/unit/test_plugin_packages.py proves that path). Nothing under src/ changes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ml_connector.core import flow_modules, registry

ROOT = Path(__file__).resolve().parents[2]
PAIR = "example_catalog"
FLOW_MODULE = "tests.example_system.flows.example_catalog"


def install() -> None:
    from tests.example_system import ENTRY

    if registry.find(ENTRY.name) is None:
        registry.register(ENTRY)
    flow_modules.register(PAIR, FLOW_MODULE)


def uninstall() -> None:
    from tests.example_system import ENTRY

    registry.unregister(ENTRY.name)
    flow_modules.unregister(PAIR)


def cli(config: Path, *args: str, input_: str | None = None, timeout: float = 120,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    """`ml-connector ARGS -c CONFIG` in a subprocess, with the example installed, run in the config's
    directory."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "src")]), COLUMNS="250",
               MLC_LOG_LEVEL=os.environ.get("MLC_LOG_LEVEL", "WARNING"))
    env.pop("MLC_DATABASE_URL", None)
    proc = subprocess.run([sys.executable, "-m", "tests.example_system.launch", *args, "-c", str(config)],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=config.parent, input=input_)
    if check and proc.returncode != 0:
        raise AssertionError(f"ml-connector {' '.join(args)} exited {proc.returncode}\n"
                             f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


if __name__ == "__main__":
    install()
    from ml_connector.cli import main

    main()
