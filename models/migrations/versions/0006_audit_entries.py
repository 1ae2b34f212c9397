"""audit entries: every change to an account and who or what caused it

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-09 10:00:00

Append-only (models/audit.py): no foreign key to the account, which an entry outlives; read by
organization or by account, newest first, hence the two indexes. Nothing prunes it.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base
from sqlalchemy.dialects import postgresql

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table('audit_entries',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('occurred_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('org_id', sa.String(length=100), nullable=True),
    sa.Column('account_id', sa.Uuid(), nullable=True),
    sa.Column('action', sa.String(length=50), nullable=False),
    sa.Column('actor', JSON, nullable=True),
    sa.Column('cause', sa.String(length=20), nullable=False),
    sa.Column('job_id', sa.String(length=155), nullable=True),
    sa.Column('request_id', sa.String(length=200), nullable=True),
    sa.Column('outcome', JSON, nullable=True),
    sa.Column('details', JSON, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_entries'))
    )
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.create_index(
            'ix_audit_entries_org_occurred', ['org_id', 'occurred_at'], unique=False
        )
        batch_op.create_index(
            'ix_audit_entries_account_occurred', ['account_id', 'occurred_at'], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_entries_account_occurred')
        batch_op.drop_index('ix_audit_entries_org_occurred')
    op.drop_table('audit_entries')
