"""The agent's own configuration file, `agent.yaml`, and its allow-list.

    control_plane: https://cp.example.com     # the only place the agent connects to
    site: plant-1                              # informational; the pairing token decides the site
    data_dir: ./agent-data                     # identity, master key, local DB, audit log (0700)
    tls_verify: true                           # or the path of the CA bundle (PEM) that signed its certificate
    allow_insecure_http: false                 # true: accept http:// to a non-loopback host (test networks only)
    poll:
      hold: 50s                                # long-poll hold asked of the control plane
      backoff_scale: 1.0                       # 15-30 s, then 30-60 s reconnect delays, times this
      max_concurrent: 4                        # calls run at once
      heartbeat: 20s                           # lease renewal while calls run
    max_call_age: 5m                           # older call envelopes are refused (replay protection)
    state_retention: 7d                        # how long acknowledged call ids are kept for dedupe
    systems:
      sap_ecc:
        type: sap_ecc
        base_url: http://sap-host:8000
        transport: soap_rfc                    # or pyrfc (needs the SAP NW RFC SDK and `pip install pyrfc`)
        client: "100"
        user: RFC_USER
        password_secret: sap_ecc_password      # ml-connector agent secrets set sap_ecc_password
        allow:
          functions: [RFC_PING, RFC_SYSTEM_INFO, RFC_READ_TABLE, BAPI_ACC_DOCUMENT_POST]
          tables: [LFA1, LFB1, LFM1, T001]     # tables any table-reading module may read (see docs/agent.md)
          resources: []                        # Service Layer resources (Business One, later)

Nothing outside `allow` is served: the call is answered with a `NotAllowed` fault and
audited on both sides. Patterns like `BAPI_*` are allowed (fnmatch, case-insensitive).
"""

from __future__ import annotations

import fnmatch
import ssl
from collections.abc import Hashable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, ValidationError
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from ml_connector.core import registry
from ml_connector.core.channel import ChannelFault
from ml_connector.core.providers import fact
from ml_connector.core.settings import AgentSystemSettings, Duration

AGENT_CONFIG_FILENAME = "agent.yaml"


class AgentConfigError(Exception):
    pass


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _agent_system_types() -> list[str]:
    """The registered systems the agent can serve (their entries have an agent side)."""
    return [e.name for e in registry.with_agent()]


def _with_default_type(data: Any) -> Any:
    """A system that names no `type` is of the registered type that declares itself the default."""
    if isinstance(data, dict) and "type" not in data:
        default = next((e.name for e in registry.with_agent() if e.agent and e.agent.default_type), None)
        if default is not None:
            return {"type": default, **data}
    return data


def _no_agent_systems(value: Any) -> Any:
    raise PydanticCustomError("no_systems", "no on-prem system is installed (the entry points "
                              "'ml_connector.systems' come with the installed package: run `uv sync`)")


class _RegisteredAgentSystem:
    """Annotation marker: validate as the agent settings model of the registered system named by `type`."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        choices: dict[Hashable, CoreSchema] = {
            e.name: handler.generate_schema(e.agent.settings) for e in registry.with_agent() if e.agent}
        if not choices:
            return core_schema.no_info_plain_validator_function(_no_agent_systems)
        return core_schema.no_info_before_validator_function(
            _with_default_type, core_schema.tagged_union_schema(choices, discriminator="type"))


#: One system of agent.yaml: its type's settings model (the common fields are AgentSystemSettings').
AgentSystem = Annotated[AgentSystemSettings, _RegisteredAgentSystem()]


class PollConfig(_Model):
    hold: Duration = 50.0
    backoff_scale: float = Field(default=1.0, gt=0, le=10)
    max_concurrent: int = Field(default=4, ge=1, le=64)
    heartbeat: Duration = 20.0
    request_timeout: Duration = 30.0


class AgentConfig(_Model):
    control_plane: str = ""
    site: str = ""
    data_dir: str = "./agent-data"
    # true: the system's CA store; a path: that CA bundle (PEM file or directory) only; false: no check
    tls_verify: bool | str = True
    # http:// is accepted for loopback hosts only, unless this is set (isolated test networks)
    allow_insecure_http: bool = False
    poll: PollConfig = Field(default_factory=PollConfig)
    # A call envelope issued longer ago than this is refused unexecuted (replay protection
    # once its id has left the local store); calls are issued when they are handed out.
    max_call_age: Duration = Field(default=300.0, ge=30, le=3600)
    # Acknowledged call ids stay in agent-state.sqlite this long (dedupe), then are pruned.
    # At least a day, so always far longer than max_call_age.
    state_retention: Duration = Field(default=7 * 86400.0, ge=86400)
    systems: dict[str, AgentSystem] = Field(default_factory=dict)

    _dir: Path = Path(".")

    def data_dir_path(self) -> Path:
        p = Path(self.data_dir).expanduser()
        return p if p.is_absolute() else (self._dir / p).resolve()

    def tls_ca_path(self) -> Path | None:
        """tls_verify as a CA bundle path (relative to agent.yaml), or None for true/false."""
        if isinstance(self.tls_verify, bool):
            return None
        p = Path(self.tls_verify).expanduser()
        return p if p.is_absolute() else (self._dir / p).resolve()

    def control_plane_verify(self) -> ssl.SSLContext | bool:
        """What the HTTPS client to the control plane verifies against (pairing and polling alike)."""
        ca = self.tls_ca_path()
        if ca is None:
            return bool(self.tls_verify)
        return ssl.create_default_context(capath=str(ca)) if ca.is_dir() else ssl.create_default_context(cafile=str(ca))


def load_agent_config(path: Path) -> AgentConfig:
    if not path.exists():
        raise AgentConfigError(f"{path}: agent configuration not found (create it, or run `ml-connector agent "
                               "pair --token T --control-plane URL` which writes a minimal one)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise AgentConfigError(f"{path}: YAML error: {exc}") from None
    if not isinstance(data, dict):
        raise AgentConfigError(f"{path}: expected a mapping")
    try:
        cfg = AgentConfig.model_validate(data)
    except ValidationError as exc:
        raise AgentConfigError("\n".join(f"{path}: {_problem(e)}" for e in exc.errors())) from None
    cfg._dir = path.resolve().parent
    ca = cfg.tls_ca_path()
    if ca is not None:
        if not ca.exists():
            raise AgentConfigError(f"{path}: tls_verify: CA bundle not found: {ca} (true, false, or the path of the "
                                   "PEM file of the CA that signed the control plane's certificate; relative to "
                                   f"{path.name})")
        try:
            cfg.control_plane_verify()
        except (ssl.SSLError, OSError) as exc:
            raise AgentConfigError(f"{path}: tls_verify: cannot load the CA bundle {ca}: {exc} (PEM "
                                   "certificates expected)") from None
    return cfg


def _problem(err: Any) -> str:
    """`dotted.path: message` of a validation error; a system's type (the union's tag) is not in the path."""
    loc = [str(p) for p in err["loc"]]
    types = _agent_system_types()
    if len(loc) > 3 and loc[0] == "systems" and loc[2] in types:
        del loc[2]
    if err["type"] == "union_tag_invalid":
        tag = (err.get("ctx") or {}).get("tag")
        return f"{'.'.join([*loc, 'type'])}: expected one of {', '.join(repr(t) for t in types)}, got {tag!r}"
    return f"{'.'.join(loc)}: {err['msg']}"


def write_minimal_config(path: Path, control_plane: str, site: str = "") -> None:
    path.write_text(yaml.safe_dump({"control_plane": control_plane, "site": site, "data_dir": "./agent-data",
                                    "systems": {}}, sort_keys=False), encoding="utf-8")


def _match(name: str, patterns: list[str]) -> bool:
    n = name.upper()
    return any(fnmatch.fnmatchcase(n, p.upper()) for p in patterns)


def _named(name: str, patterns: list[str]) -> bool:
    """Listed literally (not only matched by a wildcard pattern)."""
    n = name.upper()
    return any(p.upper() == n for p in patterns)


@dataclass(frozen=True)
class TableReaders:
    """Which modules read a table named by a parameter (provider data, `table_readers`)."""

    modules: dict[str, str]
    table_parameters: frozenset[str]
    name_patterns: tuple[str, ...]


@cache
def table_readers(system_type: str) -> TableReaders:
    # A system without provider facts (or without table reads) has no table readers; a provider.yaml
    # that does not load is an error, not an empty allow-list rule.
    entry = registry.find(system_type)
    data = fact(entry.provider, "table_readers", default=None) if entry is not None and entry.provider else None
    data = data if isinstance(data, dict) else {}
    return TableReaders(
        modules={str(k).upper(): str(v).upper() for k, v in (data.get("modules") or {}).items()},
        table_parameters=frozenset(str(p).upper() for p in data.get("table_parameters") or ()),
        name_patterns=tuple(str(p) for p in data.get("name_patterns") or ()))


def _tables_named(params: dict[str, Any], where: str) -> list[str]:
    """The table names in `params` at `where`: PARAM, or PARAM[].FIELD (a field of each row)."""
    upper = {str(k).upper(): v for k, v in params.items()}
    if "[]." not in where:
        value = upper.get(where)
        return [] if value is None else [str(value).strip()]
    param, field_name = where.split("[].", 1)
    rows = upper.get(param)
    if not isinstance(rows, list):
        return []
    out = []
    for row in rows:
        cells = {str(k).upper(): v for k, v in row.items()} if isinstance(row, dict) else {}
        out.append(str(cells.get(field_name, "")).strip())
    return out


def _table_fault(system: str, function: str, table: str, why: str, key: str = "") -> ChannelFault:
    return ChannelFault(type="NotAllowed", key=key or table or function,
                        message=f"{why} ({function} on system {system!r}); refused by the agent's allow-list",
                        details={"system": system, "function": function, "table": table})


def _check_tables(cfg_system: Any, system: str, function: str, params: dict[str, Any]) -> ChannelFault | None:
    """Tables are checked for every module that can read one, however the module was allowed.

    A known reader must name its table, and the table must be allowed. Another module that
    looks like a generic table reader (name pattern, or a table-naming parameter) is refused
    when only a wildcard allows it: we cannot know which parameter carries its table. Named
    literally in `functions`, its table-naming parameters are checked against `tables`."""
    readers = table_readers(cfg_system.type)
    tables = cfg_system.allow.tables
    where = readers.modules.get(function.upper())
    if where is not None:
        names = _tables_named(params, where)
        if not names or not all(names):
            return _table_fault(system, function, "", f"the call names no table in {where}", key=where)
        for table in names:
            if not _match(table, tables):
                return _table_fault(system, function, table, f"table {table!r} is not in the allowed tables")
        return None
    table_params = sorted(k for k in (str(p).upper() for p in params) if k in readers.table_parameters)
    if not table_params and not _match(function, list(readers.name_patterns)):
        return None
    if not _named(function, cfg_system.allow.functions):
        return ChannelFault(
            type="NotAllowed", key=function,
            message=(f"function {function!r} of system {system!r} looks like a generic table reader "
                     f"({'parameter ' + ', '.join(table_params) if table_params else 'by its name'}) and is "
                     "allowed only by a wildcard pattern, so its tables cannot be checked; list it by name "
                     "in allow.functions to serve it"),
            details={"system": system, "function": function, "table_parameters": table_params})
    for p in table_params:
        for table in _tables_named(params, p):
            if not table or not _match(table, tables):
                return _table_fault(system, function, table, f"table {table!r} in {p} is not in the allowed tables")
    return None


def check_allowed(cfg: AgentConfig, system: str, function: str, params: dict[str, Any]) -> ChannelFault | None:
    """None when the call is allowed; else the typed fault to answer with."""
    sysc = cfg.systems.get(system)
    if sysc is None:
        return ChannelFault(type="UnknownSystem", key=system,
                            message=f"no system named {system!r} is served by this agent")
    agent = registry.get(sysc.type).agent
    if agent is not None and agent.check is not None:  # e.g. Service Layer calls: resources and methods
        return agent.check(sysc, system, function, params)
    # The default: function modules against allow.functions, the tables they read against allow.tables.
    allow = sysc.allow
    if not _match(function, allow.functions):
        return ChannelFault(type="NotAllowed", key=function,
                            message=f"function {function!r} of system {system!r} is not in the agent's allow-list",
                            details={"system": system, "function": function})
    fault = _check_tables(sysc, system, function, params)
    if fault is not None:
        return fault
    return None
