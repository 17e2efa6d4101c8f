"""The agent channel: every call to an on-premises system goes through here.

A call is a serializable request naming the system, the function and its
parameters; the answer is serializable data or a typed error. Today the agent
may run in the same process (`InProcessChannel`); the separate outbound-only
agent process implements the same `AgentChannel` protocol, so flows never know
which one they talk to.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, Protocol

from pydantic import BaseModel, Field

from ml_connector.core.http import PicklableError


class ChannelRequest(BaseModel):
    """One call to an on-prem system: JSON-serializable end to end."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    system: str  # the connection (agent system) name in the agent's configuration
    function: str  # e.g. "RFC_READ_TABLE", "BAPI_ACC_DOCUMENT_POST", "RFC_PING"
    params: dict[str, Any] = Field(default_factory=dict)


class ChannelFault(BaseModel):
    """A typed error, serialized. `type` names the error class on the system side
    (e.g. 'ABAPApplicationError'); `key` and `message` are its identity and text."""

    type: str
    key: str = ""
    message: str = ""
    retriable: bool = False
    details: dict[str, Any] = Field(default_factory=dict)


class ChannelResponse(BaseModel):
    id: str
    ok: bool
    result: dict[str, Any] | None = None
    fault: ChannelFault | None = None


class ChannelError(PicklableError):
    """Raised on the caller's side when the answer is a fault nobody re-typed."""

    def __init__(self, fault: ChannelFault) -> None:
        super().__init__(f"{fault.type}: {fault.key} {fault.message}".strip())
        self.fault = fault


class FaultConvertible(Protocol):
    def to_fault(self) -> ChannelFault: ...


class AgentChannel(Protocol):
    def call(self, request: ChannelRequest) -> ChannelResponse: ...


# A handler runs one function on one system and returns plain data, or raises an
# exception that has `to_fault()` (a typed, serializable error).
Handler = Callable[[str, dict[str, Any]], dict[str, Any]]


class InProcessChannel:
    """The agent living in the same process: same request/response contract, no network."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._lock = threading.Lock()

    def register(self, system: str, handler: Handler) -> None:
        with self._lock:
            self._handlers[system] = handler

    def call(self, request: ChannelRequest) -> ChannelResponse:
        # Round-trip through JSON so that nothing unserializable slips through
        # the seam while the agent is still in-process.
        request = ChannelRequest.model_validate_json(request.model_dump_json())
        handler = self._handlers.get(request.system)
        if handler is None:
            fault = ChannelFault(type="UnknownSystem", key=request.system,
                                 message=f"no system named {request.system!r} is served by this agent")
            return ChannelResponse(id=request.id, ok=False, fault=fault)
        try:
            result = handler(request.function, request.params)
        except Exception as exc:
            to_fault = getattr(exc, "to_fault", None)
            if to_fault is None:
                raise
            return ChannelResponse(id=request.id, ok=False, fault=to_fault())
        resp = ChannelResponse(id=request.id, ok=True, result=result)
        return ChannelResponse.model_validate_json(resp.model_dump_json())


# ------------------------------------------------------------------------------ channel factories

#: Entry-point group of the channels other than the embedded one (`engine.agent: <mode>`). The control
#: plane registers `remote` (server/agents/channel.py) there, so core needs no import of the layer above.
CHANNEL_ENTRY_POINTS = "ml_connector.channels"

#: Builds the channel of a runtime: (database, the configuration's `engine` section) -> channel.
ChannelFactory = Callable[[Any, Any], Any]

_factories: dict[str, ChannelFactory] = {}


def register_channel(mode: str, factory: ChannelFactory) -> None:
    """Make `engine.agent: <mode>` build its channel with `factory` (in this process)."""
    _factories[mode] = factory


def channel_for(mode: str, db: Any, engine_config: Any) -> Any:
    """The channel for `engine.agent: <mode>`: in-process for `embedded`, else a registered factory
    (registered in code, or declared under the `ml_connector.channels` entry points)."""
    if mode == "embedded":
        return InProcessChannel()
    factory = _factories.get(mode)
    if factory is None:
        found = [ep for ep in entry_points(group=CHANNEL_ENTRY_POINTS) if ep.name == mode]
        if not found:
            raise LookupError(f"no agent channel {mode!r} is installed (entry points {CHANNEL_ENTRY_POINTS!r})")
        factory = found[0].load()
        _factories[mode] = factory
    return factory(db, engine_config)
