"""flow state: a flow paused after repeated failed runs (core/flow_pause.py)

Revision ID: 0015_flow_state
Revises: 0014_procore_webhook_events
"""
import sqlalchemy as sa
from alembic import op

revision = '0015_flow_state'
down_revision = '0014_procore_webhook_events'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mlc_flow_state",
        sa.Column("flow", sa.String(length=100), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("paused_at", sa.Float(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("resumed_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("flow", name=op.f("pk_mlc_flow_state")),
    )


def downgrade() -> None:
    op.drop_table("mlc_flow_state")
