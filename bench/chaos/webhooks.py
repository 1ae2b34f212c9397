"""Signed webhooks at a constant rate (the ingest benchmark's deliveries: half Stripe, half
Shopify, for its seeded accounts), every answer recorded per event id; then, as a provider
does, every delivery not answered 200 sent again until it is."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass

import aiohttp

from bench.ingest.deliveries import Delivery, deliveries

REQUEST_TIMEOUT = 15.0


@dataclass(frozen=True)
class Answer:
    event_id: str
    status: int  # 0: no answer (refused, reset, timed out)
    said: str | None  # the body's "status": accepted or duplicate
    sent_at: float
    at: float


class Webhooks:
    """One scenario's deliveries, each sent `copies` times at once at its moment."""

    def __init__(self, url: str, count: int, tag: str, copies: int = 1) -> None:
        self.url = url
        self.copies = copies
        self.deliveries = deliveries(count, f"{tag}{uuid.uuid4().hex[:6]}")
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.finished_at = 0.0

    def start(self, rate: float) -> Webhooks:
        """Send every delivery in a thread, `rate` deliveries a second, on schedule."""
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._paced(rate)), name="webhooks", daemon=True
        )
        self._thread.start()
        return self

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()

    async def _paced(self, rate: float) -> None:
        async with _session() as session:
            began = time.monotonic()
            tasks = []
            for i, delivery in enumerate(self.deliveries):
                delay = began + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                for _ in range(self.copies):
                    tasks.append(asyncio.ensure_future(self._send(session, delivery)))
            await asyncio.gather(*tasks)
        self.finished_at = time.time()

    async def _send(self, session: aiohttp.ClientSession, delivery: Delivery) -> Answer:
        path, body, headers, event_id = delivery
        sent_at = time.time()
        status, said = 0, None
        try:
            async with session.post(self.url + path, data=body, headers=headers) as response:
                status = response.status
                if status == 200:
                    said = (await response.json()).get("status")
                else:
                    await response.read()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            pass
        answer = Answer(event_id, status, said, sent_at, time.time())
        with self._lock:
            self.answers.append(answer)
        return answer

    def resend_unanswered(self, timeout: float) -> None:
        """Send again, once a second, every delivery that has no 200 yet (a provider's retry)."""
        asyncio.run(self._resend(timeout))

    async def _resend(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        async with _session() as session:
            while time.monotonic() < deadline:
                done = self.accepted_ids()
                left = [d for d in self.deliveries if d[3] not in done]
                if not left:
                    return
                await asyncio.gather(*[self._send(session, d) for d in left])
                await asyncio.sleep(1.0)

    def accepted_ids(self) -> set[str]:
        """Event ids the ingest answered 200 (stored durably) at least once."""
        with self._lock:
            return {a.event_id for a in self.answers if a.status == 200}

    def statuses(self) -> Counter[int]:
        with self._lock:
            return Counter(a.status for a in self.answers)

    def said(self, what: str) -> int:
        with self._lock:
            return sum(1 for a in self.answers if a.said == what)

    def first_accepted_after(self, moment: float) -> float | None:
        """When the first delivery sent after `moment` was answered 200."""
        with self._lock:
            times = [a.at for a in self.answers if a.status == 200 and a.sent_at >= moment]
        return min(times, default=None)


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=200),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
    )
