"""What each Shopify topic means, read from plain payloads: the same effects the service layer's
handlers had (disconnect on uninstall, scopes, shop fields, the app subscription, compliance
requests recorded), and ValueError for a payload a reader cannot use."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.provider import RECORD, Change
from connectors.shopify import PROVIDER, SHOP_FIELDS, TOPICS

SHOP = "some-shop.myshopify.com"


def read(topic: str, payload: dict[str, Any], key: str | None = SHOP) -> Change:
    return PROVIDER.topic(topic).read(payload, key)


def test_an_uninstall_disconnects_the_shop_with_a_message_to_act_on() -> None:
    assert read("app/uninstalled", {"id": 1}) == Change(
        disconnect=f"the Shopify app was uninstalled from {SHOP}; "
        "install it again and connect the account with new credentials"
    )
    assert "uninstalled from the account;" in str(read("app/uninstalled", {}, key=None).disconnect)
    assert TOPICS["app/uninstalled"].sets_state


@pytest.mark.parametrize(
    ("current", "scopes"),
    [
        (
            "read_products, write_orders,,read_orders ",
            ["read_products", "write_orders", "read_orders"],
        ),
        (["read_products", "read_orders"], ["read_products", "read_orders"]),
        ("", []),
        ([], []),
    ],
)
def test_a_scopes_update_keeps_the_current_scopes(current: Any, scopes: list[str]) -> None:
    payload = {"id": 1, "previous": ["read_products"], "current": current}
    assert read("app/scopes_update", payload) == Change(
        metadata={"scopes": scopes}, subject="scopes"
    )
    assert TOPICS["app/scopes_update"].sets_state


@pytest.mark.parametrize("current", [None, 7, ["read_products", 3], {"a": "b"}])
def test_a_scopes_update_without_a_list_of_scopes_is_refused(current: Any) -> None:
    payload = {} if current is None else {"current": current}
    with pytest.raises(ValueError, match="current is not a list of scopes"):
        read("app/scopes_update", payload)


def test_a_shop_update_merges_the_shops_fields_under_our_names() -> None:
    payload = {
        "id": 548380009,
        "name": "Some Shop",
        "plan_name": "basic",
        "plan_display_name": "Basic",
        "currency": "SEK",
        "country_code": "SE",
        "myshopify_domain": SHOP,
        "domain": "shop.example.com",
        "email": "owner@example.com",  # not kept: only the mapped fields are
    }
    assert read("shop/update", payload) == Change(
        metadata={
            "shop_name": "Some Shop",
            "plan_name": "basic",
            "plan_display_name": "Basic",
            "currency": "SEK",
            "country_code": "SE",
            "myshopify_domain": SHOP,
            "domain": "shop.example.com",
        }
    )
    assert read("shop/update", {"currency": "EUR"}) == Change(metadata={"currency": "EUR"})
    assert read("shop/update", {}) == Change(metadata={})
    assert set(SHOP_FIELDS.values()) >= {"shop_name", "currency"}
    assert TOPICS["shop/update"].sets_state


def test_a_subscription_update_keeps_its_name_and_status() -> None:
    payload = {
        "app_subscription": {
            "admin_graphql_api_id": "gid://shopify/AppSubscription/1",
            "name": "Pro",
            "status": "ACTIVE",
            "capped_amount": "20.0",
        }
    }
    assert read("app_subscriptions/update", payload) == Change(
        metadata={"app_subscription": {"name": "Pro", "status": "ACTIVE"}}
    )
    partial = read("app_subscriptions/update", {"app_subscription": {"status": "CANCELLED"}})
    assert partial.metadata == {"app_subscription": {"name": None, "status": "CANCELLED"}}
    assert TOPICS["app_subscriptions/update"].sets_state


@pytest.mark.parametrize("subscription", [None, "Pro", ["Pro"]])
def test_a_subscription_update_without_an_object_is_refused(subscription: Any) -> None:
    payload = {} if subscription is None else {"app_subscription": subscription}
    with pytest.raises(ValueError, match="no app_subscription object"):
        read("app_subscriptions/update", payload)


@pytest.mark.parametrize("topic", ["customers/data_request", "customers/redact", "shop/redact"])
def test_compliance_requests_are_recorded_and_change_nothing(topic: str) -> None:
    payload = {"shop_domain": SHOP, "customer": {"id": 1}, "orders_requested": [1]}
    assert read(topic, payload) == Change(note=f"compliance request {topic} recorded")
    assert not TOPICS[topic].sets_state


def test_other_topics_are_only_recorded() -> None:
    assert PROVIDER.topic("orders/create") is RECORD
    assert read("orders/create", {"id": 1}) == Change(note="recorded")
    assert not RECORD.sets_state
