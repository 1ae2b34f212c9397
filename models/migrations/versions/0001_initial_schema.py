"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-22 04:34:59.209382
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base
from sqlalchemy.dialects import postgresql

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('accounts',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.String(length=100), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('type', sa.String(length=20), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('connection', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=False),
    sa.Column('metadata', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=False),
    sa.Column('settings', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=False),
    sa.Column('credentials', sa.LargeBinary(), nullable=False),
    sa.Column('credentials_version', sa.Integer(), nullable=False),
    sa.Column('credentials_expire_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_checked_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('next_check_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('consecutive_failures', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_accounts'))
    )
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.create_index('ix_accounts_due', ['next_check_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_accounts_org_id'), ['org_id'], unique=False)

    op.create_table('inbound_events',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('provider', sa.String(length=20), nullable=False),
    sa.Column('provider_event_id', sa.String(length=255), nullable=False),
    sa.Column('topic', sa.String(length=255), nullable=False),
    sa.Column('route_key', sa.String(length=255), nullable=True),
    sa.Column('account_id', sa.Uuid(), nullable=True),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=False),
    sa.Column('occurred_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('received_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('processed_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inbound_events')),
    sa.UniqueConstraint('provider', 'provider_event_id', name='uq_inbound_events_provider_id')
    )
    with op.batch_alter_table('inbound_events', schema=None) as batch_op:
        batch_op.create_index('ix_inbound_events_pending', ['received_at'], unique=False, postgresql_where=sa.text("status = 'received'"), sqlite_where=sa.text("status = 'received'"))

    op.create_table('jobs',
    sa.Column('id', sa.String(length=155), nullable=False),
    sa.Column('name', sa.String(length=50), nullable=False),
    sa.Column('request_id', sa.String(length=200), nullable=True),
    sa.Column('org_id', sa.String(length=100), nullable=True),
    sa.Column('account_id', sa.Uuid(), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('result', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=True),
    sa.Column('duplicate_of', sa.String(length=155), nullable=True),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs')),
    sa.UniqueConstraint('name', 'request_id', name='uq_jobs_name_request_id')
    )
    op.create_table('outbox_events',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('type', sa.String(length=50), nullable=False),
    sa.Column('org_id', sa.String(length=100), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=True),
    sa.Column('occurred_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('data', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=False),
    sa.Column('published_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_outbox_events')),
    sa.UniqueConstraint('id', name=op.f('uq_outbox_events_id'))
    )
    with op.batch_alter_table('outbox_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outbox_events_account_id'), ['account_id'], unique=False)
        batch_op.create_index('ix_outbox_events_unpublished', ['seq'], unique=False, postgresql_where=sa.text('published_at IS NULL'), sqlite_where=sa.text('published_at IS NULL'))

    op.create_table('provider_incidents',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('provider', sa.String(length=20), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('started_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ended_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('failed_checks', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_provider_incidents'))
    )
    with op.batch_alter_table('provider_incidents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_provider_incidents_provider'), ['provider'], unique=False)

    op.create_table('stream_offsets',
    sa.Column('stream', sa.String(length=50), nullable=False),
    sa.Column('topic', sa.String(length=100), nullable=False),
    sa.Column('offset', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('stream', 'topic', name=op.f('pk_stream_offsets'))
    )
    op.create_table('account_errors',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('code', sa.String(length=40), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('source', sa.String(length=10), nullable=False),
    sa.Column('first_occurred_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_occurred_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('occurrences', sa.Integer(), nullable=False),
    sa.Column('resolved_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_account_errors_account_id_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_account_errors'))
    )
    with op.batch_alter_table('account_errors', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_account_errors_account_id'), ['account_id'], unique=False)
        batch_op.create_index('uq_account_errors_open', ['account_id', 'code'], unique=True, postgresql_where=sa.text('resolved_at IS NULL'), sqlite_where=sa.text('resolved_at IS NULL'))

    op.create_table('integration_refs',
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('integration_id', sa.String(length=100), nullable=False),
    sa.Column('org_id', sa.String(length=100), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_integration_refs_account_id_accounts'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('account_id', 'integration_id', name=op.f('pk_integration_refs'))
    )
    op.create_table('status_changes',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('from_status', sa.String(length=20), nullable=True),
    sa.Column('to_status', sa.String(length=20), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('source', sa.String(length=10), nullable=False),
    sa.Column('actor', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=True),
    sa.Column('occurred_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_status_changes_account_id_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_status_changes'))
    )
    with op.batch_alter_table('status_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_status_changes_account_id'), ['account_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('status_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_status_changes_account_id'))

    op.drop_table('status_changes')
    op.drop_table('integration_refs')
    with op.batch_alter_table('account_errors', schema=None) as batch_op:
        batch_op.drop_index('uq_account_errors_open', postgresql_where=sa.text('resolved_at IS NULL'), sqlite_where=sa.text('resolved_at IS NULL'))
        batch_op.drop_index(batch_op.f('ix_account_errors_account_id'))

    op.drop_table('account_errors')
    op.drop_table('stream_offsets')
    with op.batch_alter_table('provider_incidents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_provider_incidents_provider'))

    op.drop_table('provider_incidents')
    with op.batch_alter_table('outbox_events', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_events_unpublished', postgresql_where=sa.text('published_at IS NULL'), sqlite_where=sa.text('published_at IS NULL'))
        batch_op.drop_index(batch_op.f('ix_outbox_events_account_id'))

    op.drop_table('outbox_events')
    op.drop_table('jobs')
    with op.batch_alter_table('inbound_events', schema=None) as batch_op:
        batch_op.drop_index('ix_inbound_events_pending', postgresql_where=sa.text("status = 'received'"), sqlite_where=sa.text("status = 'received'"))

    op.drop_table('inbound_events')
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_accounts_org_id'))
        batch_op.drop_index('ix_accounts_due')

    op.drop_table('accounts')
