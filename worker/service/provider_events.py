"""What a provider event means for an account: routing by the provider's key, and the handler of
each topic (its meaning comes from the provider's topic table, its effect from `effects`).
Called by the inbox inside its transaction."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import ColumnElement, String, literal_column, select
from sqlalchemy.orm import Session

from connectors.base import ErrorCode
from connectors.provider import RECORD, Topic
from connectors.registry import PROVIDERS
from models import Account, AccountStatus, Database, InboundEvent, IntegrationRef
from worker.service.effects import SOURCE, apply_change, merge_metadata
from worker.service.queries import among
from worker.service.records import open_error, set_status


@dataclass(frozen=True)
class Effect:
    """What applying an event did, in words for the operator."""

    description: str


@dataclass(frozen=True)
class Handler:
    topic: Topic

    @property
    def sets_state(self) -> bool:
        """True when the topic sets status or metadata: an older one must not override a newer
        one, and its batch locks the account for update."""
        return self.topic.sets_state

    def apply(self, session: Session, account: Account, row: InboundEvent) -> Effect:
        change = self.topic.read(row.payload, row.route_key)
        return Effect(apply_change(session, account, change))


@lru_cache(maxsize=1024)
def handler_for(provider: str, topic: str) -> Handler:
    spec = PROVIDERS.get(provider)
    return Handler(spec.topic(topic) if spec is not None else RECORD)


# -- routing ----------------------------------------------------------------------------------


def json_text(session: Session, column: str, key: str) -> ColumnElement[str]:
    """`column ->> key`, spelled exactly as the routing indexes of the migrations are."""
    if session.get_bind().dialect.name == "postgresql":
        return literal_column(f"(accounts.{column} ->> '{key}')", String)
    return literal_column(f"json_extract(accounts.{column}, '$.{key}')", String)


def route(
    session: Session, rows: Sequence[InboundEvent], *, exclusive: bool = True
) -> dict[uuid.UUID, list[Account]]:
    """The accounts each event is for, locked in id order (so two batches never deadlock):
    `FOR UPDATE` when the batch may change them, else `FOR SHARE`, so batches that only record
    events for the same accounts run side by side while a change waits for them and they for it.
    """
    wanted: dict[uuid.UUID, set[uuid.UUID]] = {row.id: set() for row in rows}
    by_key: dict[tuple[str, str], list[InboundEvent]] = {}
    for row in rows:
        if row.account_id is not None:
            wanted[row.id].add(row.account_id)
        elif row.route_key and row.provider in PROVIDERS:
            by_key.setdefault((row.provider, row.route_key), []).append(row)
    for provider in {p for p, _ in by_key}:
        keys = sorted({k for p, k in by_key if p == provider})
        for column, key in PROVIDERS[provider].routes:
            expression = json_text(session, column, key)
            found = session.execute(
                select(Account.id, expression).where(
                    Account.type == provider, among(session, expression, keys)
                )
            )
            for account_id, value in found:
                for row in by_key.get((provider, str(value)), []):
                    wanted[row.id].add(account_id)
    every = sorted({a for ids in wanted.values() for a in ids})
    locked: dict[uuid.UUID, Account] = {}
    if every:
        query = select(Account).where(among(session, Account.id, every)).order_by(Account.id)
        locked = {a.id: a for a in session.scalars(query.with_for_update(read=not exclusive))}
    return {
        row_id: [locked[a] for a in sorted(ids) if a in locked] for row_id, ids in wanted.items()
    }


def integration_ids(session: Session, accounts: Iterable[Account]) -> dict[uuid.UUID, list[str]]:
    """The ids of the integrations using each account, in the order they were linked."""
    ids = [a.id for a in accounts]
    found: dict[uuid.UUID, list[str]] = {i: [] for i in ids}
    if ids:
        query = (
            select(IntegrationRef.account_id, IntegrationRef.integration_id)
            .where(among(session, IntegrationRef.account_id, ids))
            .order_by(IntegrationRef.created_at, IntegrationRef.integration_id)
        )
        for account_id, integration_id in session.execute(query):
            found[account_id].append(integration_id)
    return found


def record_stream_tenants(
    db: Database, provider: str, tenant_ids: dict[uuid.UUID, str], refused: Iterable[uuid.UUID]
) -> None:
    """What a provider's event stream said of our tenants: each account's tenant id (its events
    are routed by it, under the provider's `stream_key`), and the accounts whose access token it
    refused (an error a person must fix)."""
    spec = PROVIDERS[provider]
    assert spec.stream_key is not None, f"{provider} has no event stream"
    refused = set(refused)
    wanted = sorted(set(tenant_ids) | refused)
    if not wanted:
        return
    with db.unit_of_work() as session:
        query = select(Account).where(Account.id.in_(wanted)).order_by(Account.id)
        for account in session.scalars(query.with_for_update()):
            tenant = tenant_ids.get(account.id)
            if tenant is not None:
                merge_metadata(account, {spec.stream_key: tenant})
            if account.id in refused:
                message = (
                    f"{spec.title} refused this account's access token for its event stream; "
                    "connect the account again"
                )
                open_error(session, account, ErrorCode.CREDENTIALS_INVALID, message, SOURCE)
                set_status(session, account, AccountStatus.ERROR, message, SOURCE)
