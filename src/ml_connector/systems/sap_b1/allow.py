"""The agent's allow-list for Service Layer calls (agent.yaml `allow.resources`).

An entry names an entity set or action (fnmatch pattern, case-sensitive like SL paths):
`JournalEntries` serves every method on it (GET, POST, PATCH, PUT, DELETE, and bound actions such
as POST JournalEntries(5)/Cancel); `BusinessPartners:read` serves GET only. Login and Logout are
the agent's own business (its session, its credentials) and are never served as calls.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from ml_connector.core.channel import ChannelFault
from ml_connector.systems.sap_b1.client import channel_function, check_request
from ml_connector.systems.sap_b1.errors import B1RequestError

READ_SUFFIX = ":read"


def _allowed(resource: str, method: str, patterns: list[str]) -> bool:
    for p in patterns:
        pattern, read_only = (p[: -len(READ_SUFFIX)], True) if p.endswith(READ_SUFFIX) else (p, False)
        if fnmatch.fnmatchcase(resource, pattern) and (not read_only or method == "GET"):
            return True
    return False


def check_resource(system: str, function: str, params: dict[str, Any], patterns: list[str]) -> ChannelFault | None:
    """None when the Service Layer call is allowed; else the NotAllowed fault to answer with."""
    method = str(params.get("method", "")).upper()
    path = str(params.get("path", ""))
    try:
        resource = check_request(method, path, params.get("headers") if isinstance(params.get("headers"), dict)
                                 else None)
        if function != channel_function(method, path):
            raise B1RequestError(f"call {function!r} does not match its request {method} {path}")
    except B1RequestError as exc:
        return ChannelFault(type="NotAllowed", key=function or path,
                            message=f"Service Layer call refused on system {system!r}: {exc.message}",
                            details={"system": system, "function": function, "method": method, "path": path})
    if not _allowed(resource, method, patterns):
        mode = "read" if method == "GET" else "write"
        return ChannelFault(type="NotAllowed", key=resource,
                            message=f"Service Layer resource {resource!r} ({method}, {mode}) of system {system!r} is "
                                    "not in the agent's allow-list",
                            details={"system": system, "resource": resource, "method": method})
    return None
