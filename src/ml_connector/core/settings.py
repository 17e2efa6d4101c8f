"""The building blocks of configuration models, shared by config.py and every system's connection
settings model (systems/<name>/settings.py): durations, secret names, quoted text, the strict base
model, and the ConfigError every loader raises.

In core so that a system's settings import nothing above core.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError


class ConfigError(Exception):
    """The configuration file is missing or invalid; `problems` holds one line per problem."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems: list[str] = problems if problems is not None else [message]


# --------------------------------------------------------------------------- durations


_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION_FULL = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+")
DURATION_EXPECTED = "expected a duration like 30s, 15m, 1h or 7d"


def parse_duration(value: str | float) -> float:
    """Seconds in a duration: `30s`, `15m`, `1h`, `7d`, `1w`, `500ms`, `1h30m`, or a plain
    number of seconds. Raises ValueError for anything else or for a duration <= 0."""
    if isinstance(value, bool):
        raise ValueError(f"{DURATION_EXPECTED}, got '{value}'")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            seconds = float(text)
        elif _DURATION_FULL.fullmatch(text):
            seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(text))
        else:
            raise ValueError(f"{DURATION_EXPECTED}, got '{value}'")
    if seconds <= 0:
        raise ValueError(f"expected a duration greater than zero, got '{value}'")
    return seconds


def _duration_field(value: Any) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise PydanticCustomError("duration", str(exc)) from None


Duration = Annotated[float, BeforeValidator(_duration_field)]


# --------------------------------------------------------------------------- field types

SECRET_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,99}$")
#: Plain keys that must never hold a secret value (use `<key>_secret: NAME`).
PLAIN_SECRET_KEYS = frozenset(
    {"password", "client_secret", "token", "access_token", "refresh_token", "api_key", "secret",
     "private_key", "passwd"}
)


def _secret_name(value: str) -> str:
    if not SECRET_NAME_RE.match(value):
        raise PydanticCustomError(
            "secret_name",
            "expected the NAME of a secret in the vault (letters, digits, '_', '.', '-'; at most 200), "
            "not a secret value; store the value with `ml-connector secrets set NAME`",
        )
    return value


def _name(value: str) -> str:
    if not NAME_RE.match(value):
        raise PydanticCustomError(
            "name",
            "expected a name that starts with a letter and has only letters, digits, '_' or '-' "
            "(at most 100), got '{value}'",
            {"value": value},
        )
    return value


def _scalar_str(value: Any) -> Any:
    """YAML turns `NO` into False and `1000` into 1000: accept numbers as text, refuse booleans."""
    if isinstance(value, bool):
        raise PydanticCustomError(
            "quote",
            "expected text, got the YAML boolean {value} (YAML reads NO, YES, ON, OFF as booleans); "
            "put the value in quotes",
            {"value": str(value).lower()},
        )
    if isinstance(value, int | float):
        return str(value)
    return value


def _base_url(value: str) -> str:
    """An http(s) URL with a host: what every system's `base_url` is (a typo such as `htp:/host`
    would otherwise pass and fail at the first call, with a transport traceback)."""
    from urllib.parse import urlsplit

    text = value.strip()
    try:
        parts = urlsplit(text)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        parts, port_ok = None, False
    if (parts is None or parts.scheme not in ("http", "https") or not parts.hostname or not port_ok
            or any(c.isspace() for c in text)):
        raise ValueError(f"expected an http(s) URL like https://host:port, got {value!r}")
    return text


#: A system's base URL: http:// or https://, a host, optionally a port and path.
BaseUrl = Annotated[str, AfterValidator(_base_url)]
#: The name of a secret stored in the vault.
SecretName = Annotated[str, AfterValidator(_secret_name)]
#: A connection, flow or stream name.
Name = Annotated[str, AfterValidator(_name)]
Text = Annotated[str, BeforeValidator(_scalar_str)]


class SettingsModel(BaseModel):
    """Strict: unknown keys are errors, defaults are validated."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


_Model = SettingsModel


# --------------------------------------------------------------------------- agent.yaml systems


class AllowList(SettingsModel):
    """What the agent serves of one system (agent.yaml `allow`): fnmatch patterns, case-insensitive."""

    functions: list[str] = Field(default_factory=list)
    tables: list[str] = Field(default_factory=list)
    resources: list[str] = Field(default_factory=list)

    @field_validator("functions", "tables", "resources")
    @classmethod
    def _strip(cls, v: list[str]) -> list[str]:
        return [str(x).strip() for x in v if str(x).strip()]


class AgentSystemSettings(SettingsModel):
    """What every on-prem system in agent.yaml (`systems: {name: {type: ..., ...}}`) has; each system's
    registry entry extends it with its own fields (`AgentSupport.settings`)."""

    type: str
    base_url: BaseUrl = Field(min_length=1)
    password_secret: SecretName  # in the agent's own vault (`ml-connector agent secrets set NAME`)
    timeout: Duration = 60.0
    tls_verify: bool | str = True
    allow: AllowList = Field(default_factory=lambda: AllowList())
