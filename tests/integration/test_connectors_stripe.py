"""Stripe against its simulator and the real PostgreSQL: each credential form added through
the `accounts.add` job, and every failure a check can get, with the status and error it leaves."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from connectors import ConnectorSettings
from models import Account
from tests.fixtures.connectors import (
    assert_fails_then_recovers,
    assert_slow_answers_time_out,
    stored,
)
from tests.simulators.base import Answer
from tests.simulators.stripe import StripeSimulator
from worker.service.deps import Deps


def test_add_with_an_api_key(deps: Deps, stripe_sim: StripeSimulator, add_account: Any) -> None:
    account_id, key = stripe_sim.add_account("Fika AB")
    result = add_account(deps, "stripe", {"api_key": key})
    assert result["status"] == "succeeded", result
    account, errors = stored(deps, result["account"]["id"])
    assert account.status == "connected"
    assert account.meta["business_name"] == "Fika AB"
    assert account.meta["stripe_account_id"] == account_id
    assert account.connection == {"mode": "api_key", "key_last4": key[-4:]}
    assert deps.vault.decrypt(account.credentials) == {"api_key": key}
    assert errors == []


def test_add_with_a_connect_code(deps: Deps, stripe_sim: StripeSimulator, add_account: Any) -> None:
    account_id, _ = stripe_sim.add_account("Connected AB")
    code = stripe_sim.issue_code(account_id)
    result = add_account(deps, "stripe", {"code": code})
    assert result["status"] == "succeeded", result
    account, _ = stored(deps, result["account"]["id"])
    assert account.connection["stripe_account_id"] == account_id
    assert account.meta["business_name"] == "Connected AB"
    assert "refresh_token" in deps.vault.decrypt(account.credentials)

    again = add_account(deps, "stripe", {"code": code})  # codes are single use
    assert again["status"] == "rejected"
    assert again["reason"] == "authorization_failed"
    assert again["error_code"] == "credentials_invalid"
    assert code not in again["message"]


def test_add_with_a_connected_account_id(
    deps: Deps, stripe_sim: StripeSimulator, add_account: Any
) -> None:
    account_id, _ = stripe_sim.add_account("Platform Child AB")
    result = add_account(deps, "stripe", {"stripe_account_id": account_id})
    assert result["status"] == "succeeded", result
    account, _ = stored(deps, result["account"]["id"])
    assert account.status == "connected"
    assert account.meta["business_name"] == "Platform Child AB"
    assert deps.vault.decrypt(account.credentials) == {}


def test_add_with_an_unknown_key_or_unconnected_account_is_rejected(
    deps: Deps, stripe_sim: StripeSimulator, add_account: Any
) -> None:
    bad_key = "sk_test_" + "0" * 24
    result = add_account(deps, "stripe", {"api_key": bad_key})
    assert (result["status"], result["reason"]) == ("rejected", "authorization_failed")
    assert result["error_code"] == "credentials_invalid"
    assert bad_key not in str(result)

    result = add_account(deps, "stripe", {"stripe_account_id": "acct_neverconnected"})
    assert (result["status"], result["reason"]) == ("rejected", "confirmation_failed")
    assert result["error_code"] == "connection_revoked"
    with deps.db.unit_of_work() as s:
        assert s.scalars(select(Account)).first() is None


@pytest.mark.parametrize(
    ("answer", "times", "status", "code"),
    [
        (
            Answer(401, {"error": {"message": "Invalid API Key provided"}}),
            1,
            "error",
            "credentials_invalid",
        ),
        (
            Answer(
                403,
                {"error": {"message": "The provided key does not have the required permissions"}},
            ),
            1,
            "error",
            "permission_missing",
        ),
        (
            Answer(429, {"error": {"message": "Too many requests"}}, {"Retry-After": "0.01"}),
            3,
            "degraded",
            "rate_limited",
        ),
        (Answer(500, {"error": {"message": "Internal"}}), 3, "degraded", "provider_unavailable"),
        (Answer(503), 3, "degraded", "provider_unavailable"),
    ],
)
def test_check_failures_set_status_and_error(
    deps: Deps,
    stripe_sim: StripeSimulator,
    add_account: Any,
    check_account: Any,
    answer: Answer,
    times: int,
    status: str,
    code: str,
) -> None:
    _, key = stripe_sim.add_account()
    account_id = add_account(deps, "stripe", {"api_key": key})["account"]["id"]
    stripe_sim.script.push(answer, times)
    assert_fails_then_recovers(deps, check_account, account_id, status, code)


def test_a_temporary_failure_within_the_retries_does_not_change_status(
    deps: Deps, stripe_sim: StripeSimulator, add_account: Any, check_account: Any
) -> None:
    _, key = stripe_sim.add_account()
    account_id = add_account(deps, "stripe", {"api_key": key})["account"]["id"]
    stripe_sim.fail_next(503, times=2)
    assert check_account(deps, account_id)["passed"] is True
    assert stored(deps, account_id)[0].status == "connected"


def test_a_rolled_key_leaves_the_account_in_error(
    deps: Deps, stripe_sim: StripeSimulator, add_account: Any, check_account: Any
) -> None:
    _, key = stripe_sim.add_account()
    account_id = add_account(deps, "stripe", {"api_key": key})["account"]["id"]
    stripe_sim.roll_key(key)
    result = check_account(deps, account_id)
    assert result["error_code"] == "credentials_invalid"
    assert stored(deps, account_id)[0].status == "error"


def test_revoked_connect_access_disconnects_the_account(
    deps: Deps, stripe_sim: StripeSimulator, add_account: Any, check_account: Any
) -> None:
    stripe_account, _ = stripe_sim.add_account()
    code = stripe_sim.issue_code(stripe_account)
    account_id = add_account(deps, "stripe", {"code": code})["account"]["id"]
    stripe_sim.revoke(stripe_account)
    calls_before = stripe_sim.count("/v1/account")

    result = check_account(deps, account_id)
    assert result["error_code"] == "connection_revoked"
    assert stripe_sim.count("/v1/account") == calls_before + 1  # permanent: never retried
    account, errors = stored(deps, account_id)
    assert account.status == "disconnected"
    assert [e.code for e in errors] == ["connection_revoked"]
    assert stripe_sim.platform_key not in errors[0].message


def test_a_slow_stripe_is_a_timeout(
    deps: Deps,
    stripe_sim: StripeSimulator,
    add_account: Any,
    check_account: Any,
    connector_settings: ConnectorSettings,
) -> None:
    _, key = stripe_sim.add_account()
    account_id = add_account(deps, "stripe", {"api_key": key})["account"]["id"]
    assert_slow_answers_time_out(deps, connector_settings, stripe_sim, check_account, account_id)
