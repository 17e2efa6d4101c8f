"""The agent's own configuration file, `agent.yaml`, and its allow-list.

    control_plane: https://cp.example.com     # the only place the agent connects to
    site: plant-1                              # informational; the pairing token decides the site
    data_dir: ./agent-data                     # identity, master key, local DB, audit log (0700)
    tls_verify: true                           # or a CA bundle path
    poll:
      hold: 50s                                # long-poll hold asked of the control plane
      backoff_scale: 1.0                       # 15-30 s, then 30-60 s reconnect delays, times this
      max_concurrent: 4                        # calls run at once
      heartbeat: 20s                           # lease renewal while calls run
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
          tables: [LFA1, LFB1, LFM1, T001]     # QUERY_TABLE of RFC_READ_TABLE-family calls
          resources: []                        # Service Layer resources (Business One, later)

Nothing outside `allow` is served: the call is answered with a `NotAllowed` fault and
audited on both sides. Patterns like `BAPI_*` are allowed (fnmatch, case-insensitive).
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ml_connector.agent.protocol import READ_TABLE_FUNCTIONS
from ml_connector.config import Duration, SecretName, Text
from ml_connector.core.channel import ChannelFault

AGENT_CONFIG_FILENAME = "agent.yaml"


class AgentConfigError(Exception):
    pass


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AllowList(_Model):
    functions: list[str] = Field(default_factory=list)
    tables: list[str] = Field(default_factory=list)
    resources: list[str] = Field(default_factory=list)

    @field_validator("functions", "tables", "resources")
    @classmethod
    def _upper(cls, v: list[str]) -> list[str]:
        return [str(x).strip() for x in v if str(x).strip()]


class AgentSystem(_Model):
    type: Literal["sap_ecc", "sap_b1"] = "sap_ecc"
    base_url: str = Field(min_length=1)
    # pyrfc: native RFC to the application server of base_url (instance number from the ICM port)
    transport: Literal["soap_rfc", "pyrfc"] = "soap_rfc"
    client: Text = "100"
    user: Text = Field(min_length=1)
    password_secret: SecretName
    language: Text | None = "EN"
    calls_per_second: int = Field(default=20, ge=10, le=50)
    max_concurrent: int = Field(default=4, ge=1, le=64)
    timeout: Duration = 60.0
    tls_verify: bool | str = True
    allow: AllowList = Field(default_factory=AllowList)


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
    tls_verify: bool | str = True
    poll: PollConfig = Field(default_factory=PollConfig)
    systems: dict[str, AgentSystem] = Field(default_factory=dict)

    _dir: Path = Path(".")

    def data_dir_path(self) -> Path:
        p = Path(self.data_dir).expanduser()
        return p if p.is_absolute() else (self._dir / p).resolve()


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
        lines = [f"{path}: {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise AgentConfigError("\n".join(lines)) from None
    cfg._dir = path.resolve().parent
    return cfg


def write_minimal_config(path: Path, control_plane: str, site: str = "") -> None:
    path.write_text(yaml.safe_dump({"control_plane": control_plane, "site": site, "data_dir": "./agent-data",
                                    "systems": {}}, sort_keys=False), encoding="utf-8")


def _match(name: str, patterns: list[str]) -> bool:
    n = name.upper()
    return any(fnmatch.fnmatchcase(n, p.upper()) for p in patterns)


def check_allowed(cfg: AgentConfig, system: str, function: str, params: dict[str, Any]) -> ChannelFault | None:
    """None when the call is allowed; else the typed fault to answer with."""
    sysc = cfg.systems.get(system)
    if sysc is None:
        return ChannelFault(type="UnknownSystem", key=system,
                            message=f"no system named {system!r} is served by this agent")
    allow = sysc.allow
    if not _match(function, allow.functions):
        return ChannelFault(type="NotAllowed", key=function,
                            message=f"function {function!r} of system {system!r} is not in the agent's allow-list",
                            details={"system": system, "function": function})
    if function.upper() in READ_TABLE_FUNCTIONS:
        table = str(params.get("QUERY_TABLE", "")).strip()
        if not table or not _match(table, allow.tables):
            return ChannelFault(type="NotAllowed", key=table or "QUERY_TABLE",
                                message=f"table {table!r} of system {system!r} is not in the agent's allow-list",
                                details={"system": system, "function": function, "table": table})
    resource = params.get("__resource__")
    if sysc.type == "sap_b1" and (not isinstance(resource, str) or not _match(resource, allow.resources)):
        return ChannelFault(type="NotAllowed", key=str(resource),
                            message=f"Service Layer resource {resource!r} is not in the agent's allow-list",
                            details={"system": system, "resource": resource})
    return None
