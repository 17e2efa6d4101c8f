"""What every command group of the CLI shares: consoles, the --config option, loading the
configuration and the runtime, and error exits.

Its own module so that `cli.py`, `server/cli.py`, `server/agents/cli.py` and `agent/cli.py`
import it without importing each other (no cycle through the main CLI).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Column

console = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", envvar="MLC_CONFIG", help="Configuration file.")]
CpConfig = Annotated[Path, typer.Option("--config", "-c", envvar="MLC_CONFIG", help="Control plane configuration.")]
DEFAULT_CONFIG = Path("ml-connector.yaml")


def cell_wrap(header: str, *, no_wrap: bool = False, overflow: Any = "fold", **kw: Any) -> Column:
    """A table column for terminals down to 80 columns: short values `no_wrap` (never cut to "…"), the
    others wrap between words and fold a word longer than the column (an id) instead of cutting it."""
    return Column(header, no_wrap=no_wrap, overflow="ellipsis" if no_wrap else overflow,
                  min_width=len(header) if no_wrap else None, **kw)


def load(config: Path) -> Any:
    """The validated configuration, or exit 2 printing its problems."""
    from ml_connector.config import ConfigError, load_config

    try:
        return load_config(config)
    except ConfigError as exc:
        # The message quotes the user's YAML, which may contain [brackets]: no markup there.
        err.print("[red]configuration error[/red]", highlight=False)
        err.print(str(exc), highlight=False, markup=False)
        raise typer.Exit(2) from None


def runtime(config: Path) -> Any:
    """The process's Runtime for the configuration file `config`."""
    from ml_connector.core.runtime import Runtime

    cfg = load(config)
    return Runtime(cfg, config.resolve())


def fail(msg: str, code: int = 1) -> typer.Exit:
    """Print `error: msg` (redacted) and return the Exit to raise."""
    from ml_connector.core.redact import redact

    err.print(f"[red]error:[/red] {redact(msg)}", highlight=False)
    return typer.Exit(code)


def fail_plain(msg: str, code: int = 1) -> typer.Exit:
    """As `fail`, for messages quoting URLs and OpenSSL texts like "[SSL: ...]": printed without markup,
    URLs kept whole."""
    from ml_connector.core.redact import redact

    err.print("[red]error:[/red] ", end="", highlight=False)
    err.print(redact(msg), highlight=False, markup=False, soft_wrap=True)
    return typer.Exit(code)
