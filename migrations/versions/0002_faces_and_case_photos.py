"""cases photos, faces, match candidates, flyer files

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 07:23:33.910157
"""
from alembic import op
import sqlalchemy as sa
from pgvector.sqlalchemy import Vector


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _embedding_type():
    # pgvector on PostgreSQL (searched through HNSW), float32 bytes on SQLite (searched in process)
    return Vector(512) if _postgres() else sa.LargeBinary()


def upgrade() -> None:
    if _postgres():
        op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.create_table('case_photos',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('age_years', sa.Float(), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('is_primary', sa.Boolean(), nullable=False),
    sa.Column('face_status', sa.String(length=10), nullable=False),
    sa.Column('added_by', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('case_photos', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_case_photos_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_case_photos_face_status'), ['face_status'], unique=False)

    op.create_table('flyer_files',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('language', sa.String(length=4), nullable=False),
    sa.Column('design', sa.String(length=16), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('telegram_file_id', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('case_id', 'language', 'design', name='uq_flyer_case_lang_design')
    )
    with op.batch_alter_table('flyer_files', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_flyer_files_case_id'), ['case_id'], unique=False)

    op.create_table('faces',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_photo_id', sa.Integer(), nullable=True),
    sa.Column('tip_media_id', sa.Integer(), nullable=True),
    sa.Column('case_id', sa.Integer(), nullable=True),
    sa.Column('x1', sa.Float(), nullable=False),
    sa.Column('y1', sa.Float(), nullable=False),
    sa.Column('x2', sa.Float(), nullable=False),
    sa.Column('y2', sa.Float(), nullable=False),
    sa.Column('det_score', sa.Float(), nullable=False),
    sa.Column('embedding', _embedding_type(), nullable=False),
    sa.Column('model_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['case_photo_id'], ['case_photos.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tip_media_id'], ['tip_media.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('faces', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_faces_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_faces_case_photo_id'), ['case_photo_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_faces_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_faces_tip_media_id'), ['tip_media_id'], unique=False)

    op.create_table('match_candidates',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tip_id', sa.Integer(), nullable=False),
    sa.Column('tip_face_id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('case_face_id', sa.Integer(), nullable=True),
    sa.Column('similarity', sa.Float(), nullable=False),
    sa.Column('rank', sa.SmallInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reviewer_id', sa.BigInteger(), nullable=True),
    sa.Column('reviewed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['case_face_id'], ['faces.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tip_face_id'], ['faces.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tip_id'], ['tips.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tip_face_id', 'case_id', name='uq_match_tip_face_case')
    )
    with op.batch_alter_table('match_candidates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_match_candidates_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_match_candidates_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_match_candidates_tip_id'), ['tip_id'], unique=False)

    with op.batch_alter_table('tip_media', schema=None) as batch_op:
        batch_op.add_column(sa.Column('face_status', sa.String(length=10), server_default='pending', nullable=False))
        batch_op.create_index(batch_op.f('ix_tip_media_face_status'), ['face_status'], unique=False)
    if _postgres():
        # reference faces (of cases) and tip faces are searched separately: one partial index each
        op.execute("CREATE INDEX ix_faces_case_embedding ON faces USING hnsw (embedding vector_cosine_ops) "
                   "WHERE case_id IS NOT NULL")
        op.execute("CREATE INDEX ix_faces_tip_embedding ON faces USING hnsw (embedding vector_cosine_ops) "
                   "WHERE tip_media_id IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table('tip_media', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tip_media_face_status'))
        batch_op.drop_column('face_status')

    with op.batch_alter_table('match_candidates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_match_candidates_tip_id'))
        batch_op.drop_index(batch_op.f('ix_match_candidates_status'))
        batch_op.drop_index(batch_op.f('ix_match_candidates_case_id'))

    op.drop_table('match_candidates')
    with op.batch_alter_table('faces', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_faces_tip_media_id'))
        batch_op.drop_index(batch_op.f('ix_faces_created_at'))
        batch_op.drop_index(batch_op.f('ix_faces_case_photo_id'))
        batch_op.drop_index(batch_op.f('ix_faces_case_id'))

    op.drop_table('faces')
    with op.batch_alter_table('flyer_files', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_flyer_files_case_id'))

    op.drop_table('flyer_files')
    with op.batch_alter_table('case_photos', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_case_photos_face_status'))
        batch_op.drop_index(batch_op.f('ix_case_photos_case_id'))

    op.drop_table('case_photos')
