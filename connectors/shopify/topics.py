"""What each Shopify webhook topic means for its account, as data; the readers are pure
functions of the payload (ValueError for one they cannot use)."""

from __future__ import annotations

from typing import Any

from connectors.provider import Change, Topic, disconnects, merges, records

# shop/update's fields kept in the account's metadata: {Shopify's name: ours}.
SHOP_FIELDS = {
    "name": "shop_name",
    "plan_name": "plan_name",
    "plan_display_name": "plan_display_name",
    "currency": "currency",
    "country_code": "country_code",
    "myshopify_domain": "myshopify_domain",
    "domain": "domain",
}
# Shopify's mandatory privacy webhooks: recorded (and published) for the data owners to act on.
COMPLIANCE = ("customers/data_request", "customers/redact", "shop/redact")


def scope_list(value: Any, name: str) -> list[str]:
    """Scopes as Shopify sends them: a comma-separated string or a list of strings."""
    if isinstance(value, str):
        return [s.strip() for s in value.split(",") if s.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError(f"the event's {name} is not a list of scopes")


def read_scopes(payload: dict[str, Any], _key: str | None) -> Change:
    """app/scopes_update: the scopes the app holds now."""
    return Change(
        metadata={"scopes": scope_list(payload.get("current"), "current")}, subject="scopes"
    )


def read_subscription(payload: dict[str, Any], _key: str | None) -> Change:
    """app_subscriptions/update: the app's plan on the shop and its state."""
    subscription = payload.get("app_subscription")
    if not isinstance(subscription, dict):
        raise ValueError("app_subscriptions/update carries no app_subscription object")
    return Change(
        metadata={"app_subscription": {k: subscription.get(k) for k in ("name", "status")}}
    )


TOPICS: dict[str, Topic] = {
    "app/uninstalled": disconnects(
        "the Shopify app was uninstalled from {key}; "
        "install it again and connect the account with new credentials"
    ),
    "app/scopes_update": Topic(read_scopes),
    "shop/update": merges(SHOP_FIELDS),
    "app_subscriptions/update": Topic(read_subscription),
    **{topic: records(f"compliance request {topic} recorded") for topic in COMPLIANCE},
}
