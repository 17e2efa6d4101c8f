"""What every command group of the CLI shares: consoles, the --config option, loading the
configuration and the runtime, and error exits.

Its own module so that `cli.py`, `server/cli.py`, `server/agents/cli.py` and `agent/cli.py`
import it without importing each other (no cycle through the main CLI).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
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


class _Demote(logging.Filter):
    """Turns the matching records of one logger into DEBUG records (and drops them unless
    that logger is at DEBUG): the traceback stays available (MLC_DBOS_LOG_LEVEL=DEBUG,
    MLC_LOG_LEVEL=DEBUG) without reaching the operator's terminal."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.prefixes):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        # Handlers often have no level of their own: the logger's level decides.
        return logging.getLogger(record.name).getEffectiveLevel() <= logging.DEBUG


#: What the engine logs about a failed run that a command following the run reports itself.
_ENGINE_FAILURE_RECORDS = {
    # DBOS: the workflow's exception with the engine's ~60-line traceback
    "dbos": ("Exception encountered in background workflow",),
    # core/engine.py: "run <id> failed: <error>", the line the command prints as its error
    "ml_connector.core.engine": ("run %s failed",),
}


@contextmanager
def engine_failures_at_debug() -> Iterator[None]:
    """While a command follows a run it started and prints its outcome (`sync`), the engine's
    own report of a failed run (DBOS's traceback, the engine's error line) is logged at DEBUG:
    the operator sees one clean error line, the traceback is in the log at debug level."""
    installed = [(logging.getLogger(name), _Demote(prefixes)) for name, prefixes in _ENGINE_FAILURE_RECORDS.items()]
    for logger, f in installed:
        logger.addFilter(f)
    try:
        yield
    finally:
        for logger, f in installed:
            logger.removeFilter(f)
