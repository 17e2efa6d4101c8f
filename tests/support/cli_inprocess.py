"""The CLI's read-only commands run in the test's own process (typer's CliRunner).

A CLI subprocess costs about a second of CPU, nearly all of it importing what this process has
imported already (the ORM, pydantic, the flows' modules). The commands here only read the database
and print: they start no engine (DBOS is one per process), store no secret (this process's
redaction registry must not learn a leak test's values), and change no logging. What a test of one
of them proves (the table, the JSON, the exit code, the error line) is the same in either process.
Every other command, and every call whose environment changes logging, runs in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: Commands that read the database and print, nothing else (cli.py).
READ_ONLY_COMMANDS = frozenset({"runs", "failures", "parked", "journey", "review"})
#: Environment variables a read-only command may see changed for its call: what it reads (the
#: database, the master key, the width) and what is moot here (the log level: pytest's handlers are
#: on the root logger, so the CLI's `logging.basicConfig` does nothing). Any other difference (a log
#: format, the engine's or a kill point's settings) keeps the call in a process of its own.
_HARMLESS_ENV = frozenset({"COLUMNS", "PYTHONPATH", "MLC_LOG_LEVEL", "MLC_DATABASE_URL", "MLC_MASTER_KEY",
                           "MLC_CONFIG"})


def can_run_in_process(args: tuple[str, ...], env: Mapping[str, str]) -> bool:
    """Whether `ml-connector *args` with the environment `env` may run here: a read-only command,
    and an environment that differs from this process's only in harmless variables."""
    if not args or args[0] not in READ_ONLY_COMMANDS:
        return False
    keys = set(env) | set(os.environ)
    return all(env.get(k) == os.environ.get(k) for k in keys - _HARMLESS_ENV)


@contextmanager
def _environment(env: Mapping[str, str], cwd: Path) -> Iterator[None]:
    # Only the differences change (the sandboxes' threads read this environment too: never empty it).
    saved = {k: os.environ.get(k) for k in set(env) | set(os.environ) if env.get(k) != os.environ.get(k)}
    saved_cwd = os.getcwd()
    _apply({k: env.get(k) for k in saved})
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        _apply(saved)


def _apply(values: Mapping[str, str | None]) -> None:
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def run_in_process(args: list[str], env: Mapping[str, str], cwd: Path,
                   input_: str | None = None) -> subprocess.CompletedProcess[str]:
    """`ml-connector *args` run in this process, its outcome as a subprocess's would be: exit code,
    standard output, standard error (an uncaught exception's traceback included)."""
    from typer.testing import CliRunner

    from ml_connector import cli_common
    from ml_connector.cli import app

    consoles = (cli_common.console, cli_common.err)
    widths: list[Any] = [c._width for c in consoles]
    columns = env.get("COLUMNS", "")
    with _environment(env, cwd):
        for c in consoles:  # rich reads COLUMNS when the console is made (at import here)
            c._width = int(columns) if columns.isdigit() else None
        try:
            result = CliRunner().invoke(app, args, input=input_, catch_exceptions=True)
        finally:
            for c, w in zip(consoles, widths, strict=True):
                c._width = w
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(["ml-connector", *args], result.exit_code, result.stdout, stderr)
