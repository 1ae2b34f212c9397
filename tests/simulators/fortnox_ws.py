"""Fortnox topics stream simulator: the WebSocket protocol of wss://ws.fortnox.se/topics-v1
(add-tenants-v1, add-topics-v1, subscribe-v1, remove-tenants-v1, events with per-topic offsets),
served from a thread; tests publish events and drop connections."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve

from tests.simulators.base import free_port

FIRST_OFFSET = 1000


@dataclass(eq=False)
class _Connection:
    socket: ServerConnection
    tenants: set[int] = field(default_factory=set)
    cursors: dict[str, int] = field(default_factory=dict)  # topic -> next offset to send
    subscribed: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class FortnoxStreamSimulator:
    def __init__(
        self,
        client_secret: str = "fortnox-client-secret-0000",
        issuer: Callable[[str], int | None] | None = None,
    ) -> None:
        """`issuer`: the tenant of a token not added here (the OAuth simulator's `tenant_of`),
        so tokens issued by connecting an account are known as Fortnox knows them."""
        self.client_secret = client_secret
        self.issuer = issuer
        self.port = free_port()
        self.tokens: dict[str, int] = {}  # access token -> tenant id
        self.topics: dict[str, list[dict[str, Any]]] = {}
        self.commands: list[dict[str, Any]] = []
        self.connections_made = 0
        self._tenant_ids = itertools.count(500001)
        self._lock = threading.Lock()
        self._open: set[_Connection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/topics-v1"

    # -- test controls ------------------------------------------------------------------------
    def add_tenant(self, access_token: str, tenant_id: int | None = None) -> int:
        with self._lock:
            tenant = tenant_id if tenant_id is not None else next(self._tenant_ids)
            self.tokens[access_token] = tenant
        return tenant

    def revoke(self, access_token: str) -> None:
        with self._lock:
            self.tokens.pop(access_token, None)

    def publish(
        self, topic: str, tenant_id: int, type_: str = "invoice-updated-v1", entity_id: str = "1"
    ) -> int:
        """Append an event to `topic` and push it to subscribed connections; returns its offset."""
        with self._lock:
            events = self.topics.setdefault(topic, [])
            offset = FIRST_OFFSET + len(events)
            events.append(
                {
                    "topic": topic,
                    "offset": str(offset),
                    "type": type_,
                    "tenantId": tenant_id,
                    "entityId": entity_id,
                    "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                }
            )
        self._wake_all()
        return offset

    def drop_connections(self) -> None:
        """Close every open connection, as a network failure or a Fortnox restart would."""
        loop = self._loop
        if loop is None:
            return

        async def close_all() -> None:
            for conn in list(self._open):
                await conn.socket.close(code=1012, reason="service restart")

        asyncio.run_coroutine_threadsafe(close_all(), loop).result(timeout=10)

    def open_connections(self) -> int:
        return len(self._open)

    def sent(self, command: str) -> list[dict[str, Any]]:
        with self._lock:
            return [c for c in self.commands if c.get("command") == command]

    # -- server -------------------------------------------------------------------------------
    def start(self) -> FortnoxStreamSimulator:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("Fortnox stream simulator did not start")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and self._server is not None:
            loop.call_soon_threadsafe(self._server.close)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        async with serve(self._handle, "127.0.0.1", self.port) as server:
            self._server = server
            self._ready.set()
            await server.wait_closed()

    def _wake_all(self) -> None:
        loop = self._loop
        if loop is None:
            return
        for conn in list(self._open):
            loop.call_soon_threadsafe(conn.wake.set)

    async def _handle(self, socket: ServerConnection) -> None:
        conn = _Connection(socket)
        self.connections_made += 1
        self._open.add(conn)
        pump = asyncio.create_task(self._pump(conn))
        try:
            async for raw in socket:
                await self._command(conn, json.loads(raw))
        except Exception:  # a closed or broken connection ends this handler
            pass
        finally:
            pump.cancel()
            self._open.discard(conn)

    async def _command(self, conn: _Connection, message: dict[str, Any]) -> None:
        with self._lock:
            self.commands.append(message)
        name = message.get("command")
        if name == "add-tenants-v1":
            if message.get("clientSecret") != self.client_secret:
                await self._reply(conn, name, result="error", message="invalid client secret")
                return
            tenant_ids: dict[str, int] = {}
            invalid: list[str] = []
            for token in message.get("accessTokens") or []:
                with self._lock:
                    tenant = self.tokens.get(token)
                if tenant is None and self.issuer is not None:
                    tenant = self.issuer(token)
                if tenant is None:
                    invalid.append(token)
                else:
                    tenant_ids[token] = tenant
                    conn.tenants.add(tenant)
            await self._reply(conn, name, tenantIds=tenant_ids, invalidTokens=invalid)
        elif name == "remove-tenants-v1":
            for tenant in message.get("tenantIds") or []:
                conn.tenants.discard(int(tenant))
            await self._reply(conn, name)
        elif name == "add-topics-v1":
            invalid_topics = []
            for entry in message.get("topics") or []:
                topic = entry.get("topic")
                if not isinstance(topic, str) or not topic:
                    invalid_topics.append(topic)
                    continue
                with self._lock:
                    latest = FIRST_OFFSET + len(self.topics.get(topic, []))
                offset = entry.get("offset")
                # With an offset, the stream replays from it; without, only new events come.
                conn.cursors[topic] = int(offset) if offset is not None else latest
            await self._reply(conn, name, invalidTopics=invalid_topics)
        elif name == "subscribe-v1":
            conn.subscribed = True
            await self._reply(conn, name)
            conn.wake.set()
        elif name == "list-tenants-v1":
            await self._reply(conn, name, tenantIds=sorted(conn.tenants))
        else:
            await self._reply(conn, str(name), result="error", message="unknown command")

    async def _reply(self, conn: _Connection, name: str, result: str = "ok", **body: Any) -> None:
        await conn.socket.send(json.dumps({"response": name, "result": result, **body}))

    async def _pump(self, conn: _Connection) -> None:
        """Send each subscribed topic's events from the connection's cursor, in offset order."""
        while True:
            await conn.wake.wait()
            conn.wake.clear()
            if not conn.subscribed:
                continue
            for topic, cursor in list(conn.cursors.items()):
                with self._lock:
                    events = self.topics.get(topic, [])[max(0, cursor - FIRST_OFFSET) :]
                for event in events:
                    if event["tenantId"] in conn.tenants:
                        await conn.socket.send(json.dumps(event))
                    conn.cursors[topic] = int(event["offset"]) + 1
