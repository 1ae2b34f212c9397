"""Fortnox's topics stream protocol as pure code: the commands, reading answers and events,
mapping an add-tenants answer back to accounts, parsing events; the listener's book of tenants;
and the credentials notification's pieces that need no PostgreSQL."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import create_engine, event
from sqlalchemy.orm import Session

from connectors.events import MalformedEvent
from connectors.fortnox import FortnoxSettings, fortnox_offset, parse_fortnox, stream
from models import Database
from worker.service import notify
from worker.streams.fortnox import options_from
from worker.streams.tenants import Tenant, TenantBook

A, B, C = (uuid.UUID(int=i) for i in (1, 2, 3))
EVENT = {
    "topic": "invoices",
    "offset": "10432",
    "type": "invoice-created-v1",
    "tenantId": 123456,
    "entityId": "4711",
    "timestamp": "2026-07-12T09:30:00Z",
}


def test_add_tenants_carries_the_secret_and_tokens() -> None:
    command = stream.add_tenants("secret", iter(["tok-a", "tok-b"]))
    assert command == {
        "command": "add-tenants-v1",
        "clientSecret": "secret",
        "accessTokens": ["tok-a", "tok-b"],
        "includeChildTenants": False,
    }
    assert json.loads(stream.encode(command)) == command


def test_add_topics_resumes_from_stored_offsets() -> None:
    command = stream.add_topics(["invoices", "customers"], {"invoices": 1005, "other": 1})
    assert command == {
        "command": "add-topics-v1",
        "topics": [{"topic": "invoices", "offset": "1005"}, {"topic": "customers"}],
    }


def test_subscribe_and_remove_tenants() -> None:
    assert stream.subscribe() == {"command": "subscribe-v1"}
    assert stream.remove_tenants(["500001", "t-x"]) == {
        "command": "remove-tenants-v1",
        "tenantIds": [500001, "t-x"],
    }


def test_read_tells_answers_from_events() -> None:
    answer = stream.read(json.dumps({"response": "add-topics-v1", "result": "ok"}))
    assert isinstance(answer, stream.Answer)
    assert (answer.command, answer.ok) == ("add-topics-v1", True)
    answer.raise_for_error()
    assert stream.read(json.dumps(EVENT).encode()) == EVENT
    for junk in ("not json", "[1, 2]", '{"hello": 1}', b"\xff\xfe"):
        assert stream.read(junk) is None


def test_a_refused_command_raises_with_its_message() -> None:
    answer = stream.read('{"response": "subscribe-v1", "result": "error", "message": "nope"}')
    assert isinstance(answer, stream.Answer)
    assert answer.ok is False
    with pytest.raises(stream.StreamRefused, match="subscribe-v1 refused: nope"):
        answer.raise_for_error()


def tenants_answer(**body: Any) -> stream.Answer:
    frame = stream.read(json.dumps({"response": "add-tenants-v1", **body}))
    assert isinstance(frame, stream.Answer)
    return frame


def test_read_tenants_maps_tokens_back_to_accounts() -> None:
    answer = tenants_answer(
        result="ok",
        tenantIds={"tok-a": 500001, "tok-b": "500002", "tok-stranger": 9},
        invalidTokens=["tok-c", "tok-unknown"],
    )
    result = stream.read_tenants(answer, {"tok-a": A, "tok-b": B, "tok-c": C})
    assert result.tenant_ids == {A: "500001", B: "500002"}
    assert result.refused == [C]


def test_read_tenants_partly_refused_is_not_a_refusal_of_the_stream() -> None:
    answer = tenants_answer(result="error", tenantIds={"tok-a": 1}, invalidTokens=["tok-b"])
    result = stream.read_tenants(answer, {"tok-a": A, "tok-b": B})
    assert (result.tenant_ids, result.refused) == ({A: "1"}, [B])


def test_read_tenants_refused_as_a_whole_raises_without_the_tokens() -> None:
    answer = tenants_answer(result="error", message="invalid client secret")
    with pytest.raises(stream.StreamRefused) as info:
        stream.read_tenants(answer, {"tok-a": A})
    assert "invalid client secret" in str(info.value)
    assert "tok-a" not in str(info.value)


def test_parse_fortnox() -> None:
    event = parse_fortnox(EVENT)
    assert event.provider == "fortnox"
    assert event.event_id == "invoices:10432"
    assert event.route_key == "123456"
    assert event.topic == "invoices"
    assert event.occurred_at == datetime(2026, 7, 12, 9, 30, tzinfo=UTC)
    assert event.payload == EVENT
    for broken in (
        {"offset": "x"},
        {"offset": None},
        {"offset": -1},
        {"tenantId": None},
        {"tenantId": True},
        {"topic": ""},
        {"topic": "t" * 300},
    ):
        with pytest.raises(MalformedEvent):
            parse_fortnox({**EVENT, **broken})


@pytest.mark.parametrize(
    ("value", "expected"),
    [("10432", 10432), (7, 7), (0, 0), (-1, None), (True, None), ("1e3", None), ("9" * 19, None)],
)
def test_fortnox_offset(value: Any, expected: int | None) -> None:
    assert fortnox_offset(value) == expected


def test_the_tenant_book_sends_only_changes_and_forgets_the_gone() -> None:
    book = TenantBook()
    first = [Tenant(A, "tok-a"), Tenant(B, "tok-b")]
    assert book.changes(first) == (first, [])
    book.answered(first, stream.Tenants({A: "1", B: "2"}, []))
    assert book.changes(first) == ([], [])
    rotated = [Tenant(A, "tok-a2"), Tenant(C, "tok-c")]
    assert book.changes(rotated) == (rotated, ["2"])
    assert B not in book.sent
    assert B not in book.tenant_ids
    book.answered(rotated, stream.Tenants({A: "1"}, [C]))
    assert book.changes(rotated) == ([], [])  # a refused token is not sent again
    book.clear()
    assert (book.sent, book.tenant_ids, book.awaiting) == ({}, {}, [])


def test_a_notification_names_the_account_type() -> None:
    assert notify.account_type_of(f"fortnox:{A}") == "fortnox"
    assert notify.account_type_of("hubspot:1") == "hubspot"
    assert notify.account_type_of("fortnox") is None
    assert notify.account_type_of(":x") is None


def test_on_sqlite_a_credentials_change_sends_nothing() -> None:
    engine = create_engine("sqlite://")
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    with Session(engine) as session:
        notify.credentials_changed(session, "fortnox", A)
    assert statements == []


def test_on_sqlite_the_listener_polls_every_few_seconds() -> None:
    db = Database("sqlite://")
    assert notify.listen_url(db) is None
    options = options_from(FortnoxSettings(client_secret=SecretStr("s"), topics="invoices"), db)
    assert (options.tenants_every, options.topics, options.client_secret) == (
        5.0,
        ["invoices"],
        "s",
    )
    with pytest.raises(SystemExit, match="CONNECTIONS_FORTNOX_CLIENT_SECRET"):
        options_from(FortnoxSettings(client_secret=None), db)
