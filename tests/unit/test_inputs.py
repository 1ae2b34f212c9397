"""Bad job input is `invalid` with the fields at fault, and never echoes the value."""

from __future__ import annotations

import uuid

import pytest

from connectors.stripe import StripeFields
from worker.service import inputs
from worker.service.outcomes import Action, Reason, Rejected, Role, parse_actor, require


@pytest.mark.parametrize(
    ("actor", "field"),
    [
        (None, "actor"),
        ("admin", "actor"),
        ({"user_id": "u1"}, "actor.role"),
        ({"user_id": "u1", "role": "owner"}, "actor.role"),
        ({"user_id": "", "role": "admin"}, "actor.user_id"),
        ({"user_id": "u1", "role": "admin", "extra": 1}, "actor.extra"),
    ],
)
def test_bad_actor_is_invalid(actor: object, field: str) -> None:
    with pytest.raises(Rejected) as caught:
        parse_actor(actor)
    assert caught.value.reason is Reason.INVALID
    assert field in caught.value.extra["fields"]


@pytest.mark.parametrize(
    ("role", "action", "allowed"),
    [(r, a, not (r is Role.READER and a is not Action.LIST)) for r in Role for a in Action],
)
def test_role_rules(role: Role, action: Action, allowed: bool) -> None:
    actor = parse_actor({"user_id": "u", "role": role.value})
    if allowed:
        require(actor, action)
    else:
        with pytest.raises(Rejected) as caught:
            require(actor, action)
        assert caught.value.reason is Reason.FORBIDDEN


@pytest.mark.parametrize("name", ["", "   ", "x" * 10_000, 42, None])
def test_bad_names(name: object) -> None:
    with pytest.raises(Rejected) as caught:
        inputs.name(name)
    assert set(caught.value.extra["fields"]) == {"name"}


def test_names_are_trimmed() -> None:
    assert inputs.name("  Main   store ") == "Main store"


@pytest.mark.parametrize("value", ["", "not-a-uuid", 12, None, "0" * 37])
def test_bad_account_ids(value: object) -> None:
    with pytest.raises(Rejected) as caught:
        inputs.account_id(value)
    assert caught.value.extra["fields"] == {"account_id": "must be an account id (a UUID)"}


def test_good_account_id() -> None:
    value = uuid.uuid4()
    assert inputs.account_id(str(value)) == value


@pytest.mark.parametrize("org", ["", "a b", "x" * 101, None, "org/../x"])
def test_bad_org_ids(org: object) -> None:
    with pytest.raises(Rejected):
        inputs.org_id(org)


def test_credential_errors_name_fields_but_not_values() -> None:
    secret = "sk_live_" + "s3cr3t" * 4 + "!"  # wrong shape: must be rejected, never echoed
    with pytest.raises(Rejected) as caught:
        inputs.credentials(StripeFields, {"api_key": secret, "colour": "blue"})
    fields = caught.value.extra["fields"]
    assert "credentials.api_key" in fields
    assert "credentials.colour" in fields
    assert secret not in repr(caught.value.extra) + caught.value.message


def test_credentials_must_be_an_object() -> None:
    with pytest.raises(Rejected) as caught:
        inputs.credentials(StripeFields, "sk_test_abc")
    assert caught.value.extra["fields"] == {"credentials": "must be an object of credential fields"}
