"""Stripe's webhook endpoint as the `Webhooks` of its provider: the facts file's signature vector,
the platform's secrets (several while one is rolled), an account's own secrets, and no secret."""

from __future__ import annotations

import time

import pytest
from pydantic import SecretStr

from connectors.base import utc_now
from connectors.events import MalformedEvent, NoSecretConfigured, SignatureError
from connectors.http import HttpLayer
from connectors.provider import WebhookRequest
from connectors.stripe import (
    PROVIDER,
    STRIPE_TOLERANCE_SECONDS,
    StripeConnector,
    StripeSettings,
    StripeWebhooks,
    parse_stripe,
    stripe_header,
    stripe_signature,
    verify_stripe,
)

SECRET = "whsec_test_secret"
BODY = b'{"id":"evt_test_webhook","object":"event"}'
T = 1700000000
V1 = "d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990"
EVENT = b'{"id": "evt_1", "type": "account.updated", "account": "acct_123456", "created": 1}'


def frozen() -> float:
    return float(T)


def request(body: bytes, header: str | None) -> WebhookRequest:
    headers = {"content-type": "application/json"}
    if header is not None:
        headers["stripe-signature"] = header
    return WebhookRequest("POST", "/webhooks/stripe", "", headers, body)


def endpoint(secret: str | None, now: float = T) -> StripeWebhooks:
    settings = StripeSettings(webhook_secret=SecretStr(secret) if secret is not None else None)
    return StripeWebhooks(settings, "http://127.0.0.1:8000", now=lambda: now)


def test_the_facts_file_vector() -> None:
    assert stripe_signature(SECRET, T, BODY) == V1
    assert verify_stripe(BODY, f"t={T},v1={V1}", [SECRET], now=frozen) == T
    endpoint(SECRET).verify(request(BODY, f"t={T},v1={V1}"))


def test_the_vector_is_refused_at_real_time() -> None:
    assert time.time() - T > STRIPE_TOLERANCE_SECONDS
    with pytest.raises(SignatureError, match="tolerance"):
        verify_stripe(BODY, f"t={T},v1={V1}", [SECRET], tolerance=300)
    with pytest.raises(SignatureError, match="tolerance"):
        StripeWebhooks(StripeSettings(webhook_secret=SecretStr(SECRET))).verify(
            request(BODY, f"t={T},v1={V1}")
        )


def test_the_platform_secret_verifies_and_a_wrong_one_does_not() -> None:
    header = stripe_header(SECRET, EVENT, T)
    endpoint(SECRET).verify(request(EVENT, header))
    with pytest.raises(SignatureError):
        endpoint("whsec_another").verify(request(EVENT, header))
    with pytest.raises(SignatureError):
        endpoint(SECRET).verify(request(EVENT + b" ", header))
    with pytest.raises(SignatureError, match="missing"):
        endpoint(SECRET).verify(request(EVENT, None))


def test_several_platform_secrets_are_accepted_while_one_is_rolled() -> None:
    webhooks = endpoint("whsec_new, whsec_old ,")
    assert webhooks.secrets == ["whsec_new", "whsec_old"]
    for secret in ("whsec_new", "whsec_old"):
        webhooks.verify(request(EVENT, stripe_header(secret, EVENT, T)))
    with pytest.raises(SignatureError):
        webhooks.verify(request(EVENT, stripe_header("whsec_gone", EVENT, T)))


def test_an_accounts_own_secrets_replace_the_platforms() -> None:
    webhooks = endpoint(SECRET)
    own = stripe_header("whsec_account", EVENT, T)
    webhooks.verify(request(EVENT, own), ["whsec_account"])
    webhooks.verify(request(EVENT, own), ["whsec_other", "whsec_account"])
    with pytest.raises(SignatureError):
        webhooks.verify(request(EVENT, own))  # the platform's secret does not sign it
    with pytest.raises(SignatureError):
        webhooks.verify(request(EVENT, stripe_header(SECRET, EVENT, T)), ["whsec_account"])


@pytest.mark.parametrize("secret", [None, "", " , "])
def test_no_platform_secret_refuses_everything(secret: str | None) -> None:
    with pytest.raises(NoSecretConfigured):
        endpoint(secret).verify(request(EVENT, stripe_header(SECRET, EVENT, T)))


def test_an_account_without_a_secret_refuses_everything() -> None:
    with pytest.raises(NoSecretConfigured):
        endpoint(SECRET).verify(request(EVENT, stripe_header(SECRET, EVENT, T)), [])


def test_parse_routes_by_the_events_account_on_either_route() -> None:
    webhooks = endpoint(SECRET)
    (event,) = webhooks.parse(request(EVENT, None))
    assert (event.provider, event.event_id, event.topic) == ("stripe", "evt_1", "account.updated")
    assert event.route_key == "acct_123456"
    (direct,) = webhooks.parse(request(EVENT, None), "5b0c7f5e-account-id")
    assert direct.route_key == "acct_123456"
    assert direct == parse_stripe(EVENT)
    with pytest.raises(MalformedEvent):
        webhooks.parse(request(b'{"type": "account.updated"}', None))


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTIONS_STRIPE_WEBHOOK_SECRET", "whsec_a,whsec_b")
    monkeypatch.setenv("CONNECTIONS_STRIPE_CONNECT_CLIENT_ID", "ca_env")
    monkeypatch.setenv("CONNECTIONS_STRIPE_PLATFORM_KEY", "sk_test_env")
    settings = StripeSettings()
    assert StripeWebhooks(settings).secrets == ["whsec_a", "whsec_b"]
    assert settings.connect_client_id == "ca_env"
    assert settings.platform_key is not None
    assert settings.platform_key.get_secret_value() == "sk_test_env"
    assert "sk_test_env" not in repr(settings)
    given = StripeSettings(connect_client_id="ca_given")  # a keyword wins over the environment
    assert given.connect_client_id == "ca_given"


def test_the_provider_value_builds_stripes_pieces() -> None:
    settings = StripeSettings(webhook_secret=SecretStr(SECRET))
    assert (PROVIDER.type, PROVIDER.title, PROVIDER.settings) == (
        "stripe",
        "Stripe",
        StripeSettings,
    )
    assert isinstance(PROVIDER.connector(settings, HttpLayer(), utc_now), StripeConnector)
    assert PROVIDER.webhooks is not None
    webhooks = PROVIDER.webhooks(settings, "http://127.0.0.1:8000")
    with pytest.raises(SignatureError, match="tolerance"):  # built with the real clock
        webhooks.verify(request(BODY, f"t={T},v1={V1}"))
    webhooks.verify(request(EVENT, stripe_header(SECRET, EVENT)))
    assert PROVIDER.account_secret_field == "webhook_secret"
    assert PROVIDER.routes == (
        ("connection", "stripe_account_id"),
        ("metadata", "stripe_account_id"),
    )
