"""Which address a request comes from: the socket's peer, or, when that peer is a configured
reverse proxy (`server.trusted_proxies`), the client the proxy names in `Forwarded` (RFC 7239)
or `X-Forwarded-For`.

Anyone can send those headers; believing them from any peer (uvicorn's default trusts them
from 127.0.0.1) lets a caller choose the address that audit rows record and that refusal
coalescing is keyed by. So they count only from a trusted proxy, and the chain is read from
the right: the first address that is not itself a trusted proxy is the client. The real peer
stays available (`peer_of`) to bound what one connection's source can cost (core/refusals.py).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from ml_connector.core.net import parse_networks

#: Headers by which a reverse proxy announces itself or its client. Any of them on a request
#: means "came through a proxy" (server/api_auth.py); only Forwarded and X-Forwarded-For name
#: the client, and only from a trusted proxy.
PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-port",
                 "x-forwarded-prefix", "x-forwarded-server", "x-forwarded-ssl", "x-forwarded-scheme",
                 "x-original-forwarded-for", "x-original-url", "x-original-host", "x-real-ip", "via",
                 "true-client-ip", "cf-connecting-ip", "cf-ray", "cf-visitor", "x-client-ip",
                 "x-cluster-client-ip", "fastly-client-ip", "x-azure-clientip", "x-azure-fdid",
                 "x-appengine-user-ip", "x-proxyuser-ip", "client-ip", "x-envoy-external-address",
                 "x-amzn-trace-id", "x-arr-log-id", "x-arr-ssl")

PEER_SCOPE_KEY = "mlc.peer"

def _address(text: str) -> str | None:
    """The IP in a `for=` value or X-Forwarded-For item (quotes, [v6]:port, v4:port); None if none."""
    v = text.strip().strip('"').strip()
    if v.startswith("["):
        v = v[1:].split("]", 1)[0]
    elif v.count(":") == 1:
        v = v.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(v))
    except ValueError:
        return None


def _chain(headers: dict[str, list[str]]) -> list[str | None]:
    """The addresses a proxy chain reports, nearest last (Forwarded if present, else X-Forwarded-For)."""
    if "forwarded" in headers:
        out: list[str | None] = []
        for value in headers["forwarded"]:
            for element in value.split(","):
                found: str | None = None
                for pair in element.split(";"):
                    name, _, val = pair.partition("=")
                    if name.strip().lower() == "for":
                        found = _address(val)
                out.append(found)
        return out
    return [_address(item) for value in headers.get("x-forwarded-for", []) for item in value.split(",")]


class TrustedProxies:
    def __init__(self, entries: Iterable[str] = ()) -> None:
        self.networks = parse_networks(entries)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, host: str | None) -> bool:
        if not host or not self.networks:
            return False
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(ip in n for n in self.networks)

    def client(self, peer: str, headers: dict[str, list[str]]) -> str:
        """The client's address: `peer` unless it is a trusted proxy that names one."""
        if not self.trusts(peer):
            return peer
        chain = _chain(headers)
        for addr in reversed(chain):
            if addr is None:
                return peer  # an unreadable hop: trust nothing beyond it
            if not self.trusts(addr):
                return addr
        return (chain[0] or peer) if chain else peer  # every hop is a trusted proxy


class ClientAddress:
    """ASGI middleware: sets the scope's client to `TrustedProxies.client` and keeps the socket's
    peer under PEER_SCOPE_KEY."""

    def __init__(self, app: Any, trusted: TrustedProxies) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") in ("http", "websocket") and scope.get("client"):
            peer = str(scope["client"][0])
            scope = dict(scope)
            scope[PEER_SCOPE_KEY] = peer
            if self.trusted.trusts(peer):
                headers: dict[str, list[str]] = {}
                for k, v in scope.get("headers") or ():
                    headers.setdefault(k.decode("latin-1").lower(), []).append(v.decode("latin-1"))
                client = self.trusted.client(peer, headers)
                if client != peer:
                    scope["client"] = (client, 0)
        await self.app(scope, receive, send)


def peer_of(request: Any) -> str:
    """The socket's peer of a request (the client when no middleware recorded it)."""
    peer = request.scope.get(PEER_SCOPE_KEY)
    if peer:
        return str(peer)
    return request.client.host if request.client else ""


def has_proxy_header(headers: Any) -> bool:
    """Whether a request carries any header a reverse proxy adds (PROXY_HEADERS, any X-Forwarded-*)."""
    return any(k.lower() in _PROXY_SET or k.lower().startswith("x-forwarded-") for k in headers)


_PROXY_SET = frozenset(PROXY_HEADERS)
