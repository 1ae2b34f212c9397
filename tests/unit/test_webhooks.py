"""Webhook signatures and parsing: the providers' published vectors, rotation, tolerance, and a
property test that any change to body, timestamp or signature is refused."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.events import (
    MalformedEvent,
    NoSecretConfigured,
    SignatureError,
    parse_time,
    split_secrets,
)
from connectors.fortnox import parse_fortnox
from connectors.shopify import parse_shopify, shopify_signature, verify_shopify
from connectors.stripe import parse_stripe, stripe_header, stripe_signature, verify_stripe

SHOPIFY_VECTOR = (
    "test_secret_key",
    b'{"foo": "bar"}',
    "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g=",
)
STRIPE_SECRET = "whsec_test_secret"
STRIPE_BODY = b'{"id":"evt_test_webhook","object":"event"}'
STRIPE_T = 1700000000
STRIPE_V1 = "d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990"


def frozen(at: int = STRIPE_T) -> float:
    return float(at)


# -- Shopify ----------------------------------------------------------------------------------


def test_shopify_vector() -> None:
    secret, body, expected = SHOPIFY_VECTOR
    assert shopify_signature(secret, body) == expected
    verify_shopify(body, expected, [secret])


def test_shopify_previous_secret_accepted_during_rotation() -> None:
    secret, body, expected = SHOPIFY_VECTOR
    verify_shopify(body, expected, ["the-new-secret", secret])
    verify_shopify(body, expected, [secret, None])


@pytest.mark.parametrize(
    ("body", "header", "secrets"),
    [
        (b'{"foo": "baz"}', SHOPIFY_VECTOR[2], ["test_secret_key"]),  # tampered body
        (b'{"foo": "bar"}', SHOPIFY_VECTOR[2], ["another_secret"]),  # wrong secret
        (b'{"foo": "bar"}', None, ["test_secret_key"]),  # missing header
        (b'{"foo": "bar"}', "", ["test_secret_key"]),
        (b'{"foo": "bar"}', "not base64!!", ["test_secret_key"]),
        (b'{"foo": "bar"}', SHOPIFY_VECTOR[2].lower(), ["test_secret_key"]),
    ],
)
def test_shopify_refused(body: bytes, header: str | None, secrets: list[str]) -> None:
    with pytest.raises(SignatureError):
        verify_shopify(body, header, secrets)


@pytest.mark.parametrize("secrets", [[], [None], [""]])
def test_shopify_no_secret_refuses_everything(secrets: list[str | None]) -> None:
    _, body, header = SHOPIFY_VECTOR
    with pytest.raises(NoSecretConfigured):
        verify_shopify(body, header, secrets)


# -- Stripe -----------------------------------------------------------------------------------


def test_stripe_vector() -> None:
    assert stripe_signature(STRIPE_SECRET, STRIPE_T, STRIPE_BODY) == STRIPE_V1


def test_stripe_vector_fails_at_todays_clock_and_passes_frozen() -> None:
    header = f"t={STRIPE_T},v1={STRIPE_V1}"
    with pytest.raises(SignatureError, match="tolerance"):
        verify_stripe(STRIPE_BODY, header, [STRIPE_SECRET], tolerance=300)
    assert verify_stripe(STRIPE_BODY, header, [STRIPE_SECRET], now=frozen) == STRIPE_T
    verify_stripe(STRIPE_BODY, header, [STRIPE_SECRET], now=lambda: STRIPE_T + 300.0)
    with pytest.raises(SignatureError):
        verify_stripe(STRIPE_BODY, header, [STRIPE_SECRET], now=lambda: STRIPE_T + 301.0)


def test_stripe_any_v1_any_secret() -> None:
    wrong = "0" * 64
    header = f"t={STRIPE_T},v1={wrong},v0=abc,v1={STRIPE_V1}"
    verify_stripe(STRIPE_BODY, header, ["whsec_other", STRIPE_SECRET], now=frozen)
    secrets = split_secrets(f" whsec_new , {STRIPE_SECRET},")
    assert secrets == ["whsec_new", STRIPE_SECRET]
    verify_stripe(STRIPE_BODY, f"t={STRIPE_T},v1={STRIPE_V1}", secrets, now=frozen)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        f"v1={STRIPE_V1}",  # no timestamp
        f"t={STRIPE_T}",  # no signature
        f"t=abc,v1={STRIPE_V1}",
        f"t={STRIPE_T},v0={STRIPE_V1}",  # only the old scheme
        f"t={STRIPE_T},v1={STRIPE_V1.upper()}",
        f"t={STRIPE_T + 1},v1={STRIPE_V1}",
    ],
)
def test_stripe_refused(header: str | None) -> None:
    with pytest.raises(SignatureError):
        verify_stripe(STRIPE_BODY, header, [STRIPE_SECRET], now=frozen)


def test_stripe_no_secret_refuses_everything() -> None:
    with pytest.raises(NoSecretConfigured):
        verify_stripe(STRIPE_BODY, f"t={STRIPE_T},v1={STRIPE_V1}", [], now=frozen)
    with pytest.raises(NoSecretConfigured):
        verify_stripe(STRIPE_BODY, f"t={STRIPE_T},v1={STRIPE_V1}", split_secrets(None))


bodies = st.binary(min_size=0, max_size=300)
timestamps = st.integers(min_value=1_600_000_000, max_value=1_900_000_000)


@settings(max_examples=300, deadline=None)
@given(body=bodies, t=timestamps, other_body=bodies, other_t=timestamps, data=st.data())
def test_stripe_any_change_is_refused(
    body: bytes, t: int, other_body: bytes, other_t: int, data: st.DataObject
) -> None:
    clock = lambda: float(t)  # noqa: E731
    good = stripe_signature(STRIPE_SECRET, t, body)
    verify_stripe(body, f"t={t},v1={good}", [STRIPE_SECRET], now=clock)
    if other_body != body:
        with pytest.raises(SignatureError):
            verify_stripe(other_body, f"t={t},v1={good}", [STRIPE_SECRET], now=clock)
    if other_t != t:
        with pytest.raises(SignatureError):
            verify_stripe(body, f"t={other_t},v1={good}", [STRIPE_SECRET], now=clock)
    position = data.draw(st.integers(min_value=0, max_value=len(good) - 1))
    replacement = data.draw(st.sampled_from("0123456789abcdefABCDEF"))
    changed = good[:position] + replacement + good[position + 1 :]
    if changed != good:
        with pytest.raises(SignatureError):
            verify_stripe(body, f"t={t},v1={changed}", [STRIPE_SECRET], now=clock)


@settings(max_examples=300, deadline=None)
@given(body=bodies, other_body=bodies, data=st.data())
def test_shopify_any_change_is_refused(body: bytes, other_body: bytes, data: st.DataObject) -> None:
    good = shopify_signature("test_secret_key", body)
    verify_shopify(body, good, ["test_secret_key"])
    if other_body != body:
        with pytest.raises(SignatureError):
            verify_shopify(other_body, good, ["test_secret_key"])
    raw = bytearray(base64.b64decode(good))
    index = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    flip = data.draw(st.integers(min_value=1, max_value=255))
    raw[index] ^= flip
    with pytest.raises(SignatureError):
        verify_shopify(body, base64.b64encode(bytes(raw)).decode(), ["test_secret_key"])


def test_stripe_header_round_trip() -> None:
    header = stripe_header(STRIPE_SECRET, STRIPE_BODY, STRIPE_T)
    assert header == f"t={STRIPE_T},v1={STRIPE_V1}"


# -- parsing ----------------------------------------------------------------------------------


def test_parse_shopify_prefers_event_id_and_routes_by_shop() -> None:
    headers = {
        "X-Shopify-Topic": "app/uninstalled",
        "X-Shopify-Shop-Domain": "Acme.myshopify.com",
        "X-Shopify-Webhook-Id": "wh-1",
        "X-Shopify-Event-Id": "ev-1",
        "X-Shopify-Triggered-At": "2026-11-01T10:00:27.877041743Z",
    }
    event = parse_shopify(headers, b'{"id": 1}')
    assert event.provider == "shopify"
    assert event.event_id == "ev-1"
    assert event.topic == "app/uninstalled"
    assert event.route_key == "acme.myshopify.com"
    assert event.occurred_at == datetime(2026, 11, 1, 10, 0, 27, 877041, tzinfo=UTC)
    del headers["X-Shopify-Event-Id"]
    assert parse_shopify(headers, b"{}").event_id == "wh-1"


@pytest.mark.parametrize(
    ("drop", "body"),
    [
        ("X-Shopify-Topic", b"{}"),
        ("X-Shopify-Shop-Domain", b"{}"),
        ("X-Shopify-Webhook-Id", b"{}"),
        (None, b"not json"),
        (None, b"[1, 2]"),
        (None, b'{"name": "a\\u0000b"}'),
    ],
)
def test_parse_shopify_malformed(drop: str | None, body: bytes) -> None:
    headers = {
        "X-Shopify-Topic": "shop/update",
        "X-Shopify-Shop-Domain": "a.myshopify.com",
        "X-Shopify-Webhook-Id": "wh-1",
    }
    if drop:
        del headers[drop]
    with pytest.raises(MalformedEvent):
        parse_shopify(headers, body)


def test_parse_stripe() -> None:
    body = json.dumps(
        {"id": "evt_1", "type": "account.updated", "account": "acct_1", "created": 1700000000}
    ).encode()
    event = parse_stripe(body)
    assert (event.event_id, event.topic, event.route_key) == ("evt_1", "account.updated", "acct_1")
    assert event.occurred_at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert parse_stripe(body, path_account="acct_path").route_key == "acct_path"
    platform = parse_stripe(b'{"id": "evt_2", "type": "charge.succeeded"}')
    assert platform.route_key is None
    assert platform.occurred_at is None


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b'"text"',
        b'{"type": "x"}',
        b'{"id": "", "type": "x"}',
        b'{"id": "evt_1"}',
        b'{"id": "evt_1", "type": "x", "account": 5}',
        json.dumps({"id": "e" * 300, "type": "x"}).encode(),
    ],
)
def test_parse_stripe_malformed(body: bytes) -> None:
    with pytest.raises(MalformedEvent):
        parse_stripe(body)


def test_parse_fortnox() -> None:
    message = {
        "topic": "invoices",
        "offset": "10432",
        "type": "invoice-created-v1",
        "tenantId": 123456,
        "entityId": "4711",
        "timestamp": "2026-07-12T09:30:00Z",
    }
    event = parse_fortnox(message)
    assert event.event_id == "invoices:10432"
    assert event.route_key == "123456"
    assert event.topic == "invoices"
    assert event.occurred_at == datetime(2026, 7, 12, 9, 30, tzinfo=UTC)
    for broken in ({"offset": "x"}, {"offset": None}, {"tenantId": None}, {"topic": ""}):
        with pytest.raises(MalformedEvent):
            parse_fortnox({**message, **broken})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-02T03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02T05:04:05+02:00", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02T03:04:05", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("yesterday", None),
        (None, None),
        (12, None),
    ],
)
def test_parse_time(text: object, expected: datetime | None) -> None:
    assert parse_time(text) == expected
