"""`RemoteAgentChannel`: the control plane's `AgentChannel` when the agent runs at the
customer's site. A call becomes a queued row in the database; an agent of the site
claims it on its long poll, runs it and posts the result; `call()` returns it.

Callers wait while no agent is online (the work stays queued); with `timeout` a
call still queued at the deadline is withdrawn (certain: not executed), one that an
agent holds answers an uncertain `AGENT_TIMEOUT` fault.

A waiting caller is woken by its call's result: in this process directly, from another
process by a Postgres notification (server/agents/wakeups.py). It re-reads the database on a
timer too: backing off from 10 ms to `poll_interval` when nothing will wake it, every
`poll_interval` while notifications are being received (a missed one costs that much).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import update

from ml_connector.core import calls, registry
from ml_connector.core.channel import ChannelFault, ChannelRequest, ChannelResponse
from ml_connector.core.db import Database
from ml_connector.server.agents import wakeups
from ml_connector.server.agents.models import AgentCallRow
from ml_connector.server.agents.service import AgentService, call_response

log = logging.getLogger(__name__)


def _default_idempotent(function: str) -> bool:
    """Safe to run twice when a system served through agents says so (its registry entry)."""
    return any(e.agent is not None and e.agent.idempotent(function) for e in registry.with_agent())


class RemoteAgentChannel:
    def __init__(self, db: Database, site: str, timeout: float | None = None, *,
                 poll_interval: float = 0.5, idempotent: Callable[[str], bool] | None = None) -> None:
        self.db = db
        self.site = site
        self.timeout = timeout
        self.poll_interval = poll_interval
        self._idempotent = idempotent or _default_idempotent
        self._service = AgentService(db, vault=None)

    def __repr__(self) -> str:
        return f"RemoteAgentChannel(site={self.site!r})"

    # The embedded agent registers handlers; with a remote agent the handlers (and the SAP
    # credentials) live on the agent, so there is nothing to register here.
    def register(self, system: str, handler: Any) -> None:
        log.debug("RemoteAgentChannel: ignoring handler for %s (served by the remote agent)", system)

    def connect(self, name: str, cfg: Any) -> Any:
        """The caller object flows use for connection `name` (no credentials needed here)."""
        entry = registry.find(str(getattr(cfg, "type", "")))
        if entry is not None and entry.agent is not None:
            return entry.agent.channel_client(self, name, cfg)
        raise ValueError(f"connection {name!r} of type {getattr(cfg, 'type', '?')!r} cannot be served by the "
                         "remote agent")

    def submit(self, request: ChannelRequest) -> bool:
        """Queue the call (no wait); False when a call with this id was queued before."""
        req = ChannelRequest.model_validate_json(request.model_dump_json())
        return self._service.enqueue(req.id, self.site, req.system, req.function, req.params,
                                     self._idempotent(req.function))

    def result(self, call_id: str) -> ChannelResponse | None:
        with self.db.session() as s:
            return call_response(s, call_id)

    def call(self, request: ChannelRequest) -> ChannelResponse:
        calls.note(request.system)  # the run's calls (core/calls.py), through the agent
        # Waiting before the call is queued: a result that comes at once still sets the event.
        with wakeups.result_wait(self.db, request.id) as (done, notified):
            self.submit(request)  # a repeated id waits for the first call's result (dedupe)
            deadline = None if self.timeout is None else time.monotonic() + self.timeout
            interval = self.poll_interval if notified else 0.01
            while True:
                done.clear()  # set before this read: the read sees that result
                resp = self.result(request.id)
                if resp is not None:
                    return resp
                if deadline is not None and time.monotonic() >= deadline:
                    return self._time_out(request.id)
                wait = min(interval, self.poll_interval)
                if deadline is not None:
                    wait = max(0.0, min(wait, deadline - time.monotonic()))
                done.wait(wait)
                interval = min(interval * 1.5, self.poll_interval)

    def _time_out(self, call_id: str) -> ChannelResponse:
        online = self._service.online_agents(self.site)
        why = (f"no agent of site {self.site!r} is online (none polled in the last "
               f"{self._service.settings.offline_after:.0f} s; check `ml-connector agents list`)" if online == 0 else
               f"no agent of site {self.site!r} took the call within {self.timeout} s ({online} online, busy)")
        with self.db.session() as s:
            s.execute(update(AgentCallRow).where(AgentCallRow.id == call_id,
                                                             AgentCallRow.state == "queued")
                                  .values(state="done", ok=False, completed_at=time.time(),
                                          response=ChannelResponse(id=call_id, ok=False, fault=ChannelFault(
                                              type="CommunicationError", key="AGENT_UNAVAILABLE", retriable=True,
                                              message=f"{why}; the call was not executed",
                                              details={"uncertain": False, "code": 1, "site": self.site,
                                                       "agents_online": online})).model_dump_json()))
            wakeups.notify_done(s, self.site, call_id)  # other callers of this id (dedupe) stop waiting
        wakeups.RESULTS.fire(call_id)
        resp = self.result(call_id)
        if resp is not None:  # withdrawn just now, or answered at the last moment
            return resp
        return ChannelResponse(id=call_id, ok=False, fault=ChannelFault(
            type="CommunicationError", key="AGENT_TIMEOUT", retriable=False,
            message=f"the agent did not answer within {self.timeout} s; the call may have been executed",
            details={"uncertain": True, "code": 1}))


def from_engine_config(db: Database, engine_config: Any) -> RemoteAgentChannel:
    """The runtime's channel for `engine.agent: remote` (entry point `ml_connector.channels: remote`)."""
    return RemoteAgentChannel(db, str(engine_config.agent_site))
