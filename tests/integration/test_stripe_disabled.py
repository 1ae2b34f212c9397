"""Stripe disabling charges or payouts: the event and the next check agree, and re-enabling
ends it. A passing-looking check must not undo what the event set."""

from __future__ import annotations

import uuid

from models import Account
from tests.integration.jobs import add
from tests.simulators.stripe import StripeSimulator
from worker.service import checks
from worker.service.deps import Deps
from worker.service.jobs import run_job


def check(deps: Deps, account_id: str) -> dict[str, object]:
    return run_job(
        deps.db,
        job_id=str(uuid.uuid4()),
        name="accounts.check",
        request_id=None,
        org_id=None,
        work=lambda s: checks.check_now(s, deps, uuid.UUID(account_id)),
    )


def test_disabled_charges_keep_the_account_in_error_until_enabled(
    deps: Deps, stripe_sim: StripeSimulator
) -> None:
    stripe_account, key = stripe_sim.add_account("Locked AB")
    account_id = add(deps, credentials={"api_key": key})["account"]["id"]
    body = stripe_sim.accounts[stripe_account]
    body["charges_enabled"] = False
    body["requirements"] = {"disabled_reason": "requirements.past_due", "currently_due": ["tos"]}

    for _ in range(2):
        result = check(deps, account_id)
        assert result["error_code"] == "account_locked"
    with deps.db.unit_of_work() as s:
        account = s.get(Account, uuid.UUID(account_id))
        assert account is not None
        assert account.status == "error"
    details = result["message"]
    assert "requirements.past_due" in str(details)

    body["charges_enabled"] = True
    body["requirements"] = {"disabled_reason": None, "currently_due": []}
    assert check(deps, account_id)["passed"] is True
    with deps.db.unit_of_work() as s:
        account = s.get(Account, uuid.UUID(account_id))
        assert account is not None
        assert account.status == "connected"
