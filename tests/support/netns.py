"""Network namespaces for the agent tests (root and `ip netns`)."""

from __future__ import annotations

import os
import shutil
import subprocess

#: Per test process, so that parallel runs do not collide on namespace and link names.
TAG = f"{os.getpid() % 10000}"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def netns_unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed"
    probe = f"mlcprobe{TAG}"
    try:
        ip("netns", "add", probe)
        ip("netns", "del", probe)
    except (subprocess.CalledProcessError, OSError) as exc:
        return f"`ip netns` is unavailable here: {exc}"
    return None
