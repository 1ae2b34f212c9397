"""Shopify's webhook endpoint as the ingest sees it: the PROVIDERS.md signature vector, the
`Webhooks` class verifying with the current or the previous app secret, and parsing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from connectors.events import MalformedEvent, NoSecretConfigured, SignatureError
from connectors.provider import WebhookRequest
from connectors.shopify import ShopifySettings, ShopifyWebhooks, shopify_signature

VECTOR_BODY = b'{"foo": "bar"}'
VECTOR_SIGNATURE = "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g="
SHOP = "some-shop.myshopify.com"


def request(body: bytes, signature: str | None, **headers: str) -> WebhookRequest:
    sent = {
        "x-shopify-topic": "shop/update",
        "x-shopify-shop-domain": SHOP,
        "x-shopify-event-id": "ev-1",
        "x-shopify-webhook-id": "wh-1",
        "x-shopify-triggered-at": "2026-03-01T12:00:00.123456789Z",
        **headers,
    }
    if signature is not None:
        sent["x-shopify-hmac-sha256"] = signature
    return WebhookRequest("POST", "/webhooks/shopify", "", sent, body)


def webhooks(
    current: str | None = "test_secret_key", previous: str | None = None
) -> ShopifyWebhooks:
    settings = ShopifySettings(
        client_id="c",
        client_secret=SecretStr(current) if current is not None else None,
        previous_client_secret=SecretStr(previous) if previous is not None else None,
    )
    return ShopifyWebhooks(settings, "https://connect.example.com")


def test_the_signature_matches_the_published_vector() -> None:
    assert shopify_signature("test_secret_key", VECTOR_BODY) == VECTOR_SIGNATURE
    webhooks().verify(request(VECTOR_BODY, VECTOR_SIGNATURE))


def test_the_previous_secret_is_accepted_during_a_rotation() -> None:
    webhooks("the-new-secret", previous="test_secret_key").verify(
        request(VECTOR_BODY, VECTOR_SIGNATURE)
    )


@pytest.mark.parametrize(
    ("body", "signature"),
    [
        (b'{"foo": "baz"}', VECTOR_SIGNATURE),  # another body
        (VECTOR_BODY, shopify_signature("someone-else", VECTOR_BODY)),  # another secret
        (VECTOR_BODY, None),  # unsigned
        (VECTOR_BODY, "not base64!"),
        (VECTOR_BODY, ""),
    ],
)
def test_a_bad_signature_is_refused(body: bytes, signature: str | None) -> None:
    with pytest.raises(SignatureError) as info:
        webhooks().verify(request(body, signature))
    assert "test_secret_key" not in str(info.value)


def test_without_an_app_secret_everything_is_refused() -> None:
    with pytest.raises(NoSecretConfigured):
        webhooks(current=None).verify(request(VECTOR_BODY, VECTOR_SIGNATURE))


def test_given_secrets_replace_the_apps() -> None:
    hook = webhooks("the-app-secret")
    hook.verify(request(VECTOR_BODY, VECTOR_SIGNATURE), secrets=["test_secret_key"])
    with pytest.raises(SignatureError):
        hook.verify(request(VECTOR_BODY, VECTOR_SIGNATURE), secrets=["other"])


def test_verify_reads_the_header_whatever_its_case() -> None:
    sent = WebhookRequest(
        "POST", "/webhooks/shopify", "", {"X-Shopify-Hmac-Sha256": VECTOR_SIGNATURE}, VECTOR_BODY
    )
    webhooks().verify(sent)


def test_parse_gives_the_one_event_of_the_request() -> None:
    body = b'{"name": "Some Shop", "currency": "SEK"}'
    (event,) = webhooks().parse(
        request(body, None, **{"x-shopify-shop-domain": " Some-Shop.MyShopify.com "}),
        account_ref="ignored: Shopify routes by shop",
    )
    assert event.provider == "shopify"
    assert (event.event_id, event.topic) == ("ev-1", "shop/update")
    assert event.route_key == SHOP
    assert event.occurred_at == datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert event.payload == {"name": "Some Shop", "currency": "SEK"}
    assert event.payload_text() == body.decode()


def test_parse_falls_back_to_the_webhook_id() -> None:
    (event,) = webhooks().parse(request(b"{}", None, **{"x-shopify-event-id": ""}))
    assert event.event_id == "wh-1"


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({"x-shopify-topic": ""}, b"{}"),
        ({"x-shopify-shop-domain": ""}, b"{}"),
        ({"x-shopify-event-id": "", "x-shopify-webhook-id": ""}, b"{}"),
        ({"x-shopify-topic": "t" * 256}, b"{}"),
        ({}, b"not json"),
        ({}, b"[1, 2]"),
        ({}, b'{"a": "\\u0000"}'),
    ],
)
def test_parse_refuses_a_malformed_event(headers: dict[str, str], body: bytes) -> None:
    with pytest.raises(MalformedEvent):
        webhooks().parse(request(body, None, **headers))
