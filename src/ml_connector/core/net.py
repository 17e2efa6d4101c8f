"""Small network facts shared by the control plane and the agent."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit


def is_loopback_host(host: str) -> bool:
    """True for `localhost` (and `*.localhost`, RFC 6761) and loopback addresses (127.0.0.0/8, ::1).

    Decided from the text alone, never by resolving a name: an attacker who controls DNS
    must not be able to make a remote host count as local. `0.0.0.0` / `::` (all
    interfaces) are not loopback.
    """
    h = host.strip().strip("[]").lower().rstrip(".")
    if h == "localhost" or h.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def url_host(url: str) -> str:
    """The host part of a URL ('' when there is none)."""
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


def host_for_url(host: str) -> str:
    """`host` as written in a URL (IPv6 addresses in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Iterable[str]) -> list[_Network]:
    """Addresses or CIDRs (`10.0.0.5`, `10.0.0.0/8`, `::1`); ValueError names a bad one."""
    out: list[_Network] = []
    for e in entries:
        try:
            out.append(ipaddress.ip_network(str(e).strip(), strict=False))
        except ValueError:
            raise ValueError(f"{e!r} is not an IP address or CIDR (e.g. 10.0.0.5 or 10.0.0.0/8)") from None
    return out
