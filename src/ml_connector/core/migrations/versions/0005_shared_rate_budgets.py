"""rate budgets shared by the worker processes of one Postgres database

Revision ID: 0005_rate_budgets
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = '0005_rate_budgets'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Created on SQLite too (one schema for both); only Postgres runs use them.
    op.create_table(
        "mlc_rate_grants",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True,
                  nullable=False),
        sa.Column("budget", sa.String(length=300), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mlc_rate_grants")),
    )
    op.create_index("ix_mlc_rate_grants_budget_until", "mlc_rate_grants", ["budget", "until"])
    op.create_table(
        "mlc_rate_holds",
        sa.Column("budget", sa.String(length=300), nullable=False),
        sa.Column("hold_until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("budget", name=op.f("pk_mlc_rate_holds")),
    )


def downgrade() -> None:
    op.drop_table("mlc_rate_holds")
    op.drop_index("ix_mlc_rate_grants_budget_until", table_name="mlc_rate_grants")
    op.drop_table("mlc_rate_grants")
