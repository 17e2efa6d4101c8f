"""Serve only the control plane's HTTP API (no worker): `python -m ml_connector.agent.serve -c CONFIG`.

For tests and small deployments where the flows run elsewhere; `ml-connector run`
serves the same API together with the worker.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    from ml_connector.config import load_config
    from ml_connector.core.redact import install_log_redaction
    from ml_connector.core.runtime import Runtime
    from ml_connector.server.app import create_app

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-c", "--config", type=Path, default=Path("ml-connector.yaml"))
    ap.add_argument("--port", type=int, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_redaction()
    cfg = load_config(args.config)
    rt = Runtime(cfg, args.config.resolve())
    port = args.port or cfg.server.port
    print(f"control plane listening on http://{cfg.server.host}:{port}", flush=True)
    uvicorn.run(create_app(rt), host=cfg.server.host, port=port, log_level="warning")


if __name__ == "__main__":
    main()
