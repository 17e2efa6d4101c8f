"""Pacing of SAP calls handed out to the agents of a site (the control plane's side of the
SAP call budget).

Each agent applies its own CallPolicy (calls per second, concurrency cap per SAP system),
but several agents of one site serve the same SAP system, so together they could send N
times the budget to its scarce dialog work processes. The control plane is where all
agents meet: a poll only hands out a call when the call's SAP system is within budget,
counted over every agent and every control-plane process (the counts are rows of
`mlc_agent_calls`, read in the claim transaction; see AgentService.claim).

The numbers come from the control plane's connections routed through the agent
(`via: agent`), each read by its system's registry entry (`AgentSupport.pacing`: for SAP ECC,
`limits: {calls_per_second, max_concurrent}`). Connections with the same budget key (for SAP ECC
base URL and client) share one budget, the smallest of their limits, as the agent's CallPolicy
keys its budget the same way.

Two counts, per budget:

* in flight: calls claimed and not yet answered (state `claimed`) < max_concurrent;
* per rolling second: calls in flight plus calls answered in the last second
  < calls_per_second. A call counts from its hand-out until one second after its result,
  not one second after its hand-out: the agent sends it to SAP some time after the claim
  and SAP sees it before the result arrives, so whatever the delivery delays, any
  calls_per_second + 1 calls reach SAP at least one second apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: Length of the rolling window of `calls_per_second` (seconds).
WINDOW_SECONDS = 1.0


@dataclass(frozen=True)
class SystemBudget:
    """One SAP system's budget at one site: the agent systems (connection names) that reach it."""

    site: str
    key: str
    systems: frozenset[str]
    calls_per_second: int
    max_concurrent: int

    def allowance(self, in_flight: int, in_window: int) -> int:
        """How many more calls may be handed out now."""
        return max(0, min(self.max_concurrent - in_flight, self.calls_per_second - in_window))


class Pacing:
    """The budgets of the SAP systems served through agents, by site."""

    def __init__(self, budgets: list[SystemBudget] | None = None) -> None:
        self._by_site: dict[str, list[SystemBudget]] = {}
        for b in budgets or []:
            self._by_site.setdefault(b.site, []).append(b)

    def for_site(self, site: str) -> list[SystemBudget]:
        return list(self._by_site.get(site, []))

    def __bool__(self) -> bool:
        return bool(self._by_site)

    @classmethod
    def from_config(cls, config: Any) -> Pacing:
        """Budgets of the control plane's connections with `via: agent` whose system declares one, at the
        site of `engine.agent_site`. A system without one is not paced."""
        from ml_connector.core import registry

        site = str(config.engine.agent_site)
        groups: dict[str, list[tuple[str, int, int]]] = {}
        for name, conn in (getattr(config, "connections", None) or {}).items():
            entry = registry.find(str(getattr(conn, "type", "")))
            if entry is None or entry.agent is None or entry.agent.pacing is None \
                    or getattr(conn, "via", None) != "agent":
                continue
            budget = entry.agent.pacing(conn)
            if budget is None:
                continue
            key, calls_per_second, max_concurrent = budget
            # calls_per_second may be fractional in the YAML; a window counts whole calls.
            groups.setdefault(key, []).append((str(name), math.floor(float(calls_per_second)), int(max_concurrent)))
        return cls([SystemBudget(site=site, key=key, systems=frozenset(n for n, _, _ in members),
                                 calls_per_second=min(c for _, c, _ in members),
                                 max_concurrent=min(m for _, _, m in members))
                    for key, members in sorted(groups.items())])
