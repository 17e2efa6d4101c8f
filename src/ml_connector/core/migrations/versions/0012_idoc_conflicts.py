"""IDoc conflicts: a DOCNUM re-sent with different content is kept for operators

Revision ID: 0012_idoc_conflicts
Revises: 0011_outbox_source_index
"""
import sqlalchemy as sa
from alembic import op

revision = '0012_idoc_conflicts'
down_revision = '0011_outbox_source_index'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'mlc_idoc_conflicts',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('docnum', sa.String(length=16), nullable=False),
        sa.Column('sndprn', sa.String(length=10), nullable=False),
        sa.Column('mestyp', sa.String(length=30), nullable=False),
        sa.Column('idoctyp', sa.String(length=30), nullable=False),
        sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('stored_digest', sa.String(length=64), nullable=False),
        sa.Column('new_digest', sa.String(length=64), nullable=False),
        sa.Column('raw', sa.LargeBinary(), nullable=False),
        sa.Column('parsed', sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_mlc_idoc_conflicts')),
    )
    with op.batch_alter_table('mlc_idoc_conflicts', schema=None) as batch_op:
        batch_op.create_index('ix_mlc_idoc_conflicts_docnum', ['docnum'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('mlc_idoc_conflicts', schema=None) as batch_op:
        batch_op.drop_index('ix_mlc_idoc_conflicts_docnum')
    op.drop_table('mlc_idoc_conflicts')
