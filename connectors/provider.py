"""What a provider is to the rest of the system, as one value per provider package: its settings,
its connector, its webhook endpoint, how its events find their account, and what each topic means.

The registry (`connectors.registry.PROVIDERS`) is a plain dict of these; the ingest, settings and
event processing learn the providers from it and nowhere else.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.base import Clock, Connector, ErrorCode
from connectors.events import ParsedEvent
from connectors.http import HttpLayer


def secret_values(*secrets: SecretStr | None) -> list[str]:
    """The values of the secrets that are set, in order (the current one first)."""
    return [s.get_secret_value() for s in secrets if s is not None and s.get_secret_value()]


class ProviderSettings(BaseSettings):
    """A provider's settings, read from `CONNECTIONS_<PROVIDER>_*` (each subclass sets its
    `env_prefix`); every URL, window and limit is one of them, so tests point them elsewhere."""

    # An empty `NAME=` line in an env file is unset, not an empty secret.
    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True)


@dataclass(frozen=True)
class WebhookRequest:
    """One webhook request as it arrived: what a signature may cover, nothing parsed yet."""

    method: str
    path: str  # as called, e.g. `/webhooks/hubspot`
    query: str  # the raw query string, without `?`; "" when none
    headers: Mapping[str, str]  # names lower-cased
    body: bytes


class Webhooks(Protocol):
    """A provider's webhook endpoint, `POST /webhooks/<type>`: verify the raw request (raising
    `SignatureError`, or `NoSecretConfigured` when nothing can verify it), then parse it into
    events (raising `MalformedEvent`). Pure: no network, database or Celery."""

    def verify(self, request: WebhookRequest, secrets: list[str] | None = None) -> None:
        """`secrets`: an account's own secrets (the per-account route); None: the app's."""
        ...

    def parse(self, request: WebhookRequest, account_ref: str | None = None) -> list[ParsedEvent]:
        """The request's events; `account_ref` is the per-account route's account id."""
        ...


@dataclass(frozen=True)
class Change:
    """What one provider event says about its account, as plain data; the service layer applies
    it (the effects exist once, there)."""

    metadata: Mapping[str, Any] = field(default_factory=dict)  # merged into the account's
    subject: str = "metadata"  # what the metadata is, in the operator's words ("scopes")
    disconnect: str | None = None  # the connection is gone: why, in words a person can act on
    error: tuple[ErrorCode, str] | None = None  # a problem that needs action: status `error`
    resolve: frozenset[ErrorCode] = frozenset()  # problems the event says are gone
    resolved_reason: str = ""  # the status change's reason when resolving returns `connected`
    note: str | None = None  # what a record-only event was, for the operator


# A topic's reading of an event: (payload, route key) -> Change; ValueError for a bad payload.
Reader = Callable[[dict[str, Any], str | None], Change]


@dataclass(frozen=True)
class Topic:
    """One topic's meaning. `sets_state`: it changes status or metadata, so an older event must
    not override a newer one and its batch locks the account for update."""

    read: Reader
    sets_state: bool = True


def disconnects(message: str) -> Topic:
    """The connection is gone (an uninstall, a deauthorization); `{key}` names the route key."""
    return Topic(lambda _p, key: Change(disconnect=message.format(key=key or "the account")))


def merges(fields: Mapping[str, str]) -> Topic:
    """Copy the payload's `theirs` keys into the metadata's `ours` keys ({theirs: ours})."""

    def read(payload: dict[str, Any], _key: str | None) -> Change:
        return Change(metadata={ours: payload[t] for t, ours in fields.items() if t in payload})

    return Topic(read)


def records(note: str) -> Topic:
    """Nothing changes; the event is recorded (and published) with `note`."""
    return Topic(lambda _p, _k: Change(note=note), sets_state=False)


RECORD = Topic(lambda _p, _k: Change(note="recorded"), sets_state=False)


@dataclass(frozen=True)
class Provider:
    """Everything the system needs to know of one provider."""

    type: str  # the account type, e.g. "shopify"
    title: str  # how people write it, e.g. "Shopify"
    settings: builtins.type[ProviderSettings]
    connector: Callable[[Any, HttpLayer, Clock], Connector]  # (its settings, http, clock)
    # (its settings, PUBLIC_BASE_URL) -> its webhook endpoint; None: it sends no webhooks.
    webhooks: Callable[[Any, str], Webhooks] | None = None
    # Also serve `POST /webhooks/<type>/{account_id}`, verified with this credential field.
    account_secret_field: str | None = None
    # The account JSON (column, key) pairs an event's route key is matched against.
    routes: tuple[tuple[str, str], ...] = ()
    topics: Mapping[str, Topic] = field(default_factory=dict)
    # The key under which the routing value for a stream tenant is kept in metadata (Fortnox).
    stream_key: str | None = None
    # One webhook request carries many events (HubSpot): the answer lists them all.
    batches: bool = False

    def topic(self, name: str) -> Topic:
        return self.topics.get(name, RECORD)
