"""The two messages an operator found broken, as the read API and the inbox now say them."""

from __future__ import annotations

import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from connectors.stripe.topics import TOPICS
from worker.api.app import create_app
from worker.service.deps import Deps
from worker.service.outcomes import Action, Actor, Reason, Rejected, Role, require
from worker.settings import Settings


@pytest.mark.parametrize(
    ("action", "said"),
    [
        (Action.DETAILS, "a reader may not open an account's details"),
        (Action.CHANGE, "a reader may not add, edit or remove accounts"),
    ],
)
def test_a_refused_reader_is_told_in_words(action: Action, said: str) -> None:
    with pytest.raises(Rejected) as refused:
        require(Actor(user_id="u-1", role=Role.READER), action)
    assert refused.value.reason is Reason.FORBIDDEN
    assert refused.value.message == said


def test_the_read_api_says_it_to_a_reader(deps: Deps) -> None:
    settings = Settings(service_token=SecretStr("messages-token"))
    with TestClient(create_app(settings, deps)) as api:
        answer = api.get(
            "/api/v1/orgs/org-1/accounts/00000000-0000-0000-0000-000000000000",
            headers={
                "Authorization": "Bearer messages-token",
                "X-Actor-Id": "u-1",
                "X-Actor-Role": "reader",
            },
        )
    assert answer.status_code == 403
    assert answer.json()["message"] == "a reader may not open an account's details"


@pytest.mark.parametrize(
    ("key", "said"),
    [
        ("acct_1", "Stripe says acct_1 deauthorized the application"),
        (None, "Stripe says the account deauthorized the application"),
    ],
)
def test_a_stripe_deauthorization_reads_as_a_sentence(key: str | None, said: str) -> None:
    change = TOPICS["account.application.deauthorized"].read({}, key)
    assert change.disconnect is not None
    assert change.disconnect.startswith(said + "; connect it again")
