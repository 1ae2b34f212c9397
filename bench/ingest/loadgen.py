"""The paced load generator: asyncio clients, each in its own process, on raw keep-alive
connections opened before the clock starts, with the garbage collector off; open loop (on
schedule, latency from the scheduled time) or closed loop."""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import cast

from bench.ingest.deliveries import Delivery, raw_request
from bench.ingest.results import LoadResult


@dataclass
class ClientResult:
    statuses: dict[int, int]
    latencies: list[float]  # seconds, request scheduled -> answer read
    first: float
    last: float
    sent_at: dict[str, float]  # event id -> wall-clock time the request was scheduled


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection that sends a pre-built request and reads the status
    of its answer: a few microseconds of CPU per request, where an HTTP client library takes
    a hundred, which on two shared cores would come out of the servers' share."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        at = head.find(b"content-length:")
        length = 0
        if at >= 0:
            line_end = head.find(b"\r\n", at)
            length = int(head[at + 15 : line_end if line_end >= 0 else len(head)])
        if len(self.buffer) < end + 4 + length:
            return
        del self.buffer[: end + 4 + length]
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(int(head[9:12]))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("the server closed the connection"))

    async def send(self, request: bytes) -> int:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter


def _client(
    url: str, batch: list[Delivery], concurrency: int, rate: float | None, start: float
) -> ClientResult:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    host = url.split("//", 1)[1]
    address, port = host.rsplit(":", 1)
    requests = [raw_request(host, item) for item in batch]
    # A collection of the generator's own heap would show up as the servers' latency.
    gc.collect()
    gc.disable()

    async def run() -> ClientResult:
        loop = asyncio.get_running_loop()
        statuses: dict[int, int] = {}
        latencies: list[float] = []
        sent_at: dict[str, float] = {}
        # Every connection is open before the clock starts (none is opened mid-run).
        idle: asyncio.Queue[_Connection] = asyncio.Queue()
        for _ in range(concurrency):
            _, connection = await loop.create_connection(_Connection, address, int(port))
            idle.put_nowait(connection)
        while time.monotonic() < start:
            await asyncio.sleep(min(0.01, start - time.monotonic()))
        first = time.monotonic()

        async def send(i: int, scheduled: float) -> None:
            sent_at[batch[i][3]] = time.time() - (time.monotonic() - scheduled)
            connection = await idle.get()
            try:
                status = await asyncio.wait_for(connection.send(requests[i]), 60)
            except (OSError, TimeoutError):
                status = 0
                connection = (await loop.create_connection(_Connection, address, int(port)))[1]
            idle.put_nowait(connection)
            statuses[status] = statuses.get(status, 0) + 1
            latencies.append(time.monotonic() - scheduled)

        if rate is None:  # closed loop: each connection sends its next request when answered
            queue = iter(range(len(batch)))

            async def loop_() -> None:
                for i in queue:
                    await send(i, time.monotonic())

            await asyncio.gather(*[loop_() for _ in range(concurrency)])
        else:
            # Open loop: requests leave on schedule whatever the answers do, and latency counts
            # from the scheduled time (no coordinated omission).
            tasks = []
            for i in range(len(batch)):
                scheduled = first + i / rate
                delay = scheduled - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.ensure_future(send(i, scheduled)))
            await asyncio.gather(*tasks)
        return ClientResult(statuses, latencies, first, time.monotonic(), sent_at)

    return asyncio.run(run())


def load(
    url: str,
    batch: list[Delivery],
    *,
    clients: int,
    concurrency: int,
    rate: float | None = None,
) -> LoadResult:
    shares = [batch[i::clients] for i in range(clients)]
    start = time.monotonic() + 1.0
    with ProcessPoolExecutor(clients, mp_context=multiprocessing.get_context("fork")) as pool:
        futures = [
            pool.submit(_client, url, share, concurrency, rate / clients if rate else None, start)
            for share in shares
        ]
        results = [f.result() for f in futures]
    statuses: dict[int, int] = {}
    for result in results:
        for code, n in result.statuses.items():
            statuses[code] = statuses.get(code, 0) + n
    sent: dict[str, float] = {}
    for result in results:
        sent.update(result.sent_at)
    return LoadResult(
        ok=statuses.get(200, 0),
        statuses=statuses,
        seconds=max(r.last for r in results) - min(r.first for r in results),
        latencies=[x for r in results for x in r.latencies],
        sent_at=sent,
    )
