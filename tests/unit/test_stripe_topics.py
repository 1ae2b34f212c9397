"""What Stripe's topics say about an account, read from plain payloads: a deauthorization
disconnects, and `account.updated` carries metadata, a disablement, or its end."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.base import ErrorCode
from connectors.provider import RECORD
from connectors.stripe import PROVIDER, TOPICS

ACCOUNT = "acct_1NcOnnected"


def updated(obj: Any) -> dict[str, Any]:
    return {"id": "evt_1", "type": "account.updated", "data": {"object": obj}}


def read(topic: str, payload: dict[str, Any], key: str | None = ACCOUNT) -> Any:
    return PROVIDER.topic(topic).read(payload, key)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (
            ACCOUNT,
            f"Stripe says {ACCOUNT} deauthorized the application; "
            "connect it again to restore access",
        ),
        (
            None,
            "Stripe says the account deauthorized the application; "
            "connect it again to restore access",
        ),
    ],
)
def test_a_deauthorization_disconnects(key: str | None, expected: str) -> None:
    change = read("account.application.deauthorized", {"account": ACCOUNT}, key)
    assert change.disconnect == expected
    assert (change.error, change.resolve, dict(change.metadata)) == (None, frozenset(), {})
    assert PROVIDER.topic("account.application.deauthorized").sets_state is True


def test_disabled_charges_open_account_locked_with_the_new_metadata() -> None:
    obj = {
        "id": ACCOUNT,
        "charges_enabled": False,
        "payouts_enabled": False,
        "country": "SE",
        "default_currency": "sek",
        "business_profile": {"name": "Locked AB"},
        "requirements": {"disabled_reason": "requirements.past_due", "currently_due": ["tos"]},
    }
    change = read("account.updated", updated(obj))
    assert change.error is not None
    code, message = change.error
    assert code is ErrorCode.ACCOUNT_LOCKED
    assert "charges and payouts" in message
    assert "requirements.past_due" in message
    assert message.endswith(": tos")
    assert change.resolve == frozenset()
    assert dict(change.metadata) == {
        "charges_enabled": False,
        "payouts_enabled": False,
        "country": "SE",
        "default_currency": "sek",
        "disabled_reason": "requirements.past_due",
        "currently_due": ["tos"],
        "business_name": "Locked AB",
    }
    assert change.disconnect is None


@pytest.mark.parametrize(
    "obj",
    [
        {"charges_enabled": True, "payouts_enabled": True},
        {"requirements": {"disabled_reason": None}},
        # Payouts not enabled yet while onboarding (no reason) is not a disablement.
        {"charges_enabled": True, "payouts_enabled": False, "requirements": {}},
    ],
)
def test_a_payload_that_says_not_disabled_resolves_account_locked(obj: dict[str, Any]) -> None:
    change = read("account.updated", updated(obj))
    assert change.error is None
    assert change.resolve == frozenset({ErrorCode.ACCOUNT_LOCKED})
    assert change.resolved_reason == "Stripe enabled charges and payouts again"


def test_requirements_without_lists_become_empty_metadata() -> None:
    change = read("account.updated", updated({"requirements": {"disabled_reason": None}}))
    assert dict(change.metadata) == {"disabled_reason": None, "currently_due": []}


def test_metadata_only_changes_nothing_else() -> None:
    obj = {"id": ACCOUNT, "country": "NO", "business_profile": {"name": ""}, "email": "x@y.z"}
    change = read("account.updated", updated(obj))
    assert dict(change.metadata) == {"country": "NO"}
    assert (change.error, change.resolve, change.disconnect) == (None, frozenset(), None)


@pytest.mark.parametrize(
    "payload",
    [
        {"id": "evt_1", "type": "account.updated"},
        {"data": None},
        {"data": []},
        {"data": {}},
        {"data": {"object": "acct_1"}},
        {"data": {"object": None}},
    ],
)
def test_an_update_without_an_account_object_is_refused(payload: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="data.object"):
        read("account.updated", payload)


def test_other_topics_are_recorded() -> None:
    assert set(TOPICS) == {"account.application.deauthorized", "account.updated"}
    assert PROVIDER.topic("charge.succeeded") is RECORD
    assert PROVIDER.topic("account.updated").sets_state is True
