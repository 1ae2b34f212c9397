"""event processing: inbox effect and retry time, per-account event marks, routing indexes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 05:10:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Events are routed to accounts by these keys of the JSON columns. Expression indexes are
# PostgreSQL's; the embedded SQLite database is small enough to scan.
ROUTING_INDEXES = {
    "ix_accounts_shop_domain": "(connection ->> 'shop_domain')",
    "ix_accounts_stripe_account": "(connection ->> 'stripe_account_id')",
    "ix_accounts_meta_stripe_account": "(metadata ->> 'stripe_account_id')",
    "ix_accounts_fortnox_tenant": "(metadata ->> 'fortnox_tenant_id')",
}


def upgrade() -> None:
    with op.batch_alter_table('inbound_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('effect', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('next_attempt_at', models.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_inbound_events_attention', ['status', 'received_at'], unique=False, postgresql_where=sa.text("status IN ('unroutable', 'failed')"), sqlite_where=sa.text("status IN ('unroutable', 'failed')"))

    op.create_table('account_event_marks',
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('last_event_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_account_event_marks_account_id_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('account_id', name=op.f('pk_account_event_marks'))
    )

    if op.get_bind().dialect.name == "postgresql":
        for name, expression in ROUTING_INDEXES.items():
            op.execute(f"CREATE INDEX {name} ON accounts ({expression})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in ROUTING_INDEXES:
            op.execute(f"DROP INDEX IF EXISTS {name}")
    op.drop_table('account_event_marks')
    with op.batch_alter_table('inbound_events', schema=None) as batch_op:
        batch_op.drop_index('ix_inbound_events_attention', postgresql_where=sa.text("status IN ('unroutable', 'failed')"), sqlite_where=sa.text("status IN ('unroutable', 'failed')"))
        batch_op.drop_column('next_attempt_at')
        batch_op.drop_column('effect')
