"""The plan of one insert group, on plain data: each (provider, event id) inserted once, and
every item told whether it was accepted or a duplicate, with the id it is stored under."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from connectors.events import ParsedEvent
from worker.service.inbox import Incoming, InsertPlan, Stored, known_params


def event(event_id: str, provider: str = "stripe", body: bytes | None = None) -> ParsedEvent:
    payload = {"id": event_id}
    return ParsedEvent(
        provider=provider,
        event_id=event_id,
        topic="customer.created",
        route_key="acct_1",
        occurred_at=datetime(2026, 11, 2, 10, 0, tzinfo=UTC),
        payload=payload,
        body=body,
    )


def test_a_repeat_within_the_group_is_inserted_once_and_answered_duplicate() -> None:
    items = [Incoming(event("evt_1")), Incoming(event("evt_2")), Incoming(event("evt_1"))]
    plan = InsertPlan(items)
    assert [r["provider_event_id"] for r in plan.rows] == ["evt_1", "evt_2"]
    first, second = (r["id"] for r in plan.rows)
    answers = plan.answers({first, second}, {})
    assert answers == [
        Stored("accepted", first),
        Stored("accepted", second),
        Stored("duplicate", first),
    ]


def test_the_same_event_id_of_two_providers_is_two_events() -> None:
    plan = InsertPlan([Incoming(event("1", "fortnox")), Incoming(event("1", "stripe"))])
    assert len(plan.rows) == 2


def test_an_event_stored_before_answers_duplicate_with_the_stored_id() -> None:
    plan = InsertPlan([Incoming(event("evt_old")), Incoming(event("evt_new"))])
    new_id = plan.rows[1]["id"]
    assert plan.missing({new_id}) == [("stripe", "evt_old")]
    stored_before = uuid.uuid4()
    answers = plan.answers({new_id}, {("stripe", "evt_old"): stored_before})
    assert answers == [Stored("duplicate", stored_before), Stored("accepted", new_id)]
    assert known_params(plan.missing({new_id})) == {
        "providers": ["stripe"],
        "event_ids": ["evt_old"],
    }


def test_postgres_rows_carry_the_payload_as_the_provider_sent_it() -> None:
    body = b'{"id":  "evt_1", "extra": [1, 2]}'
    account = uuid.uuid4()
    plan = InsertPlan([Incoming(event("evt_1", body=body), account)])
    params = plan.postgres_params()
    assert params["now"] == plan.now
    text = params["rows"]
    assert body.decode() in text  # spliced, not serialized again
    [row] = json.loads(text)
    assert row["payload"] == {"id": "evt_1", "extra": [1, 2]}
    assert row["account_id"] == str(account)
    assert row["id"] == str(plan.rows[0]["id"])
    assert row["occurred_at"] == "2026-11-02T10:00:00+00:00"
