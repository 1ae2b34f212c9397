"""What a provider event means for an account: routing by the provider's key, and the effect of
each topic on status, errors and metadata. Called by the inbox inside its transaction."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, String, literal_column, select
from sqlalchemy.orm import Session

from connectors import ErrorCode
from connectors.stripe import disabled_message
from models import Account, AccountError, AccountStatus, Database, InboundEvent, IntegrationRef
from worker.service.queries import among
from worker.service.records import open_error, resolve_errors, set_status

SOURCE = "event"
# The account key each provider's `route_key` is matched against: (JSON column, key) pairs.
ROUTES: dict[str, tuple[tuple[str, str], ...]] = {
    "shopify": (("connection", "shop_domain"),),
    "stripe": (("connection", "stripe_account_id"), ("metadata", "stripe_account_id")),
    "fortnox": (("metadata", "fortnox_tenant_id"),),
}
SHOPIFY_COMPLIANCE = frozenset({"customers/data_request", "customers/redact", "shop/redact"})


@dataclass(frozen=True)
class Effect:
    """What applying an event did, in words for the operator."""

    description: str


Apply = Callable[[Session, Account, InboundEvent], Effect]


@dataclass(frozen=True)
class Handler:
    apply: Apply
    # True when the topic sets status or metadata: an older one must not override a newer one.
    sets_state: bool


# -- routing ----------------------------------------------------------------------------------


def json_text(session: Session, column: str, key: str) -> ColumnElement[str]:
    """`column ->> key`, spelled exactly as the routing indexes of migration 0002 are."""
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
        elif row.route_key and row.provider in ROUTES:
            by_key.setdefault((row.provider, row.route_key), []).append(row)
    for provider in {p for p, _ in by_key}:
        keys = sorted({k for p, k in by_key if p == provider})
        for column, key in ROUTES[provider]:
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


# -- effects ----------------------------------------------------------------------------------


def handler_for(provider: str, topic: str) -> Handler:
    return HANDLERS.get((provider, topic)) or _RECORD


def _record(_session: Session, _account: Account, row: InboundEvent) -> Effect:
    if row.provider == "shopify" and row.topic in SHOPIFY_COMPLIANCE:
        return Effect(f"compliance request {row.topic} recorded")
    return Effect("recorded")


def _revoked(message: str) -> Apply:
    def apply(session: Session, account: Account, row: InboundEvent) -> Effect:
        text = message.format(key=row.route_key or "the account")
        open_error(session, account, ErrorCode.CONNECTION_REVOKED, text, SOURCE)
        changed = set_status(session, account, AccountStatus.DISCONNECTED, text, SOURCE)
        return Effect("status disconnected" if changed else "already disconnected")

    return apply


def _merge_meta(account: Account, values: dict[str, Any]) -> bool:
    merged = {**account.meta, **values}
    if merged == account.meta:
        return False
    account.meta = merged
    return True


def _shopify_scopes(_session: Session, account: Account, row: InboundEvent) -> Effect:
    current = _list_of_str(row.payload.get("current"), "current")
    changed = _merge_meta(account, {"scopes": current})
    return Effect("scopes updated" if changed else "scopes unchanged")


SHOP_FIELDS = {
    "name": "shop_name",
    "plan_name": "plan_name",
    "plan_display_name": "plan_display_name",
    "currency": "currency",
    "country_code": "country_code",
    "myshopify_domain": "myshopify_domain",
    "domain": "domain",
}


def _shopify_shop(_session: Session, account: Account, row: InboundEvent) -> Effect:
    values = {
        ours: row.payload[theirs] for theirs, ours in SHOP_FIELDS.items() if theirs in row.payload
    }
    changed = _merge_meta(account, values)
    return Effect("metadata updated" if changed else "metadata unchanged")


def _shopify_subscription(_session: Session, account: Account, row: InboundEvent) -> Effect:
    subscription = row.payload.get("app_subscription")
    if not isinstance(subscription, dict):
        raise ValueError("app_subscriptions/update carries no app_subscription object")
    values = {"app_subscription": {k: subscription.get(k) for k in ("name", "status")}}
    changed = _merge_meta(account, values)
    return Effect("metadata updated" if changed else "metadata unchanged")


STRIPE_FIELDS = ("charges_enabled", "payouts_enabled", "country", "default_currency")


def _stripe_account_updated(session: Session, account: Account, row: InboundEvent) -> Effect:
    data = row.payload.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise ValueError("account.updated carries no data.object")
    requirements = obj.get("requirements") if isinstance(obj.get("requirements"), dict) else {}
    assert isinstance(requirements, dict)
    profile = obj.get("business_profile") if isinstance(obj.get("business_profile"), dict) else {}
    assert isinstance(profile, dict)
    values: dict[str, Any] = {k: obj[k] for k in STRIPE_FIELDS if k in obj}
    if "requirements" in obj:
        values["disabled_reason"] = requirements.get("disabled_reason")
        values["currently_due"] = requirements.get("currently_due") or []
    if profile.get("name"):
        values["business_name"] = profile["name"]
    descriptions = ["metadata updated" if _merge_meta(account, values) else "metadata unchanged"]

    message = disabled_message(obj)
    if message is not None:
        if account.status != AccountStatus.DISCONNECTED:
            open_error(session, account, ErrorCode.ACCOUNT_LOCKED, message, SOURCE)
            if set_status(session, account, AccountStatus.ERROR, message, SOURCE):
                descriptions.append("status error")
    elif "charges_enabled" in obj or "requirements" in obj:  # Stripe says: not disabled
        resolved = resolve_errors(session, account, {ErrorCode.ACCOUNT_LOCKED.value})
        if (
            resolved
            and account.status == AccountStatus.ERROR
            and not _open_errors(session, account)
        ):
            set_status(
                session,
                account,
                AccountStatus.CONNECTED,
                "Stripe enabled charges and payouts again",
                SOURCE,
            )
            descriptions.append("status connected")
    return Effect(", ".join(descriptions))


def _open_errors(session: Session, account: Account) -> bool:
    query = select(AccountError.id).where(
        AccountError.account_id == account.id, AccountError.resolved_at.is_(None)
    )
    return session.execute(query.limit(1)).first() is not None


def _list_of_str(value: Any, name: str) -> list[str]:
    if isinstance(value, str):
        return [s.strip() for s in value.split(",") if s.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError(f"the event's {name} is not a list of scopes")


_RECORD = Handler(_record, sets_state=False)
HANDLERS: dict[tuple[str, str], Handler] = {
    ("shopify", "app/uninstalled"): Handler(
        _revoked(
            "the Shopify app was uninstalled from {key}; "
            "install it again and connect the account with new credentials"
        ),
        sets_state=True,
    ),
    ("shopify", "app/scopes_update"): Handler(_shopify_scopes, sets_state=True),
    ("shopify", "shop/update"): Handler(_shopify_shop, sets_state=True),
    ("shopify", "app_subscriptions/update"): Handler(_shopify_subscription, sets_state=True),
    ("stripe", "account.application.deauthorized"): Handler(
        _revoked(
            "the Stripe account {key} deauthorized our application; "
            "connect it again to restore access"
        ),
        sets_state=True,
    ),
    ("stripe", "account.updated"): Handler(_stripe_account_updated, sets_state=True),
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


def record_fortnox_tenants(
    db: Database, tenant_ids: dict[uuid.UUID, str], refused: Iterable[uuid.UUID]
) -> None:
    """What Fortnox's stream said of our tenants: each account's tenant id (events are routed
    by it), and the accounts whose access token it refused (an error a person must fix)."""
    refused = set(refused)
    wanted = sorted(set(tenant_ids) | refused)
    if not wanted:
        return
    with db.unit_of_work() as session:
        query = select(Account).where(Account.id.in_(wanted)).order_by(Account.id)
        for account in session.scalars(query.with_for_update()):
            tenant = tenant_ids.get(account.id)
            if tenant is not None:
                _merge_meta(account, {"fortnox_tenant_id": tenant})
            if account.id in refused:
                message = (
                    "Fortnox refused this account's access token for its event stream; "
                    "connect the account again"
                )
                open_error(session, account, ErrorCode.CREDENTIALS_INVALID, message, SOURCE)
                set_status(session, account, AccountStatus.ERROR, message, SOURCE)
