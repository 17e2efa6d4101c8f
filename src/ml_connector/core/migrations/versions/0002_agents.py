"""remote agent: agents, pairing tokens, nonces, calls

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

# The tables of server/agents/models.py (core imports nothing above it; import that module to autogenerate).

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'mlc_agents',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('site', sa.String(length=100), nullable=False),
        sa.Column('hostname', sa.String(length=200), nullable=False),
        sa.Column('version', sa.String(length=50), nullable=False),
        sa.Column('public_key', sa.String(length=100), nullable=False),
        sa.Column('state', sa.String(length=20), nullable=False),
        sa.Column('created_at', sa.Float(), nullable=False),
        sa.Column('last_seen_at', sa.Float(), nullable=True),
        sa.Column('revoked_at', sa.Float(), nullable=True),
        sa.Column('last_skew', sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_mlc_agents')),
    )
    op.create_table(
        'mlc_agent_pairing_tokens',
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('site', sa.String(length=100), nullable=False),
        sa.Column('created_at', sa.Float(), nullable=False),
        sa.Column('expires_at', sa.Float(), nullable=False),
        sa.Column('used_at', sa.Float(), nullable=True),
        sa.Column('agent_id', sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint('token_hash', name=op.f('pk_mlc_agent_pairing_tokens')),
    )
    op.create_table(
        'mlc_agent_nonces',
        sa.Column('agent_id', sa.String(length=64), nullable=False),
        sa.Column('nonce', sa.String(length=64), nullable=False),
        sa.Column('expires_at', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('agent_id', 'nonce', name=op.f('pk_mlc_agent_nonces')),
    )
    op.create_index('ix_mlc_agent_nonces_expires_at', 'mlc_agent_nonces', ['expires_at'], unique=False)
    op.create_table(
        'mlc_agent_calls',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('site', sa.String(length=100), nullable=False),
        sa.Column('system', sa.String(length=100), nullable=False),
        sa.Column('function', sa.String(length=200), nullable=False),
        sa.Column('params', sa.JSON(), nullable=False),
        sa.Column('idempotent', sa.Boolean(), nullable=False),
        sa.Column('state', sa.String(length=20), nullable=False),
        sa.Column('agent_id', sa.String(length=64), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.Float(), nullable=False),
        sa.Column('claimed_at', sa.Float(), nullable=True),
        sa.Column('lease_expires_at', sa.Float(), nullable=True),
        sa.Column('completed_at', sa.Float(), nullable=True),
        sa.Column('ok', sa.Boolean(), nullable=True),
        sa.Column('response', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_mlc_agent_calls')),
    )
    op.create_index('ix_mlc_agent_calls_queue', 'mlc_agent_calls', ['site', 'state', 'created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_mlc_agent_calls_queue', table_name='mlc_agent_calls')
    op.drop_table('mlc_agent_calls')
    op.drop_index('ix_mlc_agent_nonces_expires_at', table_name='mlc_agent_nonces')
    op.drop_table('mlc_agent_nonces')
    op.drop_table('mlc_agent_pairing_tokens')
    op.drop_table('mlc_agents')
