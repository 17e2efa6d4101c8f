"""The control plane's side of the remote agent: pairing, request authentication,
the call queue (claim with a lease), results, liveness and revocation.

State lives in the core database (tables in server/agents/models.py), so several control
plane processes can serve agents; an in-process signal wakes long polls and
waiting callers at once, and on Postgres a NOTIFY in the same transaction wakes those of
other processes (server/agents/wakeups.py), with database polling as the fallback.

Tuning (environment, seconds): MLC_AGENT_LEASE (60), MLC_AGENT_OFFLINE_AFTER (150),
MLC_AGENT_HOLD_MAX (60), MLC_AGENT_DB_POLL (0.25), MLC_AGENT_SWEEP (5),
MLC_AGENT_RESTART_GRACE (0 = max(lease, offline_after)).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import and_, case, delete, func, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ml_connector.agent import protocol as proto
from ml_connector.core import audit
from ml_connector.core.alerts import Alert, Alerter, duration_text
from ml_connector.core.channel import ChannelFault, ChannelResponse
from ml_connector.core.clock import SYSTEM_CLOCK, Clock
from ml_connector.core.db import Database, in_chunks
from ml_connector.core.refusals import REFUSAL_AUDIT_WINDOW, CoalescedRefusals
from ml_connector.server.agents.models import AgentCallRow, AgentNonceRow, AgentRow, PairingTokenRow
from ml_connector.server.agents.pacing import WINDOW_SECONDS, Pacing, SystemBudget
from ml_connector.server.agents.wakeups import RESULTS, SIGNAL, notify_done, notify_queued

log = logging.getLogger(__name__)

CONTROL_KEY_SECRET = "agent.control_plane.ed25519"
#: Faults with which the agent refuses a call without running it (audited as agent.call.refused).
REFUSAL_FAULTS = frozenset({"NotAllowed", "UnknownSystem", "TamperedCall", "StaleCall"})
TOKEN_PREFIX = "mlcpt_"
#: A pairing token as issue_token makes it (24 random bytes, urlsafe base64): anything else is
#: refused before the database is asked.
TOKEN_RE = re.compile(r"^mlcpt_[A-Za-z0-9_-]{32}$")
#: Advisory-lock key space of paced claims (one lock per site); see core/ratelimit.py for the others.
CLAIM_LOCKS = 0x6D6C6333  # "mlc3"


def _env_seconds(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


@dataclass
class Settings:
    lease: float = field(default_factory=lambda: _env_seconds("MLC_AGENT_LEASE", 60.0))
    offline_after: float = field(default_factory=lambda: _env_seconds("MLC_AGENT_OFFLINE_AFTER", 150.0))
    hold_max: float = field(default_factory=lambda: _env_seconds("MLC_AGENT_HOLD_MAX", 60.0))
    db_poll: float = field(default_factory=lambda: _env_seconds("MLC_AGENT_DB_POLL", 0.25))
    sweep_every: float = field(default_factory=lambda: _env_seconds("MLC_AGENT_SWEEP", 5.0))
    max_skew: float = proto.MAX_SKEW_SECONDS
    # A call the agent keeps not holding (it refuses the envelope as tampered) is handed out at
    # most this often through release_unheld; after that its lease decides.
    max_deliveries: int = 5
    # After a control-plane start, leases run again from zero for this long (0: the larger of
    # lease and offline_after, by when every live agent has reconnected): while no control
    # plane was up, no agent could renew a lease or deliver a result it holds.
    restart_grace: float = field(default_factory=lambda: _env_seconds("MLC_AGENT_RESTART_GRACE", 0.0))
    # Refused requests: one agent.auth.rejected row per (client, agent id, reason) per this many seconds.
    refusal_window: float = REFUSAL_AUDIT_WINDOW

    def grace(self) -> float:
        return self.restart_grace if self.restart_grace > 0 else max(self.lease, self.offline_after)


class AuthError(Exception):
    """A refused agent request; `code` is one of the protocol error codes."""

    def __init__(self, code: str, message: str, status: int = 401, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, "retriable": self.code not in proto.NON_RETRIABLE,
                "server_time": time.time(), **self.extra}


@dataclass(frozen=True)
class PendingRequest:
    """A signed request whose headers passed AgentService.precheck; its body is not read yet."""

    method: str
    target: str
    client: str
    agent_id: str
    ts: str
    nonce: str
    signature: str
    skew: float
    now: float
    state: str
    public_key: str
    site: str
    peer: str | None = None  # the socket's address (client may be one a trusted proxy reported)


@dataclass(frozen=True)
class AgentIdentity:
    agent_id: str
    site: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def lost_fault(call_id: str, agent_id: str | None) -> ChannelResponse:
    return ChannelResponse(id=call_id, ok=False, fault=ChannelFault(
        type="CommunicationError", key="AGENT_LOST", retriable=False,
        message=(f"agent {agent_id} stopped responding while it held this call; it may have been executed. "
                 "Resolve by a lookup before repeating it"),
        details={"uncertain": True, "code": 1}))


class AgentService:
    def __init__(self, db: Database, vault: Any, settings: Settings | None = None,
                 pacing: Pacing | None = None, alerts: Alerter | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        self.db = db
        #: The wall clock of leases, liveness, pairing tokens and request timestamps (a test moves it).
        self.clock = clock
        self.alerts = alerts  # operators' webhooks for agent.offline / agent.online (core/alerts.py)
        self.vault = vault
        self.settings = settings or Settings()
        self.pacing = pacing or Pacing()
        self._key: Ed25519PrivateKey | None = None
        self._key_lock = threading.Lock()
        self._sweeper: threading.Thread | None = None
        self._stop = threading.Event()
        self.refusals = CoalescedRefusals(db, "agent.auth.rejected", outcome="rejected",
                                           describe=_describe_refusal, window=self.settings.refusal_window)

    # ------------------------------------------------------------------ control plane key

    def control_key(self) -> Ed25519PrivateKey:
        """The control plane's Ed25519 key, kept encrypted in the vault (created on first use)."""
        with self._key_lock:
            if self._key is None:
                if not self.vault.exists(CONTROL_KEY_SECRET):
                    self.vault.set(CONTROL_KEY_SECRET, proto.b64e(proto.private_key_bytes(proto.generate_key())))
                self._key = proto.private_key_from_bytes(proto.b64d(self.vault.get(CONTROL_KEY_SECRET)))
            return self._key

    def control_public_key(self) -> str:
        return proto.public_key_text(self.control_key())

    # ------------------------------------------------------------------ pairing

    def issue_token(self, site: str, ttl: float = 900.0) -> str:
        token = TOKEN_PREFIX + secrets.token_urlsafe(24)
        now = self.clock.now()
        with self.db.session() as s:
            s.add(PairingTokenRow(token_hash=hash_token(token), site=site, created_at=now, expires_at=now + ttl))
            audit.record(s, "agent.token.issued", target=site, detail={"site": site, "ttl_seconds": ttl})
        return token

    def pair(self, token: str, public_key: str, *, name: str = "", hostname: str = "",
             version: str = "", client: str = "", peer: str | None = None) -> dict[str, Any]:
        if not TOKEN_RE.fullmatch(token):
            self._reject(proto.E_BAD_TOKEN, None, "/api/agent/pair", client, "malformed pairing token", peer=peer)
            raise AuthError(proto.E_BAD_TOKEN, "malformed pairing token; issue one with "
                                               "`ml-connector agents issue-token`")
        try:
            proto.load_public_key(public_key)
        except (ValueError, TypeError):
            self._reject(proto.E_BAD_TOKEN, None, "/api/agent/pair", client, "public key is not an Ed25519 key",
                         peer=peer)
            raise AuthError(proto.E_BAD_TOKEN, "the public key is not a 32-byte Ed25519 key", status=400) from None
        now = self.clock.now()
        cp_key = self.control_public_key()
        with self.db.session() as s:
            q = select(PairingTokenRow).where(PairingTokenRow.token_hash == hash_token(token))
            if self.db.dialect == "postgresql":
                q = q.with_for_update()
            row = s.scalars(q).first()
            problem = ("unknown pairing token" if row is None else
                       "pairing token already used" if row.used_at is not None else
                       "pairing token expired" if row.expires_at < now else None)
            if row is not None and problem is None:
                agent_id = "agt_" + secrets.token_hex(8)
                row.used_at, row.agent_id = now, agent_id
                s.add(AgentRow(id=agent_id, name=name[:200], site=row.site, hostname=hostname[:200],
                               version=version[:50], public_key=public_key, state="online",
                               created_at=now, last_seen_at=now))
                audit.record(s, "agent.paired", source=agent_id, target=row.site,
                             detail={"agent_id": agent_id, "site": row.site, "name": name, "hostname": hostname,
                                     "client": client})
                return {"agent_id": agent_id, "site": row.site, "control_plane_public_key": cp_key,
                        "server_time": now}
        self._reject(proto.E_BAD_TOKEN, None, "/api/agent/pair", client, problem or "invalid token", peer=peer)
        raise AuthError(proto.E_BAD_TOKEN, f"{problem}; issue a new one with `ml-connector agents issue-token`")

    # ------------------------------------------------------------------ request authentication

    def _reject(self, code: str, agent_id: str | None, path: str, client: str, message: str,
                peer: str | None = None, **detail: Any) -> None:
        # Coalesced: at most one row per (client, agent id, reason) per window, with a count, and a
        # bounded number of keys per real peer (`peer`, the socket's address).
        self.refusals.refused(client, code, {"path": path, "message": message, **detail}, source=agent_id,
                              peer=peer)

    def authenticate(self, method: str, target: str, headers: Any, body: bytes, client: str = "",
                     peer: str | None = None) -> AgentIdentity:
        """The agent a signed request comes from (or AuthError); `target`: path and query string."""
        return self.verify(self.precheck(method, target, headers, client, peer), body)

    def precheck(self, method: str, target: str, headers: Any, client: str = "",
                 peer: str | None = None) -> PendingRequest:
        """The checks that need no body: headers present and well-formed, timestamp within the
        allowed skew, agent known. Done before the body is read, so a request that cannot be
        authentic costs no memory for its body (server/agent_api.py)."""
        path = target
        agent_id = headers.get(proto.H_AGENT) or ""
        ts = headers.get(proto.H_TS) or ""
        nonce = headers.get(proto.H_NONCE) or ""
        sig = headers.get(proto.H_SIG) or ""
        now = self.clock.now()
        if not (agent_id and ts and nonce and sig) or len(agent_id) > 64 or len(sig) > 200:
            self._reject(proto.E_MISSING, agent_id[:64] or None, path, client,
                         "missing or malformed signature headers", peer=peer)
            raise AuthError(proto.E_MISSING, f"signed requests need {proto.H_AGENT}, {proto.H_TS}, "
                                             f"{proto.H_NONCE} and {proto.H_SIG}")
        if not proto.valid_nonce(nonce):
            self._reject(proto.E_MISSING, agent_id, path, client, "nonce is not 32 lowercase hex characters", peer=peer)
            raise AuthError(proto.E_MISSING, f"{proto.H_NONCE} must be 32 lowercase hex characters "
                                             "(128 random bits)")
        try:
            ts_value = float(int(ts))
        except ValueError:
            self._reject(proto.E_MISSING, agent_id, path, client, "timestamp is not an integer", peer=peer)
            raise AuthError(proto.E_MISSING, "X-MLC-Timestamp must be unix seconds") from None
        skew = ts_value - now
        if abs(skew) > self.settings.max_skew:
            msg = (f"request timestamp is {skew:+.0f} s from the control plane's clock (allowed "
                   f"±{self.settings.max_skew:.0f} s); fix the agent host's clock (NTP)")
            self._reject(proto.E_CLOCK_SKEW, agent_id, path, client, msg, peer=peer, skew=round(skew, 1))
            raise AuthError(proto.E_CLOCK_SKEW, msg, skew=round(skew, 1))
        with self.db.session() as s:
            agent = s.get(AgentRow, agent_id)
            found = None if agent is None else (agent.state, agent.public_key, agent.site)
        if found is None:
            self._reject(proto.E_UNKNOWN_AGENT, agent_id, path, client, "no such agent", peer=peer)
            raise AuthError(proto.E_UNKNOWN_AGENT,
                            f"agent {agent_id} is not known to this control plane; pair it again")
        state, public_key, site = found
        return PendingRequest(method=method, target=target, client=client, agent_id=agent_id, ts=ts, nonce=nonce,
                              signature=sig, skew=skew, now=now, state=state, public_key=public_key, site=site,
                              peer=peer)

    def verify(self, p: PendingRequest, body: bytes) -> AgentIdentity:
        """Check the signature over `body` and the nonce (once), and record the agent as seen."""
        agent_id, path, client, nonce, site, skew, now = p.agent_id, p.target, p.client, p.nonce, p.site, p.skew, p.now
        peer = p.peer
        if not proto.verify_request_signature(p.public_key, p.method, p.target, agent_id, p.ts, nonce, body,
                                              p.signature):
            self._reject(proto.E_BAD_SIGNATURE, agent_id, path, client, "signature does not verify", peer=peer)
            raise AuthError(proto.E_BAD_SIGNATURE, "the request signature does not verify")
        if p.state == "revoked":
            self._reject(proto.E_REVOKED, agent_id, path, client, "agent is revoked", peer=peer)
            raise AuthError(proto.E_REVOKED, f"agent {agent_id} was revoked; pair a new agent with a new token")
        alert: Alert | None = None
        try:
            with self.db.session() as s:
                s.add(AgentNonceRow(agent_id=agent_id, nonce=nonce, expires_at=now + 2 * self.settings.max_skew + 60))
                agent = s.get(AgentRow, agent_id)
                if agent is not None:
                    silent_since = agent.last_seen_at
                    # Conditional: of two processes seeing the same agent come back, only the one
                    # whose update flips the state reports (and alerts) it.
                    back = agent.state == "offline" and _rowcount(s.execute(
                        update(AgentRow).where(AgentRow.id == agent_id, AgentRow.state == "offline")
                        .values(state="online").execution_options(synchronize_session=False))) == 1
                    agent.last_seen_at = now
                    agent.last_skew = round(skew, 1)
                    if back:
                        away = now - (silent_since or now)
                        audit.record(s, "agent.online", source=agent_id, target=site,
                                     detail={"agent_id": agent_id, "offline_seconds": round(away, 1)})
                        log.warning("agent %s (site %s) is back online after %s without contact",
                                    agent_id, site, duration_text(away))
                        alert = self._admit(s, Alert(
                            event="agent.online", subject=agent_id, at=now, site=site, agent_id=agent_id,
                            agent_name=agent.name or None, details={"offline_seconds": round(away, 1),
                                                                   "hostname": agent.hostname},
                            message=(f"Agent {agent.name or agent_id} ({agent_id}, site {site}) is back online "
                                     f"after {duration_text(away)} without contact")))
        except IntegrityError:
            self._reject(proto.E_REPLAY, agent_id, path, client, "nonce reused inside the window", peer=peer)
            raise AuthError(proto.E_REPLAY, "this nonce was already used (replayed request)") from None
        if alert is not None and self.alerts is not None:
            self.alerts.dispatch(alert)
        return AgentIdentity(agent_id=agent_id, site=site)

    def _admit(self, s: Session, alert: Alert) -> Alert | None:
        """`alert` if it is to be sent (throttle, in the transaction that made the transition)."""
        if self.alerts is None or not self.alerts.wants(alert.event):
            return None
        return alert if self.alerts.admit(s, alert) else None

    # ------------------------------------------------------------------ queue

    def enqueue(self, call_id: str, site: str, system: str, function: str, params: dict[str, Any],
                idempotent: bool) -> bool:
        """Insert a queued call; False when a call with this id exists already (dedupe)."""
        try:
            with self.db.session() as s:
                if s.get(AgentCallRow, call_id) is not None:
                    return False
                s.add(AgentCallRow(id=call_id, site=site, system=system, function=function, params=params,
                                   idempotent=idempotent, state="queued", attempts=0, created_at=self.clock.now()))
                notify_queued(s, site, call_id)
        except IntegrityError:
            return False
        SIGNAL.notify()
        return True

    def claim(self, ident: AgentIdentity, max_calls: int, instance: str | None = None, *,
              now: float | None = None) -> list[dict[str, Any]] | None:
        """Claim up to `max_calls` queued calls of the agent's site (lease); None if the agent is revoked.
        `instance`: the polling agent process, recorded for release_unheld.

        Calls to an SAP system with a budget (server/agents/pacing.py) are handed out only within it,
        counted over every agent and control-plane process; the others stay queued for a
        later poll."""
        now = self.clock.now() if now is None else now
        key = self.control_key()
        out: list[dict[str, Any]] = []
        with self.db.session() as s:
            agent = s.get(AgentRow, ident.agent_id)
            if agent is None or agent.state == "revoked":
                return None
            if max_calls <= 0:
                return out
            budgets = self.pacing.for_site(ident.site)
            if budgets and self.db.dialect == "postgresql":
                # Count-then-claim must not interleave with another process's claim for the site
                # (SQLite's BEGIN IMMEDIATE already serializes it).
                s.execute(text("SELECT pg_advisory_xact_lock(:ns, hashtext(:site))"),
                          {"ns": CLAIM_LOCKS, "site": ident.site})
            queued = select(AgentCallRow).where(AgentCallRow.site == ident.site, AgentCallRow.state == "queued")
            rows: list[AgentCallRow] = []
            paced: set[str] = set()
            for b in budgets:
                paced |= b.systems
                allowed = min(self._allowance(s, b, now), max_calls)
                if allowed > 0:
                    rows.extend(s.scalars(self._lockable(
                        queued.where(AgentCallRow.system.in_(sorted(b.systems)))
                        .order_by(AgentCallRow.created_at).limit(allowed))))
            rest = queued.where(AgentCallRow.system.not_in(sorted(paced))) if paced else queued
            rows.extend(s.scalars(self._lockable(rest.order_by(AgentCallRow.created_at).limit(max_calls))))
            rows.sort(key=lambda r: (r.created_at, r.id))  # oldest first across systems
            for row in rows[:max_calls]:
                row.state, row.agent_id, row.claim_instance = "claimed", ident.agent_id, instance
                row.claimed_at, row.lease_expires_at = now, now + self.settings.lease
                row.attempts += 1
                call = {"id": row.id, "site": row.site, "system": row.system, "function": row.function,
                        "params": row.params, "agent_id": ident.agent_id, "attempt": row.attempts,
                        "issued_at": now}
                out.append(proto.sign_call(key, call))
        return out

    def _lockable(self, q: Any) -> Any:
        return q.with_for_update(skip_locked=True) if self.db.dialect == "postgresql" else q

    @staticmethod
    def _allowance(s: Session, budget: SystemBudget, now: float) -> int:
        """Calls of `budget`'s SAP system that may be handed out now (server/agents/pacing.py): one
        statement, so both counts come from the same snapshot."""
        claimed = AgentCallRow.state == "claimed"
        recent = and_(AgentCallRow.state == "done", AgentCallRow.claimed_at.is_not(None),
                      AgentCallRow.completed_at > now - WINDOW_SECONDS)
        in_flight, in_window = s.execute(
            select(func.coalesce(func.sum(case((claimed, 1), else_=0)), 0), func.count())
            .where(AgentCallRow.site == budget.site, AgentCallRow.system.in_(sorted(budget.systems)),
                   or_(claimed, recent))).one()
        return budget.allowance(int(in_flight), int(in_window))

    def extend(self, ident: AgentIdentity, call_ids: list[str]) -> int:
        if not call_ids:
            return 0
        now = self.clock.now()
        n = 0
        with self.db.session() as s:
            # Every call the agent holds, running or with its result waiting for delivery.
            for chunk in in_chunks(sorted(set(call_ids))[:10_000]):
                q = select(AgentCallRow).where(AgentCallRow.id.in_(chunk))
                if self.db.dialect == "postgresql":
                    q = q.with_for_update(skip_locked=True)  # never re-lease a row a sweep is expiring
                for row in s.scalars(q):
                    if row.state == "claimed" and row.agent_id == ident.agent_id:
                        row.lease_expires_at = now + self.settings.lease
                        n += 1
        return n

    def release_unheld(self, ident: AgentIdentity, held: list[str], instance: str) -> int:
        """Calls handed to this agent that it does not report as held go back to the queue.

        The agent records every call it receives durably before it runs it and reports it as
        held until the control plane has stored its result, and it polls one request at a
        time. So a claimed call missing from `held` never reached the agent: the poll answer
        carrying it was lost in transit. It was not executed, so it is safe to hand it out
        again (to this agent or another) instead of waiting for the lease, after which a
        non-idempotent call would come back as an uncertain AGENT_LOST.

        Only calls claimed by the same agent process (`instance`) are considered: a second
        process with the same identity (a cloned host) must not free calls the first one runs."""
        keep = set(held)
        released = 0
        with self.db.session() as s:
            q = select(AgentCallRow).where(AgentCallRow.state == "claimed", AgentCallRow.agent_id == ident.agent_id,
                                           AgentCallRow.claim_instance == instance)
            if self.db.dialect == "postgresql":
                q = q.with_for_update(skip_locked=True)  # a row whose result is being stored is not ours to move
            for row in s.scalars(q):
                if row.id in keep or row.attempts >= self.settings.max_deliveries:
                    continue
                audit.record(s, "agent.call.released", source=ident.agent_id, target=row.system,
                             detail={"call_id": row.id, "function": row.function, "attempts": row.attempts,
                                     "reason": "not held by the agent it was handed to (its poll answer was lost)"})
                row.state, row.agent_id, row.claimed_at, row.lease_expires_at = "queued", None, None, None
                row.claim_instance = None
                notify_queued(s, row.site, row.id)
                released += 1
        if released:
            log.warning("agent %s did not receive %d call(s) handed to it; queued again", ident.agent_id, released)
            SIGNAL.notify()
        return released

    def store_result(self, ident: AgentIdentity, response: ChannelResponse) -> dict[str, Any]:
        """Store the result durably (committed before returning); a second result for the
        same id is acknowledged and ignored. A result from an agent the call was not handed to
        is refused (the refusal is audited, in a committed transaction, then raised)."""
        refusal: list[AuthError] = []
        out = self._store_result(ident, response, refusal)
        if refusal:
            raise refusal[0]
        assert out is not None
        return out

    def _store_result(self, ident: AgentIdentity, response: ChannelResponse,
                      refusal: list[AuthError]) -> dict[str, Any] | None:
        now = self.clock.now()
        data = response.model_dump_json()
        with self.db.session() as s:
            q = select(AgentCallRow).where(AgentCallRow.id == response.id)
            if self.db.dialect == "postgresql":
                q = q.with_for_update()
            row = s.scalars(q).first()
            if row is None:
                # Never queued here (or purged): a confused or hostile agent; operators see it.
                refusal.append(AuthError("unknown_call", f"no call {response.id[:200]!r}", status=404))
                audit.record(s, "agent.result.rejected", outcome="rejected", source=ident.agent_id,
                             target=ident.site, detail={"call_id": response.id[:200], "reason": "unknown_call",
                                                        "ok": response.ok})
                log.warning("agent %s posted a result for unknown call %r", ident.agent_id, response.id[:200])
                return None
            if row.site != ident.site:
                refusal.append(AuthError("wrong_site", "this call belongs to another site", status=403))
            elif row.state != "done" and row.agent_id != ident.agent_id:
                # Only the agent the call was handed to may answer it: another agent of the site
                # must not complete (or fake) a call it never received.
                refusal.append(AuthError("not_claimant", "this call was not handed to this agent", status=409))
            if refusal:
                # Recorded in this transaction, which commits; the caller raises afterwards.
                audit.record(s, "agent.result.rejected", outcome="rejected", source=ident.agent_id,
                             detail={"call_id": response.id, "reason": refusal[0].code,
                                     "claimed_by": row.agent_id, "state": row.state})
                return None
            late = None
            if row.state == "done" and row.agent_id == ident.agent_id and _is_lost(row.response):
                # Our own AGENT_LOST placeholder: the lease ran out, but the agent it was handed to
                # (and no other) has the real result. It replaces the placeholder, once.
                late = "replaced AGENT_LOST"
            elif row.state == "queued":
                # Requeued after its lease expired and not yet claimed again (agent_id is still
                # the agent it was handed to, checked above): the result is the call's answer.
                late = "requeued after lease expiry"
            if row.state == "done" and late is None:
                if row.response != data:
                    audit.record(s, "agent.result.late", outcome="ignored", source=ident.agent_id,
                                 target=row.system, response=data,
                                 detail={"call_id": row.id, "function": row.function,
                                         "first_agent": row.agent_id, "ok": response.ok})
                return {"stored": False, "duplicate": True}
            if late is not None:
                audit.record(s, "agent.result.late", outcome="accepted", source=ident.agent_id,
                             target=row.system, detail={"call_id": row.id, "function": row.function,
                                                        "reason": late, "ok": response.ok})
                log.warning("accepted the late result of call %s from agent %s (%s)", row.id, ident.agent_id, late)
            row.state, row.ok, row.response, row.completed_at = "done", response.ok, data, now
            row.agent_id = ident.agent_id
            notify_done(s, row.site, row.id)
            fault = response.fault
            event = "agent.call.done"
            outcome = "ok" if response.ok else "fault"
            if fault is not None and fault.type in REFUSAL_FAULTS:
                event, outcome = "agent.call.refused", "refused"
            audit.record(s, event, outcome=outcome, source=ident.agent_id, target=row.system,
                         request=row.params, response=data,
                         detail={"call_id": row.id, "function": row.function, "site": row.site,
                                 "attempts": row.attempts,
                                 **({"fault": fault.type, "key": fault.key, "message": fault.message}
                                    if fault else {})})
        if fault is not None and outcome == "refused":
            log.warning("agent %s refused call %s (%s %s): %s", ident.agent_id, response.id, fault.type,
                        fault.key, fault.message)
        SIGNAL.notify()
        RESULTS.fire(response.id)
        return {"stored": True, "duplicate": False}

    def report(self, ident: AgentIdentity, event: str, detail: dict[str, Any]) -> None:
        """An event the agent reports (a tampered call, a refusal it could not answer)."""
        name = {"tampered_call": "agent.call.tampered", "refused": "agent.call.refused",
                "allow_list": "agent.allow_list"}.get(event, "agent.report")
        detail = bounded_detail(detail)
        if name == "agent.allow_list":  # what the agent serves (its own agent.yaml), for the agents page
            with self.db.session() as s:
                audit.record(s, name, source=ident.agent_id, detail=detail)
            return
        log.warning("agent %s reports %s: %s", ident.agent_id, event, json.dumps(detail, default=str)[:500])
        with self.db.session() as s:
            audit.record(s, name, outcome="rejected", source=ident.agent_id, detail={"event": event, **detail})

    # ------------------------------------------------------------------ liveness, revocation

    def sweep(self, now: float | None = None) -> dict[str, int]:
        """Expire leases, mark silent agents offline (alert), purge old nonces."""
        now = self.clock.now() if now is None else now
        counts = {"requeued": 0, "lost": 0, "offline": 0}
        changed = False
        lost: list[str] = []
        alerts: list[Alert] = []
        with self.db.session() as s:
            q = select(AgentCallRow).where(AgentCallRow.state == "claimed", AgentCallRow.lease_expires_at < now)
            if self.db.dialect == "postgresql":
                # A row an agent's result is being stored into is locked: skip it (it is about to be
                # done). Without the lock, a result committed after our read would be overwritten.
                q = q.with_for_update(skip_locked=True)
            expired = s.scalars(q).all()
            for row in expired:
                changed = True
                if row.idempotent:
                    audit.record(s, "agent.call.requeued", source=row.agent_id, target=row.system,
                                 detail={"call_id": row.id, "function": row.function, "reason": "lease expired"})
                    # agent_id stays: the agent it was handed to may still deliver its result
                    # (accepted while no other agent has claimed the call, see _store_result).
                    row.state, row.lease_expires_at, row.claim_instance = "queued", None, None
                    notify_queued(s, row.site, row.id)
                    counts["requeued"] += 1
                else:
                    resp = lost_fault(row.id, row.agent_id)
                    row.state, row.ok, row.response, row.completed_at = "done", False, resp.model_dump_json(), now
                    notify_done(s, row.site, row.id)
                    lost.append(row.id)
                    audit.record(s, "agent.call.lost", outcome="uncertain", source=row.agent_id, target=row.system,
                                 detail={"call_id": row.id, "function": row.function,
                                         "reason": "lease expired on a non-idempotent call"})
                    counts["lost"] += 1
            silent_q = select(AgentRow).where(AgentRow.state == "online",
                                              AgentRow.last_seen_at < now - self.settings.offline_after)
            if self.db.dialect == "postgresql":
                # Of several control planes sweeping at once, one makes (and alerts) each transition;
                # a row another sweep or a poll holds is left to it.
                silent_q = silent_q.with_for_update(skip_locked=True)
            for agent in s.scalars(silent_q).all():
                agent.state = "offline"
                counts["offline"] += 1
                silent_for = now - (agent.last_seen_at or now)
                audit.record(s, "agent.offline", outcome="alert", source=agent.id, target=agent.site,
                             detail={"agent_id": agent.id, "site": agent.site, "last_seen_at": agent.last_seen_at,
                                     "silent_seconds": round(silent_for, 1)})
                log.warning("ALERT: agent %s (site %s) is offline: no poll for %.0f s; its calls stay queued",
                            agent.id, agent.site, silent_for)
                queued = s.scalar(select(func.count()).select_from(AgentCallRow).where(
                    AgentCallRow.site == agent.site, AgentCallRow.state == "queued")) if self.alerts else 0
                offline = self._admit(s, Alert(
                    event="agent.offline", subject=agent.id, at=now, site=agent.site, agent_id=agent.id,
                    agent_name=agent.name or None,
                    details={"last_seen_at": agent.last_seen_at, "silent_seconds": round(silent_for, 1),
                             "hostname": agent.hostname, "queued_for_site": queued},
                    message=(f"Agent {agent.name or agent.id} ({agent.id}, site {agent.site}) is offline: no poll "
                             f"for {duration_text(silent_for)}; {queued} call(s) of the site stay queued")))
                if offline is not None:
                    alerts.append(offline)
            s.execute(delete(AgentNonceRow).where(AgentNonceRow.expires_at < now))
        if changed:
            SIGNAL.notify()
        for call_id in lost:
            RESULTS.fire(call_id)
        if self.alerts is not None:
            for alert in alerts:
                self.alerts.dispatch(alert)  # stored with the transition; wakes the sender: the sweep never waits
        return counts

    def restart_leases(self, now: float | None = None) -> int:
        """Give every claimed call a fresh lease of `grace()` seconds (at start, before the first
        sweep): a lease that ran out while no control plane was up says nothing about its agent,
        which could neither renew it nor deliver the result it may hold."""
        now = self.clock.now() if now is None else now
        until = now + self.settings.grace()
        with self.db.session() as s:
            result: Any = s.execute(update(AgentCallRow).where(AgentCallRow.state == "claimed",
                                                               AgentCallRow.lease_expires_at < until)
                                    .values(lease_expires_at=until))
            n = result.rowcount
        if n:
            log.warning("control plane started: %d call(s) held by agents get %.0f s to renew their leases",
                        n, self.settings.grace())
        return int(n or 0)

    def start_sweeper(self) -> None:
        if self._sweeper is not None:
            return
        self.restart_leases()
        if self.alerts is not None:
            self.alerts.start()  # delivers alerts stored but not yet sent, e.g. by a process that died

        def loop() -> None:
            while not self._stop.wait(self.settings.sweep_every):
                try:
                    self.sweep()
                except Exception:
                    log.exception("agent sweep failed")

        self._sweeper = threading.Thread(target=loop, name="agent-sweeper", daemon=True)
        self._sweeper.start()

    def stop(self) -> None:
        self._stop.set()

    def revoke(self, agent_id: str) -> bool:
        with self.db.session() as s:
            agent = s.get(AgentRow, agent_id)
            if agent is None:
                return False
            agent.state, agent.revoked_at = "revoked", self.clock.now()
            audit.record(s, "agent.revoked", source=agent_id, target=agent.site, detail={"agent_id": agent_id})
            notify_queued(s, agent.site, "")  # its held poll answers `revoked` now
        SIGNAL.notify()
        return True

    def online_agents(self, site: str) -> int:
        """Agents of `site` that are not revoked and polled within the offline threshold."""
        since = self.clock.now() - self.settings.offline_after
        with self.db.session() as s:
            rows = s.scalars(select(AgentRow.id).where(AgentRow.site == site, AgentRow.state != "revoked",
                                                       AgentRow.last_seen_at >= since)).all()
        return len(rows)

    def list_agents(self) -> list[dict[str, Any]]:
        now = self.clock.now()
        with self.db.session() as s:
            agents = s.scalars(select(AgentRow).order_by(AgentRow.created_at)).all()
            busy: dict[str, int] = {}
            for aid in s.scalars(select(AgentCallRow.agent_id).where(AgentCallRow.state == "claimed")):
                if aid:
                    busy[aid] = busy.get(aid, 0) + 1
            queued: dict[str, int] = {}
            for site in s.scalars(select(AgentCallRow.site).where(AgentCallRow.state == "queued")):
                queued[site] = queued.get(site, 0) + 1
            return [_agent_info(a, now, self.settings.offline_after, busy.get(a.id, 0), queued.get(a.site, 0))
                    for a in agents]


def _agent_info(a: AgentRow, now: float, offline_after: float, in_flight: int, queued: int) -> dict[str, Any]:
    state = a.state
    if state == "online" and a.last_seen_at is not None and a.last_seen_at < now - offline_after:
        state = "offline"
    return {"id": a.id, "name": a.name, "site": a.site, "hostname": a.hostname, "version": a.version,
            "state": state, "created_at": a.created_at, "last_seen_at": a.last_seen_at,
            "seconds_since_seen": None if a.last_seen_at is None else round(now - a.last_seen_at, 1),
            "revoked_at": a.revoked_at, "clock_skew": a.last_skew, "in_flight": in_flight,
            "queued_for_site": queued}


def _describe_refusal(client: str, agent_id: str | None, reason: str, detail: dict[str, Any], count: int) -> str:
    return (f"agent request refused: {reason} (agent {agent_id}, {detail.get('path')}, from {client}): "
            f"{detail.get('message')}" + (f" ({count} refusals since the last report)" if count > 1 else ""))


#: An agent's event detail is stored up to this size (JSON bytes); beyond it, an excerpt.
EVENT_DETAIL_MAX_BYTES = 4096


def bounded_detail(detail: dict[str, Any], limit: int = EVENT_DETAIL_MAX_BYTES) -> dict[str, Any]:
    """`detail` if its JSON fits in `limit` bytes, else a marked excerpt: an agent (even a
    compromised one) cannot write megabytes into the append-only audit trail."""
    text_ = json.dumps(detail, default=str, ensure_ascii=False)
    size = len(text_.encode("utf-8"))
    if size <= limit:
        return detail
    excerpt = text_.encode("utf-8")[:limit - 200].decode("utf-8", "ignore")
    return {"truncated": True, "original_bytes": size, "excerpt": excerpt}


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _is_lost(response_json: str | None) -> bool:
    """Whether a stored answer is the control plane's AGENT_LOST placeholder (set by the sweep)."""
    if not response_json:
        return False
    try:
        fault = json.loads(response_json).get("fault") or {}
    except (ValueError, AttributeError):
        return False
    return isinstance(fault, dict) and fault.get("key") == "AGENT_LOST"


def call_response(s: Session, call_id: str) -> ChannelResponse | None:
    row = s.get(AgentCallRow, call_id)
    if row is None or row.state != "done" or row.response is None:
        return None
    return ChannelResponse.model_validate_json(row.response)
