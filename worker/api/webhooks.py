"""The webhook endpoints, as a plain ASGI app in front of the rest of the ingest server: check
the size, verify the signature on the raw body, store the event in the inbox (answered only once
it is committed) and nothing else. Every other path goes on to the Starlette app.

Plain ASGI because these are the requests the server exists for: Starlette's request objects,
route matching and middleware cost ~45 us of the ~180 us a webhook takes (measured with a no-op
endpoint each way), and the endpoints use nothing of them.
"""

from __future__ import annotations

import functools
import json
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from prometheus_client import Counter
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from connectors.webhooks import (
    MalformedEvent,
    NoSecretConfigured,
    ParsedEvent,
    SignatureError,
    parse_shopify,
    parse_stripe,
    split_secrets,
    verify_shopify,
    verify_stripe,
)
from models import Account
from worker.api.ingest import InboxWriter, StoreUnavailable, Unstorable
from worker.service.deps import Deps
from worker.service.inbox import Incoming
from worker.settings import Settings

log = structlog.get_logger(__name__)

MAX_BODY = 1024 * 1024
PREFIX = "/webhooks/"
STRIPE_ACCOUNT_PREFIX = "/webhooks/stripe/"

WEBHOOKS = Counter(
    "connections_webhooks_total", "Webhook requests by provider and answer", ["provider", "answer"]
)

Answer = tuple[int, bytes]
Handler = Callable[[Mapping[str, str], bytes], Awaitable[Answer]]


class TooLarge(Exception):
    pass


class ClientGone(Exception):
    pass


@dataclass
class _Secret:
    found: bool
    secret: str | None
    expires: float
    loaded: float


class AccountSecrets:
    """Per-account Stripe webhook secrets, decrypted once and kept briefly; a signature that
    fails against a cached secret is checked again against the stored one (it may have changed)."""

    def __init__(self, deps: Deps, ttl: float = 30.0, miss_ttl: float = 5.0) -> None:
        self.deps = deps
        self.ttl = ttl
        self.miss_ttl = miss_ttl
        self._cache: dict[uuid.UUID, _Secret] = {}
        self._lock = threading.Lock()

    def cached(self, account_id: uuid.UUID) -> _Secret | None:
        with self._lock:
            entry = self._cache.get(account_id)
        if entry is not None and entry.expires > time.monotonic():
            return entry
        return None

    def load(self, account_id: uuid.UUID) -> _Secret:
        with self.deps.db.unit_of_work() as session:
            account = session.scalars(
                select(Account).where(Account.id == account_id, Account.type == "stripe")
            ).first()
            if account is None:
                entry = _Secret(False, None, time.monotonic() + self.miss_ttl, time.monotonic())
            else:
                secret = self.deps.vault.decrypt(account.credentials).get("webhook_secret")
                now = time.monotonic()
                entry = _Secret(True, secret or None, now + self.ttl, now)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[account_id] = entry
        return entry


class Webhooks:
    """`POST /webhooks/shopify`, `POST /webhooks/stripe` and `POST /webhooks/stripe/{account_id}`;
    anything else is passed to `fallback`."""

    def __init__(
        self, settings: Settings, deps: Deps, writer: InboxWriter, fallback: ASGIApp
    ) -> None:
        self.writer = writer
        self.fallback = fallback
        self.shopify_secrets = [
            s.get_secret_value()
            for s in (settings.shopify_client_secret, settings.shopify_previous_client_secret)
            if s is not None
        ]
        self.stripe_secrets = split_secrets(
            settings.stripe_webhook_secret.get_secret_value()
            if settings.stripe_webhook_secret
            else None
        )
        self.account_secrets = AccountSecrets(deps)
        self.routes: dict[str, tuple[str, Handler]] = {
            "/webhooks/shopify": ("shopify", self.shopify),
            "/webhooks/stripe": ("stripe", self.stripe),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(PREFIX):
            await self.fallback(scope, receive, send)
            return
        route = self.routes.get(path)
        if route is None and path.startswith(STRIPE_ACCOUNT_PREFIX):
            account_ref = path[len(STRIPE_ACCOUNT_PREFIX) :]
            if account_ref and "/" not in account_ref:
                route = ("stripe", functools.partial(self.stripe_account, account_ref))
        if route is None:
            await self.fallback(scope, receive, send)  # its 404
            return
        if scope["method"] != "POST":
            await _send(send, 405, b'{"error":"method_not_allowed"}', [(b"allow", b"POST")])
            return
        provider, handler = route
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            body = await _read_body(receive, headers.get("content-length"))
            status, answer = await handler(headers, body)
        except Exception as exc:
            status, answer = _refusal(provider, exc)
        await _send(send, status, answer)

    async def shopify(self, headers: Mapping[str, str], body: bytes) -> Answer:
        verify_shopify(body, headers.get("x-shopify-hmac-sha256"), self.shopify_secrets)
        return await self._store(parse_shopify(headers, body))

    async def stripe(self, headers: Mapping[str, str], body: bytes) -> Answer:
        verify_stripe(body, headers.get("stripe-signature"), self.stripe_secrets)
        return await self._store(parse_stripe(body))

    async def stripe_account(
        self, account_ref: str, headers: Mapping[str, str], body: bytes
    ) -> Answer:
        try:
            account_id = uuid.UUID(account_ref)
        except ValueError:
            return _answer("stripe", 404, {"error": "not_found", "message": "no such account"})
        secrets = self.account_secrets
        entry = secrets.cached(account_id)
        fresh = entry is None
        if entry is None:
            entry = await run_in_threadpool(secrets.load, account_id)
        if not entry.found:
            return _answer("stripe", 404, {"error": "not_found", "message": "no such account"})
        header = headers.get("stripe-signature")
        try:
            verify_stripe(body, header, [entry.secret])
        except SignatureError:
            # The secret may have changed since it was cached; bad signatures reload it at most
            # once a second, so they cannot turn into a database read each.
            if fresh or time.monotonic() - entry.loaded < 1.0:
                raise
            entry = await run_in_threadpool(secrets.load, account_id)
            verify_stripe(body, header, [entry.secret])
        return await self._store(parse_stripe(body), account_id)

    async def _store(self, event: ParsedEvent, account_id: uuid.UUID | None = None) -> Answer:
        stored = await self.writer.submit(Incoming(event, account_id))
        _count(event.provider, stored.status)
        return 200, b'{"status":"%s","event_id":"%s"}' % (
            stored.status.encode(),
            str(stored.id).encode(),
        )


async def _read_body(receive: Receive, declared: str | None) -> bytes:
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise TooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send(
    send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send(
        {"type": "http.response.start", "status": status, "headers": headers + (extra or [])}
    )
    await send({"type": "http.response.body", "body": body})


_counters: dict[tuple[str, str], Any] = {}


def _count(provider: str, answer: str) -> None:
    key = (provider, answer)
    counter = _counters.get(key)
    if counter is None:
        counter = _counters[key] = WEBHOOKS.labels(provider, answer)
    counter.inc()


def _answer(provider: str, status: int, body: dict[str, str]) -> Answer:
    _count(provider, str(status))
    return status, json.dumps(body).encode()


def _refusal(provider: str, exc: Exception) -> Answer:
    if isinstance(exc, NoSecretConfigured):
        log.warning("webhook_refused_no_secret", provider=provider)
        return _answer(provider, 401, {"error": "unauthorized", "message": str(exc)})
    if isinstance(exc, SignatureError):
        log.info("webhook_refused_signature", provider=provider, reason=str(exc))
        return _answer(provider, 401, {"error": "unauthorized", "message": "invalid signature"})
    if isinstance(exc, TooLarge):
        return _answer(provider, 413, {"error": "too_large", "message": "the body is over 1 MiB"})
    if isinstance(exc, MalformedEvent | Unstorable):
        log.info("webhook_malformed", provider=provider, reason=str(exc))
        return _answer(provider, 400, {"error": "malformed", "message": str(exc)})
    if isinstance(exc, ClientGone):
        return _answer(provider, 400, {"error": "disconnected", "message": "client went away"})
    if isinstance(exc, StoreUnavailable | DBAPIError):
        return _answer(
            provider, 503, {"error": "unavailable", "message": "the event store is unavailable"}
        )
    log.exception("webhook_error", provider=provider)
    return _answer(provider, 500, {"error": "internal", "message": "unexpected error"})
