"""Roles of console users and operator API tokens, ordered: each includes the ones before it.

viewer reads everything; operator also replays, resumes and edits mappings; admin also manages
connections (credentials), agents, users and API tokens.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import HTTPException, Request

ROLES = ("viewer", "operator", "admin")


def allows(role: str, needed: str) -> bool:
    """Whether `role` may do what needs `needed` (an unknown role may do nothing)."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


def api_role(needed: str) -> Callable[[Request], None]:
    """A route dependency of the JSON API: the bearer token's role must allow `needed`.

    Runs after the router's admin guard, which leaves the caller on the request; no caller means the
    guard let the request in without a token (a loopback-only server, as local CLI commands)."""
    if needed not in ROLES:
        raise ValueError(f"unknown role {needed!r}")

    def check(request: Request) -> None:
        caller = getattr(request.state, "api_caller", None)
        if caller is not None and not allows(caller.role, needed):
            raise HTTPException(403, detail={"error": "forbidden",
                                             "message": f"this needs the {needed} role; the token "
                                                        f"{caller.token_id} has {caller.role}"})

    return check


def api_actor(request: Request) -> str:
    """Who made a JSON API request, for the audit: the token's name and id, or `loopback` (no token needed)."""
    caller = getattr(request.state, "api_caller", None)
    return f"token:{caller.name}:{caller.token_id}" if caller is not None else "loopback"
