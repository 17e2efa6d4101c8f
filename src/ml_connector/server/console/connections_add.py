"""Adding a connection from the console (admin): its settings as YAML, validated with the whole
configuration (the system's settings model, no secret value in a plain field) before the file is
written; then this process uses the new configuration. Its credentials are entered afterwards with
the write-only form, and "Test it" pings it.

The configuration file stays the single description: the new connection is inserted under its
top-level `connections:` key (comments and the rest of the file kept as they are)."""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path
from typing import Any

import yaml

from ml_connector.config import ConfigError, load_config, parse_config
from ml_connector.core.redact import redact
from ml_connector.core.settings import NAME_RE

MAX_SETTINGS = 4000


def example_settings(type_: str, base_url: str = "https://") -> str:
    """The settings lines of a system's example connection (what `ml-connector init` writes), without its
    name line, to start the form from; '' for a system without an example."""
    from ml_connector.core import registry

    try:
        entry = registry.get(type_)
    except Exception:
        return ""
    if entry.example is None:
        return ""
    lines = entry.example(base_url).splitlines()
    body = [ln for ln in lines[1:] if not ln.strip().startswith("#")]
    return textwrap.dedent("\n".join(body)).strip() + "\n"


def add_connection(rt: Any, name: str, type_: str, settings: str) -> None:
    """Add connection `name` of `type_` with `settings` (YAML mapping) to the runtime's configuration file.
    Raises ValueError with what to fix (redacted; the file is unchanged then)."""
    from ml_connector.core import registry

    path: Path | None = getattr(rt, "config_path", None)
    if path is None or not Path(path).is_file():
        raise ValueError("this control plane was started without a configuration file to add to")
    path = Path(path)
    if not NAME_RE.match(name):
        raise ValueError("Name the connection with a letter, then letters, digits, '_' or '-'.")
    if name in rt.config.connections:
        raise ValueError(f"A connection named {name} exists.")
    if type_ not in {e.name for e in registry.entries()}:
        raise ValueError(f"No system type {type_!r} is installed.")
    if len(settings) > MAX_SETTINGS:
        raise ValueError(f"The settings are longer than {MAX_SETTINGS} characters.")
    try:
        data = yaml.safe_load(settings) if settings.strip() else {}
    except yaml.YAMLError as exc:
        raise ValueError(f"The settings are not valid YAML: {redact(str(exc))[:300]}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError("The settings must be `key: value` lines.")
    data = {k: v for k, v in data.items() if k != "type"}
    block = yaml.safe_dump({name: {"type": type_, **data}}, sort_keys=False, default_flow_style=False)
    text = path.read_text(encoding="utf-8")
    m = re.search(r"^connections:[ \t]*(#.*)?$", text, re.MULTILINE)
    if m is None:
        raise ValueError("The configuration file has no `connections:` block to add to; edit it by hand.")
    new_text = text[:m.end()] + "\n" + textwrap.indent(block, "  ").rstrip("\n") + text[m.end():]
    try:
        parse_config(new_text, filename=str(path), config_dir=path.resolve().parent)
    except ConfigError as exc:
        raise ValueError(f"Not added: {redact(str(exc))[:800]}") from None
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(new_text, encoding="utf-8")
    os.replace(tmp, path)
    rt.config = load_config(path)
