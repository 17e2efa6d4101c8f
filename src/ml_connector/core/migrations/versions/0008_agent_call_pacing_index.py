"""index for the control plane's pacing of agent calls (calls answered in the last second)

Revision ID: 0008_agent_call_pacing_index
Revises: 0007_agent_claim_instance
"""
from alembic import op

revision = '0008_agent_call_pacing_index'
down_revision = '0007_agent_claim_instance'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Each paced claim counts a site's calls answered within the last second; without this the
    # count would scan every done call the site ever had.
    op.create_index("ix_mlc_agent_calls_recent", "mlc_agent_calls", ["site", "state", "completed_at"])


def downgrade() -> None:
    op.drop_index("ix_mlc_agent_calls_recent", table_name="mlc_agent_calls")
