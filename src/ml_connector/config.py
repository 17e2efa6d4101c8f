"""The configuration file `ml-connector.yaml`: pydantic models and the loader.

This is the user-facing contract. Every problem found while loading is reported
as one line `file:line: dotted.field.path: what is expected`, so that a typo is
fixed without reading code:

    ml-connector.yaml:23: flows.vendors_to_ramp.schedule: give exactly one of 'interval' or 'cron'

Secrets never live in this file: a field whose name ends in `_secret` holds the
NAME of a secret in the vault (set with `ml-connector secrets set NAME`).
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import types
import typing
from collections.abc import Hashable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    GetCoreSchemaHandler,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from ml_connector.core.settings import (
    DURATION_EXPECTED,
    NAME_RE,
    PLAIN_SECRET_KEYS,
    SECRET_NAME_RE,
    ConfigError,
    Duration,
    Name,
    SecretName,
    Text,
    _Model,
    _scalar_str,
    parse_duration,
)

__all__ = ["DURATION_EXPECTED", "NAME_RE", "SECRET_NAME_RE", "AppConfig", "ConfigError", "Duration", "Name",
           "SecretName", "Text", "load_config", "parse_config", "parse_duration"]

CONFIG_FILENAME = "ml-connector.yaml"
DATABASE_URL_ENV = "MLC_DATABASE_URL"

Loc = tuple[str | int, ...]


# --------------------------------------------------------------------------- engine, server


class EngineConfig(_Model):
    """How the engine runs: where it keeps its state and how it polls its queues."""

    data_dir: str = Field(default="./data", description="Relative paths are relative to the config file")
    database_url: str | None = Field(
        default=None,
        description="Default sqlite:///<data_dir>/ml-connector.sqlite; postgresql://… for scale-out",
    )
    queue_polling_interval: Duration = Field(default=0.2, le=60, description="Seconds between queue polls")
    executor_id: str | None = Field(default=None, description="Default: <hostname>-<pid>")
    agent: Literal["embedded", "remote"] = Field(default="embedded", description="Where SAP calls run: in this "
                                                 "process, or on the remote agent at the customer's site")
    agent_site: str = Field(default="default", description="With agent: remote, the site whose agents serve calls")

    @field_validator("database_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_database_url(value)


def _check_database_url(value: str) -> str:
    if not re.match(r"^(sqlite|postgresql(\+psycopg)?|postgres)://", value):
        raise PydanticCustomError(
            "database_url", "expected sqlite:///path/to/file.sqlite or postgresql://user@host:5432/db"
        )
    return value


class IdocPartner(_Model):
    sndprt: Text = Field(default="LS", description="Sender partner type, e.g. LS (logical system)")
    sndprn: Text = Field(min_length=1, description="Sender partner number, e.g. ECDCLNT100")
    mestypes: list[Text] | None = Field(default=None, description="Allowed message types; null = any known")


class IdocReceiverConfig(_Model):
    """The endpoint SAP pushes XML IDocs to (WE21 XML-HTTP port, SM59 type G destination)."""

    path: str = Field(default="/sap/idoc", pattern=r"^/[A-Za-z0-9/_-]*$")
    username: Text = Field(min_length=1)
    password_secret: SecretName
    partners: list[IdocPartner] = Field(default_factory=list, description="Empty = accept any sender (warned)")
    max_bytes: int = Field(default=20_000_000, ge=1000)
    client: str | None = Field(default=None, pattern=r"^\d{3}$",
                               description="The SAP client (MANDT, 3 digits in quotes) IDocs must come from")


class ServerTls(_Model):
    """HTTPS for the listener (PEM files; relative paths are relative to the configuration file)."""

    cert_file: str = Field(min_length=1, description="Server certificate, with its intermediates after it")
    key_file: str = Field(min_length=1, description="Its private key")
    key_password_secret: SecretName | None = Field(
        default=None, description="Vault secret holding the key's passphrase, for an encrypted key file")


class ServerConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    tls: ServerTls | None = Field(default=None, description="Serve HTTPS (required when agents connect "
                                  "over a network you do not control)")
    api_auth: Literal["auto", "token"] = Field(
        default="auto", description="auto: the operators' JSON API needs a bearer token unless the server is "
        "bound to loopback only and the request carries no proxy header; token: always (set this behind a "
        "reverse proxy on the same host)")
    trusted_proxies: list[str] = Field(
        default_factory=list, description="Addresses or CIDRs of your reverse proxies: only from these is "
        "the client address in Forwarded / X-Forwarded-For believed (audit, refusal coalescing)")
    idoc: IdocReceiverConfig | None = Field(default=None, description="Receive IDocs pushed by SAP")

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_networks(cls, v: list[str]) -> list[str]:
        from ml_connector.core.net import parse_networks

        parse_networks(v)
        return v


# --------------------------------------------------------------------------- connections
# Each connection's settings model belongs to its system (systems/<name>/settings.py) and is found
# through the registry; `connections:` validates against the union of the registered ones.


def connection_models() -> dict[str, type[BaseModel]]:
    """The connection settings model of every registered system, by `type` (registration order)."""
    from ml_connector.core import registry

    return {e.name: e.settings for e in registry.entries()}


#: The registry generation the connection union was last built from (-1: not built yet).
_schema_generation = -1


class _RegisteredConnection:
    """Annotation marker: validate as the settings model of the registered system named by `type`
    (a tagged union, so an unknown `type` is one error listing the registered types)."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        global _schema_generation
        from ml_connector.core import registry

        _schema_generation = registry.generation()  # the registry this union is built from
        choices: dict[Hashable, CoreSchema] = {name: handler.generate_schema(model)
                                               for name, model in connection_models().items()}
        if not choices:  # a package installed without its entry points (e.g. a stale editable install)
            return core_schema.no_info_plain_validator_function(_no_systems)
        return core_schema.tagged_union_schema(choices, discriminator="type")


def _no_systems(value: Any) -> Any:
    raise PydanticCustomError("no_systems", "no system is installed (the entry points 'ml_connector.systems' "
                              "come with the installed package: run `uv sync` or `make venv`)")


#: A connection's settings: whichever registered system's model its `type` names.
Connection = Annotated[BaseModel, _RegisteredConnection()]


# --------------------------------------------------------------------------- flows


class Schedule(_Model):
    """When a flow runs: exactly one of `interval` (30s, 15m, 1h, 7d) or `cron`
    (5 fields, or 6 with seconds first as DBOS reads it)."""

    interval: Duration | None = None
    cron: str | None = None
    timezone: str | None = Field(default=None, description="IANA zone for cron, default UTC")

    @field_validator("cron")
    @classmethod
    def _check_cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from croniter import croniter

        expr = " ".join(value.split())
        if len(expr.split()) not in (5, 6) or not croniter.is_valid(expr, second_at_beginning=True):
            raise PydanticCustomError(
                "cron",
                "expected a cron expression with 5 fields (minute hour day month weekday) "
                "or 6 (seconds first), like '0 3 * * 1', got '{value}'",
                {"value": value},
            )
        return expr

    @field_validator("timezone")
    @classmethod
    def _check_tz(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from zoneinfo import ZoneInfo

        try:
            ZoneInfo(value)
        except Exception:
            raise PydanticCustomError(
                "timezone", "expected an IANA time zone like 'Europe/Berlin', got '{value}'",
                {"value": value},
            ) from None
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> Schedule:
        if (self.interval is None) == (self.cron is None):
            raise PydanticCustomError("schedule", "give exactly one of 'interval' or 'cron'")
        if self.timezone is not None and self.cron is None:
            raise PydanticCustomError("schedule", "'timezone' applies only to 'cron'")
        return self

    @property
    def seconds(self) -> float | None:
        """The interval in seconds, or None for a cron schedule."""
        return self.interval

    def as_cron(self) -> str | None:
        """A 6-field cron (seconds first, as DBOS schedules read it).

        A cron schedule is returned as such (a 5-field one gets '0' seconds). An
        interval becomes a cron when it divides its unit evenly (30s, 5m, 15m, 1h,
        2h, 1d …); otherwise (90s, 45m, 7d) None: the engine then runs it by
        interval itself.
        """
        if self.cron is not None:
            fields = self.cron.split()
            return " ".join(["0", *fields]) if len(fields) == 5 else self.cron
        assert self.interval is not None
        s = self.interval
        if s != int(s):
            return None
        n = int(s)
        if n < 60:
            return f"*/{n} * * * * *" if 60 % n == 0 else None
        if n < 3600:
            return f"0 */{n // 60} * * * *" if n % 60 == 0 and 3600 % n == 0 else None
        if n < 86400:
            return f"0 0 */{n // 3600} * * *" if n % 3600 == 0 and 86400 % n == 0 else None
        if n == 86400:
            return "0 0 0 * * *"
        return None


def _mapping_table(value: Any) -> Any:
    if isinstance(value, dict):
        return {_scalar_str(k): _scalar_str(v) for k, v in value.items()}
    return value


class ApprovalConfig(_Model):
    """Records of a flow that wait for a person's approval before they are written (core/approval.py)."""

    streams: list[Name] = Field(default_factory=list, description="The streams whose records wait; empty: all")
    company_codes: list[str] = Field(default_factory=list, description="Only records posted in these company "
                                     "codes (the target's scope) wait; empty: every record of those streams")


class FlowConfig(_Model):
    pair: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")] = Field(
        description="The flow module flows/<pair>.py (a module of ml_connector.flows, or one a package declares)"
    )
    source: str = Field(description="A connection name")
    target: str = Field(description="A connection name")
    streams: list[Name] = Field(min_length=1)
    schedule: Schedule | None = None
    pause_after: int | None = Field(default=None, ge=1, description="Pause the flow after this many failed "
                                    "runs in a row (a warning alert one run before); `ml-connector resume` ends it")
    options: dict[str, Any] = Field(default_factory=dict)
    approval: ApprovalConfig | None = Field(default=None, description="Approval before posting: the records "
                                            "wait in the console's approval queue with the target's verdict")
    mappings: dict[str, Annotated[dict[str, str], BeforeValidator(_mapping_table)]] = Field(
        default_factory=dict
    )

    @model_validator(mode="after")
    def _approval_streams(self) -> FlowConfig:
        unknown = [s for s in (self.approval.streams if self.approval else []) if s not in self.streams]
        if unknown:
            raise ValueError(f"approval.streams names {', '.join(unknown)}, not a stream of this flow "
                             f"(streams: {', '.join(self.streams)})")
        return self


# --------------------------------------------------------------------------- alerts


def _alert_event(value: str) -> str:
    from ml_connector.core.alerts import ALERT_EVENTS

    if value not in ALERT_EVENTS:
        raise PydanticCustomError("alert_event", "expected one of {known}, got '{value}'",
                                  {"known": ", ".join(ALERT_EVENTS), "value": value})
    return value


class AlertHeader(_Model):
    """A header sent with every alert, its value a vault secret (the receiver's shared token)."""

    name: str = Field(pattern=r"^[A-Za-z0-9-]{1,100}$", description="Header name, e.g. X-Alert-Token")
    value_secret: SecretName = Field(description="Vault secret holding the header's value")


class AlertWebhook(_Model):
    """An alert receiver: exactly one of `url` or `url_secret` (a Slack webhook URL is a credential:
    keep it in the vault)."""

    url: str | None = Field(default=None, description="https://… (http only on a network you trust)")
    url_secret: SecretName | None = Field(default=None, description="Vault secret holding the URL")
    format: Literal["json", "slack"] = Field(default="json", description="json: the event as JSON; "
                                             "slack: {text: …} for a Slack incoming webhook")
    secret_header: AlertHeader | None = None

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^/\s:?#]+(:\d+)?([/?]\S*)?", value):
            # Not echoed: a webhook URL can carry a credential.
            raise PydanticCustomError("url", "expected an http(s) URL like https://alerts.example.com/hook "
                                      "(credentials in it: use url_secret)")
        return value

    @model_validator(mode="after")
    def _one_url(self) -> AlertWebhook:
        if (self.url is None) == (self.url_secret is None):
            raise PydanticCustomError("webhook", "give exactly one of 'url' or 'url_secret'")
        return self


class AlertEmail(_Model):
    """Alerts by email over SMTP; the password is a vault secret."""

    host: str = Field(min_length=1, description="SMTP server")
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = Field(
        default="starttls", description="starttls (port 587), tls (implicit TLS, port 465), none (a trusted relay)")
    username: str | None = None
    password_secret: SecretName | None = Field(default=None, description="Vault secret holding the password")
    ca_file: str | None = Field(default=None, description="A private CA to trust (default: the system's)")
    sender: str = Field(pattern=r"^[^@\s]+@[^@\s]+$", description="From address")
    to: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]] = Field(min_length=1)
    digest: bool = Field(default=False, description="One daily digest message instead of a message per alert")
    digest_at: str = Field(default="07:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$",
                           description="When the daily digest is sent (HH:MM, UTC)")

    @model_validator(mode="after")
    def _login_needs_password(self) -> AlertEmail:
        if (self.username is None) != (self.password_secret is None):
            raise PydanticCustomError("email", "give both 'username' and 'password_secret', or neither")
        return self


class AlertsConfig(_Model):
    """Where operators are told about what needs a person: agents going offline or coming back, failed
    runs, records parked too long, stale streams."""

    webhooks: list[AlertWebhook] = Field(default_factory=list)
    email: AlertEmail | None = None
    events: list[Annotated[str, AfterValidator(_alert_event)]] = Field(
        default_factory=lambda: ["agent.offline", "agent.online", "run.failed", "records.failed", "record.parked",
                                 "records.parked", "stream.stale", "flow.failing", "flow.paused", "token.failed",
                                 "budget.low"],
        min_length=1)
    parked_after: Duration = Field(default=86400.0, description="records.parked: a record parked longer than this")
    stale_factor: float = Field(default=2.0, ge=1.0, description="stream.stale: no successful run for this many "
                                "of the flow's schedule periods")
    budget_threshold: float = Field(default=0.9, gt=0, le=1, description="budget.low: this share of an API "
                                    "budget's window used")
    check_every: Duration = Field(default=300.0, ge=1.0, description="How often these conditions are checked")
    interval: Duration = Field(default=900.0, description="At most one alert per event and agent "
                               "(or flow/stream) per this long")
    timeout: Duration = Field(default=5.0, le=60, description="Per delivery attempt")
    attempts: int = Field(default=3, ge=1, le=10)
    backoff: Duration = Field(default=1.0, le=300, description="Before the 2nd attempt, doubled for each further")

    @model_validator(mode="after")
    def _a_receiver(self) -> AlertsConfig:
        if not self.webhooks and self.email is None:
            raise PydanticCustomError("alerts", "give at least one receiver: 'webhooks' or 'email'")
        return self


# --------------------------------------------------------------------------- the file


class AppConfig(_Model):
    engine: EngineConfig = Field(default_factory=lambda: EngineConfig())
    server: ServerConfig = Field(default_factory=lambda: ServerConfig())
    connections: dict[Name, Connection] = Field(default_factory=dict)
    flows: dict[Name, FlowConfig] = Field(default_factory=dict)
    alerts: AlertsConfig | None = Field(default=None, description="Alert webhooks (control plane)")

    _config_dir: Path | None = PrivateAttr(default=None)
    _path: Path | None = PrivateAttr(default=None)
    _lines: dict[Loc, int] = PrivateAttr(default_factory=dict)
    _filename: str = PrivateAttr(default=CONFIG_FILENAME)

    @model_validator(mode="after")
    def _references(self) -> AppConfig:
        problems: list[tuple[Loc, str]] = []
        for name, flow in self.flows.items():
            for role in ("source", "target"):
                ref = getattr(flow, role)
                if ref not in self.connections:
                    hint = _did_you_mean(ref, list(self.connections))
                    known = ", ".join(repr(c) for c in self.connections) or "none"
                    problems.append(
                        (("flows", name, role),
                         f"no connection named {ref!r}{hint} (connections: {known})")
                    )
        if problems:
            detail = "; ".join(f"{_dotted(loc)}: {msg}" for loc, msg in problems)
            raise PydanticCustomError("references", "{detail}", {"detail": detail, "problems": problems})
        return self

    @property
    def path(self) -> Path | None:
        """The file this configuration was loaded from (None when built in code)."""
        return self._path

    @property
    def config_dir(self) -> Path:
        return self._config_dir if self._config_dir is not None else Path.cwd()

    def where(self, *loc: str | int) -> str:
        """`file:line: dotted.path` of a setting, for problems found after loading (e.g. at startup)."""
        probe: Loc = tuple(loc)
        while probe and probe not in self._lines:
            probe = probe[:-1]
        return f"{self._filename}:{self._lines.get(probe, 1)}: {_dotted(tuple(loc))}"

    def resolve_path(self, value: str) -> Path:
        """A path from the file, made absolute against the configuration file's directory."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.config_dir / p).resolve()

    def data_dir_resolved(self, config_dir: Path | None = None) -> Path:
        """engine.data_dir as an absolute path (relative to the config file's directory)."""
        base = Path(config_dir) if config_dir is not None else self.config_dir
        path = Path(self.engine.data_dir).expanduser()
        return (path if path.is_absolute() else base / path).resolve()

    def database_url_resolved(self, config_dir: Path | None = None) -> str:
        """The database URL to use: $MLC_DATABASE_URL, else engine.database_url, else
        sqlite:///<data_dir>/ml-connector.sqlite. Relative SQLite paths are made
        absolute against the config file's directory."""
        url = os.environ.get(DATABASE_URL_ENV) or self.engine.database_url
        base = Path(config_dir) if config_dir is not None else self.config_dir
        if not url:
            return f"sqlite:///{self.data_dir_resolved(base) / 'ml-connector.sqlite'}"
        if url.startswith("sqlite:///") and ":memory:" not in url:
            file = url[len("sqlite:///"):]
            p = Path(file).expanduser()
            if not p.is_absolute():
                return f"sqlite:///{(base / p).resolve()}"
        return url

    def connection(self, name: str) -> BaseModel:
        try:
            return self.connections[name]
        except KeyError:
            raise ConfigError(
                f"no connection named {name!r}{_did_you_mean(name, list(self.connections))}"
            ) from None

    def flow(self, name: str) -> FlowConfig:
        try:
            return self.flows[name]
        except KeyError:
            raise ConfigError(f"no flow named {name!r}{_did_you_mean(name, list(self.flows))}") from None


# --------------------------------------------------------------------------- loading


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


class _Lines:
    """Line numbers of the YAML nodes, by path (mapping keys, list indexes)."""

    def __init__(self, root: yaml.Node | None) -> None:
        self.lines: dict[Loc, int] = {}
        self.duplicates: list[tuple[Loc, int]] = []
        if root is not None:
            self.lines[()] = root.start_mark.line + 1
            self._walk(root, ())

    def _walk(self, node: yaml.Node, loc: Loc) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                if not isinstance(key, yaml.ScalarNode):
                    continue
                k = str(key.value)
                sub = (*loc, k)
                if k in seen:
                    self.duplicates.append((sub, key.start_mark.line + 1))
                seen.add(k)
                self.lines[sub] = key.start_mark.line + 1
                self._walk(value, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                sub = (*loc, i)
                self.lines[sub] = item.start_mark.line + 1
                self._walk(item, sub)

    def line(self, loc: Loc) -> int:
        while loc and loc not in self.lines:
            loc = loc[:-1]
        return self.lines.get(loc, 1)


def _unwrap(tp: Any) -> list[Any]:
    """The member types of an Optional/Union/Annotated annotation."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        if any(isinstance(m, _RegisteredConnection) for m in typing.get_args(tp)[1:]):
            return list(connection_models().values())
        return _unwrap(typing.get_args(tp)[0])
    if origin is Union or origin is types.UnionType:
        out: list[Any] = []
        for arg in typing.get_args(tp):
            if arg is not type(None):
                out.extend(_unwrap(arg))
        return out
    return [tp]


def _model_at(loc: Loc, data: Any) -> type[BaseModel] | None:
    """The model class that validates the mapping at `loc` (a data path), if any;
    a connection's model is picked by its `type`."""
    current: list[Any] = [AppConfig]
    node = data
    for part in loc:
        nxt: list[Any] = []
        for tp in current:
            for member in _candidates(tp, node):
                origin = typing.get_origin(member)
                if isinstance(member, type) and issubclass(member, BaseModel):
                    field = member.model_fields.get(str(part))
                    if field is not None:
                        nxt.append(field.annotation)
                elif origin is dict:
                    nxt.append(typing.get_args(member)[1])
                elif origin is list and isinstance(part, int):
                    nxt.append(typing.get_args(member)[0])
        current = nxt
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    models = [m for tp in current for m in _candidates(tp, node)
              if isinstance(m, type) and issubclass(m, BaseModel)]
    return models[0] if len(models) == 1 else None


def _candidates(tp: Any, node: Any) -> list[Any]:
    members = _unwrap(tp)
    models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
    if len(models) > 1 and isinstance(node, dict) and "type" in node:
        chosen = [m for m in models if "type" in m.model_fields
                  and node["type"] in typing.get_args(m.model_fields["type"].annotation)]
        if chosen:
            return chosen
    return members


def _data_loc(err_loc: Loc, data: Any) -> Loc:
    """Drop the parts of a pydantic error location that are not in the data (the
    discriminator tag of a connection, '[key]' of a dict-key error)."""
    out: list[str | int] = []
    node = data
    for i, part in enumerate(err_loc):
        if part == "[key]":
            continue
        if isinstance(node, dict):
            if part in node:
                out.append(part)
                node = node[part]
                continue
            if isinstance(part, str) and node.get("type") == part and i + 1 < len(err_loc):
                continue  # discriminator tag
            out.append(part)
            node = None
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            out.append(part)
            node = node[part]
        else:
            out.append(part)
            node = None
    return tuple(out)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(err: Any, loc: Loc, data: Any) -> list[tuple[Loc, str]]:
    """Turn one pydantic error into (location, message) lines."""
    etype: str = err["type"]
    ctx: dict[str, Any] = err.get("ctx") or {}
    inp = err.get("input")
    if etype == "references":
        return []  # reported from the raw data by _reference_problems, even when other fields fail
    if etype == "extra_forbidden":
        key = loc[-1] if loc else ""
        if str(key) in PLAIN_SECRET_KEYS:
            return [(loc, _plain_secret_message(str(key)))]
        model = _model_at(loc[:-1], data)
        hint = _did_you_mean(str(key), list(model.model_fields)) if model else ""
        allowed = f" (allowed: {', '.join(model.model_fields)})" if model and not hint else ""
        return [(loc, f"unknown key {str(key)!r}{hint}{allowed}")]
    if etype == "missing":
        return [(loc, "required field is missing")]
    if etype == "union_tag_invalid":
        tags = ctx.get("expected_tags", "")
        return [((*loc, "type"), f"expected one of {tags}, got {ctx.get('tag')!r}")]
    if etype == "union_tag_not_found":
        return [(loc, f"missing 'type' (one of {', '.join(repr(t) for t in connection_models())})")]
    if etype == "literal_error":
        return [(loc, f"expected {ctx.get('expected')}, got {_short(inp)}")]
    if etype in ("model_type", "model_attributes_type", "dict_type"):
        return [(loc, f"expected a mapping (key: value lines), got {_short(inp)}")]
    if etype == "list_type":
        return [(loc, f"expected a list like [a, b], got {_short(inp)}")]
    if etype in ("string_type",):
        return [(loc, f"expected text, got {_short(inp)}")]
    if etype in ("int_type", "int_parsing", "int_from_float"):
        return [(loc, f"expected a whole number, got {_short(inp)}")]
    if etype in ("bool_type", "bool_parsing"):
        return [(loc, f"expected true or false, got {_short(inp)}")]
    if etype in ("float_type", "float_parsing"):
        return [(loc, f"expected a number, got {_short(inp)}")]
    if etype == "string_pattern_mismatch":
        return [(loc, f"expected text matching {ctx.get('pattern')}, got {_short(inp)}")]
    msg: str = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
    if etype in bounds:
        limit = next(iter(ctx.values()), "?")
        return [(loc, f"expected a value {bounds[etype]} {limit}, got {_short(inp)}")]
    if etype in ("too_short", "string_too_short"):
        return [(loc, f"expected at least {ctx.get('min_length')} "
                      f"{'item' if etype == 'too_short' else 'character'}(s), got {_short(inp)}")]
    if etype in ("too_long", "string_too_long"):
        return [(loc, f"expected at most {ctx.get('max_length')} "
                      f"{'item' if etype == 'too_long' else 'character'}(s), got {_short(inp)}")]
    return [(loc, msg)]


def _plain_secret_message(key: str) -> str:
    return (
        f"{key!r} must not hold a secret value in the configuration file; write "
        f"'{key}_secret: NAME' and store the value with `ml-connector secrets set NAME`"
    )


FLOWS_PACKAGE = "ml_connector.flows"


def flow_pairs() -> list[str]:
    """The installed flow modules (core/flow_modules.py: entry points `ml_connector.flows` and the
    in-tree `flows/<pair>.py`), found without importing them (a flow module imports its systems'
    clients and the engine: seconds, too slow for loading a configuration)."""
    from ml_connector.core import flow_modules

    return flow_modules.pairs()


def flow_stream_names(pair: str) -> list[str] | None:
    """The stream names a flow module declares as a literal `STREAMS = (...)` at its top level, read
    from its source without importing it; None when it declares none (its streams are then checked
    when the flow is built)."""
    from ml_connector.core import flow_modules

    origin = flow_modules.source_file(pair)
    if origin is None:
        return None
    try:
        st = Path(origin).stat()
    except OSError:
        return None
    names = _declared_streams(str(origin), st.st_mtime_ns, st.st_size)
    return None if names is None else list(names)


@functools.lru_cache(maxsize=64)
def _declared_streams(origin: str, mtime_ns: int, size: int) -> tuple[str, ...] | None:
    """`flow_stream_names` of one version of a file (parsing a flow module costs ~20 ms; a configuration
    names the same pair in several flows)."""
    import ast

    try:
        tree = ast.parse(Path(origin).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, expr = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, expr = [node.target], node.value
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == "STREAMS" for t in targets):
            try:
                value = ast.literal_eval(expr)
            except ValueError:
                return None
            return tuple(str(v) for v in value) if isinstance(value, list | tuple | set | frozenset | dict) else None
    return None


def _pair_problems(fname: str, flow: dict[str, Any], pairs: list[str]) -> list[tuple[Loc, str]]:
    pair = flow.get("pair")
    if not isinstance(pair, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", pair):
        return []  # missing or malformed: reported by the model
    if pair not in pairs:
        known = ", ".join(repr(p) for p in pairs) or "none"
        return [(("flows", fname, "pair"),
                 f"no flow module named {pair!r}{_did_you_mean(pair, pairs)} (pairs: {known}; "
                 f"a pair is a module {FLOWS_PACKAGE}.<pair>)")]
    streams = flow.get("streams")
    names = flow_stream_names(pair) if isinstance(streams, list) else None
    out: list[tuple[Loc, str]] = []
    for i, stream in enumerate(streams if names is not None and isinstance(streams, list) else []):
        if isinstance(stream, str) and stream not in (names or []):
            out.append((("flows", fname, "streams", i),
                        f"flow pair {pair!r} has no stream {stream!r}{_did_you_mean(stream, names or [])} "
                        f"(streams: {', '.join(names or []) or 'none'})"))
    return out


def _reference_problems(data: dict[str, Any]) -> list[tuple[Loc, str]]:
    """Flows whose source/target names no connection, whose pair names no flow module, or whose streams
    name none of the pair's (checked on the raw data, so that these are reported together with every
    other problem)."""
    connections = data.get("connections")
    names = [str(k) for k in connections] if isinstance(connections, dict) else []
    flows = data.get("flows")
    out: list[tuple[Loc, str]] = []
    if not isinstance(flows, dict):
        return out
    pairs = flow_pairs() if any(isinstance(f, dict) and "pair" in f for f in flows.values()) else []
    for fname, flow in flows.items():
        if not isinstance(flow, dict):
            continue
        out.extend(_pair_problems(str(fname), flow, pairs))
        for role in ("source", "target"):
            ref = flow.get(role)
            if isinstance(ref, str) and ref not in names:
                known = ", ".join(repr(c) for c in names) or "none"
                out.append((("flows", str(fname), role),
                            f"no connection named {ref!r}{_did_you_mean(ref, names)} (connections: {known})"))
    return out


def flow_options_model(pair: str) -> type[BaseModel] | None:
    """The model a flow module declares for its flows' `options` (a pydantic model named `Options`);
    None when it declares none (its flows then take no options). Imports the module, so it is asked
    only for flows that give options."""
    import importlib

    from ml_connector.core import flow_modules

    module = flow_modules.module_of(pair) or f"{FLOWS_PACKAGE}.{pair}"
    model = getattr(importlib.import_module(module), "Options", None)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _options_problems(data: dict[str, Any], skip: set[Loc]) -> list[tuple[Loc, str]]:
    """Each flow's `options`, validated by its flow module's `Options` model (see flow_options_model)."""
    flows = data.get("flows")
    if not isinstance(flows, dict):
        return []
    pairs: list[str] | None = None
    out: list[tuple[Loc, str]] = []
    for fname, flow in flows.items():
        options = flow.get("options") if isinstance(flow, dict) else None
        pair = flow.get("pair") if isinstance(flow, dict) else None
        if not isinstance(options, dict) or not options or not isinstance(pair, str):
            continue  # no options, or not a mapping (reported by FlowConfig)
        pairs = flow_pairs() if pairs is None else pairs
        if pair not in pairs:
            continue  # reported by _pair_problems
        base: Loc = ("flows", str(fname), "options")
        try:
            model = flow_options_model(pair)
        except ImportError as exc:
            out.append((("flows", str(fname), "pair"), f"the flow module {pair!r} cannot be imported: {exc}"))
            continue
        if model is None:
            out.extend(((*base, str(k)), f"flow pair {pair!r} takes no options") for k in options)
            continue
        try:
            model.model_validate(options)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                loc = (*base, *_data_loc(tuple(err["loc"]), options))
                if loc in skip:
                    continue  # a secret value: reported once, without echoing it
                if err["type"] == "extra_forbidden" and len(loc) == len(base) + 1:
                    key = str(loc[-1])
                    hint = _did_you_mean(key, list(model.model_fields))
                    known = "" if hint else f" (options: {', '.join(model.model_fields)})"
                    out.append((loc, f"unknown option {key!r} for flow pair {pair!r}{hint}{known}"))
                    continue
                out.extend(_describe(err, loc, data))
    return out


def _plain_secrets(data: Any, loc: Loc = ()) -> Iterator[Loc]:
    """Places where a secret value sits in a plain field (anywhere, options included)."""
    if isinstance(data, dict):
        for k, v in data.items():
            sub = (*loc, str(k))
            if str(k).lower() in PLAIN_SECRET_KEYS and v not in (None, "") and not isinstance(v, dict | list):
                yield sub
            else:
                yield from _plain_secrets(v, sub)
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _plain_secrets(v, (*loc, i))


MAX_EXPANDED_NODES = 100_000  # far above any real configuration; an alias bomb passes it at once


def _check_expansion(root: yaml.Node, filename: str) -> None:
    """Refuse a document whose aliases expand past MAX_EXPANDED_NODES nodes: every later walk over the
    data (line numbers, validation) would otherwise take time and memory exponential in the nesting."""
    count = 0
    stack: list[yaml.Node] = [root]
    while stack:
        node = stack.pop()
        count += 1
        if count > MAX_EXPANDED_NODES:
            raise ConfigError(f"{filename}:{node.start_mark.line + 1}: YAML aliases expand to more than "
                              f"{MAX_EXPANDED_NODES:,} nodes; write the values out instead of nesting aliases")
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.append(key)
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def _rebuild_if_registry_changed() -> None:
    """A system registered in this process after AppConfig was built joins the connection union
    (also when the first configuration is parsed after the registration)."""
    global _schema_generation
    from ml_connector.core import registry

    gen = registry.generation()
    if gen != _schema_generation:
        AppConfig.model_rebuild(force=True)
        _schema_generation = gen


def parse_config(text: str, filename: str = CONFIG_FILENAME, config_dir: Path | None = None) -> AppConfig:
    """Validate configuration text; raise ConfigError with one `file:line: path: problem` per line."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        context = exc.context or ""
        if context and exc.context_mark is not None and exc.context_mark.line + 1 != line:
            context += f" started on line {exc.context_mark.line + 1}"
        what = ": ".join(p for p in (context, exc.problem) if p)
        raise ConfigError(f"{filename}:{line}: YAML syntax error: {what}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{filename}:1: YAML error: {exc}") from None
    finally:
        loader.dispose()
    if root is None:
        raise ConfigError(f"{filename}:1: the file is empty; expected a mapping with engine, server, connections "
                          "and flows (`ml-connector init` writes an example)")
    _check_expansion(root, filename)
    lines = _Lines(root)
    if not isinstance(data, dict):
        raise ConfigError(f"{filename}:1: expected a mapping with engine, server, connections and flows")

    problems: list[tuple[int, Loc, str]] = []
    for loc, ln in lines.duplicates:
        problems.append((ln, loc, "duplicate key (the later one would silently win)"))
    secret_locs = set(_plain_secrets(data))
    for loc in sorted(secret_locs, key=lambda x: lines.line(x)):
        problems.append((lines.line(loc), loc, _plain_secret_message(str(loc[-1]))))
    for loc, msg in _reference_problems(data) + _options_problems(data, secret_locs):
        problems.append((lines.line(loc), loc, msg))

    cfg: AppConfig | None = None
    _rebuild_if_registry_changed()
    try:
        cfg = AppConfig.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc = _data_loc(tuple(err["loc"]), data)
            for where, msg in _describe(err, loc, data):
                if where in secret_locs:
                    continue  # reported above, without echoing the value
                problems.append((lines.line(where), where, msg))
    if problems:
        problems.sort(key=lambda p: p[0])
        out = [f"{filename}:{ln}: {_dotted(loc)}: {msg}" for ln, loc, msg in problems]
        raise ConfigError("\n".join(out), out)
    assert cfg is not None
    cfg._config_dir = config_dir
    cfg._lines = lines.lines
    cfg._filename = filename
    return cfg


def load_config(path: str | os.PathLike[str] | None = None) -> AppConfig:
    """Load and validate `ml-connector.yaml` (default: ./ml-connector.yaml).

    $MLC_DATABASE_URL, when set, overrides engine.database_url.
    """
    p = Path(path) if path is not None else Path(CONFIG_FILENAME)
    if p.is_dir():
        p = p / CONFIG_FILENAME
    if not p.exists():
        raise ConfigError(
            f"{p}: configuration file not found; run `ml-connector init` to create one"
        )
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the configuration file: {exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(f"{p}:{line}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {column}); "
                          "save the file as UTF-8") from None
    cfg = parse_config(text, filename=str(p), config_dir=p.resolve().parent)
    env_url = os.environ.get(DATABASE_URL_ENV)
    if env_url:
        try:
            _check_database_url(env_url)
        except PydanticCustomError as exc:
            raise ConfigError(f"${DATABASE_URL_ENV}: {exc.message()}") from None
        cfg.engine.database_url = env_url
    cfg._path = p.resolve()
    return cfg


def example_config(sap_url: str, ramp_url: str) -> str:
    """The commented example written by `ml-connector init`: the demo's systems, wired to the sandbox.
    Which systems and flows it shows is the demo's business (demo.py); the frame is `config_template`."""
    from ml_connector.demo import init_example

    return init_example(sap_url, ramp_url)


def config_template(connections: str, flows: str) -> str:
    """A commented configuration around `connections` and `flows` (YAML lines indented under those
    keys, e.g. from each system's registry entry `example`)."""
    return f"""\
# ml-connector configuration.
#
# Secrets never go in this file: a field ending in `_secret` names a secret in the
# encrypted vault. Store each value once with:
#
#     ml-connector secrets set NAME
#
# Durations are written like 30s, 15m, 1h or 7d.

# The engine: where state is kept and how work is picked up.
engine:
  # Directory for the SQLite database and the master key file (relative to this file).
  data_dir: ./data
  # null = sqlite:///<data_dir>/ml-connector.sqlite. For several workers on several
  # hosts use Postgres: postgresql://user@host:5432/mlconnector
  # ($MLC_DATABASE_URL overrides this value.)
  database_url: null
  # Seconds between polls of the work queues.
  queue_polling_interval: 0.2
  # Name of this worker in logs and recovery; null = <hostname>-<pid>.
  executor_id: null

# The local status and API server.
server:
  host: 127.0.0.1
  port: 8080
  # HTTPS (needed when agents or operators reach it over a network):
  # tls: {{cert_file: ./tls/server.pem, key_file: ./tls/server.key}}   # + key_password_secret: NAME
  # The operators' JSON API (/api/flows, /api/runs, ...) needs a bearer token
  # (`ml-connector api-tokens create NAME`) unless host is loopback and the request carries
  # no proxy header; `token` = always (use it behind a reverse proxy).
  api_auth: auto
  # Reverse proxies whose Forwarded / X-Forwarded-For headers are believed (addresses or CIDRs):
  # trusted_proxies: [127.0.0.1]
  # Receive IDocs pushed by SAP (WE21 port type XML HTTP -> SM59 type G -> http://<host>:8080/sap/idoc):
  # idoc: {{path: /sap/idoc, username: SAPIDOC, password_secret: idoc_password,
  #        partners: [{{sndprt: LS, sndprn: ECDCLNT100}}]}}

# The systems to connect, by name. `type` picks the connector.
connections:
{connections}
# Alerts to operators (the control plane): an agent offline / back online, a failed sync run.
# At most one per event and agent (or flow/stream) per `interval`. A Slack incoming-webhook URL
# is a credential: give it as url_secret (a vault secret name), not url.
# alerts:
#   webhooks:
#     - {{url: https://alerts.example.com/hook, format: json,
#        secret_header: {{name: X-Alert-Token, value_secret: alert_token}}}}
#     - {{url_secret: slack_webhook_url, format: slack}}
#   events: [agent.offline, agent.online, run.failed, records.parked, token.failed, budget.low,
#            flow.failing, flow.paused]   # a flow's `pause_after: 3` pauses it after 3 failed runs in a row
#   interval: 15m            # also: timeout: 5s, attempts: 3, backoff: 1s, budget_threshold: 0.9

# What moves where, and when.
flows:
{flows}"""
