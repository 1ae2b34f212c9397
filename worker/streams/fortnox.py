"""`connections fortnox-stream`: one WebSocket to Fortnox's topics stream for every Fortnox
account. Each event is stored in the inbox with its offset, then queued like a webhook; a restart
resumes from the stored offsets. A credentials change is heard through `notify` and subscribed
within moments; every `tenants_every` seconds all tokens are read again anyway. The protocol is
`connectors.fortnox.stream`; this module keeps the socket, the database and the reconnects."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import structlog
import websockets

from connectors.events import MalformedEvent
from connectors.fortnox import FortnoxSettings, stream
from models import Database
from worker import metrics
from worker.logconfig import secrets_known
from worker.service import inbox, notify, provider_events
from worker.service.deps import Deps
from worker.streams.tenants import Tenant, TenantBook, load_tenants

log = structlog.get_logger(__name__)

TYPE = "fortnox"

Enqueue = Callable[[list[uuid.UUID]], object]


@dataclass
class ListenerOptions:
    url: str
    client_secret: str
    topics: list[str]
    tenants_every: float = 60.0  # seconds between re-reading every account's credentials
    # Hear credential changes (PostgreSQL LISTEN) and read the tenants this long after the
    # first one, so a burst of changes costs one read.
    listen_changes: bool = True
    change_debounce: float = 0.2
    batch_size: int = 200  # events stored per transaction at most
    batch_wait: float = 0.02  # how long after a batch's first event it is stored at the latest
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    command_timeout: float = 15.0


def options_from(settings: FortnoxSettings, db: Database) -> ListenerOptions:
    if settings.client_secret is None:
        raise SystemExit("CONNECTIONS_FORTNOX_CLIENT_SECRET is required for the Fortnox stream")
    # SQLite (dev) cannot announce credential changes: poll often instead.
    every = (
        settings.tenants_every_seconds if notify.listen_url(db) else settings.tenants_poll_seconds
    )
    return ListenerOptions(
        url=settings.ws_url,
        client_secret=settings.client_secret.get_secret_value(),
        topics=settings.topic_list(),
        tenants_every=every,
    )


class FortnoxListener:
    def __init__(self, deps: Deps, options: ListenerOptions, enqueue: Enqueue) -> None:
        self.deps = deps
        self.options = options
        self.enqueue = enqueue
        # One thread for the database and the connectors' private event loop.
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="fortnox-stream")
        self._book = TenantBook()
        self._changed_at: float | None = None  # loop time to read a heard change at
        self._woken = asyncio.Event()
        self.stored = 0

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def run(self, stop: asyncio.Event) -> None:
        """Listen until `stop` is set, reconnecting with backoff after any failure."""
        url = notify.listen_url(self.deps.db) if self.options.listen_changes else None
        changes = asyncio.create_task(notify.listen(url, self._heard)) if url else None
        metrics.stream_connected(TYPE, False)
        failures = 0
        try:
            while not stop.is_set():
                try:
                    await self._session(stop)
                    failures = 0
                except (
                    OSError,
                    TimeoutError,
                    websockets.WebSocketException,
                    stream.StreamRefused,
                ) as exc:
                    failures += 1
                    log.warning(
                        "fortnox_stream_lost", error=type(exc).__name__, detail=str(exc)[:200]
                    )
                metrics.stream_connected(TYPE, False)
                if stop.is_set():
                    break
                delay = min(
                    self.options.backoff_max,
                    self.options.backoff_initial * 2 ** max(0, failures - 1),
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay * random.uniform(0.5, 1.0))
        finally:
            if changes is not None:
                changes.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await changes
            self._pool.shutdown(wait=True)

    def _heard(self, account_type: str | None) -> None:
        """A credentials notification, or None when the LISTEN connection was made (again) and
        any change may have been missed: read the tenants again shortly."""
        if account_type not in (None, TYPE):
            return
        if self._changed_at is None:
            now = asyncio.get_running_loop().time()
            self._changed_at = now + self.options.change_debounce
        self._woken.set()

    async def _session(self, stop: asyncio.Event) -> None:
        self._book.clear()
        async with websockets.connect(
            self.options.url, open_timeout=10, ping_interval=20, max_size=2**22
        ) as ws:
            self._changed_at = None  # this read sees every change heard until now
            tenants = await self._call(load_tenants, self.deps, TYPE)
            if tenants:
                await self._send(ws, self._add_tenants(tenants))
                await self._on_tenants(await self._response(ws, stream.ADD_TENANTS), tenants)
            offsets = await self._call(self._offsets)
            await self._send(ws, stream.add_topics(self.options.topics, offsets))
            answer = await self._response(ws, stream.ADD_TOPICS)
            if answer.body.get("invalidTopics"):
                log.warning("fortnox_topics_refused", topics=answer.body["invalidTopics"])
            await self._send(ws, stream.subscribe())
            await self._response(ws, stream.SUBSCRIBE)
            log.info(
                "fortnox_stream_subscribed",
                tenants=len(self._book.sent),
                topics=len(self.options.topics),
            )
            metrics.stream_connected(TYPE, True)
            await self._listen(ws, stop)

    def _tenants_due(self, periodic: float) -> float:
        return periodic if self._changed_at is None else min(periodic, self._changed_at)

    async def _listen(self, ws: Any, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        periodic = loop.time() + self.options.tenants_every
        stopping = asyncio.ensure_future(stop.wait())
        receive: asyncio.Future[Any] | None = None
        woken: asyncio.Future[Any] | None = None
        try:
            while not stop.is_set():
                if loop.time() >= self._tenants_due(periodic):
                    # Checked before every wait, so a busy stream cannot starve the re-read.
                    self._changed_at = None
                    periodic = loop.time() + self.options.tenants_every
                    await self._refresh_tenants(ws)
                    continue
                receive = receive or asyncio.ensure_future(ws.recv())
                woken = woken or asyncio.ensure_future(self._woken.wait())
                done, _ = await asyncio.wait(
                    {receive, stopping, woken},
                    timeout=max(0.0, self._tenants_due(periodic) - loop.time()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if woken in done:
                    self._woken.clear()
                    woken = None
                if receive in done:
                    raw, receive = receive.result(), None
                    await self._take(ws, raw)
        finally:
            for pending in (stopping, receive, woken):
                if pending is not None:
                    pending.cancel()

    async def _take(self, ws: Any, first: str | bytes) -> None:
        """Handle a frame and what else arrives within `batch_wait`, so one transaction stores
        many events; the window is short, as an event is only safe once stored."""
        loop = asyncio.get_running_loop()
        events: list[dict[str, Any]] = []
        await self._dispatch(first, events)
        deadline = loop.time() + self.options.batch_wait
        while events and len(events) < self.options.batch_size:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                more = await asyncio.wait_for(ws.recv(), remaining)
            except TimeoutError:
                break
            await self._dispatch(more, events)
        if events:
            await self._store(events)

    async def _dispatch(self, raw: str | bytes, events: list[dict[str, Any]]) -> None:
        frame = stream.read(raw)
        if isinstance(frame, stream.Answer):
            if frame.command == stream.ADD_TENANTS:
                await self._on_tenants(frame, None)
            elif not frame.ok:
                log.warning("fortnox_command_failed", response=frame.command)
        elif frame is not None:
            events.append(frame)
        else:
            log.warning("fortnox_stream_frame_ignored")

    async def _store(self, messages: list[dict[str, Any]]) -> None:
        items: list[inbox.Incoming] = []
        offsets: dict[str, int] = {}
        for message in messages:
            try:
                event = stream.parse_fortnox(message)
            except MalformedEvent as exc:
                log.warning("fortnox_event_malformed", reason=str(exc))
                continue
            items.append(inbox.Incoming(event))
            offset = stream.fortnox_offset(message["offset"])
            assert offset is not None  # parse_fortnox checked it
            offsets[event.topic] = max(offsets.get(event.topic, offset), offset)
        stored = await self._call(self._write, items, offsets)
        accepted = [s.id for s in stored if s.status == "accepted"]
        self.stored += len(accepted)
        if accepted:
            await self._call(self._enqueue, accepted)

    def _write(self, items: list[inbox.Incoming], offsets: dict[str, int]) -> list[inbox.Stored]:
        with self.deps.db.engine.begin() as conn:
            return inbox.store_stream_events(conn, TYPE, items, offsets)

    def _enqueue(self, ids: list[uuid.UUID]) -> None:
        try:
            self.enqueue(ids)
        except Exception as exc:  # stored: the sweeper queues them later
            log.warning("events_not_queued", count=len(ids), error=type(exc).__name__)

    def _offsets(self) -> dict[str, int]:
        with self.deps.db.unit_of_work() as session:
            return inbox.stream_offsets(session, TYPE)

    # -- tenants ------------------------------------------------------------------------------

    def _add_tenants(self, tenants: list[Tenant]) -> stream.Command:
        return stream.add_tenants(self.options.client_secret, [t.access_token for t in tenants])

    async def _refresh_tenants(self, ws: Any) -> None:
        changed, removed = self._book.changes(await self._call(load_tenants, self.deps, TYPE))
        if changed:
            self._book.awaiting = changed
            await self._send(ws, self._add_tenants(changed))
        if removed:
            await self._send(ws, stream.remove_tenants(removed))

    async def _on_tenants(self, answer: stream.Answer, tenants: list[Tenant] | None) -> None:
        if tenants is None:
            tenants, self._book.awaiting = self._book.awaiting, []
        by_token = {t.access_token: t.account_id for t in tenants}
        with secrets_known(list(by_token)):
            result = stream.read_tenants(answer, by_token)
        self._book.answered(tenants, result)
        await self._call(
            provider_events.record_stream_tenants,
            self.deps.db,
            "fortnox",
            result.tenant_ids,
            result.refused,
        )

    # -- the socket ---------------------------------------------------------------------------

    async def _send(self, ws: Any, command: stream.Command) -> None:
        await ws.send(stream.encode(command))

    async def _response(self, ws: Any, name: str) -> stream.Answer:
        """Wait for the answer to command `name`; events before it are stored, not dropped."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.command_timeout
        while True:
            raw = await asyncio.wait_for(ws.recv(), max(0.1, deadline - loop.time()))
            frame = stream.read(raw)
            if isinstance(frame, stream.Answer) and frame.command == name:
                if name != stream.ADD_TENANTS:  # its refusal is read together with its tokens
                    frame.raise_for_error()
                return frame
            if isinstance(frame, dict):
                await self._store([frame])
