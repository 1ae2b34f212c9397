"""The effect of a provider event, decided on plain data (no database)."""

from __future__ import annotations

import pytest

from connectors.base import ErrorCode
from connectors.provider import Change, disconnects, merges, records
from worker.service.effects import Plan, plan

LOCKED = (ErrorCode.ACCOUNT_LOCKED, "charges disabled")


def test_a_disconnection_is_all_an_uninstall_does() -> None:
    change = Change(disconnect="gone", metadata={"a": 1}, error=LOCKED)
    assert plan(change, "connected") == Plan(False, True, False, False, None)
    assert plan(change, "disconnected").disconnect


def test_a_record_only_change_only_notes() -> None:
    assert plan(Change(note="compliance request shop/redact recorded"), "connected") == Plan(
        False, False, False, False, "compliance request shop/redact recorded"
    )


@pytest.mark.parametrize("status", ["connected", "degraded", "error", "pending"])
def test_a_problem_opens_an_error_unless_the_account_is_disconnected(status: str) -> None:
    assert plan(Change(error=LOCKED), status).open_error
    assert not plan(Change(error=LOCKED), "disconnected").open_error


def test_a_problem_and_its_resolution_in_one_event_opens_it() -> None:
    steps = plan(Change(error=LOCKED, resolve=frozenset({ErrorCode.ACCOUNT_LOCKED})), "error")
    assert steps.open_error
    assert not steps.resolve


def test_a_resolution_resolves_and_merges() -> None:
    steps = plan(Change(metadata={"x": 1}, resolve=frozenset({ErrorCode.ACCOUNT_LOCKED})), "error")
    assert steps == Plan(True, False, False, True, None)


def test_metadata_alone_merges() -> None:
    assert plan(Change(metadata={"x": 1}), "connected") == Plan(True, False, False, False, None)


def test_an_empty_state_change_still_says_the_metadata_is_unchanged() -> None:
    # A state-setting topic whose payload had none of its fields: merge nothing, say so.
    assert plan(Change(), "connected").merge


def test_the_topic_builders_read_payloads() -> None:
    assert disconnects("uninstalled from {key}").read({}, "shop.myshopify.com") == Change(
        disconnect="uninstalled from shop.myshopify.com"
    )
    assert disconnects("uninstalled from {key}").read({}, None).disconnect == (
        "uninstalled from the account"
    )
    topic = merges({"name": "shop_name", "currency": "currency"})
    assert topic.read({"name": "S", "other": 1}, None).metadata == {"shop_name": "S"}
    assert topic.sets_state
    note = records("noted")
    assert not note.sets_state
    assert note.read({}, None) == Change(note="noted")
