"""Domain state beside DBOS, in the same database (SQLAlchemy 2 models).

The schema is owned by Alembic (core/migrations); these classes are the single
description of it that both the migrations and the code use.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class SecretRow(Base):
    """A named secret, AES-GCM encrypted under the master key `key_id`."""

    __tablename__ = "mlc_secrets"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(64))
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class TokenRow(Base):
    """An OAuth access token per connection, encrypted like a secret."""

    __tablename__ = "mlc_tokens"
    connection: Mapped[str] = mapped_column(String(200), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(64))
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    expires_at: Mapped[float] = mapped_column(BigInteger)
    scope: Mapped[str] = mapped_column(String(1000), default="")
    refreshed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    refresh_count: Mapped[int] = mapped_column(Integer, default=0)


class LockRow(Base):
    """Rows to lock across processes (SELECT … FOR UPDATE on Postgres; the
    SQLite default has one writer at a time anyway)."""

    __tablename__ = "mlc_locks"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)


class RecordRow(Base):
    """Records ledger: one row per (flow, stream, source key)."""

    __tablename__ = "mlc_records"
    flow: Mapped[str] = mapped_column(String(100), primary_key=True)
    stream: Mapped[str] = mapped_column(String(100), primary_key=True)
    source_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    target_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    content_hash: Mapped[str] = mapped_column(String(64))  # hash of what the target holds
    seen_hash: Mapped[str] = mapped_column(String(64), default="")  # hash last staged
    active: Mapped[bool] = mapped_column(default=True)
    last_synced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class CursorRow(Base):
    """Where a stream stands; written in the same transaction as the records it covers."""

    __tablename__ = "mlc_cursors"
    flow: Mapped[str] = mapped_column(String(100), primary_key=True)
    stream: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class OutboxRow(Base):
    """A write to a target, stored with its deterministic key before any call.

    state: pending → in_flight → posted | failed | uncertain | parked
    """

    __tablename__ = "mlc_outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    flow: Mapped[str] = mapped_column(String(100))
    stream: Mapped[str] = mapped_column(String(100))
    source_key: Mapped[str] = mapped_column(String(200))
    run_id: Mapped[str] = mapped_column(String(300))
    batch: Mapped[int] = mapped_column(Integer, default=0)
    op: Mapped[str] = mapped_column(String(20))  # create | update | deactivate | reactivate | post
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    content_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(20), default="pending")
    target_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    parked_on: Mapped[str | None] = mapped_column(String(300), nullable=True)  # mapping key waited for
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    __table_args__ = (
        UniqueConstraint("idempotency_key", name="uq_mlc_outbox_idempotency_key"),
        Index("ix_mlc_outbox_state", "flow", "stream", "state"),
        Index("ix_mlc_outbox_run", "run_id", "batch"),
        # Staging a page supersedes older open writes of its source keys: found by key, not
        # by scanning every open entry of the stream for each chunk of keys.
        Index("ix_mlc_outbox_source", "flow", "stream", "source_key"),
    )


class MappingRow(Base):
    """Mapping tables: (flow, table, source value) → target value."""

    __tablename__ = "mlc_mappings"
    flow: Mapped[str] = mapped_column(String(100), primary_key=True)
    table: Mapped[str] = mapped_column(String(100), primary_key=True)
    source_value: Mapped[str] = mapped_column(String(200), primary_key=True)
    target_value: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class RunRow(Base):
    """One sync run (= one DBOS workflow); counts feed the summary table."""

    __tablename__ = "mlc_runs"
    run_id: Mapped[str] = mapped_column(String(300), primary_key=True)
    flow: Mapped[str] = mapped_column(String(100))
    stream: Mapped[str] = mapped_column(String(100))
    mode: Mapped[str] = mapped_column(String(20))  # full | incremental | dry_run
    status: Mapped[str] = mapped_column(String(20), default="running")
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (Index("ix_mlc_runs_flow", "flow", "stream", "started_at"),)

    #: the statuses of a run that has ended (`waiting`: its source could not read for a reason that
    #: mends by itself, e.g. no token to be had; the next run reads again)
    ENDED: ClassVar[tuple[str, ...]] = ("succeeded", "failed", "waiting")


class AuditRow(Base):
    """Append-only audit trail: what moved, from where to where, when, the outcome."""

    __tablename__ = "mlc_audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    event: Mapped[str] = mapped_column(String(60))  # e.g. record.created, token.refreshed, run.finished
    flow: Mapped[str | None] = mapped_column(String(100), nullable=True)
    stream: Mapped[str | None] = mapped_column(String(100), nullable=True)
    run_id: Mapped[str | None] = mapped_column(String(300), nullable=True)
    source: Mapped[str | None] = mapped_column(String(300), nullable=True)  # system:key
    target: Mapped[str | None] = mapped_column(String(300), nullable=True)  # system:id
    outcome: Mapped[str] = mapped_column(String(20))  # ok | failed | uncertain | parked | skipped
    request_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    response_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (Index("ix_mlc_audit_run", "run_id"), Index("ix_mlc_audit_source", "source"))


class WorkerRow(Base):
    """Live workers (Postgres scale-out): a heartbeat per executor, so that the
    workflows of a worker that died for good are taken over by the others."""

    __tablename__ = "mlc_workers"
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    host: Mapped[str] = mapped_column(String(200), default="")
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RateGrantRow(Base):
    """A slot granted from a shared rate budget (Postgres scale-out, core/ratelimit.py): it
    counts against the budget's rolling window until `until` (grant time + period)."""

    __tablename__ = "mlc_rate_grants"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
                                    autoincrement=True)
    budget: Mapped[str] = mapped_column(String(300))  # provider|key
    until: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_mlc_rate_grants_budget_until", "budget", "until"),)


class RateBudgetRow(Base):
    """A shared budget's limit and period (Postgres scale-out), recorded by each process that uses it:
    with `mlc_rate_grants` it tells any process how much of the budget is used (migration 0016)."""

    __tablename__ = "mlc_rate_budgets"
    budget: Mapped[str] = mapped_column(String(300), primary_key=True)  # provider|key
    limit: Mapped[int] = mapped_column(Integer)
    period: Mapped[float] = mapped_column(Float)
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RateHoldRow(Base):
    """A shared budget held back after a 429, for every process, until `hold_until`."""

    __tablename__ = "mlc_rate_holds"
    budget: Mapped[str] = mapped_column(String(300), primary_key=True)
    hold_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AlertThrottleRow(Base):
    """When an alert for (event, subject) was last let through (core/alerts.py): shared by
    every control-plane process, so that a flapping agent alerts once per interval in all."""

    __tablename__ = "mlc_alert_throttle"
    key: Mapped[str] = mapped_column(String(400), primary_key=True)  # event|subject
    last_at: Mapped[float] = mapped_column(Float)
    suppressed: Mapped[int] = mapped_column(Integer, default=0)


class FlowStateRow(Base):
    """A flow paused after repeated failed runs (core/flow_pause.py), until `ml-connector resume`
    (migration 0015_flow_state)."""

    __tablename__ = "mlc_flow_state"
    flow: Mapped[str] = mapped_column(String(100), primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    paused_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    resumed_at: Mapped[float | None] = mapped_column(Float, nullable=True)  # failed runs count from here


class AlertOutboxRow(Base):
    """An alert to deliver to one webhook (core/alerts.py), written in the transaction that made the
    transition it reports, so that a process killed before the delivery loses nothing: pending →
    sent | failed. Holds no secret: the webhook is its index in the configuration and its URL and
    header are resolved from the vault at send time."""

    __tablename__ = "mlc_alert_outbox"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # alert_id:hook
    alert_id: Mapped[str] = mapped_column(String(32))  # the same for every webhook: receivers dedupe on it
    hook: Mapped[int] = mapped_column(Integer)  # index into the configured webhooks
    event: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(400))
    alert: Mapped[str] = mapped_column(Text)  # the Alert's fields as JSON
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # sends made (a crash mid-send counts none)
    next_attempt_at: Mapped[float] = mapped_column(Float)
    claimed_until: Mapped[float | None] = mapped_column(Float, nullable=True)  # a sender's lease
    created_at: Mapped[float] = mapped_column(Float)
    done_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(300), nullable=True)

    __table_args__ = (Index("ix_mlc_alert_outbox_state_next", "state", "next_attempt_at"),)
