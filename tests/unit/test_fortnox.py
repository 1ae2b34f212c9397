"""The Fortnox connector without a network: code exchange with Basic client auth, single-use
refresh, ErrorInformation codes in any casing, and the per-tenant limiter. (The OAuth pieces on
their own: test_fortnox_oauth.py; the stream protocol: test_fortnox_stream.py.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from connectors.base import ErrorCode, PermanentFailure, ProviderError, TemporaryFailure
from connectors.fortnox import (
    FortnoxConnector,
    FortnoxFields,
    FortnoxSettings,
    basic_auth,
    error_information,
)
from connectors.http import HttpLayer, RetryPolicy
from tests.unit.fakes import FakeTime

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ACCESS = "eyJ" + "x" * 40
CONNECTION = {"company_name": "Acme AB", "organization_number": "556677-8899"}
ONE_TRY = RetryPolicy(attempts=1)
Handler = Callable[[httpx.Request], httpx.Response]


def connector(
    handler: Handler, *, policy: RetryPolicy = ONE_TRY, fake: FakeTime | None = None
) -> FortnoxConnector:
    fake = fake or FakeTime()
    http = HttpLayer(httpx.MockTransport(handler), retry=policy, sleep=fake.sleep, clock=fake.clock)
    settings = FortnoxSettings(
        api_base_url="https://api.fortnox.test",
        auth_base_url="https://apps.fortnox.test",
        client_id="8VurtMGDTeAI",
        client_secret=SecretStr("yFKwme8LEQ"),
    )
    return FortnoxConnector(settings, http, clock=lambda: NOW)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def company(request: httpx.Request) -> httpx.Response:
    assert request.url == "https://api.fortnox.test/3/companyinformation"
    return httpx.Response(
        200,
        json={
            "CompanyInformation": {
                "CompanyName": "Acme AB",
                "OrganizationNumber": "556677-8899",
                "City": "Växjö",
            }
        },
    )


def tokens(access: str = "eyJnew", refresh: str = "rt-new") -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "access_token": access,
            "refresh_token": refresh,
            "scope": "companyinformation",
            "expires_in": 3600,
            "token_type": "Bearer",
        },
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"code": "abc"},
        {"redirect_uri": "https://app.example/cb"},
        {"code": "  ", "redirect_uri": "https://app.example/cb"},
        {"code": "abc", "redirect_uri": "app.example/cb"},
        {"code": "abc", "redirect_uri": "https://app.example/cb", "access_token": "x"},
    ],
)
def test_fields_refuse_bad_forms(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        FortnoxFields.model_validate(fields)


def test_authorize_exchanges_the_code_with_basic_auth_and_names_the_company() -> None:
    token_requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth-v1/token":
            token_requests.append(request)
            return tokens()
        assert request.headers["Authorization"] == "Bearer eyJnew"
        assert request.headers["Accept"] == "application/json"
        return company(request)

    fields = FortnoxFields(code=SecretStr("the-code"), redirect_uri="https://app.example/cb")
    authorized = run(connector(handler).authorize(fields))
    (request,) = token_requests
    assert str(request.url) == "https://apps.fortnox.test/oauth-v1/token"
    assert request.headers["Authorization"] == "Basic OFZ1cnRNR0RUZUFJOnlGS3dtZThMRVE="
    assert parse_qs(request.content.decode()) == {
        "grant_type": ["authorization_code"],
        "code": ["the-code"],
        "redirect_uri": ["https://app.example/cb"],
    }
    assert authorized.credentials == {
        "access_token": "eyJnew",
        "refresh_token": "rt-new",
        "expires_at": (NOW + timedelta(hours=1)).isoformat(),
    }
    assert authorized.expires_at == NOW + timedelta(hours=1)
    assert authorized.connection == {**CONNECTION, "scope": "companyinformation"}


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, {"error": "invalid_grant", "error_description": "Invalid authorization code"}),
        (401, {"error": "invalid_client"}),
    ],
)
def test_a_refused_exchange_is_credentials_invalid(status: int, body: dict[str, str]) -> None:
    fields = FortnoxFields(code=SecretStr("the-code"), redirect_uri="https://app.example/cb")
    with pytest.raises(PermanentFailure) as info:
        run(connector(lambda r: httpx.Response(status, json=body)).authorize(fields))
    assert info.value.code is ErrorCode.CREDENTIALS_INVALID
    assert "the-code" not in info.value.message


def test_needs_refresh_before_expiry() -> None:
    fortnox = connector(company)

    def at(minutes: float) -> dict[str, Any]:
        expires = (NOW + timedelta(minutes=minutes)).isoformat()
        return {"access_token": ACCESS, "refresh_token": "rt", "expires_at": expires}

    assert not fortnox.needs_refresh(at(30), NOW)
    assert fortnox.needs_refresh(at(4), NOW)
    assert fortnox.needs_refresh(at(-60), NOW)


def test_refresh_spends_the_refresh_token_for_a_new_pair() -> None:
    seen: list[dict[str, list[str]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == basic_auth("8VurtMGDTeAI", "yFKwme8LEQ")
        seen.append(parse_qs(request.content.decode()))
        return tokens("eyJrotated", "rt-rotated")

    credentials = {"access_token": ACCESS, "refresh_token": "rt-old", "expires_at": NOW.isoformat()}
    refreshed = run(connector(handler).refresh(credentials, CONNECTION))
    assert seen == [{"grant_type": ["refresh_token"], "refresh_token": ["rt-old"]}]
    assert refreshed.credentials["access_token"] == "eyJrotated"
    assert refreshed.credentials["refresh_token"] == "rt-rotated"
    assert refreshed.connection == CONNECTION


def test_an_invalid_refresh_token_is_refresh_failed_and_not_retried() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        body = {"error": "invalid_grant", "error_description": "Invalid refresh token"}
        return httpx.Response(400, json=body)

    policy = RetryPolicy(attempts=4, initial_wait=0.01)
    credentials = {"access_token": ACCESS, "refresh_token": "rt-used"}
    with pytest.raises(PermanentFailure) as info:
        run(connector(handler, policy=policy).refresh(credentials, CONNECTION))
    assert info.value.code is ErrorCode.REFRESH_FAILED
    assert "rt-used" not in info.value.message
    assert calls == [1]


def test_check_reads_the_company() -> None:
    result = run(connector(company).check({"access_token": ACCESS}, CONNECTION))
    assert result.metadata == {"company_name": "Acme AB", "organization_number": "556677-8899"}


@pytest.mark.parametrize(
    ("status", "body", "code", "kind"),
    [
        (
            401,
            {"ErrorInformation": {"error": 1, "message": "Invalid token", "code": 2000310}},
            ErrorCode.CREDENTIALS_INVALID,
            PermanentFailure,
        ),
        (
            400,
            {"ErrorInformation": {"Error": 1, "Message": "Bad secret", "Code": "2000311"}},
            ErrorCode.CREDENTIALS_INVALID,
            PermanentFailure,
        ),
        (
            400,
            {"errorInformation": {"error": 1, "message": "No licence", "code": 2001103}},
            ErrorCode.LICENCE_MISSING,
            PermanentFailure,
        ),
        (
            403,
            {"ErrorInformation": {"ERROR": 1, "MESSAGE": "Scope licence", "CODE": 2001101}},
            ErrorCode.LICENCE_MISSING,
            PermanentFailure,
        ),
        (
            500,
            {"ErrorInformation": {"error": 1, "message": "System error", "code": 1000003}},
            ErrorCode.PROVIDER_UNAVAILABLE,
            TemporaryFailure,
        ),
        (401, None, ErrorCode.CREDENTIALS_INVALID, PermanentFailure),
        (403, None, ErrorCode.PERMISSION_MISSING, PermanentFailure),
        (429, {"message": "Too Many Requests"}, ErrorCode.RATE_LIMITED, TemporaryFailure),
        (502, None, ErrorCode.PROVIDER_UNAVAILABLE, TemporaryFailure),
    ],
)
def test_check_failures_map_to_codes(
    status: int, body: dict[str, Any] | None, code: ErrorCode, kind: type[ProviderError]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body) if body else httpx.Response(status)

    with pytest.raises(kind) as info:
        run(connector(handler).check({"access_token": ACCESS}, CONNECTION))
    assert info.value.code is code
    assert ACCESS not in info.value.message


def test_error_information_reads_any_casing() -> None:
    body = {"ErrorInformation": {"Error": 1, "Message": "Saknas", "Code": 2001103}}
    assert error_information(httpx.Response(400, json=body)) == (2001103, "Saknas")
    assert error_information(httpx.Response(400, text="<html>")) == (None, "")
    assert error_information(httpx.Response(400, json={"ErrorInformation": "x"})) == (None, "")


def test_a_429_without_retry_after_waits_a_whole_window() -> None:
    answers = [httpx.Response(429), company]
    fake = FakeTime()
    policy = RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.05, max_total_wait=30)

    def handler(request: httpx.Request) -> httpx.Response:
        answer = answers.pop(0)
        return answer(request) if callable(answer) else answer

    run(connector(handler, policy=policy, fake=fake).check({"access_token": ACCESS}, CONNECTION))
    assert answers == []
    assert fake.waits == [5.0]


def test_the_limiter_keeps_25_calls_per_5_seconds_per_company() -> None:
    fake = FakeTime()
    sent: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(fake.now)
        return company(request)

    fortnox = connector(handler, fake=fake)

    async def many() -> None:
        for _ in range(60):
            await fortnox.check({"access_token": ACCESS}, CONNECTION)
        await fortnox.check({"access_token": ACCESS}, {**CONNECTION, "organization_number": "2"})

    run(many())
    assert len(sent) == 61
    for i, t in enumerate(sent[:60]):
        window = [s for s in sent[:60] if t - 5.0 < s <= t]
        assert len(window) <= 25, f"call {i} saw {len(window)} calls in 5 s"
    assert sent[:60][-1] == pytest.approx(10.0)  # 25 at 0 s, 25 at 5 s, 10 at 10 s
    assert sent[60] == sent[59]  # another company does not wait for this one


def test_secrets_are_not_in_the_settings_repr() -> None:
    settings = FortnoxSettings(client_id="id", client_secret=SecretStr("yFKwme8LEQ"))
    assert "yFKwme8LEQ" not in repr(settings)
    assert "yFKwme8LEQ" not in json.dumps(settings.model_dump(mode="json"))
