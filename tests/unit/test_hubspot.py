"""The HubSpot connector without a network: the authorize link, code exchange, refresh (the
uninstall seen as `invalid_grant`), revoke, the account-details check, the classification of
every status HubSpot documents, and the per-portal limiter fed by HubSpot's headers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from connectors.base import ErrorCode, PermanentFailure, ProviderError, TemporaryFailure
from connectors.http import HttpLayer, RetryPolicy
from connectors.hubspot import (
    PROVIDER,
    HubSpotConnector,
    HubSpotFields,
    HubSpotSettings,
    classify_api,
    missing_scopes,
)
from connectors.hubspot.connector import token_key
from tests.unit.fakes import FakeTime

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
API = "https://api.hubapi.test"
PORTAL = "62515"
CONNECTION = {"portal_id": PORTAL, "scopes": ["oauth"]}
CREDENTIALS = {
    "access_token": "CJSP-access",
    "refresh_token": "na1-aaaa-bbbb",
    "expires_at": (NOW + timedelta(minutes=30)).isoformat(),
}
REDIRECT = "https://app.standout.test/connect/hubspot/callback"
ONE_TRY = RetryPolicy(attempts=1)
Handler = Callable[[httpx.Request], httpx.Response]


def settings(**overrides: Any) -> HubSpotSettings:
    values: dict[str, Any] = {
        "api_base_url": API,
        "auth_base_url": "https://app.hubspot.test",
        "client_id": "client-1",
        "client_secret": SecretStr("secret-1"),
    }
    return HubSpotSettings(**{**values, **overrides})


def connector(
    handler: Handler,
    *,
    policy: RetryPolicy = ONE_TRY,
    fake: FakeTime | None = None,
    **overrides: Any,
) -> HubSpotConnector:
    fake = fake or FakeTime()
    http = HttpLayer(httpx.MockTransport(handler), retry=policy, sleep=fake.sleep, clock=fake.clock)
    return HubSpotConnector(settings(**overrides), http, clock=lambda: NOW)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def form(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


def tokens(
    access: str = "CJSP-new", refresh: str | None = "na1-new", **extra: Any
) -> httpx.Response:
    body: dict[str, Any] = {
        "token_type": "bearer",
        "access_token": access,
        "expires_in": 1800,
        "hub_id": 62515,
        "scopes": ["oauth", "crm.objects.contacts.read"],
        **extra,
    }
    if refresh is not None:
        body["refresh_token"] = refresh
    return httpx.Response(200, json=body)


def details(portal: int = 62515, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "portalId": portal,
            "accountType": "STANDARD",
            "timeZone": "Europe/Stockholm",
            "companyCurrency": "SEK",
            "additionalCurrencies": [],
            "utcOffset": "+01:00",
            "utcOffsetMilliseconds": 3600000,
            "uiDomain": "app-eu1.hubspot.com",
            "dataHostingLocation": "eu1",
        },
        headers=headers,
    )


# -- the authorize link -------------------------------------------------------------------------


def test_the_authorize_link_is_hubspots_with_space_separated_scopes() -> None:
    hub = connector(lambda r: httpx.Response(500), scopes="oauth crm.objects.contacts.read")
    link = hub.authorize_url(state="st/a te", redirect_uri=REDIRECT)
    assert link == (
        "https://app.hubspot.test/oauth/authorize?client_id=client-1"
        "&scope=oauth%20crm.objects.contacts.read"
        "&redirect_uri=https%3A%2F%2Fapp.standout.test%2Fconnect%2Fhubspot%2Fcallback"
        "&state=st%2Fa%20te"
    )
    query = parse_qs(urlsplit(link).query)
    assert query["scope"] == ["oauth crm.objects.contacts.read"]
    assert query["redirect_uri"] == [REDIRECT]
    assert "response_type" not in query


def test_optional_scopes_go_in_their_own_parameter() -> None:
    hub = connector(lambda r: httpx.Response(500), optional_scopes="crm.objects.deals.read")
    link = hub.authorize_url(state="s", redirect_uri=REDIRECT, shop_domain=None)
    assert parse_qs(urlsplit(link).query)["optional_scope"] == ["crm.objects.deals.read"]


def test_no_authorize_link_without_the_app() -> None:
    hub = connector(lambda r: httpx.Response(500), client_id=None)
    with pytest.raises(PermanentFailure, match="CONNECTIONS_HUBSPOT_CLIENT_ID"):
        hub.authorize_url(state="s", redirect_uri=REDIRECT)


# -- authorize ----------------------------------------------------------------------------------


def test_authorize_exchanges_the_code_with_the_client_in_the_form() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return tokens()

    fields = HubSpotFields(code=SecretStr("code-1"), redirect_uri=REDIRECT)
    authorized = run(connector(handler).authorize(fields))
    assert str(seen[0].url) == f"{API}/oauth/2026-03/token"
    assert seen[0].headers["content-type"] == "application/x-www-form-urlencoded"
    assert "authorization" not in seen[0].headers
    assert form(seen[0]) == {
        "grant_type": "authorization_code",
        "code": "code-1",
        "redirect_uri": REDIRECT,
        "client_id": "client-1",
        "client_secret": "secret-1",
    }
    assert authorized.credentials == {
        "access_token": "CJSP-new",
        "refresh_token": "na1-new",
        "expires_at": (NOW + timedelta(seconds=1800)).isoformat(),
    }
    assert authorized.expires_at == NOW + timedelta(seconds=1800)
    assert authorized.connection == {
        "portal_id": "62515",
        "scopes": ["oauth", "crm.objects.contacts.read"],
    }


def test_an_answer_without_hub_id_learns_the_portal_from_the_details() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"access_token": "a", "refresh_token": "r"})
        assert request.headers["authorization"] == "Bearer a"
        return details(777)

    fields = HubSpotFields(code=SecretStr("c"), redirect_uri=REDIRECT)
    authorized = run(connector(handler).authorize(fields))
    assert authorized.connection == {"portal_id": "777", "scopes": ["oauth"]}
    assert authorized.expires_at == NOW + timedelta(seconds=1800)  # the setting, when unsaid


@pytest.mark.parametrize(
    ("answer", "code", "words"),
    [
        (
            httpx.Response(400, json={"error": "invalid_grant", "status": "BAD_AUTH_CODE"}),
            ErrorCode.CREDENTIALS_INVALID,
            "authorization code",
        ),
        (
            httpx.Response(400, json={"error": "invalid_client"}),
            ErrorCode.CREDENTIALS_INVALID,
            "client id or secret",
        ),
        (httpx.Response(200, json={"refresh_token": "r"}), ErrorCode.CREDENTIALS_INVALID, "no acc"),
        (httpx.Response(503), ErrorCode.PROVIDER_UNAVAILABLE, "503"),
        (httpx.Response(429), ErrorCode.RATE_LIMITED, "rate limiting"),
    ],
)
def test_a_refused_exchange(answer: httpx.Response, code: ErrorCode, words: str) -> None:
    fields = HubSpotFields(code=SecretStr("c"), redirect_uri=REDIRECT)
    with pytest.raises(ProviderError, match=words) as caught:
        run(connector(lambda r: answer).authorize(fields))
    assert caught.value.code is code


def test_authorize_without_the_app_configured() -> None:
    fields = HubSpotFields(code=SecretStr("c"), redirect_uri=REDIRECT)
    with pytest.raises(PermanentFailure, match="not configured"):
        run(connector(lambda r: tokens(), client_secret=None).authorize(fields))


@pytest.mark.parametrize(
    "raw",
    [
        {"code": "c", "redirect_uri": REDIRECT, "extra": 1},
        {"code": "  ", "redirect_uri": REDIRECT},
        {"code": "c", "redirect_uri": "/relative"},
        {"code": "c"},
    ],
)
def test_bad_credential_fields(raw: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        HubSpotFields.model_validate(raw)


# -- refresh ------------------------------------------------------------------------------------


def test_refresh_stores_the_answers_refresh_token() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return tokens(scopes=["oauth"])

    refreshed = run(connector(handler).refresh(dict(CREDENTIALS), dict(CONNECTION)))
    assert form(seen[0]) == {
        "grant_type": "refresh_token",
        "refresh_token": "na1-aaaa-bbbb",
        "client_id": "client-1",
        "client_secret": "secret-1",
    }
    assert refreshed.credentials["refresh_token"] == "na1-new"
    assert refreshed.credentials["access_token"] == "CJSP-new"
    assert refreshed.expires_at == NOW + timedelta(seconds=1800)
    assert refreshed.connection == {"portal_id": PORTAL, "scopes": ["oauth"]}


def test_refresh_keeps_the_old_refresh_token_when_none_comes_back() -> None:
    refreshed = run(connector(lambda r: tokens(refresh=None)).refresh(CREDENTIALS, CONNECTION))
    assert refreshed.credentials["refresh_token"] == "na1-aaaa-bbbb"


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (
            httpx.Response(
                400,
                json={
                    "error": "invalid_grant",
                    "error_description": "refresh token is invalid, expired or revoked",
                    "status": "BAD_REFRESH_TOKEN",
                    "message": "refresh token is invalid, expired or revoked",
                },
            ),
            ErrorCode.CONNECTION_REVOKED,
        ),
        (
            httpx.Response(
                400, json={"status": "BAD_REFRESH_TOKEN", "message": "missing or invalid"}
            ),
            ErrorCode.CONNECTION_REVOKED,
        ),
        (httpx.Response(400, json={"error": "invalid_client"}), ErrorCode.REFRESH_FAILED),
        (
            httpx.Response(400, json={"category": "VALIDATION_ERROR", "message": "bad"}),
            ErrorCode.REFRESH_FAILED,
        ),
        (httpx.Response(200, json={"nothing": 1}), ErrorCode.REFRESH_FAILED),
    ],
)
def test_a_refused_refresh(answer: httpx.Response, code: ErrorCode) -> None:
    with pytest.raises(PermanentFailure) as caught:
        run(connector(lambda r: answer).refresh(CREDENTIALS, CONNECTION))
    assert caught.value.code is code
    assert CREDENTIALS["refresh_token"] not in caught.value.message
    if code is ErrorCode.CONNECTION_REVOKED:
        assert "uninstalled" in caught.value.message
        assert "connect the HubSpot account again" in caught.value.message


@pytest.mark.parametrize("status", [429, 500, 503])
def test_a_refresh_while_hubspot_struggles_is_temporary(status: int) -> None:
    with pytest.raises(TemporaryFailure):
        run(connector(lambda r: httpx.Response(status)).refresh(CREDENTIALS, CONNECTION))


def test_no_refresh_without_a_refresh_token() -> None:
    hub = connector(lambda r: tokens())
    with pytest.raises(PermanentFailure) as caught:
        run(hub.refresh({"access_token": "a"}, CONNECTION))
    assert caught.value.code is ErrorCode.REFRESH_FAILED
    assert hub.can_refresh({"access_token": "a"}) is False
    assert hub.can_refresh(CREDENTIALS) is True


def test_needs_refresh_within_the_margin() -> None:
    hub = connector(lambda r: tokens())
    assert hub.needs_refresh(CREDENTIALS, NOW) is False
    assert hub.needs_refresh(CREDENTIALS, NOW + timedelta(minutes=24, seconds=59)) is False
    assert hub.needs_refresh(CREDENTIALS, NOW + timedelta(minutes=25)) is True
    assert hub.needs_refresh({"refresh_token": "r"}, NOW) is True  # expiry unknown
    assert hub.needs_refresh({"access_token": "a"}, NOW) is False


# -- revoke -------------------------------------------------------------------------------------


def test_revoke_posts_the_refresh_token() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    assert run(connector(handler).revoke(CREDENTIALS, CONNECTION)) is True
    assert str(seen[0].url) == f"{API}/oauth/2026-03/token/revoke"
    assert form(seen[0]) == {
        "token": "na1-aaaa-bbbb",
        "token_type_hint": "refresh_token",
        "client_id": "client-1",
        "client_secret": "secret-1",
    }


def test_revoking_a_token_hubspot_no_longer_knows_is_done() -> None:
    answer = httpx.Response(400, json={"error": "invalid_grant", "status": "BAD_REFRESH_TOKEN"})
    assert run(connector(lambda r: answer).revoke(CREDENTIALS, CONNECTION)) is True


def test_revoke_failures_raise() -> None:
    with pytest.raises(TemporaryFailure):
        run(connector(lambda r: httpx.Response(503)).revoke(CREDENTIALS, CONNECTION))
    refused = httpx.Response(400, json={"error": "invalid_client"})
    with pytest.raises(PermanentFailure, match="not revoked"):
        run(connector(lambda r: refused).revoke(CREDENTIALS, CONNECTION))


def test_nothing_to_revoke_without_a_refresh_token() -> None:
    hub = connector(lambda r: httpx.Response(500))
    assert run(hub.revoke({"access_token": "a"}, CONNECTION)) is False


# -- check --------------------------------------------------------------------------------------


def test_check_reads_the_account_details() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return details()

    result = run(connector(handler).check(CREDENTIALS, CONNECTION))
    assert str(seen[0].url) == f"{API}/account-info/2026-03/details"
    assert seen[0].headers["authorization"] == "Bearer CJSP-access"
    assert result.metadata == {
        "portal_id": "62515",
        "account_type": "STANDARD",
        "time_zone": "Europe/Stockholm",
        "currency": "SEK",
        "ui_domain": "app-eu1.hubspot.com",
        "data_hosting_location": "eu1",
    }


def test_a_token_of_another_portal_is_refused() -> None:
    with pytest.raises(PermanentFailure, match="another HubSpot portal") as caught:
        run(connector(lambda r: details(999)).check(CREDENTIALS, CONNECTION))
    assert caught.value.code is ErrorCode.CREDENTIALS_INVALID


def test_details_without_a_portal_are_temporary() -> None:
    with pytest.raises(TemporaryFailure):
        run(connector(lambda r: httpx.Response(200, json={})).check(CREDENTIALS, CONNECTION))


def test_identity_is_the_portal() -> None:
    hub = connector(lambda r: details())
    assert hub.identity(CONNECTION, {}) == PORTAL
    assert hub.identity({}, {"portal_id": "5"}) == "5"
    assert hub.identity({}, {}) is None


# -- classification -----------------------------------------------------------------------------


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    content = json.dumps(body).encode() if body is not None else b""
    return httpx.Response(status, content=content, headers=headers)


@pytest.mark.parametrize(
    ("response", "kind", "code", "wait"),
    [
        (
            answer(401, {"status": "error", "category": "EXPIRED_AUTHENTICATION", "message": "x"}),
            PermanentFailure,
            ErrorCode.CREDENTIALS_EXPIRED,
            None,
        ),
        (
            answer(401, {"category": "INVALID_AUTHENTICATION"}),
            PermanentFailure,
            ErrorCode.CREDENTIALS_INVALID,
            None,
        ),
        (answer(401), PermanentFailure, ErrorCode.CREDENTIALS_INVALID, None),
        (
            answer(403, {"category": "MISSING_SCOPES"}),
            PermanentFailure,
            ErrorCode.PERMISSION_MISSING,
            None,
        ),
        (answer(423), TemporaryFailure, ErrorCode.RATE_LIMITED, 2.0),
        (
            answer(429, {"errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"}),
            TemporaryFailure,
            ErrorCode.RATE_LIMITED,
            10.0,
        ),
        (
            answer(429, {"message": "You have reached your daily limit.", "policyName": "DAILY"}),
            TemporaryFailure,
            ErrorCode.RATE_LIMITED,
            3600.0,
        ),
        (
            answer(429, {"message": "You have reached your secondly limit."}),
            TemporaryFailure,
            ErrorCode.RATE_LIMITED,
            1.0,
        ),
        (answer(429, {"policyName": "SECONDLY"}), TemporaryFailure, ErrorCode.RATE_LIMITED, 1.0),
        (answer(429, None, {"Retry-After": "7"}), TemporaryFailure, ErrorCode.RATE_LIMITED, 7.0),
        (answer(429), TemporaryFailure, ErrorCode.RATE_LIMITED, 10.0),
        (
            answer(477, {"message": "Migration in progress"}, {"Retry-After": "120"}),
            TemporaryFailure,
            ErrorCode.PROVIDER_UNAVAILABLE,
            120.0,
        ),
        (answer(477), TemporaryFailure, ErrorCode.PROVIDER_UNAVAILABLE, 60.0),
        (answer(500), TemporaryFailure, ErrorCode.PROVIDER_UNAVAILABLE, None),
        (answer(502), TemporaryFailure, ErrorCode.PROVIDER_UNAVAILABLE, 3.0),
        (answer(503), TemporaryFailure, ErrorCode.PROVIDER_UNAVAILABLE, None),
        (answer(504), TemporaryFailure, ErrorCode.PROVIDER_UNAVAILABLE, 3.0),
        (answer(521), TemporaryFailure, ErrorCode.PROVIDER_UNAVAILABLE, None),
        (answer(400, {"message": "bad"}), PermanentFailure, ErrorCode.CREDENTIALS_INVALID, None),
        (
            answer(404, ["not", "an", "object"]),
            PermanentFailure,
            ErrorCode.CREDENTIALS_INVALID,
            None,
        ),
    ],
)
def test_every_documented_status_is_classified(
    response: httpx.Response, kind: type[ProviderError], code: ErrorCode, wait: float | None
) -> None:
    failure = classify_api(response, settings())
    assert type(failure) is kind
    assert failure is not None
    assert failure.code is code
    assert failure.retry_after == wait


def test_success_is_no_failure() -> None:
    assert classify_api(details(), settings()) is None


def test_the_waits_are_settings() -> None:
    tuned = settings(window_seconds=4.0, daily_limit_wait_seconds=600.0, locked_wait_seconds=0.5)
    ten = answer(429, {"policyName": "TEN_SECONDLY_ROLLING"})
    daily = answer(429, {"policyName": "DAILY"})
    assert [classify_api(r, tuned).retry_after for r in (ten, daily, answer(423))] == [  # type: ignore[union-attr]
        4.0,
        600.0,
        0.5,
    ]


def test_a_403_names_the_missing_scopes() -> None:
    body = {
        "status": "error",
        "message": "This app hasn't been granted all required scopes",
        "category": "MISSING_SCOPES",
        "errors": [
            {"message": "x", "context": {"requiredGranularScopes": ["crm.objects.contacts.read"]}},
            {"context": {"missingScopes": ["oauth", "crm.objects.contacts.read"]}},
            "odd",
            {"context": "odd"},
        ],
    }
    assert missing_scopes(body) == ["crm.objects.contacts.read", "oauth"]
    failure = classify_api(answer(403, body), settings())
    assert failure is not None
    assert "(crm.objects.contacts.read, oauth)" in failure.message
    assert missing_scopes({"context": {"missingScopes": ["a"]}}) == ["a"]
    assert missing_scopes({"errors": "odd"}) == []


# -- the per-portal limit -----------------------------------------------------------------------


def test_no_calls_remaining_pauses_the_portal_for_the_interval() -> None:
    headers = {
        "X-HubSpot-RateLimit-Max": "110",
        "X-HubSpot-RateLimit-Remaining": "0",
        "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
    }
    fake = FakeTime()
    hub = connector(lambda r: details(headers=headers), fake=fake)
    run(hub.check(CREDENTIALS, CONNECTION))
    assert hub.limiter.paused_for(PORTAL) == pytest.approx(10.0)
    assert hub.limiter.paused_for("another-portal") == 0.0
    run(hub.check(CREDENTIALS, CONNECTION))  # waits for the window instead of meeting a 429
    assert fake.waits == [pytest.approx(10.0)]


@pytest.mark.parametrize(
    "headers",
    [
        {
            "X-HubSpot-RateLimit-Remaining": "5",
            "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
        },
        {"X-HubSpot-RateLimit-Remaining": "nan"},
        {},
    ],
)
def test_calls_remaining_or_no_headers_do_not_pause(headers: dict[str, str]) -> None:
    hub = connector(lambda r: details(headers=headers))
    run(hub.check(CREDENTIALS, CONNECTION))
    assert hub.limiter.paused_for(PORTAL) == 0.0


def test_remaining_zero_without_an_interval_pauses_for_the_window() -> None:
    hub = connector(lambda r: details(headers={"X-HubSpot-RateLimit-Remaining": "0"}))
    run(hub.check(CREDENTIALS, CONNECTION))
    assert hub.limiter.paused_for(PORTAL) == pytest.approx(10.0)


def test_110_calls_per_10_seconds_per_portal() -> None:
    fake = FakeTime()
    hub = connector(lambda r: details(), fake=fake)

    async def many() -> None:
        for _ in range(111):
            await hub.check(CREDENTIALS, CONNECTION)
        await hub.check(CREDENTIALS, {"portal_id": "62515"})

    run(many())
    assert fake.waits == [pytest.approx(10.0)]  # the 111th waited for the window


def test_a_daily_limit_fails_the_next_call_at_once() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return answer(429, {"policyName": "DAILY", "message": "You have reached your daily limit."})

    fake = FakeTime()
    hub = connector(handler, fake=fake)
    with pytest.raises(TemporaryFailure):
        run(hub.check(CREDENTIALS, CONNECTION))
    assert len(calls) == 1
    with pytest.raises(TemporaryFailure, match="leave this portal alone") as caught:
        run(hub.check(CREDENTIALS, CONNECTION))
    assert len(calls) == 1  # not sent, and nobody slept for an hour
    assert fake.waits == []
    assert caught.value.retry_after == pytest.approx(3600.0)


def test_before_the_portal_is_known_the_key_is_a_token_digest() -> None:
    hub = connector(lambda r: details(headers={"X-HubSpot-RateLimit-Remaining": "0"}))
    run(hub.check(CREDENTIALS, {}))
    assert hub.limiter.paused_for(PORTAL) == 0.0
    assert hub.limiter.paused_for(CREDENTIALS["access_token"]) == 0.0  # no token as a key
    assert hub.limiter.paused_for(token_key(CREDENTIALS)) == pytest.approx(10.0)
    assert len(hub.limiter) == 1


# -- the provider -------------------------------------------------------------------------------


def test_the_provider_value() -> None:
    assert PROVIDER.type == HubSpotConnector.type == "hubspot"
    assert PROVIDER.title == "HubSpot"
    assert PROVIDER.settings is HubSpotSettings
    assert PROVIDER.routes == (("connection", "portal_id"),)
    assert PROVIDER.topics == {}
    assert PROVIDER.batches is True  # one request, many events
    assert PROVIDER.topic("contact.deletion").sets_state is False  # recorded only
    http = HttpLayer(httpx.MockTransport(lambda r: details()))
    assert isinstance(PROVIDER.connector(settings(), http, lambda: NOW), HubSpotConnector)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTIONS_HUBSPOT_CLIENT_ID", "env-client")
    monkeypatch.setenv("CONNECTIONS_HUBSPOT_CLIENT_SECRET", "env-secret")
    monkeypatch.setenv("CONNECTIONS_HUBSPOT_REQUESTS_PER_WINDOW", "100")
    loaded = HubSpotSettings()
    assert loaded.client_id == "env-client"
    assert loaded.client_secret is not None
    assert loaded.client_secret.get_secret_value() == "env-secret"
    assert loaded.requests_per_window == 100
    assert loaded.token_path == "/oauth/2026-03/token"
    assert loaded.api_base_url == "https://api.hubapi.com"
    assert "env-secret" not in repr(loaded)
