"""Fortnox's OAuth pieces without a network: Basic client auth (the PROVIDERS.md vector), the
authorize URL, revocation of the refresh token, and what names the connected company."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pydantic import SecretStr

from connectors.base import ErrorCode, PermanentFailure, ProviderError, TemporaryFailure, utc_now
from connectors.fortnox import PROVIDER, FortnoxConnector, FortnoxSettings, basic_auth
from connectors.http import HttpLayer, RetryPolicy
from tests.unit.fakes import FakeTime

CREDENTIALS = {"access_token": "eyJaccess", "refresh_token": "rt-live", "expires_at": "x"}
CONNECTION = {"company_name": "Acme AB", "organization_number": "556677-8899"}


def settings(**overrides: Any) -> FortnoxSettings:
    values: dict[str, Any] = {
        "api_base_url": "https://api.fortnox.test",
        "auth_base_url": "https://apps.fortnox.test/",
        "client_id": "8VurtMGDTeAI",
        "client_secret": SecretStr("yFKwme8LEQ"),
    }
    return FortnoxSettings(**{**values, **overrides})


def connector(handler: Any = None, attempts: int = 1, **overrides: Any) -> FortnoxConnector:
    fake = FakeTime()
    transport = httpx.MockTransport(handler or (lambda r: httpx.Response(500)))
    policy = RetryPolicy(attempts=attempts, initial_wait=0.01)
    http = HttpLayer(transport, retry=policy, sleep=fake.sleep, clock=fake.clock)
    return FortnoxConnector(settings(**overrides), http)


def test_basic_auth_matches_the_published_vector() -> None:
    assert basic_auth("8VurtMGDTeAI", "yFKwme8LEQ") == "Basic OFZ1cnRNR0RUZUFJOnlGS3dtZThMRVE="


def test_authorize_url_asks_for_offline_access_with_the_configured_scopes() -> None:
    fortnox = connector(scopes="companyinformation invoice")
    url = fortnox.authorize_url(state="st-1", redirect_uri="https://app.example/cb?x=1")
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "https",
        "apps.fortnox.test",
        "/oauth-v1/auth",
    )
    assert "scope=companyinformation%20invoice" in parts.query  # a space, not "+"
    assert parse_qs(parts.query) == {
        "client_id": ["8VurtMGDTeAI"],
        "redirect_uri": ["https://app.example/cb?x=1"],
        "scope": ["companyinformation invoice"],
        "state": ["st-1"],
        "access_type": ["offline"],
        "response_type": ["code"],
    }
    assert fortnox.authorize_url(state="s", redirect_uri="https://a/cb", shop_domain="ignored")


def test_the_default_scope_is_what_the_check_reads() -> None:
    url = connector().authorize_url(state="s", redirect_uri="https://app.example/cb")
    assert parse_qs(urlsplit(url).query)["scope"] == ["companyinformation"]


def test_authorize_url_without_a_client_id_says_what_to_configure() -> None:
    with pytest.raises(PermanentFailure) as info:
        connector(client_id=None).authorize_url(state="s", redirect_uri="https://app.example/cb")
    assert "CONNECTIONS_FORTNOX_CLIENT_ID" in info.value.message


def test_revoke_sends_the_refresh_token_once_with_basic_auth() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    assert asyncio.run(connector(handler).revoke(CREDENTIALS, CONNECTION)) is True
    (request,) = seen
    assert (request.method, str(request.url)) == (
        "POST",
        "https://apps.fortnox.test/oauth-v1/revoke",
    )
    assert request.headers["Authorization"] == "Basic OFZ1cnRNR0RUZUFJOnlGS3dtZThMRVE="
    assert parse_qs(request.content.decode()) == {
        "token": ["rt-live"],
        "token_type_hint": ["refresh_token"],
    }


def test_revoke_of_a_token_fortnox_no_longer_knows_is_done() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": "invalid_grant"})

    assert asyncio.run(connector(handler).revoke(CREDENTIALS, CONNECTION)) is True


def test_revoke_without_a_refresh_token_has_nothing_to_revoke() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(200)

    assert asyncio.run(connector(handler).revoke({"access_token": "a"}, CONNECTION)) is False
    assert calls == []


@pytest.mark.parametrize(
    ("answer", "kind", "code"),
    [
        (httpx.Response(503), TemporaryFailure, ErrorCode.PROVIDER_UNAVAILABLE),
        (httpx.Response(429), TemporaryFailure, ErrorCode.RATE_LIMITED),
        (
            httpx.Response(401, json={"error": "invalid_client"}),
            PermanentFailure,
            ErrorCode.CREDENTIALS_INVALID,
        ),
        (httpx.Response(404), PermanentFailure, ErrorCode.CREDENTIALS_INVALID),
    ],
)
def test_revoke_failures(
    answer: httpx.Response, kind: type[ProviderError], code: ErrorCode
) -> None:
    with pytest.raises(kind) as info:
        asyncio.run(connector(lambda r: answer).revoke(CREDENTIALS, CONNECTION))
    assert info.value.code is code
    assert "rt-live" not in info.value.message


def test_revoke_that_times_out_is_temporary_after_its_retries() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(TemporaryFailure) as info:
        asyncio.run(connector(handler, attempts=3).revoke(CREDENTIALS, CONNECTION))
    assert info.value.code is ErrorCode.TIMEOUT
    assert calls == [1, 1, 1]


def test_identity_is_the_organisation_number() -> None:
    fortnox = connector()
    assert fortnox.identity(CONNECTION, {}) == "556677-8899"
    assert fortnox.identity({}, {"organization_number": "556000-0001"}) == "556000-0001"
    assert fortnox.identity({"company_name": "Acme AB"}, {}) is None


def test_can_refresh_needs_a_refresh_token() -> None:
    fortnox = connector()
    assert fortnox.can_refresh(CREDENTIALS) is True
    assert fortnox.can_refresh({"access_token": "a"}) is False
    assert fortnox.can_refresh({"access_token": "a", "refresh_token": ""}) is False


def test_the_provider_value() -> None:
    assert (PROVIDER.type, PROVIDER.title, PROVIDER.webhooks) == ("fortnox", "Fortnox", None)
    assert PROVIDER.settings is FortnoxSettings
    assert PROVIDER.routes == (("metadata", "fortnox_tenant_id"),)
    assert PROVIDER.stream_key == "fortnox_tenant_id"
    assert PROVIDER.topic("invoices").sets_state is False  # every topic is recorded only
    http = HttpLayer(httpx.MockTransport(lambda r: httpx.Response(500)))
    assert isinstance(PROVIDER.connector(settings(), http, utc_now), FortnoxConnector)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTIONS_FORTNOX_WS_URL", "ws://127.0.0.1:9/topics-v1")
    monkeypatch.setenv("CONNECTIONS_FORTNOX_TOPICS", " invoices, customers,,")
    monkeypatch.setenv("CONNECTIONS_FORTNOX_CLIENT_SECRET", "yFKwme8LEQ")
    monkeypatch.setenv("CONNECTIONS_FORTNOX_SCOPES", "companyinformation invoice")
    read = FortnoxSettings()
    assert read.ws_url == "ws://127.0.0.1:9/topics-v1"
    assert read.topic_list() == ["invoices", "customers"]
    assert read.client_secret is not None
    assert read.client_secret.get_secret_value() == "yFKwme8LEQ"
    assert read.scopes == "companyinformation invoice"
    assert "yFKwme8LEQ" not in repr(read)


def test_default_topics_and_stream() -> None:
    defaults = FortnoxSettings(_env_prefix="CONNECTIONS_UNSET_FORTNOX_")  # type: ignore[call-arg]
    assert defaults.ws_url == "wss://ws.fortnox.se/topics-v1"
    assert defaults.topic_list() == [
        "invoices",
        "customers",
        "orders",
        "offers",
        "articles",
        "suppliers",
        "supplier-invoices",
        "vouchers",
    ]
