"""Stripe disabling charges or payouts: the event and the next check agree, and re-enabling
ends it. A passing-looking check must not undo what the event set."""

from __future__ import annotations

from typing import Any

from tests.fixtures.connectors import stored
from tests.integration.jobs import add
from tests.simulators.stripe import StripeSimulator
from worker.service.deps import Deps


def test_disabled_charges_keep_the_account_in_error_until_enabled(
    deps: Deps, stripe_sim: StripeSimulator, check_account: Any
) -> None:
    stripe_account, key = stripe_sim.add_account("Locked AB")
    account_id = add(deps, credentials={"api_key": key})["account"]["id"]
    body = stripe_sim.accounts[stripe_account]
    body["charges_enabled"] = False
    body["requirements"] = {"disabled_reason": "requirements.past_due", "currently_due": ["tos"]}

    for _ in range(2):
        result = check_account(deps, account_id)
        assert result["error_code"] == "account_locked"
    assert stored(deps, account_id)[0].status == "error"
    details = result["message"]
    assert "requirements.past_due" in str(details)

    body["charges_enabled"] = True
    body["requirements"] = {"disabled_reason": None, "currently_due": []}
    assert check_account(deps, account_id)["passed"] is True
    assert stored(deps, account_id)[0].status == "connected"
