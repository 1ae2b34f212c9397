"""`accounts.add` and `accounts.update` with `credentials_sealed` (as connect sessions and the
HTTP job intake send them): opened inside the job, exactly one of the two forms, anything else
`invalid` and nothing stored; and the identity pin of `accounts.update` with plain credentials."""

from __future__ import annotations

import json
import secrets
import uuid

import pytest
from cryptography.fernet import Fernet

from models import Account
from tests.integration.jobs import add, counts, update
from tests.simulators.stripe import StripeSimulator
from worker.service import sealed
from worker.service.deps import Deps
from worker.vault import Vault


def test_add_with_sealed_credentials(deps: Deps, stripe_sim: StripeSimulator) -> None:
    _, key = stripe_sim.add_account("Sealed AB")
    result = add(deps, credentials_sealed=sealed.seal(deps.vault, {"api_key": key}))
    assert result["status"] == "succeeded", result
    assert key not in json.dumps(result)
    with deps.db.unit_of_work() as s:
        account = s.get(Account, uuid.UUID(result["account"]["id"]))
        assert account is not None
        assert deps.vault.decrypt(account.credentials) == {"api_key": key}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"credentials": {"api_key": "sk_test_" + "a" * 20}, "credentials_sealed": "x"},
        {"credentials_sealed": "not sealed at all"},
        {"credentials_sealed": {"api_key": "sk_test_" + "a" * 20}},
        {"credentials_sealed": sealed.seal(Vault([Fernet.generate_key().decode()]), {"a": 1})},
        {},
    ],
    ids=["both", "garbage", "an object", "another vault", "neither"],
)
def test_add_refuses_anything_but_one_usable_form(deps: Deps, kwargs: dict) -> None:
    before = counts(deps)
    result = add(deps, **kwargs)
    assert (result["status"], result["reason"], result["step"]) == (
        "rejected",
        "invalid",
        "validate",
    )
    assert set(result["fields"]) & {"credentials", "credentials_sealed"}
    assert counts(deps) == before


def test_update_with_sealed_credentials_of_the_same_account(
    deps: Deps, stripe_sim: StripeSimulator
) -> None:
    account_id, key = stripe_sim.add_account("Rolled AB")
    added = add(deps, credentials={"api_key": key})["account"]["id"]
    new_key = "sk_test_" + secrets.token_hex(12)
    stripe_sim.keys[new_key] = account_id  # the customer rolled the key
    done = update(
        deps,
        account_id=added,
        credentials_sealed=sealed.seal(deps.vault, {"api_key": new_key}),
    )
    assert (done["status"], done["changed"]) == ("succeeded", ["credentials"])
    with deps.db.unit_of_work() as s:
        account = s.get(Account, uuid.UUID(added))
        assert account is not None
        assert deps.vault.decrypt(account.credentials) == {"api_key": new_key}


def test_update_refuses_both_forms_and_changes_nothing(
    deps: Deps, stripe_sim: StripeSimulator
) -> None:
    _, key = stripe_sim.add_account()
    added = add(deps, credentials={"api_key": key})["account"]["id"]
    before = counts(deps)
    result = update(
        deps,
        account_id=added,
        name="Renamed",
        credentials={"api_key": key},
        credentials_sealed=sealed.seal(deps.vault, {"api_key": key}),
    )
    assert (result["status"], result["reason"]) == ("rejected", "invalid")
    assert set(result["fields"]) == {"credentials", "credentials_sealed"}
    assert counts(deps) == before


def test_update_to_another_stripe_account_is_identity_mismatch(
    deps: Deps, stripe_sim: StripeSimulator
) -> None:
    first, key = stripe_sim.add_account("First AB")
    added = add(deps, credentials={"api_key": key})["account"]["id"]
    with deps.db.unit_of_work() as s:
        stored = s.get(Account, uuid.UUID(added))
        assert stored is not None
        blob, version = stored.credentials, stored.credentials_version
    second, other_key = stripe_sim.add_account("Second AB")
    before = counts(deps)

    result = update(deps, account_id=added, name="Renamed", credentials={"api_key": other_key})
    assert (result["status"], result["reason"], result["step"]) == (
        "rejected",
        "identity_mismatch",
        "identity",
    )
    assert result["identity"] == {"expected": first, "given": second}
    assert other_key not in json.dumps(result)
    assert counts(deps) == before
    with deps.db.unit_of_work() as s:
        stored = s.get(Account, uuid.UUID(added))
        assert stored is not None
        assert (stored.credentials, stored.credentials_version) == (blob, version)
        assert stored.name == "Main"
