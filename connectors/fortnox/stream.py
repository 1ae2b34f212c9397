"""Fortnox's topics stream (wss://ws.fortnox.se/topics-v1) as pure code: the commands we send,
reading what comes back (a command's answer or an event), and parsing an event into the common
inbound event. One connection carries every tenant; the socket itself is the worker's business.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from connectors.events import (
    MAX_ID_LENGTH,
    MAX_TOPIC_LENGTH,
    MalformedEvent,
    ParsedEvent,
    bounded,
    parse_time,
)

Command = dict[str, Any]
K = TypeVar("K")

ADD_TENANTS = "add-tenants-v1"
ADD_TOPICS = "add-topics-v1"
SUBSCRIBE = "subscribe-v1"
REMOVE_TENANTS = "remove-tenants-v1"


class StreamRefused(Exception):
    """Fortnox answered a command with an error (a wrong client secret, say)."""


def add_tenants(client_secret: str, access_tokens: Iterable[str]) -> Command:
    """Subscribe the companies these access tokens belong to (with the integration's secret)."""
    return {
        "command": ADD_TENANTS,
        "clientSecret": client_secret,
        "accessTokens": list(access_tokens),
        "includeChildTenants": False,
    }


def add_topics(topics: Iterable[str], offsets: Mapping[str, int]) -> Command:
    """The topics to stream; one with a stored offset resumes from it (Fortnox keeps about two
    weeks), one without starts at new events."""
    return {
        "command": ADD_TOPICS,
        "topics": [
            {"topic": t, "offset": str(offsets[t])} if t in offsets else {"topic": t}
            for t in topics
        ],
    }


def subscribe() -> Command:
    return {"command": SUBSCRIBE}


def remove_tenants(tenant_ids: Iterable[str]) -> Command:
    """Stop streaming these tenants; Fortnox's ids are numbers, sent as numbers."""
    return {
        "command": REMOVE_TENANTS,
        "tenantIds": [int(t) if t.isdigit() else t for t in tenant_ids],
    }


def encode(command: Command) -> str:
    return json.dumps(command)


@dataclass(frozen=True)
class Answer:
    """Fortnox's answer to one command."""

    command: str
    ok: bool
    body: dict[str, Any] = field(repr=False)

    @property
    def message(self) -> str:
        return str(self.body.get("message"))[:200]

    def raise_for_error(self) -> None:
        if not self.ok:
            raise StreamRefused(f"{self.command} refused: {self.message}")


# What one frame holds: an answer, an event (the message as Fortnox sent it), or nothing usable.
Frame = Answer | dict[str, Any] | None


def read(raw: str | bytes) -> Frame:
    """One frame from the socket: an `Answer`, an event (a dict with topic and offset), or None
    for anything else (not JSON, not an object, neither kind)."""
    try:
        message = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(message, dict):
        return None
    if "response" in message:
        result = message.get("result")
        return Answer(str(message["response"]), result in ("ok", None), message)
    if "topic" in message and "offset" in message:
        return message
    return None


@dataclass(frozen=True)
class Tenants(Generic[K]):
    """What an add-tenants-v1 answer said of the tokens we sent, by our key for each token."""

    tenant_ids: dict[K, str]  # key -> Fortnox's tenant id
    refused: list[K]  # keys whose token Fortnox refused


def read_tenants(answer: Answer, sent: Mapping[str, K]) -> Tenants[K]:
    """Map an add-tenants-v1 answer back to `sent` (access token -> our key). Refused as a
    whole (a wrong client secret): StreamRefused. A partly refused one names `refused`."""
    tenant_ids = answer.body.get("tenantIds")
    if not answer.ok and not tenant_ids:
        raise StreamRefused(f"{ADD_TENANTS} refused: {answer.message}")
    mapping: dict[K, str] = {}
    if isinstance(tenant_ids, dict):
        for token, tenant_id in tenant_ids.items():
            if token in sent:
                mapping[sent[token]] = str(tenant_id)
    invalid = answer.body.get("invalidTokens")
    refused = [sent[t] for t in invalid if t in sent] if isinstance(invalid, list) else []
    return Tenants(mapping, refused)


def parse_fortnox(message: Mapping[str, Any]) -> ParsedEvent:
    """A Fortnox topics event; its id is topic and offset, which is unique per topic."""
    topic = message.get("topic")
    offset = fortnox_offset(message.get("offset"))
    tenant = message.get("tenantId")
    if not isinstance(topic, str) or not topic:
        raise MalformedEvent("the event has no topic")
    if offset is None:
        raise MalformedEvent("the event has no numeric offset")
    if tenant is None or isinstance(tenant, bool) or not isinstance(tenant, int | str):
        raise MalformedEvent("the event has no tenantId")
    return ParsedEvent(
        provider="fortnox",
        event_id=bounded(f"{topic}:{offset}", MAX_ID_LENGTH, "event id"),
        topic=bounded(topic, MAX_TOPIC_LENGTH, "topic"),
        route_key=str(tenant),
        occurred_at=parse_time(message.get("timestamp")),
        payload=dict(message),
    )


def fortnox_offset(value: Any) -> int | None:
    """Fortnox sends offsets as decimal strings; numbers are taken too."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 0 else None
    if isinstance(value, str) and value.isdigit() and len(value) < 19:
        return int(value)
    return None
