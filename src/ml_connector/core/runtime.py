"""The process-wide runtime: configuration, database, vault, agent channel, connections.

Connections are built by the registry entry of the connection's `type` (core/registry.py),
so core imports no system.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, TypeVar, overload

from ml_connector.core import registry
from ml_connector.core.channel import channel_for
from ml_connector.core.db import Database
from ml_connector.core.flow import Flow, load_pair

log = logging.getLogger(__name__)

T = TypeVar("T")


class Runtime:
    def __init__(self, config: Any, config_path: Path | None = None, *, database_url: str | None = None) -> None:
        from ml_connector.core.token_store import DbTokenStore
        from ml_connector.core.vault import MasterKey, Vault

        self.config = config
        self.config_path = config_path
        self.config_dir = config_path.parent if config_path else Path.cwd()
        self.data_dir = Path(config.data_dir_resolved(self.config_dir))
        self.database_url = database_url or config.database_url_resolved(self.config_dir)
        self.db = Database(self.database_url)
        self.db.migrate()
        self.vault = Vault(self.db, MasterKey.load(self.data_dir))
        self.tokens = DbTokenStore(self.db, self.vault)
        # The agent seam: on-prem connections are served through this channel. In the embedded
        # default the agent lives in this process; `remote` is registered by the control plane.
        self.channel: Any = channel_for(str(getattr(config.engine, "agent", "embedded")), self.db, config.engine)
        # Operators' alerts (None without an `alerts:` section): failed runs here, agents' liveness
        # in the control plane's AgentService.
        from ml_connector.core.alerts import alerter_from_config
        self.alerts = alerter_from_config(getattr(config, "alerts", None), self.db, self.vault)
        self._connections: dict[str, Any] = {}
        self._flows: dict[str, Flow] = {}
        self._lock = threading.RLock()

    @overload
    def connection(self, name: str) -> Any: ...

    @overload
    def connection(self, name: str, kind: type[T]) -> T: ...

    def connection(self, name: str, kind: type[T] | None = None) -> Any:
        """The client object of connection `name` (built once per process, by its system's registry entry).

        With `kind` (a class, or a `runtime_checkable` protocol such as a system's client interface) the
        result is typed as that and checked: a connection of another kind raises TypeError naming both."""
        conn = self._connection(name)
        if kind is not None and not isinstance(conn, kind):
            raise TypeError(f"connection {name!r} is a {type(conn).__name__}, not a {kind.__name__} "
                            f"(type {self.config.connections[name].type!r})")
        return conn

    def _connection(self, name: str) -> Any:
        with self._lock:
            if name not in self._connections:
                cfg = self.config.connections.get(name)
                if cfg is None:
                    raise KeyError(f"no connection named {name!r} in the configuration")
                entry = registry.get(cfg.type)
                # A channel with `connect` (the remote agent) serves the on-prem connections itself.
                remote = hasattr(self.channel, "connect") and getattr(cfg, "via", "") == "agent"
                self._connections[name] = self.channel.connect(name, cfg) if remote else entry.connect(self, name, cfg)
            return self._connections[name]

    def forget_connections(self) -> None:
        """Drop the built clients (a credential changed): each is built again, with the vault's
        current secrets, on its next use."""
        with self._lock:
            old, self._connections = self._connections, {}
        for conn in old.values():
            close = getattr(conn, "close", None)
            if close:
                try:
                    close()
                except Exception:  # closing is best effort
                    log.debug("closing a connection failed", exc_info=True)

    def ping_connection(self, name: str) -> tuple[bool, str]:
        cfg = self.config.connections.get(name)
        if cfg is None:
            return False, f"no connection named {name!r}"
        try:
            detail: str = registry.get(cfg.type).ping(self, name, cfg)
            return True, detail
        except Exception as exc:
            from ml_connector.core.redact import redact

            return False, redact(f"{type(exc).__name__}: {exc}")

    def flow(self, name: str) -> Flow:
        with self._lock:
            if name not in self._flows:
                cfg = self.config.flows.get(name)
                if cfg is None:
                    known = ", ".join(self.config.flows) or "none"
                    raise KeyError(f"no flow named {name!r} in the configuration (flows: {known})")
                self._flows[name] = load_pair(cfg.pair)(self, name, cfg)
                if cfg.mappings:
                    from ml_connector.core import mapping

                    with self.db.session() as s:
                        mapping.seed_from_config(s, name, cfg.mappings)
            return self._flows[name]

    def close(self) -> None:
        if self.alerts is not None:
            self.alerts.close()  # deliver what is pending (bounded); the rest stays stored for the next start
        for conn in self._connections.values():
            close = getattr(conn, "close", None)
            if close:
                try:
                    close()
                except Exception:  # closing is best effort
                    log.debug("closing a connection failed", exc_info=True)
        self.db.dispose()
