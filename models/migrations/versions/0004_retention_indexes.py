"""retention: the indexes the pruning walks, and when an inbox event was last attempted

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 23:00:00

Each prune batch is a range scan of one of these partial indexes, oldest first. Unroutable and
failed events are kept for INBOX_RETENTION after their last attempt, which nothing recorded
before: `last_attempt_at` is stamped with each delivery counted. The rows already unroutable or
failed get the upgrade's time, so each is kept a full window from now.

On PostgreSQL the indexes are built CONCURRENTLY, outside the migration's transaction: a plain
CREATE INDEX on a large inbox would hold off the ingest's inserts for the whole build.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base
from models.clock import utc_now

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# name: (table, column, partial-index predicate)
INDEXES = {
    "ix_inbound_events_processed": ("inbound_events", "processed_at", "status = 'processed'"),
    "ix_inbound_events_attention_attempt": (
        "inbound_events", "last_attempt_at", "status IN ('unroutable', 'failed')"
    ),
    "ix_outbox_events_published": ("outbox_events", "published_at", "published_at IS NOT NULL"),
    "ix_jobs_finished": ("jobs", "finished_at", "finished_at IS NOT NULL"),
}


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        # Adding a column takes the table's strongest lock for a moment, but waits for it behind
        # any long transaction, and every insert would queue behind that wait: fail instead
        # (run the migration again) than hold up the ingest. LOCAL: the index builds below wait
        # as long as they need, without blocking anyone.
        op.execute("SET LOCAL lock_timeout = '10s'")
    with op.batch_alter_table('inbound_events', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('last_attempt_at', models.base.UTCDateTime(timezone=True), nullable=True)
        )
    events = sa.table(
        'inbound_events',
        sa.column('status', sa.String),
        sa.column('last_attempt_at', models.base.UTCDateTime(timezone=True)),
    )
    op.execute(
        events.update()
        .where(events.c.status.in_(['unroutable', 'failed']))
        .values(last_attempt_at=utc_now())
    )
    if postgres:
        with op.get_context().autocommit_block():
            for name, (table, column, where) in INDEXES.items():
                op.create_index(
                    name,
                    table,
                    [column],
                    postgresql_where=sa.text(where),
                    postgresql_concurrently=True,
                    if_not_exists=True,
                )
        return
    for name, (table, column, where) in INDEXES.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(name, [column], unique=False, sqlite_where=sa.text(where))


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, (table, _column, _where) in INDEXES.items():
        if postgres:
            with op.get_context().autocommit_block():
                op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)
        else:
            with op.batch_alter_table(table, schema=None) as batch_op:
                batch_op.drop_index(name)
    with op.batch_alter_table('inbound_events', schema=None) as batch_op:
        batch_op.drop_column('last_attempt_at')
