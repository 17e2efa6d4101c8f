"""agent calls remember which agent process (instance) claimed them

Revision ID: 0007_agent_claim_instance
Revises: 0006_api_tokens
"""
import sqlalchemy as sa
from alembic import op

revision = '0007_agent_claim_instance'
down_revision = '0006_api_tokens'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("mlc_agent_calls", sa.Column("claim_instance", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mlc_agent_calls") as batch:
        batch.drop_column("claim_instance")
