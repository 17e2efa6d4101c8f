"""Serve only the control plane's HTTP API (no worker): `python -m ml_connector.server.agents.serve -c CONFIG`.

For tests and small deployments where the flows run elsewhere; `ml-connector run`
serves the same API together with the worker.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    from ml_connector.config import ConfigError, load_config
    from ml_connector.core.redact import install_log_redaction
    from ml_connector.core.runtime import Runtime
    from ml_connector.server.listen import plan, serve

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-c", "--config", type=Path, default=Path("ml-connector.yaml"))
    ap.add_argument("--port", type=int, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_redaction()
    try:
        cfg = load_config(args.config)
        rt = Runtime(cfg, args.config.resolve())
        listener = plan(rt, args.port)
    except ConfigError as exc:
        print(f"configuration error\n{exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    serve(rt, listener)  # prints "control plane listening on http(s)://host:port"


if __name__ == "__main__":
    main()
