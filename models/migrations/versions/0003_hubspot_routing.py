"""hubspot routing: events find their account by the portal id

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 09:00:00
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# HubSpot events are routed by `portalId`, matched against the account's connection. Expression
# indexes are PostgreSQL's; the embedded SQLite database is small enough to scan.
ROUTING_INDEXES = {
    "ix_accounts_hubspot_portal": "(connection ->> 'portal_id')",
}


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, expression in ROUTING_INDEXES.items():
            op.execute(f"CREATE INDEX {name} ON accounts ({expression})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in ROUTING_INDEXES:
            op.execute(f"DROP INDEX IF EXISTS {name}")
