"""rate budget limits: each shared budget's limit and period, recorded by the processes that use it,
so that any process (the console, the alert sweep) can tell how much of it is used

Revision ID: 0016_rate_budget_limits
Revises: 0015_flow_state
"""
import sqlalchemy as sa
from alembic import op

revision = '0016_rate_budget_limits'
down_revision = '0015_flow_state'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mlc_rate_budgets",
        sa.Column("budget", sa.String(length=300), nullable=False),
        sa.Column("limit", sa.Integer(), nullable=False),
        sa.Column("period", sa.Float(), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("budget", name=op.f("pk_mlc_rate_budgets")),
    )


def downgrade() -> None:
    op.drop_table("mlc_rate_budgets")
