"""The agent process at the customer's site: pairing and the long-poll loop.

It only connects out (HTTP(S) to the control plane, HTTP to the local SAP systems);
it opens no listening socket.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import platform
import random
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ml_connector import __version__
from ml_connector.agent import protocol as proto
from ml_connector.agent.config import AgentConfig, check_allowed
from ml_connector.agent.store import AuditFile, LocalStore
from ml_connector.core.channel import ChannelFault, ChannelResponse
from ml_connector.core.clock import SYSTEM_CLOCK, Clock
from ml_connector.core.net import is_loopback_host
from ml_connector.core.redact import redact

log = logging.getLogger("ml_connector.agent")

IDENTITY_FILE = "identity.json"
KEY_FILE = "agent.key"
EXIT_REVOKED = 3
EXIT_UNKNOWN = 4
EXIT_NOT_PAIRED = 5
#: Seconds between prunes of the local call store (and one at start).
PRUNE_EVERY = 3600.0
#: Test hook: exit hard right after a result is stored locally, before it is posted.
CRASH_AFTER_STORE_ENV = "MLC_AGENT_TEST_CRASH_AFTER_STORE"


class Retriable(Exception):
    pass


class TransportRefused(RuntimeError):
    """The control plane URL is not one the agent may talk to (checked before any request)."""


def check_control_plane_url(url: str, cfg: AgentConfig) -> str:
    """The URL without a trailing slash, if the agent may use it; else TransportRefused.

    https:// always; http:// only to a loopback host, or with `allow_insecure_http: true`
    (loudly logged): over plain HTTP anyone on the path reads the traffic and, at pairing,
    can hand the agent their own key in place of the control plane's.
    """
    u = url.strip().rstrip("/")
    try:
        parts = urlsplit(u)
        host = parts.hostname or ""
    except ValueError:
        host, parts = "", urlsplit("")
    if parts.scheme not in ("http", "https") or not host:
        raise TransportRefused(f"control plane URL {url!r} is not a URL like https://cp.example.com")
    if parts.scheme == "http" and not is_loopback_host(host):
        if not cfg.allow_insecure_http:
            raise TransportRefused(
                f"refusing the control plane URL {u}: plain http:// to {host}, which is not a loopback address, "
                "would let anyone on the network path read the agent's requests and, at pairing, replace the "
                "control plane's key with their own. Use https:// (with tls_verify: /path/to/ca.pem for a "
                "private CA), or on an isolated test network set `allow_insecure_http: true` in agent.yaml")
        log.warning("INSECURE: talking plain http:// to %s because agent.yaml sets allow_insecure_http: true; "
                    "requests and the pairing can be read and altered on the network path. Use https:// "
                    "outside isolated test networks", u)
    if parts.scheme == "https" and cfg.tls_verify is False:
        log.warning("INSECURE: tls_verify: false in agent.yaml, the control plane's certificate is not checked; "
                    "set tls_verify to the CA bundle that signed it instead")
    return u


def _fingerprint_text(value: str) -> str:
    v = value.strip().replace(" ", "")
    return "SHA256:" + (v[len("sha256:"):] if v.lower().startswith("sha256:") else v).lower()


def transport_error(url: str, exc: BaseException) -> str:
    """A message for a failed request; certificate failures say what to configure."""
    seen: BaseException | None = exc
    verify_message = None
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            verify_message = seen.verify_message or str(seen)
            break
        seen = seen.__cause__ or seen.__context__
    if verify_message is None and "CERTIFICATE_VERIFY_FAILED" in str(exc):
        verify_message = str(exc)
    if verify_message is not None:
        return (f"cannot verify the TLS certificate of the control plane at {url}: certificate verify failed "
                f"({verify_message}). If its certificate is signed by a private CA or is self-signed, set "
                "`tls_verify: /path/to/ca.pem` in agent.yaml to that CA's certificate (PEM), and check that "
                "the URL's host name is one the certificate names")
    return f"cannot reach the control plane at {url}: {type(exc).__name__}: {exc}"


class NonRetriable(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def exit_code(self) -> int:
        return EXIT_REVOKED if self.code == proto.E_REVOKED else EXIT_UNKNOWN


@dataclass
class Identity:
    agent_id: str
    site: str
    control_plane: str
    control_plane_public_key: str
    key: Ed25519PrivateKey


def ensure_private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if os.name != "nt":
        os.chmod(path, 0o700)


def load_identity(data_dir: Path) -> Identity | None:
    ident = data_dir / IDENTITY_FILE
    if not ident.exists():
        return None
    d = json.loads(ident.read_text(encoding="utf-8"))
    return Identity(agent_id=d["agent_id"], site=d["site"], control_plane=d["control_plane"],
                    control_plane_public_key=d["control_plane_public_key"],
                    key=proto.read_private_key(data_dir / KEY_FILE))


def open_vault(data_dir: Path) -> Any:
    """The agent's own vault: a small SQLite database and master key in its data directory."""
    from ml_connector.core.db import Database
    from ml_connector.core.vault import MasterKey, Vault

    ensure_private_dir(data_dir)
    db = Database(f"sqlite:///{data_dir / 'agent.sqlite'}")
    db.migrate()
    return Vault(db, MasterKey.load(data_dir))


def pair(cfg: AgentConfig, token: str, control_plane: str, *, name: str = "", force: bool = False,
         verify: ssl.SSLContext | bool | None = None, expect_key: str = "") -> Identity:
    """Exchange `token` for an identity. `verify` defaults to the agent config's tls_verify.

    `expect_key`: the fingerprint `agents issue-token` printed; the control plane's key in
    the answer must match it (a second channel, in case TLS itself is subverted)."""
    control_plane = check_control_plane_url(control_plane, cfg)  # before anything is sent or written
    if verify is None:
        verify = cfg.control_plane_verify()
    data_dir = cfg.data_dir_path()
    ensure_private_dir(data_dir)
    if (data_dir / IDENTITY_FILE).exists() and not force:
        raise RuntimeError(f"this agent is already paired ({data_dir / IDENTITY_FILE}); use --force to pair again")
    key = proto.generate_key()
    proto.write_private_key(data_dir / KEY_FILE, key)  # stays here; only the public key leaves
    body = {"token": token, "public_key": proto.public_key_text(key), "name": name or socket.gethostname(),
            "hostname": socket.gethostname(), "version": __version__}
    try:
        resp = httpx.post(control_plane.rstrip("/") + "/api/agent/pair", json=body, timeout=30, verify=verify)
    except httpx.HTTPError as exc:
        raise RuntimeError(transport_error(control_plane, exc)) from None
    if resp.status_code != 200:
        detail = _detail(resp)
        raise RuntimeError(f"pairing refused ({resp.status_code} {detail.get('error', '')}): "
                           f"{detail.get('message', resp.text[:200])}")
    d = resp.json()
    if expect_key:
        got = proto.key_fingerprint(str(d.get("control_plane_public_key", "")))
        if not hmac.compare_digest(got.encode(), _fingerprint_text(expect_key).encode()):
            raise RuntimeError(f"pairing refused by this agent: the control plane at {control_plane} presented key "
                               f"{got}, not the expected {_fingerprint_text(expect_key)} (printed by `ml-connector "
                               "agents issue-token`). Someone may be intercepting the connection; nothing was stored")
    ident = {"agent_id": d["agent_id"], "site": d["site"], "control_plane": control_plane.rstrip("/"),
             "control_plane_public_key": d["control_plane_public_key"], "paired_at": time.time()}
    tmp = data_dir / (IDENTITY_FILE + ".tmp")
    tmp.write_text(json.dumps(ident, indent=2), encoding="utf-8")
    os.chmod(tmp, 0o600)
    os.replace(tmp, data_dir / IDENTITY_FILE)
    return Identity(key=key, **{k: v for k, v in ident.items() if k != "paired_at"})


def _detail(resp: httpx.Response) -> dict[str, Any]:
    try:
        d = resp.json()
    except ValueError:
        return {}
    if isinstance(d, dict) and isinstance(d.get("detail"), dict):
        return dict(d["detail"])
    return d if isinstance(d, dict) else {}


class ControlPlaneClient:
    """Signed requests to the control plane."""

    def __init__(self, ident: Identity, *, verify: ssl.SSLContext | bool = True, timeout: float = 30.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.ident = ident
        self.base = ident.control_plane
        self.timeout = timeout
        self.clock = clock
        self.skew: float | None = None
        self._http = httpx.Client(base_url=self.base, verify=verify, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def post(self, path: str, payload: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        headers = proto.sign_headers(self.ident.key, self.ident.agent_id, "POST", path, body, now=self.clock())
        headers["Content-Type"] = "application/json"
        try:
            resp = self._http.post(path, content=body, headers=headers, timeout=timeout or self.timeout)
        except httpx.HTTPError as exc:
            raise Retriable(transport_error(self.base, exc)) from None
        detail = _detail(resp)
        server_time = detail.get("server_time")
        if isinstance(server_time, int | float):
            self.skew = self.clock() - float(server_time)
            if abs(self.skew) > 60:
                log.warning("clock skew: this host's clock is %+.0f s from the control plane's; "
                            "requests are refused beyond ±%.0f s (fix NTP)", self.skew, proto.MAX_SKEW_SECONDS)
        if resp.status_code == 200:
            return detail
        code = str(detail.get("error", f"http_{resp.status_code}"))
        msg = str(detail.get("message", resp.text[:200]))
        if code in proto.NON_RETRIABLE:
            raise NonRetriable(code, msg)
        if code == proto.E_CLOCK_SKEW:
            msg = f"{msg} (skew {detail.get('skew')} s)"
        raise Retriable(f"{resp.status_code} {code}: {msg}")


class Agent:
    def __init__(self, cfg: AgentConfig, ident: Identity, *, vault: Any = None,
                 handlers: dict[str, Callable[[str, dict[str, Any]], dict[str, Any]]] | None = None,
                 rng: random.Random | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        self.cfg = cfg
        self.ident = ident
        self.clock = clock  # request timestamps, call ages, state pruning (a test moves it)
        data_dir = cfg.data_dir_path()
        self.store = LocalStore(data_dir / "agent-state.sqlite")
        self.audit = AuditFile(data_dir / "agent-audit.jsonl")
        self._vault = vault
        self._handlers: dict[str, Callable[[str, dict[str, Any]], dict[str, Any]]] = dict(handlers or {})
        self._handler_lock = threading.Lock()
        self.client = ControlPlaneClient(ident, verify=cfg.control_plane_verify(),
                                         timeout=float(cfg.poll.request_timeout), clock=clock.now)
        self.pool = ThreadPoolExecutor(max_workers=cfg.poll.max_concurrent, thread_name_prefix="agent-call")
        self.busy: set[str] = set()
        self._busy_cond = threading.Condition()
        self.stop_event = threading.Event()
        self.fatal: NonRetriable | None = None
        self.rng = rng or random.Random()
        self.lease = 60.0
        self.executed = 0
        # This process, as the control plane sees it: what it reports as held concerns only the
        # calls claimed by its own polls (not those of another process with the same identity).
        self.instance = secrets.token_hex(16)

    # ------------------------------------------------------------------ SAP side

    def handler(self, system: str) -> Callable[[str, dict[str, Any]], dict[str, Any]]:
        with self._handler_lock:
            if system not in self._handlers:
                from ml_connector.core import registry

                sc = self.cfg.systems[system]
                if self._vault is None:
                    self._vault = open_vault(self.cfg.data_dir_path())
                password = self._vault.get(sc.password_secret)
                agent = registry.get(sc.type).agent
                if agent is None:  # agent.yaml is validated against the same registry: not reached
                    raise ValueError(f"system type {sc.type!r} cannot be served by the agent")
                # The system's own client (same vault, same protocol) behind a handler.
                self._handlers[system] = agent.handler(sc, password)
            return self._handlers[system]

    def execute(self, call: dict[str, Any]) -> ChannelResponse:
        cid, system, function = str(call["id"]), str(call["system"]), str(call["function"])
        params = call.get("params") or {}
        fault = check_allowed(self.cfg, system, function, params)
        if fault is not None:
            self.audit.record("call.refused", call_id=cid, system=system, function=function,
                              fault=fault.type, key=fault.key, message=fault.message)
            log.warning("refused call %s: %s", cid, fault.message)
            return ChannelResponse(id=cid, ok=False, fault=fault)
        try:
            result = self.handler(system)(function, params)
            resp = ChannelResponse(id=cid, ok=True, result=result)
        except Exception as exc:
            to_fault = getattr(exc, "to_fault", None)
            fault = to_fault() if to_fault is not None else ChannelFault(
                type=type(exc).__name__, message=redact(str(exc))[:2000])
            resp = ChannelResponse(id=cid, ok=False, fault=fault)
        self.executed += 1
        self.audit.record("call.executed", call_id=cid, system=system, function=function, ok=resp.ok,
                          fault=resp.fault.type if resp.fault else None)
        return resp

    # ------------------------------------------------------------------ control plane side

    def post_result(self, call_id: str, response_json: str) -> bool:
        try:
            self.client.post("/api/agent/results", {"response": json.loads(response_json)})
        except Retriable as exc:
            if " body_too_large:" in str(exc):
                # Retrying cannot help: answer the call with a fault that says why (its caller
                # stops waiting), instead of holding it until its lease runs out, again and again.
                log.error("the result of call %s (%d bytes) is larger than the control plane accepts: %s",
                          call_id, len(response_json), exc)
                too_large = ChannelResponse(id=call_id, ok=False, fault=ChannelFault(
                    type="CommunicationError", key="RESULT_TOO_LARGE", retriable=False,
                    message=(f"the agent ran the call but its result ({len(response_json)} bytes) is larger than "
                             "the control plane accepts (MLC_AGENT_MAX_RESULT_BYTES); narrow the call"),
                    details={"uncertain": True, "code": 1, "bytes": len(response_json)}))
                try:
                    self.client.post("/api/agent/results", {"response": json.loads(too_large.model_dump_json())})
                except Retriable as again:
                    log.info("result of %s not delivered yet: %s", call_id, again)
                    return False
                self.store.ack(call_id)
                return True
            if any(f" {code}:" in str(exc) for code in ("unknown_call", "wrong_site", "not_claimant")):
                log.warning("control plane does not know call %s (%s); dropping its result", call_id, exc)
                self.store.ack(call_id)
                return True
            log.info("result of %s not delivered yet: %s", call_id, exc)
            return False
        self.store.ack(call_id)
        return True

    def flush_unacked(self) -> None:
        for cid, resp_json in self.store.unacked():
            if cid in self.busy:
                continue
            if not self.post_result(cid, resp_json):
                raise Retriable("could not deliver stored results")

    def recover(self) -> None:
        """Calls started before a crash: never run again; answer them as uncertain."""
        for cid, system, function in self.store.interrupted():
            with self._busy_cond:
                if cid in self.busy:
                    continue
            resp = ChannelResponse(id=cid, ok=False, fault=ChannelFault(
                type="CommunicationError", key="AGENT_INTERRUPTED", retriable=False,
                message=f"the agent stopped while running {function} on {system}; it may have been executed. "
                        "Resolve by a lookup before repeating it",
                details={"uncertain": True, "code": 1}))
            self.store.finish(cid, resp.model_dump_json())
            self.audit.record("call.interrupted", call_id=cid, system=system, function=function)

    def dispatch(self, envelope: dict[str, Any]) -> None:
        call = envelope.get("call") if isinstance(envelope, dict) else None
        if (not proto.verify_call(self.ident.control_plane_public_key, envelope) or not isinstance(call, dict)
                or call.get("agent_id") != self.ident.agent_id):
            cid = call.get("id") if isinstance(call, dict) else None
            self.audit.record("call.tampered", call_id=cid, reason="control plane signature does not verify")
            log.error("refused a call whose control-plane signature does not verify (id %s)", cid)
            try:
                self.client.post("/api/agent/events", {"event": "tampered_call", "detail": {"call_id": cid}})
            except (Retriable, NonRetriable) as exc:
                log.warning("could not report the tampered call: %s", exc)
            return
        cid = str(call["id"])
        with self._busy_cond:
            if cid in self.busy:
                return
        state, stored = self.store.begin(cid, str(call["system"]), str(call["function"]))
        if state == "new" and (stale := self._stale(call)) is not None:
            # Recorded as done (never run); the refusal is posted and kept like any result.
            data = ChannelResponse(id=cid, ok=False, fault=stale).model_dump_json()
            self.store.finish(cid, data)
            self.audit.record("call.refused", call_id=cid, system=call.get("system"), function=call.get("function"),
                              fault=stale.type, key=stale.key, message=stale.message)
            log.warning("refused call %s: %s", cid, stale.message)
            self.post_result(cid, data)
            return
        if state != "new":
            # Redelivered: never execute twice; answer with what we have.
            if state == "started":
                self.recover()
                got = self.store.get(cid)
                stored = got["response"] if got else None
            self.audit.record("call.duplicate", call_id=cid, state=state)
            if stored:
                self.post_result(cid, stored)
            return
        with self._busy_cond:
            self.busy.add(cid)
        self.pool.submit(self._run_call, call)

    def _stale(self, call: dict[str, Any]) -> ChannelFault | None:
        """A fault if the envelope was issued more than max_call_age ago (on the control plane's
        clock: ours corrected by the skew measured on its answers). Deduping by id stops a replay
        while the id is in the local store; this stops it after the id was pruned."""
        issued = call.get("issued_at")
        max_age = float(self.cfg.max_call_age)
        if not isinstance(issued, int | float) or isinstance(issued, bool):
            age = None
        else:
            age = self.client.clock() - (self.client.skew or 0.0) - float(issued)
            if age <= max_age:
                return None
        shown = "no issued_at" if age is None else f"issued {age:.0f} s ago"
        return ChannelFault(type="StaleCall", key="CALL_TOO_OLD", retriable=False,
                            message=(f"call {call.get('id')} ({call.get('function')}) was {shown}, more than "
                                     f"max_call_age {max_age:.0f} s: refused as a possible replay, not executed"),
                            details={"uncertain": False, "age_seconds": None if age is None else round(age, 1),
                                     "max_call_age": max_age})

    def prune_state(self, now: float | None = None) -> int:
        """Forget acknowledged call ids older than state_retention (the store would grow forever)."""
        now = self.clock.now() if now is None else now
        n = self.store.prune(now - float(self.cfg.state_retention))
        if n:
            self.audit.record("state.pruned", calls=n, retention_seconds=float(self.cfg.state_retention))
        return n

    def _run_call(self, call: dict[str, Any]) -> None:
        cid = str(call["id"])
        try:
            resp = self.execute(call)
            data = resp.model_dump_json()
            self.store.finish(cid, data)  # durable before it is posted
            if os.environ.get(CRASH_AFTER_STORE_ENV) == call.get("function"):
                os._exit(9)
            self.post_result(cid, data)
        except Exception:
            log.exception("call %s failed in the agent", cid)
        finally:
            with self._busy_cond:
                self.busy.discard(cid)
                self._busy_cond.notify_all()

    def _heartbeat_loop(self) -> None:
        while not self.stop_event.wait(min(float(self.cfg.poll.heartbeat), max(self.lease / 3, 0.2))):
            with self._busy_cond:
                busy = list(self.busy)
            # Running calls and those whose result is not yet stored on the control plane: a
            # finished call's lease must not run out while its result waits here for delivery.
            held = sorted(set(busy) | set(self.store.held()))
            if not held:
                continue
            try:
                out = self.client.post("/api/agent/heartbeat", {"busy": busy, "held": held})
                self.lease = float(out.get("lease_seconds", self.lease))
            except NonRetriable as exc:
                self.fatal = exc
                self.stop_event.set()
            except Retriable as exc:
                log.info("heartbeat failed: %s", exc)

    def report_allow_list(self) -> None:
        """Tell the control plane what this agent serves (its allow-list, no secret), for its operators'
        page; best effort: the agent serves the same whether or not this arrives."""
        allow = {name: {"type": sysc.type, **sysc.allow.model_dump()} for name, sysc in self.cfg.systems.items()}
        try:
            self.client.post("/api/agent/events", {"event": "allow_list", "detail": {"systems": allow}})
        except (Retriable, NonRetriable) as exc:
            log.warning("could not report the allow-list: %s", exc)

    def run(self) -> int:
        """The loop; returns the process exit code."""
        self.recover()
        hb = threading.Thread(target=self._heartbeat_loop, name="agent-heartbeat", daemon=True)
        hb.start()
        errors = 0
        hold = float(self.cfg.poll.hold)
        next_prune = 0.0
        log.warning("agent %s (site %s) polling %s", self.ident.agent_id, self.ident.site, self.ident.control_plane)
        self.audit.record("agent.start", agent_id=self.ident.agent_id, control_plane=self.ident.control_plane)
        self.report_allow_list()
        try:
            while not self.stop_event.is_set():
                try:
                    if self.clock.monotonic() >= next_prune:
                        self.prune_state()
                        next_prune = self.clock.monotonic() + PRUNE_EVERY
                    self.flush_unacked()
                    with self._busy_cond:
                        free = self.cfg.poll.max_concurrent - len(self.busy)
                        if free <= 0:
                            self._busy_cond.wait(0.5)
                            continue
                        busy = list(self.busy)
                    # Everything received and not yet stored on the control plane: a call it handed
                    # us that is missing here was lost with a poll answer, and is handed out again.
                    held = sorted(set(busy) | set(self.store.held()))
                    out = self.client.post("/api/agent/poll",
                                           {"hold": hold, "max": free, "busy": busy, "held": held,
                                            "instance": self.instance},
                                           timeout=hold + float(self.cfg.poll.request_timeout))
                    if errors:
                        log.warning("reconnected to the control plane after %d error(s)", errors)
                        self.audit.record("agent.reconnected", errors=errors)
                    errors = 0
                    self.lease = float(out.get("lease_seconds", self.lease))
                    for env in out.get("calls") or []:
                        self.dispatch(env)
                except Retriable as exc:
                    errors += 1
                    delay = proto.backoff_delay(errors, scale=self.cfg.poll.backoff_scale, rng=self.rng)
                    log.warning("control plane error (%d in a row): %s; retrying in %.1f s", errors, exc, delay)
                    self.stop_event.wait(delay)
                except NonRetriable as exc:
                    self.fatal = exc
                    break
        finally:
            self.stop_event.set()
            self.pool.shutdown(wait=True)
        if self.fatal is not None:
            self.audit.record("agent.stopped", reason=self.fatal.code, message=self.fatal.message)
            return self.fatal.exit_code
        return 0

    def close(self) -> None:
        self.stop_event.set()
        self.client.close()
        self.store.close()


def host_info() -> str:
    return f"{platform.node()} {platform.system()} {platform.release()}"
