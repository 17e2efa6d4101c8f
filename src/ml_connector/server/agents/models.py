"""Control-plane tables of the remote agent (part of the core schema, migration 0002).

Times are unix seconds (float) so that lease and window arithmetic is the same
on SQLite and Postgres.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Boolean, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ml_connector.core.models import Base


class AgentRow(Base):
    """One paired agent: its Ed25519 public key, site and liveness."""

    __tablename__ = "mlc_agents"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    site: Mapped[str] = mapped_column(String(100))
    hostname: Mapped[str] = mapped_column(String(200), default="")
    version: Mapped[str] = mapped_column(String(50), default="")
    public_key: Mapped[str] = mapped_column(String(100))  # urlsafe base64 of the raw 32-byte key
    state: Mapped[str] = mapped_column(String(20), default="online")  # online | offline | revoked
    created_at: Mapped[float] = mapped_column(Float)
    last_seen_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_skew: Mapped[float | None] = mapped_column(Float, nullable=True)


class PairingTokenRow(Base):
    """A one-time pairing token, stored as its SHA-256 only."""

    __tablename__ = "mlc_agent_pairing_tokens"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    site: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    used_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    agent_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


class AgentNonceRow(Base):
    """Nonces seen inside the timestamp window (a reused one is a replay)."""

    __tablename__ = "mlc_agent_nonces"
    agent_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[float] = mapped_column(Float, index=True)


class AgentCallRow(Base):
    """One call for an agent of a site: queued -> claimed (leased) -> done."""

    __tablename__ = "mlc_agent_calls"
    __table_args__ = (Index("ix_mlc_agent_calls_queue", "site", "state", "created_at"),
                      # pacing counts the calls answered in the last second (migration 0008)
                      Index("ix_mlc_agent_calls_recent", "site", "state", "completed_at"))
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site: Mapped[str] = mapped_column(String(100))
    system: Mapped[str] = mapped_column(String(100))
    function: Mapped[str] = mapped_column(String(200))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    idempotent: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(20), default="queued")
    agent_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The agent process that claimed it (its poll's `instance`): only that process's report of
    # what it holds may put the call back in the queue (migration 0007).
    claim_instance: Mapped[str | None] = mapped_column(String(64), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[float] = mapped_column(Float)
    claimed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    lease_expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    completed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    ok: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    response: Mapped[str | None] = mapped_column(Text, nullable=True)  # ChannelResponse JSON
