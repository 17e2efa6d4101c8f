"""Procore webhook events received by the control plane (deduplicated by the event's ulid)

Revision ID: 0014_procore_webhook_events
Revises: 0013_console_users
"""
import sqlalchemy as sa
from alembic import op

revision = '0014_procore_webhook_events'
down_revision = '0013_console_users'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mlc_procore_webhook_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("connection", sa.String(length=100), nullable=False),
        sa.Column("event_key", sa.String(length=64), nullable=False),
        sa.Column("resource_name", sa.String(length=100), nullable=False),
        sa.Column("event_type", sa.String(length=30), nullable=False),
        sa.Column("resource_id", sa.String(length=40), nullable=True),
        sa.Column("project_id", sa.String(length=40), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_ids", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mlc_procore_webhook_events")),
        sa.UniqueConstraint("connection", "event_key", name="uq_mlc_procore_webhook_events_key"),
    )


def downgrade() -> None:
    op.drop_table("mlc_procore_webhook_events")
