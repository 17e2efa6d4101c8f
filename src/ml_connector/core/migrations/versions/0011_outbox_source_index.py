"""outbox: index on (flow, stream, source_key) for superseding older writes of a page's records

Revision ID: 0011_outbox_source_index
Revises: 0010_alert_outbox
"""
from alembic import op

revision = '0011_outbox_source_index'
down_revision = '0010_alert_outbox'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_mlc_outbox_source", "mlc_outbox", ["flow", "stream", "source_key"])


def downgrade() -> None:
    op.drop_index("ix_mlc_outbox_source", table_name="mlc_outbox")
