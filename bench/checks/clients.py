"""The ceiling and the transports: client processes hammering the simulator with the checks' own
HTTP layer, bare aiohttp, or httpx over either transport, counting requests completed."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from typing import Any


def _requests(port: int) -> list[tuple[str, str, dict[str, Any]]]:
    base = f"http://127.0.0.1:{port}"
    return [
        ("GET", f"{base}/v1/account", {"headers": {"Authorization": "Bearer sk_test_x"}}),
        (
            "POST",
            f"{base}/bench-1.myshopify.com/admin/api/2025-10/graphql.json",
            {"json": {"query": "{ shop { name } }"}, "headers": {"X-Shopify-Access-Token": "x"}},
        ),
        ("GET", f"{base}/3/companyinformation", {"headers": {"Authorization": "Bearer x"}}),
    ]


async def _hammer(port: int, seconds: float, concurrency: int, kind: str) -> int:
    """Requests completed in `seconds` with `concurrency` in flight, by one client `kind`."""
    import aiohttp
    import httpx

    requests = _requests(port)
    done = 0
    stop_at = time.monotonic() + seconds
    if kind == "aiohttp":
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency * 2)
        ) as session:

            async def run_aiohttp(i: int) -> None:
                nonlocal done
                while time.monotonic() < stop_at:
                    method, url, kw = requests[(i + done) % 3]
                    async with session.request(method, url, **kw) as r:
                        await r.read()
                    done += 1

            await asyncio.gather(*(run_aiohttp(i) for i in range(concurrency)))
        return done
    if kind == "layer":
        # The checks' own client: connectors.http.HttpLayer with its default transport.
        from connectors.http import HttpLayer

        layer = HttpLayer()

        async def run_layer(i: int) -> None:
            nonlocal done
            while time.monotonic() < stop_at:
                method, url, kw = requests[(i + done) % 3]
                await layer.request(method, url, classify=lambda _: None, **kw)
                done += 1

        await asyncio.gather(*(run_layer(i) for i in range(concurrency)))
        await layer.aclose()
        return done
    if kind == "httpx-aiohttp":
        from httpx_aiohttp import AiohttpTransport

        transport: httpx.AsyncBaseTransport = AiohttpTransport(
            limits=httpx.Limits(max_connections=concurrency * 2)
        )
    else:
        transport = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=concurrency * 2))
    async with httpx.AsyncClient(transport=transport, timeout=10) as client:

        async def run_httpx(i: int) -> None:
            nonlocal done
            while time.monotonic() < stop_at:
                method, url, kw = requests[(i + done) % 3]
                response = await client.request(method, url, **kw)
                response.read()
                done += 1

        await asyncio.gather(*(run_httpx(i) for i in range(concurrency)))
    return done


def _hammer_process(port: int, seconds: float, concurrency: int, kind: str, out: Any) -> None:
    import uvloop

    out.put(uvloop.run(_hammer(port, seconds, concurrency, kind)))


def measure_clients(
    port: int, processes: int, seconds: float, concurrency: int, kind: str
) -> float:
    """Requests per second from `processes` client processes of one `kind` at once."""
    queue: multiprocessing.Queue[int] = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(
            target=_hammer_process, args=(port, seconds, concurrency, kind, queue)
        )
        for _ in range(processes)
    ]
    started = time.monotonic()
    for w in workers:
        w.start()
    total = sum(queue.get(timeout=seconds + 60) for _ in workers)
    for w in workers:
        w.join()
    return total / max(seconds, time.monotonic() - started - 1.0)
