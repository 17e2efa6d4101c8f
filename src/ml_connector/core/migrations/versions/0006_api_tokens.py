"""operator API tokens (hashed) for the control plane's JSON API

Revision ID: 0006_api_tokens
Revises: 0005_rate_budgets
"""
import sqlalchemy as sa
from alembic import op

revision = '0006_api_tokens'
down_revision = '0005_rate_budgets'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mlc_api_tokens",
        sa.Column("id", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("last_used_at", sa.Float(), nullable=True),
        sa.Column("revoked_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mlc_api_tokens")),
    )
    op.create_index("ix_mlc_api_tokens_name", "mlc_api_tokens", ["name"])


def downgrade() -> None:
    op.drop_index("ix_mlc_api_tokens_name", table_name="mlc_api_tokens")
    op.drop_table("mlc_api_tokens")
