"""The account lifecycle on the real PostgreSQL: add, update, remove, and what each records."""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import select

from models import Account, Job, OutboxEvent, StatusChange
from tests.integration.jobs import (
    ADMIN,
    COLLABORATOR,
    READER,
    add,
    counts,
    link,
    remove,
    unlink,
    update,
)
from tests.simulators.stripe import StripeSimulator
from worker.service.deps import Deps
from worker.service.jobs import JobInProgress


def test_add_confirms_then_creates_a_connected_account(
    deps: Deps, stripe_sim: StripeSimulator
) -> None:
    account_id, key = stripe_sim.add_account("Fika AB")
    result = add(deps, credentials={"api_key": key}, settings={"currency": "sek"})
    assert result["status"] == "succeeded", result
    assert result["account"]["status"] == "connected"
    with deps.db.unit_of_work() as s:
        account = s.get(Account, uuid.UUID(result["account"]["id"]))
        assert account is not None
        assert account.meta["business_name"] == "Fika AB"
        assert account.meta["stripe_account_id"] == account_id
        assert account.settings == {"currency": "sek"}
        assert key.encode() not in account.credentials
        assert deps.vault.decrypt(account.credentials) == {"api_key": key}
        history = list(s.scalars(select(StatusChange)))
        assert [(h.from_status, h.to_status, h.source) for h in history] == [
            ("pending", "connected", "job")
        ]
        assert history[0].actor == ADMIN
        events = [e.type for e in s.scalars(select(OutboxEvent).order_by(OutboxEvent.seq))]
        assert events == ["account.added", "account.status_changed"]


def test_add_with_a_rejected_key_leaves_nothing(deps: Deps, stripe_sim: StripeSimulator) -> None:
    before = counts(deps)
    result = add(deps, credentials={"api_key": "sk_test_neverissued0000"})
    assert result["status"] == "rejected"
    assert result["reason"] == "authorization_failed"
    assert result["step"] == "authorize"
    assert result["error_code"] == "credentials_invalid"
    assert result["account"] is None
    assert counts(deps) == before


def test_add_when_the_provider_is_down_fails_and_leaves_nothing(
    deps: Deps, stripe_sim: StripeSimulator
) -> None:
    _, key = stripe_sim.add_account()
    stripe_sim.fail_next(503, times=10)
    before = counts(deps)
    result = add(deps, credentials={"api_key": key})
    assert (result["status"], result["reason"], result["error_code"]) == (
        "failed",
        "authorization_failed",
        "provider_unavailable",
    )
    assert counts(deps) == before


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"type": "paypal"}, "type"),
        ({"type": None}, "type"),
        ({"name": ""}, "name"),
        ({"name": "x" * 10_000}, "name"),
        ({"credentials": {}}, "credentials"),
        ({"credentials": {"api_key": 12345}}, "credentials.api_key"),
        ({"credentials": {"api_key": "pk_test_publishablekey"}}, "credentials.api_key"),
        ({"credentials": None}, "credentials"),
        ({"settings": ["not", "an", "object"]}, "settings"),
        ({"org_id": ""}, "org_id"),
        ({"actor": None}, "actor"),
        ({"actor": {"user_id": "u", "role": "owner"}}, "actor.role"),
    ],
)
def test_bad_input_is_invalid_and_writes_nothing(
    deps: Deps, stripe_sim: StripeSimulator, kwargs: dict[str, object], field: str
) -> None:
    _, key = stripe_sim.add_account()
    before = counts(deps)
    calls = len(stripe_sim.calls)
    result = add(deps, **{"credentials": {"api_key": key}, **kwargs})
    assert (result["status"], result["reason"]) == ("rejected", "invalid"), result
    assert any(f == field or f.startswith(field + ".") for f in result["fields"]), result
    assert counts(deps) == before
    assert len(stripe_sim.calls) == calls, "nothing was sent to the provider"


def test_a_repeated_request_id_has_one_effect(deps: Deps, stripe_sim: StripeSimulator) -> None:
    _, key = stripe_sim.add_account()
    first = add(deps, request_id="req-42", credentials={"api_key": key})
    again = add(deps, request_id="req-42", credentials={"api_key": key})
    assert again == first
    with deps.db.unit_of_work() as s:
        assert len(list(s.scalars(select(Account)))) == 1
        jobs = list(s.scalars(select(Job).order_by(Job.created_at)))
        assert [j.duplicate_of for j in jobs] == [None, first["job_id"]]


def test_concurrent_jobs_with_one_request_id_have_one_effect(
    deps: Deps, stripe_sim: StripeSimulator
) -> None:
    _, key = stripe_sim.add_account()
    results: list[dict[str, object]] = []

    def one() -> None:
        for _ in range(50):
            try:
                results.append(add(deps, request_id="req-race", credentials={"api_key": key}))
                return
            except JobInProgress:  # the Celery task would retry
                threading.Event().wait(0.05)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8
    assert len({r["account"]["id"] for r in results}) == 1  # type: ignore[index]
    with deps.db.unit_of_work() as s:
        assert len(list(s.scalars(select(Account)))) == 1


def test_update_replaces_credentials_only_once_confirmed(
    deps: Deps, stripe_sim: StripeSimulator
) -> None:
    stripe_account, key = stripe_sim.add_account("Old AB")
    added = add(deps, credentials={"api_key": key})
    account_id = added["account"]["id"]

    refused = update(deps, account_id=account_id, credentials={"api_key": "sk_test_unknownkey999"})
    assert (refused["status"], refused["reason"]) == ("rejected", "authorization_failed")
    with deps.db.unit_of_work() as s:
        stored = s.get(Account, uuid.UUID(account_id))
        assert stored is not None
        assert deps.vault.decrypt(stored.credentials) == {"api_key": key}

    # A rolled key of the same Stripe account (another account's key is `identity_mismatch`).
    new_key = "sk_test_rolledkey00000001"
    stripe_sim.keys[new_key] = stripe_account
    done = update(deps, account_id=account_id, credentials={"api_key": new_key}, name="Renamed")
    assert done["status"] == "succeeded", done
    assert done["changed"] == ["name", "credentials"]
    with deps.db.unit_of_work() as s:
        stored = s.get(Account, uuid.UUID(account_id))
        assert stored is not None
        assert deps.vault.decrypt(stored.credentials) == {"api_key": new_key}
        assert stored.name == "Renamed"
        assert stored.meta["business_name"] == "Old AB"
        assert stored.credentials_version == 2


def test_update_with_nothing_to_change_is_invalid(deps: Deps, stripe_sim: StripeSimulator) -> None:
    _, key = stripe_sim.add_account()
    account_id = add(deps, credentials={"api_key": key})["account"]["id"]
    result = update(deps, account_id=account_id)
    assert (result["status"], result["reason"]) == ("rejected", "invalid")


def test_remove_while_linked_is_refused_then_allowed(
    deps: Deps, stripe_sim: StripeSimulator
) -> None:
    _, key = stripe_sim.add_account()
    account_id = add(deps, credentials={"api_key": key})["account"]["id"]
    assert (
        link(deps, integration_id="wf-1", account_id=account_id, name="Invoices")["status"]
        == "succeeded"
    )
    assert (
        link(deps, integration_id="wf-2", account_id=account_id, name="Payouts")["status"]
        == "succeeded"
    )

    refused = remove(deps, account_id=account_id)
    assert (refused["status"], refused["reason"]) == ("rejected", "in_use")
    assert refused["integrations"] == [
        {"id": "wf-1", "name": "Invoices"},
        {"id": "wf-2", "name": "Payouts"},
    ]

    assert unlink(deps, integration_id="wf-1", account_id=account_id)["status"] == "succeeded"
    assert remove(deps, account_id=account_id)["reason"] == "in_use"
    assert unlink(deps, integration_id="wf-2", account_id=account_id)["status"] == "succeeded"
    removed = remove(deps, account_id=account_id)
    assert removed["status"] == "succeeded", removed
    with deps.db.unit_of_work() as s:
        assert s.get(Account, uuid.UUID(account_id)) is None
        last = s.scalars(select(OutboxEvent).order_by(OutboxEvent.seq.desc())).first()
        assert last is not None
        assert last.type == "account.removed"


def test_another_organizations_account_is_not_found(
    deps: Deps, stripe_sim: StripeSimulator
) -> None:
    _, key = stripe_sim.add_account()
    account_id = add(deps, credentials={"api_key": key})["account"]["id"]
    before = counts(deps)
    for result in (
        remove(deps, org_id="org-2", account_id=account_id),
        update(deps, org_id="org-2", account_id=account_id, name="Mine now"),
        link(deps, org_id="org-2", integration_id="wf-9", account_id=account_id),
        remove(deps, account_id=str(uuid.uuid4())),
    ):
        assert (result["status"], result["reason"]) == ("rejected", "not_found"), result
    assert counts(deps) == before


@pytest.mark.parametrize("actor", [ADMIN, COLLABORATOR, READER])
def test_every_role_against_every_change(
    deps: Deps, stripe_sim: StripeSimulator, actor: dict[str, str]
) -> None:
    may_change = actor["role"] != "reader"
    _, key = stripe_sim.add_account()
    existing = add(deps, credentials={"api_key": key})["account"]["id"]
    before = counts(deps)
    results = {
        "add": add(deps, actor=actor, credentials={"api_key": key}),
        "update": update(deps, actor=actor, account_id=existing, name="New name"),
        "remove": remove(deps, actor=actor, account_id=existing),
    }
    for action, result in results.items():
        if may_change:
            assert result["status"] == "succeeded", (action, result)
        else:
            assert (result["status"], result["reason"]) == ("rejected", "forbidden"), action
    if not may_change:
        assert counts(deps) == before
