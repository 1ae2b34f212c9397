"""Scheduled checks in batches against the provider simulators: each outcome gives the right
status and error, changes are recorded once, a recovered account resolves its error, a batch
delivered twice or after its lease records nothing, a batch's checks run concurrently, and one
account's unreadable credentials fail only its own check."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy import func, select, update

from models import Account, AccountError, AccountStatus, OutboxEvent, StatusChange, utc_now
from models.clock import set_clock
from tests.fixtures.checks import (
    CADENCE,
    CheckedStripe,
    checker,
    claim_all,
    insert_stripe_accounts,
    make_due,
    run_due,
)
from tests.simulators.fortnox import FortnoxSimulator
from tests.simulators.shopify import ShopifySimulator
from worker.service.checks.cadence import Cadence
from worker.service.deps import Deps
from worker.vault import Vault


def account(deps: Deps, account_id: uuid.UUID) -> Account:
    with deps.db.unit_of_work() as session:
        found = session.get(Account, account_id)
        assert found is not None
        session.expunge(found)
        return found


def errors(deps: Deps, account_id: uuid.UUID) -> list[AccountError]:
    with deps.db.unit_of_work() as session:
        rows = list(
            session.scalars(
                select(AccountError)
                .where(AccountError.account_id == account_id)
                .order_by(AccountError.first_occurred_at)
            )
        )
        session.expunge_all()
        return rows


def changes(deps: Deps, account_id: uuid.UUID) -> list[tuple[str | None, str]]:
    with deps.db.unit_of_work() as session:
        return [
            (c.from_status, c.to_status)
            for c in session.scalars(
                select(StatusChange)
                .where(StatusChange.account_id == account_id)
                .order_by(StatusChange.id)
            )
        ]


def events(deps: Deps, account_id: uuid.UUID) -> list[str]:
    with deps.db.unit_of_work() as session:
        return list(
            session.scalars(
                select(OutboxEvent.type)
                .where(OutboxEvent.account_id == account_id)
                .order_by(OutboxEvent.seq)
            )
        )


def test_outcome_classes_give_the_right_status_and_error(
    check_deps: Deps,
    vault: Vault,
    stripe_checks: CheckedStripe,
    shopify_sim: ShopifySimulator,
    add_account: Any,
) -> None:
    deps = check_deps
    [(ok, _)] = insert_stripe_accounts(deps.db, vault, stripe_checks, 1)
    [(rolled, _)] = insert_stripe_accounts(deps.db, vault, stripe_checks, 1, rolled=True)
    shops = {state: shopify_sim.add_shop(f"{state} shop") for state in ("frozen", "locked")}
    shop_ids = {}
    for state, shop in shops.items():
        result = add_account(
            deps,
            "shopify",
            {"shop_domain": shop, "access_token": shopify_sim.custom_app_token(shop)},
        )
        assert result["status"] == "succeeded", result
        shop_ids[state] = uuid.UUID(result["account"]["id"])
        shopify_sim.set_state(shop, state)
    make_due(deps)

    reports = run_due(deps, checker(deps))

    assert sorted(r["provider"] for r in reports) == ["shopify", "stripe"]
    assert account(deps, ok).status == "connected"
    assert account(deps, ok).last_checked_at is not None
    assert account(deps, ok).meta["business_name"] == "Shop 0"
    assert errors(deps, ok) == []
    expected = {
        rolled: ("error", "credentials_invalid"),
        shop_ids["frozen"]: ("error", "account_frozen"),
        shop_ids["locked"]: ("error", "account_locked"),
    }
    for account_id, (status, code) in expected.items():
        assert account(deps, account_id).status == status
        [error] = errors(deps, account_id)
        assert (error.code, error.occurrences, error.resolved_at) == (code, 1, None)
        assert error.source == "check"
        assert changes(deps, account_id)[-1] == ("connected", status)
        assert events(deps, account_id)[-2:] == ["account.error_opened", "account.status_changed"]
    # `error` is checked rarely: six intervals, less jitter.
    due = account(deps, rolled).next_check_at
    assert due is not None
    assert due - utc_now() > timedelta(seconds=CADENCE.interval * 6 * 0.85)


def test_revoked_connect_account_is_disconnected_and_never_scheduled_again(
    check_deps: Deps, vault: Vault, stripe_checks: CheckedStripe
) -> None:
    deps = check_deps
    [(account_id, key)] = insert_stripe_accounts(deps.db, vault, stripe_checks, 1)
    stripe_checks.revoke(stripe_checks.keys[key])
    with deps.db.unit_of_work() as session:
        row = session.get(Account, account_id)
        assert row is not None
        row.credentials = vault.encrypt({})
        row.connection = {"mode": "connect", "stripe_account_id": stripe_checks.keys[key]}
    make_due(deps)

    run_due(deps, checker(deps))

    found = account(deps, account_id)
    assert found.status == "disconnected"
    assert found.next_check_at is None
    assert [e.code for e in errors(deps, account_id)] == ["connection_revoked"]
    make_due(deps)
    assert claim_all(deps) == []  # found due, unscheduled, not claimed
    assert account(deps, account_id).next_check_at is None


def test_temporary_failure_is_confirmed_once_then_degrades_and_recovery_resolves(
    check_deps: Deps, vault: Vault, stripe_checks: CheckedStripe
) -> None:
    deps = check_deps
    # Enough healthy accounts that the provider is clearly up: this one account's trouble.
    healthy = insert_stripe_accounts(deps.db, vault, stripe_checks, 12)
    [(sick, key)] = insert_stripe_accounts(deps.db, vault, stripe_checks, 1)
    check = checker(deps)
    make_due(deps)
    run_due(deps, check)
    assert all(account(deps, a).status == "connected" for a, _ in healthy)

    stripe_checks.outage, stripe_checks.down_keys = 503, {key}
    try:
        make_due(deps, [sick])
        run_due(deps, check)
        first = account(deps, sick)
        # Held: retried sooner, nothing recorded yet.
        assert first.status == "connected"
        assert first.consecutive_failures == 1
        assert errors(deps, sick) == []
        assert first.next_check_at is not None
        assert first.next_check_at - utc_now() <= timedelta(seconds=CADENCE.retry_delay(1))

        make_due(deps, [sick])
        run_due(deps, check)
        make_due(deps, [sick])
        run_due(deps, check)
    finally:
        stripe_checks.outage = None
    degraded = account(deps, sick)
    assert degraded.status == "degraded"
    [error] = errors(deps, sick)
    assert (error.code, error.occurrences) == ("provider_unavailable", 2)
    # Backing off: the third failure waits longer than the first.
    assert degraded.next_check_at is not None
    assert degraded.next_check_at - utc_now() > timedelta(seconds=CADENCE.retry_delay(2) * 0.85)

    make_due(deps, [sick])
    run_due(deps, check)
    make_due(deps, [sick])
    run_due(deps, check)  # a second pass changes nothing more

    recovered = account(deps, sick)
    assert recovered.status == "connected"
    assert recovered.consecutive_failures == 0
    [error] = errors(deps, sick)
    assert error.resolved_at is not None
    assert error.occurrences == 2
    assert changes(deps, sick) == [("connected", "degraded"), ("degraded", "connected")]
    assert events(deps, sick) == [
        "account.error_opened",
        "account.status_changed",
        "account.error_resolved",
        "account.status_changed",
    ]


def test_a_batch_delivered_twice_or_after_its_lease_records_once(
    check_deps: Deps, vault: Vault, stripe_checks: CheckedStripe
) -> None:
    deps = check_deps
    made = insert_stripe_accounts(deps.db, vault, stripe_checks, 5, rolled=True)
    make_due(deps)
    [batch] = claim_all(deps)
    check = checker(deps)

    first = check.run(batch)
    again = check.run(batch)

    assert first.checked == 5
    assert again.checked == 0
    assert sum(len(stripe_checks.times(k)) for _, k in made) == 5  # no call for the repeat
    for account_id, _ in made:
        assert changes(deps, account_id) == [("connected", "error")]
        assert errors(deps, account_id)[0].occurrences == 1

    # A lease that ran out was claimed again: the old message checks nothing.
    make_due(deps)
    [old] = claim_all(deps)
    make_due(deps)
    [new] = claim_all(deps)
    assert old.lease != new.lease
    assert check.run(old).checked == 0
    assert check.run(new).checked == 5


def test_a_batch_checks_its_accounts_concurrently(
    check_deps: Deps, vault: Vault, stripe_checks: CheckedStripe
) -> None:
    deps = check_deps
    insert_stripe_accounts(deps.db, vault, stripe_checks, 60)
    make_due(deps)
    stripe_checks.script.latency = 0.25  # one at a time: 15 s
    started = time.monotonic()
    [report] = run_due(deps, checker(deps, concurrency=30))
    elapsed = time.monotonic() - started
    assert report["checked"] == 60
    assert report["passed"] == 60
    assert elapsed < 3.0, elapsed  # 60 checks, 30 at a time: two rounds of 0.25 s


def test_proactive_refresh_renews_expiring_tokens_ahead_of_expiry(
    check_deps: Deps, shopify_sim: ShopifySimulator, fortnox_sim: FortnoxSimulator, add_account: Any
) -> None:
    deps = check_deps
    shop = shopify_sim.add_shop("Expiring shop")
    added = add_account(
        deps, "shopify", {"shop_domain": shop, "code": shopify_sim.issue_code(shop)}
    )
    assert added["status"] == "succeeded", added
    shop_id = uuid.UUID(added["account"]["id"])
    tenant = fortnox_sim.add_tenant("Rotating AB")
    redirect = "https://app.example/callback"
    added = add_account(
        deps,
        "fortnox",
        {"code": fortnox_sim.issue_code(tenant, redirect), "redirect_uri": redirect},
    )
    assert added["status"] == "succeeded", added
    fortnox_id = uuid.UUID(added["account"]["id"])
    before = {a: account(deps, a) for a in (shop_id, fortnox_id)}

    # With a long interval, an hour-long token is next due 600 s before it expires.
    cadence = Cadence(interval=7200.0)
    make_due(deps)
    run_due(deps, checker(deps, cadence))
    assert shopify_sim.refresh_calls + fortnox_sim.refresh_calls == 0
    for a in before:
        due = account(deps, a).next_check_at
        expires = before[a].credentials_expire_at
        assert due is not None
        assert expires is not None
        assert due == expires - timedelta(seconds=cadence.refresh_ahead)

    refreshes = (shopify_sim.refresh_calls, fortnox_sim.refresh_calls)
    shifted = utc_now() + timedelta(seconds=3000 + 5)
    set_clock(lambda: shifted)
    try:
        reports = [checker(deps, cadence).run(b) for b in claim_all(deps, cadence)]
    finally:
        set_clock(None)
    assert sum(r.checked for r in reports) == 2
    assert (shopify_sim.refresh_calls, fortnox_sim.refresh_calls) == (
        refreshes[0] + 1,
        refreshes[1] + 1,
    )
    for a, old in before.items():
        now = account(deps, a)
        assert now.status == "connected"
        assert now.credentials_version == old.credentials_version + 1
        assert now.credentials_expire_at is not None
        assert old.credentials_expire_at is not None
        assert now.credentials_expire_at > old.credentials_expire_at
        # Next due: the new token's renewal time, which comes before the interval.
        assert now.next_check_at == now.credentials_expire_at - timedelta(seconds=600)


def test_count_of_status_rows_matches_changes_only(
    check_deps: Deps, vault: Vault, stripe_checks: CheckedStripe
) -> None:
    deps = check_deps
    insert_stripe_accounts(deps.db, vault, stripe_checks, 10)
    check = checker(deps)
    for _ in range(3):
        make_due(deps)
        run_due(deps, check)
    with deps.db.unit_of_work() as session:
        assert session.scalar(select(func.count()).select_from(StatusChange)) == 0
        assert session.scalar(select(func.count()).select_from(OutboxEvent)) == 0
        statuses = set(session.scalars(select(Account.status)))
    assert statuses == {AccountStatus.CONNECTED.value}


def test_unreadable_credentials_fail_their_own_check_not_the_batch(
    check_deps: Deps, vault: Vault, stripe_checks: CheckedStripe
) -> None:
    deps = check_deps
    made = insert_stripe_accounts(deps.db, vault, stripe_checks, 3)
    broken = made[0][0]
    with deps.db.unit_of_work() as session:  # written with a key this worker does not have
        session.execute(
            update(Account)
            .where(Account.id == broken)
            .values(credentials=Vault([Fernet.generate_key().decode()]).encrypt({"api_key": "x"}))
        )
    make_due(deps)
    [report] = run_due(deps, checker(deps))
    assert report["verdicts"] == {"recorded": 3}
    assert report["passed"] == 2
    # Recorded as the operator's error it is (tests/integration/test_unreadable_credentials.py).
    assert account(deps, broken).status == "error"
    assert [e.code for e in errors(deps, broken)] == ["credentials_unreadable"]
    assert changes(deps, broken) == [("connected", "error")]
    assert all(account(deps, a).status == "connected" for a, _ in made[1:])
