"""alert outbox: alerts stored in the transaction that raises them, delivered by a loop

Revision ID: 0010_alert_outbox
Revises: 0009_alert_throttle
"""
import sqlalchemy as sa
from alembic import op

revision = '0010_alert_outbox'
down_revision = '0009_alert_throttle'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mlc_alert_outbox",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("alert_id", sa.String(32), nullable=False),
        sa.Column("hook", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(40), nullable=False),
        sa.Column("subject", sa.String(400), nullable=False),
        sa.Column("alert", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=False),
        sa.Column("claimed_until", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("done_at", sa.Float(), nullable=True),
        sa.Column("last_error", sa.String(300), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_mlc_alert_outbox"),
    )
    op.create_index("ix_mlc_alert_outbox_state_next", "mlc_alert_outbox", ["state", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_mlc_alert_outbox_state_next", table_name="mlc_alert_outbox")
    op.drop_table("mlc_alert_outbox")
