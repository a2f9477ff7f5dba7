"""tip line: users, tips, media, cases, audit, conversation state, inbox, outbox

Revision ID: 0001
Revises: 
Create Date: 2026-11-27 06:48:29.413267
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('actor_id', sa.BigInteger(), nullable=True),
    sa.Column('action', sa.String(length=40), nullable=False),
    sa.Column('object_ref', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_events_created_at'), ['created_at'], unique=False)

    op.create_table('conversation_state',
    sa.Column('user_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('flow', sa.String(length=32), nullable=False),
    sa.Column('step', sa.String(length=32), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('user_id')
    )
    op.create_table('inbox',
    sa.Column('update_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('user_key', sa.BigInteger(), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.SmallInteger(), nullable=False),
    sa.Column('error', sa.String(length=200), nullable=True),
    sa.PrimaryKeyConstraint('update_id')
    )
    with op.batch_alter_table('inbox', schema=None) as batch_op:
        batch_op.create_index('ix_inbox_unprocessed', ['processed_at', 'update_id'], unique=False)

    op.create_table('users',
    sa.Column('id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('language', sa.String(length=8), nullable=False),
    sa.Column('language_chosen', sa.Boolean(), nullable=False),
    sa.Column('blocked_bot', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('cases',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=12), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('other_names', sa.Text(), nullable=True),
    sa.Column('sex', sa.String(length=8), nullable=True),
    sa.Column('date_of_birth', sa.Date(), nullable=True),
    sa.Column('birth_year', sa.SmallInteger(), nullable=True),
    sa.Column('age_when_missing', sa.Float(), nullable=True),
    sa.Column('missing_since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('missing_since_has_time', sa.Boolean(), nullable=False),
    sa.Column('last_seen_place', sa.Text(), nullable=True),
    sa.Column('last_seen_lat', sa.Float(), nullable=True),
    sa.Column('last_seen_lon', sa.Float(), nullable=True),
    sa.Column('height_cm', sa.SmallInteger(), nullable=True),
    sa.Column('build', sa.Text(), nullable=True),
    sa.Column('hair', sa.Text(), nullable=True),
    sa.Column('eyes', sa.Text(), nullable=True),
    sa.Column('distinguishing_marks', sa.Text(), nullable=True),
    sa.Column('clothing', sa.Text(), nullable=True),
    sa.Column('circumstances', sa.Text(), nullable=True),
    sa.Column('agency_name', sa.Text(), nullable=True),
    sa.Column('agency_phone', sa.String(length=64), nullable=True),
    sa.Column('agency_reference', sa.Text(), nullable=True),
    sa.Column('family_contact', sa.Text(), nullable=True),
    sa.Column('family_contact_public', sa.Boolean(), nullable=False),
    sa.Column('language', sa.String(length=8), nullable=False),
    sa.Column('external_id', sa.String(length=128), nullable=True),
    sa.Column('reported_by', sa.BigInteger(), nullable=True),
    sa.Column('verified_by', sa.BigInteger(), nullable=True),
    sa.Column('deep_link_token', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['reported_by'], ['users.id'], ),
    sa.ForeignKeyConstraint(['verified_by'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code'),
    sa.UniqueConstraint('deep_link_token'),
    sa.UniqueConstraint('external_id')
    )
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cases_status'), ['status'], unique=False)

    op.create_table('tips',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('reference', sa.String(length=12), nullable=False),
    sa.Column('alias', sa.String(length=40), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=True),
    sa.Column('tipster_id', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_message_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_team_reply_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], ),
    sa.ForeignKeyConstraint(['tipster_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('reference')
    )
    with op.batch_alter_table('tips', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tips_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_tips_created_at'), ['created_at'], unique=False)
        batch_op.create_index('ix_tips_tipster_last', ['tipster_id', 'last_message_at'], unique=False)

    op.create_table('outbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('chat_id', sa.BigInteger(), nullable=False),
    sa.Column('method', sa.String(length=32), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('digest_line', sa.Text(), nullable=True),
    sa.Column('priority', sa.SmallInteger(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('attempts', sa.SmallInteger(), nullable=False),
    sa.Column('not_before', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('message_id', sa.BigInteger(), nullable=True),
    sa.Column('tip_id', sa.Integer(), nullable=True),
    sa.Column('error', sa.String(length=200), nullable=True),
    sa.ForeignKeyConstraint(['tip_id'], ['tips.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_chat_message', ['chat_id', 'message_id'], unique=False)
        batch_op.create_index('ix_outbox_pending', ['status', 'priority', 'id'], unique=False)

    op.create_table('tip_entries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tip_id', sa.Integer(), nullable=False),
    sa.Column('author', sa.String(length=8), nullable=False),
    sa.Column('kind', sa.String(length=12), nullable=False),
    sa.Column('text', sa.Text(), nullable=True),
    sa.Column('latitude', sa.Float(), nullable=True),
    sa.Column('longitude', sa.Float(), nullable=True),
    sa.Column('media_group_id', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tip_id'], ['tips.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('tip_entries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tip_entries_tip_id'), ['tip_id'], unique=False)

    op.create_table('tip_media',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tip_id', sa.Integer(), nullable=False),
    sa.Column('entry_id', sa.Integer(), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('taken_at', sa.String(length=32), nullable=True),
    sa.Column('gps_lat', sa.Float(), nullable=True),
    sa.Column('gps_lon', sa.Float(), nullable=True),
    sa.Column('upload_file_id', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['entry_id'], ['tip_entries.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tip_id'], ['tips.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('tip_media', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tip_media_sha256'), ['sha256'], unique=False)
        batch_op.create_index(batch_op.f('ix_tip_media_tip_id'), ['tip_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('tip_media', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tip_media_tip_id'))
        batch_op.drop_index(batch_op.f('ix_tip_media_sha256'))

    op.drop_table('tip_media')
    with op.batch_alter_table('tip_entries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tip_entries_tip_id'))

    op.drop_table('tip_entries')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_pending')
        batch_op.drop_index('ix_outbox_chat_message')

    op.drop_table('outbox')
    with op.batch_alter_table('tips', schema=None) as batch_op:
        batch_op.drop_index('ix_tips_tipster_last')
        batch_op.drop_index(batch_op.f('ix_tips_created_at'))
        batch_op.drop_index(batch_op.f('ix_tips_case_id'))

    op.drop_table('tips')
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cases_status'))

    op.drop_table('cases')
    op.drop_table('users')
    with op.batch_alter_table('inbox', schema=None) as batch_op:
        batch_op.drop_index('ix_inbox_unprocessed')

    op.drop_table('inbox')
    op.drop_table('conversation_state')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_events_created_at'))

    op.drop_table('audit_events')
