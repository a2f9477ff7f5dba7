"""case_changes: a family's change to a public case, waiting for a coordinator

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-05 08:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('case_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('requested_by', sa.BigInteger(), nullable=False),
    sa.Column('field', sa.String(length=32), nullable=False),
    sa.Column('proposed', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('reviewed_by', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reviewed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('case_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_case_changes_case_id'), ['case_id'], unique=False)
        batch_op.create_index('ix_case_changes_status_id', ['status', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('case_changes', schema=None) as batch_op:
        batch_op.drop_index('ix_case_changes_status_id')
        batch_op.drop_index(batch_op.f('ix_case_changes_case_id'))
    op.drop_table('case_changes')
