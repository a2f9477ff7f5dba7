"""retention: match alerts' composite images tracked with their candidates; files looked up by SHA-256

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 08:20:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("match_candidates") as batch:
        batch.add_column(sa.Column("composite_sha256", sa.String(length=64), nullable=True))
    op.create_index("ix_match_candidates_composite_sha256", "match_candidates", ["composite_sha256"])
    op.create_index("ix_case_photos_sha256", "case_photos", ["sha256"])
    op.create_index("ix_flyer_files_sha256", "flyer_files", ["sha256"])


def downgrade() -> None:
    op.drop_index("ix_flyer_files_sha256", "flyer_files")
    op.drop_index("ix_case_photos_sha256", "case_photos")
    op.drop_index("ix_match_candidates_composite_sha256", "match_candidates")
    with op.batch_alter_table("match_candidates") as batch:
        batch.drop_column("composite_sha256")
