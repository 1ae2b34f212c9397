"""connect sessions: a browser's trip to a provider's authorize page and back

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 22:43:52.660281

One row per connect session (models/connect.py): who started it, for which organization, type
and (for a reconnect) account, where the browser goes back to, and how it ended. `used_at` is
stamped by the one callback that may go on, which makes the session's state single use.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base
from sqlalchemy.dialects import postgresql

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('connect_sessions',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.String(length=100), nullable=False),
    sa.Column('actor', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('type', sa.String(length=20), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('account_id', sa.Uuid(), nullable=True),
    sa.Column('shop_domain', sa.String(length=255), nullable=True),
    sa.Column('return_url', sa.Text(), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('reason', sa.String(length=50), nullable=True),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('job_id', sa.String(length=155), nullable=True),
    sa.Column('account', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('expires_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_connect_sessions'))
    )
    with op.batch_alter_table('connect_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_connect_sessions_org_id'), ['org_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('connect_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_connect_sessions_org_id'))
    op.drop_table('connect_sessions')
