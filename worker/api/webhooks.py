"""The webhook endpoints, as a plain ASGI app in front of the rest of the ingest server, built from
the provider registry: `POST /webhooks/<type>` for every provider that sends webhooks, and
`POST /webhooks/<type>/{account_id}` for those whose accounts may have their own secret. Each
checks the size, verifies the signature on the raw request, stores the events in the inbox
(answered only once committed) and nothing else. Every other path goes on to the Starlette app.

Plain ASGI because these are the requests the server exists for: Starlette's request objects,
route matching and middleware cost ~45 us of the ~180 us a webhook takes (measured with a no-op
endpoint each way), and the endpoints use nothing of them.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from prometheus_client import Counter
from sqlalchemy.exc import DBAPIError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from connectors.events import MalformedEvent, NoSecretConfigured, ParsedEvent, SignatureError
from connectors.provider import WebhookRequest
from connectors.provider import Webhooks as Endpoint
from connectors.registry import PROVIDERS
from worker.api.account_secrets import AccountSecrets
from worker.api.inbox_writer import InboxWriter, StoreUnavailable, Unstorable
from worker.metrics import WEBHOOK_ANSWERS
from worker.service.deps import Deps
from worker.service.inbox import Incoming, Stored
from worker.settings import Settings

log = structlog.get_logger(__name__)

MAX_BODY = 1024 * 1024
PREFIX = "/webhooks/"

WEBHOOKS = Counter(
    "connections_webhooks_total", "Webhook requests by provider and answer", ["provider", "answer"]
)

Answer = tuple[int, bytes]
NOT_FOUND = {"error": "not_found", "message": "no such account"}


class TooLarge(Exception):
    pass


class ClientGone(Exception):
    pass


@dataclass(frozen=True)
class Route:
    provider: str
    endpoint: Endpoint
    batches: bool  # one request, many events: the answer lists them


class Webhooks:
    """The webhook routes of every provider in the registry; anything else goes to `fallback`."""

    def __init__(
        self, settings: Settings, deps: Deps, writer: InboxWriter, fallback: ASGIApp
    ) -> None:
        self.writer = writer
        self.fallback = fallback
        self.routes: dict[str, Route] = {}
        self.account_routes: dict[str, tuple[Route, AccountSecrets]] = {}
        for type_, spec in PROVIDERS.items():
            if spec.webhooks is None:
                continue
            public_url = settings.public_base_url or ""
            endpoint = spec.webhooks(deps.connectors.settings[type_], public_url)
            route = Route(type_, endpoint, spec.batches)
            self.routes[f"{PREFIX}{type_}"] = route
            if spec.account_secret_field is not None:
                secrets = AccountSecrets(deps, type_, spec.account_secret_field)
                self.account_routes[f"{PREFIX}{type_}/"] = (route, secrets)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(PREFIX):
            await self.fallback(scope, receive, send)
            return
        route = self.routes.get(path)
        account: tuple[str, AccountSecrets] | None = None
        if route is None:
            prefix, _, ref = path.rpartition("/")
            found = self.account_routes.get(prefix + "/")
            if found is not None and ref:
                route, account = found[0], (ref, found[1])
        if route is None:
            await self.fallback(scope, receive, send)  # its 404
            return
        if scope["method"] != "POST":
            await _send(send, 405, b'{"error":"method_not_allowed"}', [(b"allow", b"POST")])
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            body = await _read_body(receive, headers.get("content-length"))
            request = WebhookRequest(
                method="POST",
                path=path,
                query=scope.get("query_string", b"").decode("latin-1"),
                headers=headers,
                body=body,
            )
            if account is None:
                route.endpoint.verify(request)
                status, answer = await self._store(route, route.endpoint.parse(request))
            else:
                status, answer = await self._for_account(route, request, *account)
        except Exception as exc:
            status, answer = _refusal(route.provider, exc)
        await _send(send, status, answer)

    async def _for_account(
        self, route: Route, request: WebhookRequest, ref: str, secrets: AccountSecrets
    ) -> Answer:
        """Verified with that account's own secret, and stored for that account."""
        try:
            account_id = uuid.UUID(ref)
        except ValueError:
            return _answer(route.provider, 404, NOT_FOUND)
        entry = secrets.cached(account_id)
        fresh = entry is None
        if entry is None:
            entry = await run_in_threadpool(secrets.load, account_id)
        if not entry.found:
            return _answer(route.provider, 404, NOT_FOUND)
        try:
            route.endpoint.verify(request, [entry.secret] if entry.secret else [])
        except SignatureError:
            # The secret may have changed since it was cached; bad signatures reload it at most
            # once a second, so they cannot turn into a database read each.
            if fresh or time.monotonic() - entry.loaded < 1.0:
                raise
            entry = await run_in_threadpool(secrets.load, account_id)
            route.endpoint.verify(request, [entry.secret] if entry.secret else [])
        return await self._store(route, route.endpoint.parse(request, ref), account_id)

    async def _store(
        self, route: Route, events: Sequence[ParsedEvent], account_id: uuid.UUID | None = None
    ) -> Answer:
        if not events:
            raise MalformedEvent("the request holds no event")
        stored = await self.writer.submit_many([Incoming(e, account_id) for e in events])
        if not route.batches:
            _count(route.provider, stored[0].status)
            return 200, b'{"status":"%s","event_id":"%s"}' % (
                stored[0].status.encode(),
                str(stored[0].id).encode(),
            )
        return 200, _batch_answer(route.provider, stored)


def _batch_answer(provider: str, stored: list[Stored]) -> bytes:
    """One answer for a request of many events: `duplicate` only when every one was seen."""
    ids = list(dict.fromkeys(str(s.id) for s in stored))
    accepted = len({s.id for s in stored if s.status == "accepted"})
    status = "accepted" if accepted else "duplicate"
    _count(provider, status)
    return json.dumps(
        {
            "status": status,
            "event_ids": ids,
            "accepted": accepted,
            "duplicates": len(ids) - accepted,
        }
    ).encode()


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
    _count(provider, WEBHOOK_ANSWERS[status])
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
