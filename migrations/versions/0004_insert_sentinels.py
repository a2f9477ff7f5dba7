"""sentinel columns for batched inserts of tips, tip entries and outbox messages

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 10:25:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

# see bot.db.models.InsertedInBatches
TABLES = ("tips", "tip_entries", "outbox")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("_sentinel", sa.Integer(), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("_sentinel")
