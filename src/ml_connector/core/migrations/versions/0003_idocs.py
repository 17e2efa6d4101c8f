"""received IDocs (mlc_idocs)

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'mlc_idocs',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('docnum', sa.String(length=16), nullable=False),
        sa.Column('mestyp', sa.String(length=30), nullable=False),
        sa.Column('idoctyp', sa.String(length=30), nullable=False),
        sa.Column('cimtyp', sa.String(length=30), nullable=False),
        sa.Column('sndprt', sa.String(length=2), nullable=False),
        sa.Column('sndprn', sa.String(length=10), nullable=False),
        sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('raw', sa.LargeBinary(), nullable=False),
        sa.Column('parsed', sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_mlc_idocs')),
        sa.UniqueConstraint('sndprn', 'docnum', name='uq_mlc_idocs_sndprn_docnum'),
    )
    with op.batch_alter_table('mlc_idocs', schema=None) as batch_op:
        batch_op.create_index('ix_mlc_idocs_docnum', ['docnum'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('mlc_idocs', schema=None) as batch_op:
        batch_op.drop_index('ix_mlc_idocs_docnum')
    op.drop_table('mlc_idocs')
