"""The webhook ingest endpoint: verify the raw body, store the event in the inbox, answer 200
only once the row is committed, then queue its processing. Nothing else happens in a request.

Concurrent requests share commits (group commit), so durability costs little throughput.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg
import structlog
from prometheus_client import Counter, Histogram
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

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
from models import Account, Database
from worker.service.deps import Deps
from worker.service.inbox import (
    INSERT_POSTGRES,
    KNOWN_POSTGRES,
    Incoming,
    InsertPlan,
    Stored,
    known_params,
    store_events,
)
from worker.settings import Settings

log = structlog.get_logger(__name__)

MAX_BODY = 1024 * 1024
Enqueue = Callable[[list[uuid.UUID]], object]

WEBHOOKS = Counter(
    "connections_webhooks_total", "Webhook requests by provider and answer", ["provider", "answer"]
)
BATCH_SIZE = Histogram(
    "connections_inbox_batch_size",
    "Events stored per inbox commit",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)


class StoreUnavailable(Exception):
    """The inbox could not be written: answer 503 so the provider retries."""


class Unstorable(Exception):
    """The database refused this one event's data (the others of its group are stored)."""


class TooLarge(Exception):
    pass


class InboxWriter:
    """Stores events in groups: whatever arrived while the previous writes were in flight goes
    into the next transaction, with up to `writers` transactions in flight at once.

    On PostgreSQL the writes run on the event loop over psycopg's async connections (a thread
    hand-off per group cost a quarter of the throughput); on SQLite, in a thread.
    """

    def __init__(
        self,
        db: Database,
        after_commit: Enqueue,
        *,
        writers: int = 2,
        max_batch: int = 500,
        max_pending: int = 20_000,
        timeout: float = 10.0,
        enqueue_linger: float = 0.05,
    ) -> None:
        self.db = db
        self.after_commit = after_commit
        self.writers = writers
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.timeout = timeout
        self.enqueue_linger = enqueue_linger
        self._pending: list[tuple[Incoming, asyncio.Future[Stored]]] = []
        self._inflight = 0
        self._flush_scheduled = False
        self._write_pool = ThreadPoolExecutor(writers, thread_name_prefix="inbox-write")
        self._conninfo = (
            make_url(db.url).set(drivername="postgresql").render_as_string(hide_password=False)
            if db.is_postgres
            else None
        )
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        # One thread publishes to the broker, in commit order, without holding up answers; ids
        # committed while it publishes go out together in its next round.
        self._queue_pool = ThreadPoolExecutor(1, thread_name_prefix="inbox-enqueue")
        self._to_queue: list[uuid.UUID] = []
        self._queueing = False
        self._queue_lock = threading.Lock()

    async def submit(self, item: Incoming) -> Stored:
        if len(self._pending) >= self.max_pending:
            raise StoreUnavailable("too many events waiting to be stored")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Stored] = loop.create_future()
        self._pending.append((item, future))
        if not self._flush_scheduled:
            # Flush after this loop iteration, so requests parsed in the same tick share a write.
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._flush_scheduled = False
        while self._pending and self._inflight < self.writers:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            self._inflight += 1
            asyncio.get_running_loop().create_task(self._write(batch))

    async def _write(self, batch: list[tuple[Incoming, asyncio.Future[Stored]]]) -> None:
        loop = asyncio.get_running_loop()
        items = [item for item, _ in batch]
        try:
            if self._conninfo is not None:
                results = await asyncio.wait_for(self._store_async(items), self.timeout)
            else:
                results = await asyncio.wait_for(
                    loop.run_in_executor(self._write_pool, self._store, items), self.timeout
                )
        except Exception as exc:
            log.warning("inbox_unavailable", error=type(exc).__name__, events=len(batch))
            for _, future in batch:
                if not future.done():
                    future.set_exception(StoreUnavailable(type(exc).__name__))
        else:
            BATCH_SIZE.observe(len(batch))
            accepted = []
            for (_, future), result in zip(batch, results, strict=True):
                if isinstance(result, Stored) and result.status == "accepted":
                    accepted.append(result.id)
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
            if accepted:
                with self._queue_lock:
                    self._to_queue.extend(accepted)
                    start = not self._queueing
                    self._queueing = True
                if start:
                    loop.run_in_executor(self._queue_pool, self._drain)
        finally:
            self._inflight -= 1
            self._flush()

    def _store(self, items: list[Incoming]) -> list[Stored | Exception]:
        try:
            with self.db.engine.begin() as conn:
                return list(store_events(conn, items))
        except DBAPIError as exc:
            if _unavailable(exc):
                raise StoreUnavailable(type(exc).__name__) from exc
            if len(items) == 1:
                return [Unstorable("the database refused the event's data")]
        # One event's data was refused: store the others one by one so only it fails.
        results: list[Stored | Exception] = []
        for item in items:
            try:
                with self.db.engine.begin() as conn:
                    results.extend(store_events(conn, [item]))
            except DBAPIError as exc:
                if _unavailable(exc):
                    raise
                results.append(Unstorable("the database refused the event's data"))
        return results

    async def _store_async(self, items: list[Incoming]) -> list[Stored | Exception]:
        try:
            return list(await self._insert(items))
        except psycopg.Error as exc:
            if _pg_unavailable(exc):
                raise StoreUnavailable(type(exc).__name__) from exc
            if len(items) == 1:
                return [Unstorable("the database refused the event's data")]
        results: list[Stored | Exception] = []
        for item in items:
            try:
                results.extend(await self._insert([item]))
            except psycopg.Error as exc:
                if _pg_unavailable(exc):
                    raise StoreUnavailable(type(exc).__name__) from exc
                results.append(Unstorable("the database refused the event's data"))
        return results

    async def _insert(self, items: list[Incoming]) -> list[Stored]:
        plan = InsertPlan(items)
        conn = self._idle.pop() if self._idle else None
        if conn is None or conn.closed:
            # Autocommit: the group is one INSERT statement, atomic and durable by itself, so
            # a write is one round trip instead of three (BEGIN, INSERT, COMMIT).
            conn = await psycopg.AsyncConnection.connect(
                self._conninfo or "", connect_timeout=5, autocommit=True
            )
        reusable = False
        try:
            cursor = await conn.execute(INSERT_POSTGRES, plan.postgres_params())
            inserted = {row[0] for row in await cursor.fetchall()}
            known: dict[tuple[str, str], uuid.UUID] = {}
            missing = plan.missing(inserted)
            if missing:
                cursor = await conn.execute(KNOWN_POSTGRES, known_params(missing))
                known = {(p, e): i for p, e, i in await cursor.fetchall()}
            reusable = True
            return plan.answers(inserted, known)
        except psycopg.Error:
            # A refused row leaves the connection usable; a broken connection does not.
            reusable = not conn.closed and not conn.broken
            raise
        finally:
            if reusable:
                self._idle.append(conn)
            else:
                await conn.close()

    def _drain(self) -> None:
        while True:
            with self._queue_lock:
                ids, self._to_queue = self._to_queue, []
                if not ids:
                    self._queueing = False
                    return
            try:
                self.after_commit(ids)
            except Exception as exc:  # the rows are stored: the sweeper queues them later
                log.warning("events_not_queued", count=len(ids), error=type(exc).__name__)
            # A Celery message costs about a millisecond of CPU whatever it carries: under load,
            # let the ids of the next commits gather for a moment so one message carries many.
            time.sleep(self.enqueue_linger)

    def close(self) -> None:
        self._write_pool.shutdown(wait=True)
        self._queue_pool.shutdown(wait=True)


def _unavailable(exc: DBAPIError) -> bool:
    return exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)


def _pg_unavailable(exc: psycopg.Error) -> bool:
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)


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


def routes(settings: Settings, deps: Deps, writer: InboxWriter) -> list[Route]:
    shopify_secrets = [
        s.get_secret_value()
        for s in (settings.shopify_client_secret, settings.shopify_previous_client_secret)
        if s is not None
    ]
    stripe_secrets = split_secrets(
        settings.stripe_webhook_secret.get_secret_value()
        if settings.stripe_webhook_secret
        else None
    )
    account_secrets = AccountSecrets(deps)

    async def shopify(request: Request) -> Response:
        try:
            body = await _body(request)
            verify_shopify(body, request.headers.get("x-shopify-hmac-sha256"), shopify_secrets)
            return await _store(writer, parse_shopify(request.headers, body))
        except Exception as exc:
            return _refusal("shopify", exc)

    async def stripe(request: Request) -> Response:
        try:
            body = await _body(request)
            verify_stripe(body, request.headers.get("stripe-signature"), stripe_secrets)
            return await _store(writer, parse_stripe(body))
        except Exception as exc:
            return _refusal("stripe", exc)

    async def stripe_account(request: Request) -> Response:
        try:
            account_id = uuid.UUID(request.path_params["account_id"])
        except ValueError:
            return _answer("stripe", 404, {"error": "not_found", "message": "no such account"})
        try:
            entry = account_secrets.cached(account_id)
            fresh = entry is None
            if entry is None:
                entry = await run_in_threadpool(account_secrets.load, account_id)
            if not entry.found:
                return _answer("stripe", 404, {"error": "not_found", "message": "no such account"})
            body = await _body(request)
            header = request.headers.get("stripe-signature")
            try:
                verify_stripe(body, header, [entry.secret])
            except SignatureError:
                # The secret may have changed since it was cached; bad signatures reload it at
                # most once a second, so they cannot turn into a database read each.
                if fresh or time.monotonic() - entry.loaded < 1.0:
                    raise
                entry = await run_in_threadpool(account_secrets.load, account_id)
                verify_stripe(body, header, [entry.secret])
            event = parse_stripe(body)
            return await _store(writer, event, account_id)
        except Exception as exc:
            return _refusal("stripe", exc)

    return [
        Route("/webhooks/shopify", shopify, methods=["POST"]),
        Route("/webhooks/stripe", stripe, methods=["POST"]),
        Route("/webhooks/stripe/{account_id}", stripe_account, methods=["POST"]),
    ]


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def _store(
    writer: InboxWriter, event: ParsedEvent, account_id: uuid.UUID | None = None
) -> Response:
    stored = await writer.submit(Incoming(event, account_id))
    _count(event.provider, stored.status)
    body = b'{"status":"%s","event_id":"%s"}' % (stored.status.encode(), str(stored.id).encode())
    return Response(body, media_type="application/json")


_counters: dict[tuple[str, str], Any] = {}


def _count(provider: str, answer: str) -> None:
    key = (provider, answer)
    counter = _counters.get(key)
    if counter is None:
        counter = _counters[key] = WEBHOOKS.labels(provider, answer)
    counter.inc()


def _answer(provider: str, status: int, body: dict[str, str]) -> JSONResponse:
    _count(provider, str(status))
    return JSONResponse(body, status_code=status)


def _refusal(provider: str, exc: Exception) -> JSONResponse:
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
    if isinstance(exc, ClientDisconnect):
        return _answer(provider, 400, {"error": "disconnected", "message": "client went away"})
    if isinstance(exc, StoreUnavailable | DBAPIError):
        return _answer(
            provider, 503, {"error": "unavailable", "message": "the event store is unavailable"}
        )
    log.exception("webhook_error", provider=provider)
    return _answer(provider, 500, {"error": "internal", "message": "unexpected error"})
