"""normalised face scores: cohort statistics of reference faces, the cohort's faces

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 08:10:00

Reference faces get their cohort mean and spread; on PostgreSQL also ``normalised``, a vector(513)
``[embedding / std, -mean / std]`` whose inner product with ``[probe, 1]`` is the normalised score,
with an HNSW index (vector_ip_ops) that replaces the cosine one on reference faces: a raw-cosine
top-k cannot find a child's photo whose normalised score is high at a cosine thousands of adult
faces beat. Tip faces get a random draw (``cohort_key``): the cohort samples the lowest draws.
Candidates stored before hold cosine similarities, not normalised scores: they are kept as they are.
"""
from alembic import op
import sqlalchemy as sa
from pgvector.sqlalchemy import Vector


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    with op.batch_alter_table('faces') as batch:
        batch.add_column(sa.Column('cohort_mean', sa.Float(), nullable=True))
        batch.add_column(sa.Column('cohort_std', sa.Float(), nullable=True))
        batch.add_column(sa.Column('cohort_size', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('normalised', Vector(513) if _postgres() else sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column('cohort_key', sa.Float(), nullable=True))
    # tip faces stored before: their draws, so they can join the cohort too
    draw = "random()" if _postgres() else "(abs(random()) % 1000000000) / 1000000000.0"
    op.execute(f"UPDATE faces SET cohort_key = {draw} WHERE tip_media_id IS NOT NULL")
    op.create_index('ix_faces_cohort_key', 'faces', ['cohort_key'],
                    sqlite_where=sa.text('tip_media_id IS NOT NULL'),
                    postgresql_where=sa.text('tip_media_id IS NOT NULL'))
    op.create_table('cohort_faces',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('embedding', Vector(512) if _postgres() else sa.LargeBinary(), nullable=False),
    sa.Column('model_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_cohort_faces_model_id'), 'cohort_faces', ['model_id'])
    if _postgres():
        op.execute("DROP INDEX IF EXISTS ix_faces_case_embedding")
        op.execute("CREATE INDEX ix_faces_case_normalised ON faces USING hnsw (normalised vector_ip_ops) "
                   "WHERE case_id IS NOT NULL")


def downgrade() -> None:
    if _postgres():
        op.execute("DROP INDEX IF EXISTS ix_faces_case_normalised")
        op.execute("CREATE INDEX ix_faces_case_embedding ON faces USING hnsw (embedding vector_cosine_ops) "
                   "WHERE case_id IS NOT NULL")
    op.drop_index(op.f('ix_cohort_faces_model_id'), table_name='cohort_faces')
    op.drop_table('cohort_faces')
    op.drop_index('ix_faces_cohort_key', table_name='faces')
    with op.batch_alter_table('faces') as batch:
        batch.drop_column('cohort_key')
        batch.drop_column('normalised')
        batch.drop_column('cohort_size')
        batch.drop_column('cohort_std')
        batch.drop_column('cohort_mean')
