"""One sandbox emulator in its own process, so that benchmarks measure ml-connector, not the emulator.

    python -m bench.sandbox_proc sap_ecc --vendors 50000

prints one JSON line (the handle's info: base URL, credentials) and serves until
stdin is closed. Commands on stdin, one JSON object per line, each answered by
one JSON line:

    {"cmd": "rename", "n": 3000, "tag": "r1"}   # ECC: change NAME1 of n vendors (change documents)
    {"cmd": "rss"}                               # this process's peak RSS (MB)

`SandboxProcess` is the parent's side.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
import threading
from typing import Any


def _serve(system: str, vendors: int) -> None:
    from ml_connector.sandbox import start_sandboxes

    handles = start_sandboxes(vendors=vendors, systems=(system,))
    h = handles[system]
    print(json.dumps(h.info), flush=True)
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            msg = json.loads(line)
            try:
                out = _command(system, h.state, msg)
            except Exception as exc:  # report, keep serving
                out = {"error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(out), flush=True)
    finally:
        h.server.stop()


def _command(system: str, state: Any, msg: dict[str, Any]) -> dict[str, Any]:
    cmd = msg.get("cmd")
    if cmd == "rss":
        return {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if cmd == "rename" and system == "sap_ecc":
        n, tag = int(msg["n"]), str(msg.get("tag", "x"))
        total = state.data.count("LFA1", state.client)
        step = max(total // n, 1)
        changed = 0
        for i in range(n):
            lifnr = str(100001 + (i * step) % total).rjust(10, "0")
            nr = state.data.update_vendor(lifnr, client=state.client, NAME1=f"Renamed {tag} {lifnr}")
            changed += nr is not None
        return {"changed": changed}
    raise ValueError(f"unknown command {cmd!r} for {system}")


class SandboxProcess:
    """Start `python -m bench.sandbox_proc SYSTEM` and talk to it."""

    def __init__(self, system: str, *, vendors: int = 0) -> None:
        self.system = system
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.sandbox_proc", system, "--vendors", str(vendors)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self._lock = threading.Lock()
        line = self._readline(timeout=600)
        self.info: dict[str, Any] = json.loads(line)
        self.url: str = self.info["base_url"]

    def _readline(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        box: list[str] = []
        t = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        t.start()
        t.join(timeout)
        if not box or not box[0]:
            raise RuntimeError(f"sandbox {self.system} (pid {self.proc.pid}) did not answer")
        return box[0]

    def command(self, timeout: float = 300, **msg: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        with self._lock:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
            out: dict[str, Any] = json.loads(self._readline(timeout))
        if "error" in out:
            raise RuntimeError(f"sandbox {self.system}: {out['error']}")
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("system", choices=["sap_ecc", "ramp"])
    ap.add_argument("--vendors", type=int, default=0)
    args = ap.parse_args()
    _serve(args.system, args.vendors)


if __name__ == "__main__":
    main()
