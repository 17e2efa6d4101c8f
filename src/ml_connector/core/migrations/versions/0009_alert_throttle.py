"""alert throttle: when an alert for (event, subject) was last sent, shared by all processes

Revision ID: 0009_alert_throttle
Revises: 0008_agent_call_pacing_index
"""
import sqlalchemy as sa
from alembic import op

revision = '0009_alert_throttle'
down_revision = '0008_agent_call_pacing_index'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mlc_alert_throttle",
        sa.Column("key", sa.String(400), nullable=False),
        sa.Column("last_at", sa.Float(), nullable=False),
        sa.Column("suppressed", sa.Integer(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("key", name="pk_mlc_alert_throttle"),
    )


def downgrade() -> None:
    op.drop_table("mlc_alert_throttle")
