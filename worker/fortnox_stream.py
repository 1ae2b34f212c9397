"""`connections fortnox-stream`: one WebSocket to Fortnox's topics stream for every Fortnox
account. Each event is stored in the inbox together with its offset, then queued for processing
like a webhook; after a restart the stream resumes from the stored offsets.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import structlog
import websockets
from sqlalchemy import select

from connectors import ProviderError
from connectors.webhooks import MalformedEvent, fortnox_offset, parse_fortnox
from models import Account, AccountStatus
from worker.logconfig import secrets_known
from worker.service import inbox, provider_events
from worker.service.checks import usable_credentials
from worker.service.deps import Deps
from worker.settings import Settings

log = structlog.get_logger(__name__)

STREAM = "fortnox"
Enqueue = Callable[[list[uuid.UUID]], object]


class StreamRefused(Exception):
    """Fortnox answered a command with an error (a wrong client secret, say)."""


@dataclass(frozen=True)
class Tenant:
    account_id: uuid.UUID
    access_token: str


@dataclass
class ListenerOptions:
    url: str
    client_secret: str
    topics: list[str]
    tenants_every: float = 60.0  # seconds between re-reading the accounts' credentials
    batch_size: int = 200  # events stored per transaction at most
    batch_wait: float = 0.02  # how long after a batch's first event it is stored at the latest
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    command_timeout: float = 15.0


class FortnoxListener:
    def __init__(self, deps: Deps, options: ListenerOptions, enqueue: Enqueue) -> None:
        self.deps = deps
        self.options = options
        self.enqueue = enqueue
        # One thread for the database and the connectors' private event loop.
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="fortnox-stream")
        self._sent: dict[uuid.UUID, str] = {}  # account id -> the token Fortnox has from us
        self._tenant_ids: dict[uuid.UUID, str] = {}
        self._awaiting: list[Tenant] = []  # tenants of the add-tenants-v1 not yet answered
        self.stored = 0

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def run(self, stop: asyncio.Event) -> None:
        """Listen until `stop` is set, reconnecting with backoff after any failure."""
        failures = 0
        while not stop.is_set():
            try:
                await self._session(stop)
                failures = 0
            except (OSError, TimeoutError, websockets.WebSocketException, StreamRefused) as exc:
                failures += 1
                log.warning("fortnox_stream_lost", error=type(exc).__name__, detail=str(exc)[:200])
            if stop.is_set():
                break
            delay = min(
                self.options.backoff_max, self.options.backoff_initial * 2 ** max(0, failures - 1)
            )
            delay *= random.uniform(0.5, 1.0)
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                pass
        self._pool.shutdown(wait=True)

    async def _session(self, stop: asyncio.Event) -> None:
        self._sent.clear()
        async with websockets.connect(
            self.options.url, open_timeout=10, ping_interval=20, max_size=2**22
        ) as ws:
            tenants = await self._call(self._load_tenants)
            if tenants:
                await self._send(ws, self._add_tenants(tenants))
                await self._on_tenants(await self._response(ws, "add-tenants-v1"), tenants)
            offsets = await self._call(self._offsets)
            topics = [
                {"topic": t, "offset": str(offsets[t])} if t in offsets else {"topic": t}
                for t in self.options.topics
            ]
            await self._send(ws, {"command": "add-topics-v1", "topics": topics})
            answer = await self._response(ws, "add-topics-v1")
            if answer.get("invalidTopics"):
                log.warning("fortnox_topics_refused", topics=answer["invalidTopics"])
            await self._send(ws, {"command": "subscribe-v1"})
            await self._response(ws, "subscribe-v1")
            log.info("fortnox_stream_subscribed", tenants=len(self._sent), topics=len(topics))
            await self._listen(ws, stop)

    async def _listen(self, ws: Any, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        next_tenants = loop.time() + self.options.tenants_every
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                wait = max(0.0, next_tenants - loop.time())
                receive = asyncio.ensure_future(ws.recv())
                done, _ = await asyncio.wait(
                    {receive, stopping}, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                )
                if receive not in done:
                    receive.cancel()
                    if stop.is_set():
                        return
                    next_tenants = loop.time() + self.options.tenants_every
                    await self._refresh_tenants(ws)
                    continue
                events: list[dict[str, Any]] = []
                await self._dispatch(receive.result(), events)
                # Take what else arrives within `batch_wait`, so one transaction stores many
                # events; the window is short, as an event is only safe once stored.
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
        finally:
            stopping.cancel()

    async def _dispatch(self, raw: str | bytes, events: list[dict[str, Any]]) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            log.warning("fortnox_stream_not_json")
            return
        if not isinstance(message, dict):
            return
        if "response" in message:
            if message["response"] == "add-tenants-v1":
                await self._on_tenants(message, None)
            elif message.get("result") == "error":
                log.warning("fortnox_command_failed", response=str(message.get("response")))
            return
        if "topic" in message and "offset" in message:
            events.append(message)

    async def _store(self, messages: list[dict[str, Any]]) -> None:
        items: list[inbox.Incoming] = []
        offsets: dict[str, int] = {}
        for message in messages:
            try:
                event = parse_fortnox(message)
            except MalformedEvent as exc:
                log.warning("fortnox_event_malformed", reason=str(exc))
                continue
            items.append(inbox.Incoming(event))
            offset = fortnox_offset(message["offset"])
            assert offset is not None  # parse_fortnox checked it
            offsets[event.topic] = max(offsets.get(event.topic, offset), offset)
        stored = await self._call(self._write, items, offsets)
        accepted = [s.id for s in stored if s.status == "accepted"]
        self.stored += len(accepted)
        if accepted:
            await self._call(self._enqueue, accepted)

    def _write(self, items: list[inbox.Incoming], offsets: dict[str, int]) -> list[inbox.Stored]:
        with self.deps.db.engine.begin() as conn:
            return inbox.store_stream_events(conn, STREAM, items, offsets)

    def _enqueue(self, ids: list[uuid.UUID]) -> None:
        try:
            self.enqueue(ids)
        except Exception as exc:  # stored: the sweeper queues them later
            log.warning("events_not_queued", count=len(ids), error=type(exc).__name__)

    def _offsets(self) -> dict[str, int]:
        with self.deps.db.unit_of_work() as session:
            return inbox.stream_offsets(session, STREAM)

    # -- tenants ------------------------------------------------------------------------------

    def _load_tenants(self) -> list[Tenant]:
        """Every Fortnox account's current access token, read fresh (refreshed first when it is
        about to expire, under the same lock as the checks' refresh)."""
        with self.deps.db.unit_of_work() as session:
            accounts = list(
                session.scalars(
                    select(Account)
                    .where(
                        Account.type == "fortnox",
                        Account.status != AccountStatus.DISCONNECTED,
                    )
                    .order_by(Account.created_at)
                )
            )
        connector = self.deps.connectors.by_type.get("fortnox")
        tenants = []
        for account in accounts:
            try:
                if connector is not None:
                    credentials = usable_credentials(self.deps, account, connector)
                else:
                    credentials = self.deps.vault.decrypt(account.credentials)
            except ProviderError as exc:
                log.warning(
                    "fortnox_tenant_skipped", account_id=str(account.id), code=exc.code.value
                )
                continue
            token = credentials.get("access_token")
            if isinstance(token, str) and token:
                tenants.append(Tenant(account.id, token))
        return tenants

    def _add_tenants(self, tenants: list[Tenant]) -> dict[str, Any]:
        return {
            "command": "add-tenants-v1",
            "clientSecret": self.options.client_secret,
            "accessTokens": [t.access_token for t in tenants],
            "includeChildTenants": False,
        }

    async def _refresh_tenants(self, ws: Any) -> None:
        tenants = await self._call(self._load_tenants)
        changed = [t for t in tenants if self._sent.get(t.account_id) != t.access_token]
        gone = set(self._sent) - {t.account_id for t in tenants}
        if changed:
            self._awaiting = changed
            await self._send(ws, self._add_tenants(changed))
        removed = [self._tenant_ids[a] for a in gone if a in self._tenant_ids]
        for account_id in gone:
            self._sent.pop(account_id, None)
            self._tenant_ids.pop(account_id, None)
        if removed:
            ids = [int(t) if t.isdigit() else t for t in removed]
            await self._send(ws, {"command": "remove-tenants-v1", "tenantIds": ids})

    async def _on_tenants(self, answer: dict[str, Any], tenants: list[Tenant] | None) -> None:
        if tenants is None:
            tenants, self._awaiting = self._awaiting, []
        if answer.get("result") not in ("ok", None) and not answer.get("tenantIds"):
            raise StreamRefused(f"add-tenants-v1 refused: {str(answer.get('message'))[:200]}")
        by_token = {t.access_token: t.account_id for t in tenants}
        with secrets_known(list(by_token)):
            tenant_ids = answer.get("tenantIds") or {}
            mapping: dict[uuid.UUID, str] = {}
            if isinstance(tenant_ids, dict):
                for token, tenant_id in tenant_ids.items():
                    if token in by_token:
                        mapping[by_token[token]] = str(tenant_id)
            invalid = [by_token[t] for t in answer.get("invalidTokens") or [] if t in by_token]
        for tenant in tenants:
            # A refused token is not sent again; the account's next token will be.
            self._sent[tenant.account_id] = tenant.access_token
        self._tenant_ids.update(mapping)
        await self._call(provider_events.record_fortnox_tenants, self.deps.db, mapping, invalid)

    # -- protocol -----------------------------------------------------------------------------

    async def _send(self, ws: Any, command: dict[str, Any]) -> None:
        await ws.send(json.dumps(command))

    async def _response(self, ws: Any, name: str) -> dict[str, Any]:
        """Wait for the answer to command `name`; events before it are stored, not dropped."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.command_timeout
        while True:
            raw = await asyncio.wait_for(ws.recv(), max(0.1, deadline - loop.time()))
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(message, dict):
                continue
            if message.get("response") == name:
                if message.get("result") == "error" and name != "add-tenants-v1":
                    raise StreamRefused(f"{name} refused: {str(message.get('message'))[:200]}")
                return message
            if "topic" in message and "offset" in message:
                await self._store([message])


def options_from(settings: Settings) -> ListenerOptions:
    if settings.fortnox_client_secret is None:
        raise SystemExit("CONNECTIONS_FORTNOX_CLIENT_SECRET is required for the Fortnox stream")
    return ListenerOptions(
        url=settings.fortnox_ws_url,
        client_secret=settings.fortnox_client_secret.get_secret_value(),
        topics=settings.fortnox_topic_list(),
    )


def run(settings: Settings, deps: Deps) -> None:
    """The process: listen until SIGTERM or SIGINT."""
    from worker.celery_app import app as celery
    from worker.tasks.events import enqueue

    options = options_from(settings)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        listener = FortnoxListener(deps, options, lambda ids: enqueue(celery, ids))
        log.info("fortnox_stream_starting", url=options.url, topics=options.topics)
        await listener.run(stop)
        log.info("fortnox_stream_stopped", stored=listener.stored)

    asyncio.run(main())
