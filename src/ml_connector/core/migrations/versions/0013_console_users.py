"""console users, their sessions, a role for every operator API token, open alert conditions

Revision ID: 0013_console_users
Revises: 0012_idoc_conflicts
"""
import sqlalchemy as sa
from alembic import op

revision = '0013_console_users'
down_revision = '0012_idoc_conflicts'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mlc_users",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("disabled_at", sa.Float(), nullable=True),
        sa.Column("last_login_at", sa.Float(), nullable=True),
        sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("locked_until", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mlc_users")),
        sa.UniqueConstraint("username", name="uq_mlc_users_username"),
    )
    op.create_table(
        "mlc_console_sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_mlc_console_sessions")),
    )
    op.create_index("ix_mlc_console_sessions_user", "mlc_console_sessions", ["user_id"])
    op.create_table(
        "mlc_alert_conditions",
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("opened_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_mlc_alert_conditions")),
    )
    # Tokens created before roles existed could do everything: they stay admin.
    with op.batch_alter_table("mlc_api_tokens") as batch_op:
        batch_op.add_column(sa.Column("role", sa.String(length=20), nullable=False, server_default="admin"))


def downgrade() -> None:
    with op.batch_alter_table("mlc_api_tokens") as batch_op:
        batch_op.drop_column("role")
    op.drop_table("mlc_alert_conditions")
    op.drop_index("ix_mlc_console_sessions_user", table_name="mlc_console_sessions")
    op.drop_table("mlc_console_sessions")
    op.drop_table("mlc_users")
