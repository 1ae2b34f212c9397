"""The inbox writer behind the webhook endpoints: the events of many requests are stored in one
transaction (group commit), so durability costs little throughput, and their ids are queued for
processing after commit. The events of one request (a HubSpot batch) always commit together."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import structlog
from prometheus_client import Histogram
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from models import Database
from worker.service.inbox import (
    INSERT_POSTGRES,
    KNOWN_POSTGRES,
    Incoming,
    InsertPlan,
    Stored,
    known_params,
    store_events,
)

log = structlog.get_logger(__name__)

Enqueue = Callable[[list[uuid.UUID]], object]

BATCH_SIZE = Histogram(
    "connections_inbox_batch_size",
    "Events stored per inbox commit",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)


class StoreUnavailable(Exception):
    """The inbox could not be written: answer 503 so the provider retries."""


class Unstorable(Exception):
    """The database refused this one event's data (the others of its group are stored)."""


class _Refused(Exception):
    """The database refused a write's data (not its availability)."""


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
        # One entry per request: its events, and the answer it awaits.
        self._pending: list[tuple[list[Incoming], asyncio.Future[list[Stored]]]] = []
        self._pending_events = 0
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
        return (await self.submit_many([item]))[0]

    async def submit_many(self, items: list[Incoming]) -> list[Stored]:
        """Store the events of one request, in one transaction; answers in the same order."""
        if self._pending_events >= self.max_pending:
            raise StoreUnavailable("too many events waiting to be stored")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Stored]] = loop.create_future()
        self._pending.append((items, future))
        self._pending_events += len(items)
        if not self._flush_scheduled:
            # Flush after this loop iteration, so requests parsed in the same tick share a write.
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._flush_scheduled = False
        while self._pending and self._inflight < self.writers:
            taken, size = 0, 0
            while taken < len(self._pending) and (
                not taken or size + len(self._pending[taken][0]) <= self.max_batch
            ):
                size += len(self._pending[taken][0])
                taken += 1
            group = self._pending[:taken]
            del self._pending[:taken]
            self._pending_events -= size
            self._inflight += 1
            asyncio.get_running_loop().create_task(self._write(group))

    async def _write(
        self, group: list[tuple[list[Incoming], asyncio.Future[list[Stored]]]]
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            results = await asyncio.wait_for(
                self._store([items for items, _ in group]), self.timeout
            )
        except Exception as exc:
            size = sum(len(items) for items, _ in group)
            log.warning("inbox_unavailable", error=type(exc).__name__, events=size)
            for _, future in group:
                if not future.done():
                    future.set_exception(StoreUnavailable(type(exc).__name__))
        else:
            BATCH_SIZE.observe(sum(len(items) for items, _ in group))
            accepted: list[uuid.UUID] = []
            for (_, future), result in zip(group, results, strict=True):
                if isinstance(result, list):
                    accepted.extend(s.id for s in result if s.status == "accepted")
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

    async def _store(self, requests: list[list[Incoming]]) -> list[list[Stored] | Exception]:
        """The group in one write, answered per request; if the database refuses one request's
        data, the others one by one, so only that request fails. An unavailable database fails
        them all."""
        try:
            stored = await self._insert([item for items in requests for item in items])
        except _Refused:
            if len(requests) == 1:
                return [Unstorable("the database refused the event's data")]
        else:
            answers: list[list[Stored] | Exception] = []
            for items in requests:
                answers.append(stored[: len(items)])
                del stored[: len(items)]
            return answers
        results: list[list[Stored] | Exception] = []
        for items in requests:
            try:
                results.append(await self._insert(items))
            except _Refused:
                results.append(Unstorable("the database refused the event's data"))
        return results

    async def _insert(self, items: list[Incoming]) -> list[Stored]:
        if self._conninfo is None:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._write_pool, self._insert_sync, items)
        try:
            return await self._insert_postgres(items)
        except psycopg.Error as exc:
            if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
                raise StoreUnavailable(type(exc).__name__) from exc
            raise _Refused from exc

    def _insert_sync(self, items: list[Incoming]) -> list[Stored]:
        try:
            with self.db.engine.begin() as conn:
                return store_events(conn, items)
        except DBAPIError as exc:
            if exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError):
                raise StoreUnavailable(type(exc).__name__) from exc
            raise _Refused from exc

    async def _insert_postgres(self, items: list[Incoming]) -> list[Stored]:
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
            # A message costs the worker a fixed ~7 ms of CPU whatever it carries: let the ids
            # of the next commits gather for a moment so one message carries many.
            time.sleep(self.enqueue_linger)

    def close(self) -> None:
        self._write_pool.shutdown(wait=True)
        self._queue_pool.shutdown(wait=True)
