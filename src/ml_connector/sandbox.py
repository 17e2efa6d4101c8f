"""Start the sandbox emulators (one real HTTP server each) on loopback.

Used by `ml-connector sandbox`, `make demo` and the tests. With a state
directory the emulators keep their data between runs, so that a second demo
run finds the vendors the first one created (and reports zero writes).
"""

from __future__ import annotations

import logging
import os
import pickle
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ml_connector.core.servers import ServerHandle, serve_in_thread

log = logging.getLogger(__name__)


@dataclass
class SandboxHandle:
    name: str
    server: ServerHandle
    state: Any
    info: dict[str, Any]
    state_file: Path | None = None
    _saver: threading.Thread | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return self.server.url

    def save(self) -> None:
        if self.state_file is not None:
            _save(self.name, self.state, self.state_file)

    def stop(self) -> None:
        self.server.stop()
        self.save()


# -- what is persisted per emulator (data only: no locks, faults or sessions) ---------------

RAMP_DATA = ("vendors", "gl_accounts", "fields", "field_options", "bills", "bill_order", "syncs",
             "billpay_vendors", "billpay_order")

def _snapshot(name: str, state: Any) -> dict[str, Any]:
    if name == "sap_b1":
        with state.lock:
            return {"rows": {n: es.rows for n, es in state.sets.items()}, "next_jdt": state._next_jdt,
                    "next_number": state._next_number}
    if name == "ramp":
        with state.lock:
            return {"seq": state._seq, "business_id": state.business_id,
                    **{k: getattr(state, k) for k in RAMP_DATA}}
    with state.data.lock:
        return {"stores": state.data._stores, "changenr": state.data._changenr}


def _restore(name: str, state: Any, snap: dict[str, Any]) -> None:
    if name == "sap_b1":
        for n, rows in snap["rows"].items():
            if n in state.sets:
                state.sets[n].rows = rows
        state._next_jdt, state._next_number = snap["next_jdt"], snap["next_number"]
    elif name == "ramp":
        for k in RAMP_DATA:
            if k in snap:
                setattr(state, k, snap[k])
        state._seq = snap["seq"]
        state.business_id = snap["business_id"]
    else:
        state.data._stores = snap["stores"]
        state.data._changenr = snap["changenr"]


def _save(name: str, state: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        pickle.dump(_snapshot(name, state), fh, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)


def _load(name: str, state: Any, path: Path) -> bool:
    if not path.exists():
        return False
    try:
        with open(path, "rb") as fh:
            # Our own file, written by _save above in the user's data directory.
            snap = pickle.load(fh)  # noqa: S301
        _restore(name, state, snap)
        return True
    except Exception as exc:  # a corrupt or old snapshot: start fresh, say so
        log.warning("sandbox %s: ignoring unreadable state file %s (%s)", name, path, exc)
        return False


def start_sandboxes(*, host: str = "127.0.0.1", ports: dict[str, int] | None = None, vendors: int = 3000,
                    state_dir: Path | None = None, systems: tuple[str, ...] = ("sap_ecc", "ramp"),
                    ramp_state: Any = None, ecc_state: Any = None, b1_state: Any = None) -> dict[str, SandboxHandle]:
    """Start the emulators; return handles keyed by system name ('sap_b1' only when asked for)."""
    ports = ports or {}
    out: dict[str, SandboxHandle] = {}
    if "sap_ecc" in systems:
        from ml_connector.systems.sap_ecc.sandbox.app import DEMO_PASSWORD, DEMO_USER, EccSandbox
        from ml_connector.systems.sap_ecc.sandbox.app import create_app as ecc_app

        ecc = ecc_state or EccSandbox(vendors=0 if state_dir and (state_dir / "sap_ecc.pickle").exists()
                                      else vendors)
        sf = state_dir / "sap_ecc.pickle" if state_dir else None
        if sf is not None and not _load("sap_ecc", ecc, sf) and not ecc.data.count("LFA1", ecc.client):
            ecc.data.seed_vendors(vendors, 42, client=ecc.client)
        srv = serve_in_thread(ecc_app(ecc), name="sap_ecc", host=host, port=ports.get("sap_ecc", 0))
        out["sap_ecc"] = SandboxHandle("sap_ecc", srv, ecc, {
            "base_url": srv.url, "client": ecc.client, "user": DEMO_USER, "password": DEMO_PASSWORD,
            "soap_rfc": f"{srv.url}/sap/bc/soap/rfc?sap-client={ecc.client}",
            "admin": f"{srv.url}/_sandbox"}, sf)
    if "ramp" in systems:
        from ml_connector.systems.ramp.sandbox.app import create_app as ramp_app
        from ml_connector.systems.ramp.sandbox.state import RampSandbox

        ramp = ramp_state or RampSandbox()
        sf = state_dir / "ramp.pickle" if state_dir else None
        if sf is not None:
            _load("ramp", ramp, sf)
        srv = serve_in_thread(ramp_app(ramp), name="ramp", host=host, port=ports.get("ramp", 0))
        out["ramp"] = SandboxHandle("ramp", srv, ramp, {
            "base_url": srv.url, "client_id": ramp.client_id, "client_secret": ramp.client_secret,
            "token_url": f"{srv.url}/developer/v1/token", "admin": f"{srv.url}/_sandbox"}, sf)
    if "sap_b1" in systems:
        from ml_connector.systems.sap_b1.sandbox.app import B1Sandbox
        from ml_connector.systems.sap_b1.sandbox.app import create_app as b1_app

        b1 = b1_state or B1Sandbox()
        sf = state_dir / "sap_b1.pickle" if state_dir else None
        if sf is not None:
            _load("sap_b1", b1, sf)
        srv = serve_in_thread(b1_app(b1), name="sap_b1", host=host, port=ports.get("sap_b1", 0))
        out["sap_b1"] = SandboxHandle("sap_b1", srv, b1, {
            "base_url": srv.url, "service_root": f"{srv.url}/b1s/v1", "company_db": b1.company_db,
            "user": b1.user, "password": b1.password, "admin": f"{srv.url}/_sandbox"}, sf)
    return out
