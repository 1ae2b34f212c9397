"""Webhook ingest under load: signed Stripe and Shopify webhooks from asyncio load generators
against (a) our ingest endpoint, (b) a no-op endpoint on the same server stack and (c) the
textbook design (verify, then `task.delay(payload)`, no inbox); then end to end through a real
worker. Run: `.venv/bin/python -m bench.ingest` (see bench/README.md)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import psycopg
import redis
from cryptography.fernet import Fernet

from bench.common import descendants, drop_database, fresh_database

ROOT = Path(__file__).resolve().parents[1]
SHOPIFY_SECRET = "bench-shopify-app-secret"
STRIPE_SECRET = "whsec_benchbenchbench0000"
ACCOUNTS = 50

Delivery = tuple[str, bytes, dict[str, str], str]  # path, body, headers, provider event id


# -- the two comparison servers (run by uvicorn in their own processes) ----------------------


def noop_app() -> Any:
    """The ceiling: the same server stack as ours (uvicorn, uvloop, httptools, a plain ASGI
    endpoint) reading the body and answering like ours, doing nothing else."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        message = {"more_body": True}
        while message.get("more_body"):
            message = await receive()
        body = b'{"status":"accepted","event_id":"%s"}' % str(uuid.uuid4()).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def starlette_noop_app() -> Any:
    """For reference: the same no-op as a Starlette route (what the issue's 15,000 to 18,000
    requests/s were measured with)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def accept(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"status": "accepted", "event_id": str(uuid.uuid4())})

    return Starlette(
        routes=[
            Route("/webhooks/shopify", accept, methods=["POST"]),
            Route("/webhooks/stripe", accept, methods=["POST"]),
        ]
    )


def textbook_app() -> Any:
    """The textbook design: verify the signature, `task.delay(payload)`, answer 200. Nothing is
    stored; if the broker loses the message, the event is gone."""
    from celery import Celery
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from connectors.webhooks import SignatureError, verify_shopify, verify_stripe

    celery = Celery("textbook", broker=os.environ["BENCH_BROKER_URL"])
    celery.conf.update(task_serializer="json", task_default_queue="textbook")

    @celery.task(name="textbook.process_webhook")
    def process_webhook(provider: str, payload: dict[str, Any]) -> None:
        """Never run here: the benchmark measures only the endpoint."""

    async def shopify(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            verify_shopify(body, request.headers.get("x-shopify-hmac-sha256"), [SHOPIFY_SECRET])
        except SignatureError:
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        process_webhook.delay("shopify", json.loads(body))
        return JSONResponse({"status": "accepted"})

    async def stripe(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            verify_stripe(body, request.headers.get("stripe-signature"), [STRIPE_SECRET])
        except SignatureError:
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        process_webhook.delay("stripe", json.loads(body))
        return JSONResponse({"status": "accepted"})

    return Starlette(
        routes=[
            Route("/webhooks/shopify", shopify, methods=["POST"]),
            Route("/webhooks/stripe", stripe, methods=["POST"]),
        ]
    )


def unbatched_app() -> Any:
    """Our endpoint with group commit switched off: one transaction per request, 16 at once."""
    from starlette.applications import Starlette

    from worker.api import health, ingest, webhooks
    from worker.api.app import broker_ping, queue_events
    from worker.runtime import get_deps
    from worker.settings import get_settings

    deps = get_deps()
    writer = ingest.InboxWriter(deps.db, queue_events, max_batch=1, writers=16)
    rest = Starlette(routes=health.routes(deps, broker_ping))
    return webhooks.Webhooks(get_settings(), deps, writer, rest)


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU the processes have used (from /proc): a cost that a neighbour's load
    on the machine does not inflate the way it inflates wall-clock rates."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def postgres_backends(url: str) -> list[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return [pid for (pid,) in rows]


# -- deliveries -------------------------------------------------------------------------------


def deliveries(count: int, tag: str) -> list[Delivery]:
    """Signed deliveries, half Stripe (Connect events routed by `account`), half Shopify, each
    with a new provider event id; signing happens here, before the clock starts."""
    from connectors.webhooks import shopify_signature, stripe_header

    made: list[Delivery] = []
    now = int(time.time())
    for i in range(count):
        n = random.randrange(ACCOUNTS)
        if i % 2:
            event_id = f"evt_{tag}_{i}_{uuid.uuid4().hex[:8]}"
            event = {
                "id": event_id,
                "object": "event",
                "type": "invoice.paid",
                "account": f"acct_bench{n:04d}",
                "created": now,
                "data": {"object": {"id": f"in_{i}", "amount_paid": 4200, "currency": "sek"}},
            }
            body = json.dumps(event).encode()
            headers = {
                "Content-Type": "application/json",
                "Stripe-Signature": stripe_header(STRIPE_SECRET, body, now),
            }
            made.append(("/webhooks/stripe", body, headers, event_id))
        else:
            event_id = f"shop_{tag}_{i}_{uuid.uuid4().hex[:8]}"
            body = json.dumps({"id": i, "name": f"#{1000 + i}", "total_price": "42.00"}).encode()
            headers = {
                "Content-Type": "application/json",
                "X-Shopify-Hmac-Sha256": shopify_signature(SHOPIFY_SECRET, body),
                "X-Shopify-Topic": "orders/create",
                "X-Shopify-Shop-Domain": f"bench-{n:04d}.myshopify.com",
                "X-Shopify-Event-Id": event_id,
                "X-Shopify-Webhook-Id": str(uuid.uuid4()),
            }
            made.append(("/webhooks/shopify", body, headers, event_id))
    return made


# -- load generation (each client in its own process) -----------------------------------------


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


def raw_request(host: str, delivery: Delivery) -> bytes:
    path, body, headers, _ = delivery
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode() + b"\r\n" + body


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


@dataclass
class LoadResult:
    ok: int
    statuses: dict[int, int]
    seconds: float
    latencies: list[float]
    sent_at: dict[str, float]
    # From wrk, which reports percentiles (ms), not each latency.
    percentiles: dict[float, float] | None = None

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        if self.percentiles is not None:
            return self.percentiles[p]
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000

    def line(self, name: str) -> str:
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items()))
        return (
            f"{name:24} {self.rate:8.0f}/s   p50 {self.pct(50):6.1f} ms   p99 "
            f"{self.pct(99):6.1f} ms   max {self.pct(100):7.1f} ms   [{codes}]"
        )


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


WRK_SCRIPT = ROOT / "bench" / "webhooks.lua"


def wrk_load(
    url: str, batch: list[Delivery], *, seconds: float, connections: int, threads: int = 1
) -> LoadResult:
    """Closed loop at full speed for `seconds`, from wrk: a C load generator takes a fraction of
    the CPU an asyncio one does, and on two shared cores that CPU is the servers'. Requests are
    built and signed beforehand (`bench/webhooks.lua` sends each once, in order). `sent_at` holds
    every id sent, stamped with the run's start."""
    host = url.split("//", 1)[1]
    shares = [batch[i::threads] for i in range(threads)]
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as folder:
        prefix = f"{folder}/requests"
        for i, share in enumerate(shares):
            with open(f"{prefix}-{i}.http", "wb") as out:
                for delivery in share:
                    out.write(raw_request(host, delivery) + b"\0")
        started = time.time()
        done = subprocess.run(
            [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",  # whole seconds only
                "--timeout",
                "30s",
                "-s",
                str(WRK_SCRIPT),
                url,
                "--",
                prefix,
            ],
            capture_output=True,
            text=True,
        )
    if done.returncode:
        raise RuntimeError(f"wrk failed: {done.stdout}\n{done.stderr}")
    sent: dict[str, float] = {}
    summary: list[int] = []
    for line in done.stdout.splitlines():
        words = line.split()
        if words[:2] == ["BENCH", "thread"]:
            thread, count = int(words[2]), int(words[4])
            if count >= len(shares[thread]):
                print(f"  (wrk thread {thread} ran out of its {count} requests: a lower bound)")
            sent.update((d[3], started) for d in shares[thread][:count])
        elif words[:2] == ["BENCH", "summary"]:
            summary = [int(w) for w in words[2:]]
    if not summary:
        raise RuntimeError(f"wrk printed no summary: {done.stdout}\n{done.stderr}")
    duration, answered, bad_status, *socket_errors, p50, p99, worst = summary
    statuses = {200: answered - bad_status}
    if bad_status:
        statuses[400] = bad_status  # "400 or above": wrk counts them, not which
    if sum(socket_errors):
        statuses[0] = sum(socket_errors)
    return LoadResult(
        ok=answered - bad_status,
        statuses=statuses,
        seconds=duration / 1e6,
        latencies=[],
        sent_at=sent,
        percentiles={50: p50 / 1000, 99: p99 / 1000, 100: worst / 1000},
    )


# -- environment ------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def process(
    args: list[str], env: dict[str, str], log: Path, ready_url: str | None
) -> Iterator[Any]:
    with log.open("ab") as out:
        child = subprocess.Popen(args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        if ready_url:
            import httpx

            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(ready_url, timeout=1).status_code < 500:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or child.poll() is not None:
                    raise RuntimeError(f"{args} did not start; see {log}")
                time.sleep(0.1)
        yield child
    finally:
        child.terminate()
        try:
            child.wait(20)
        except subprocess.TimeoutExpired:
            child.kill()


def uvicorn_args(target: str, port: int, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        target,
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
    ]


def seed_accounts(url: str, key: str) -> None:
    from models import Account, Database, utc_now
    from worker.vault import Vault

    vault = Vault([key])
    db = Database(url)
    now = utc_now()
    with db.unit_of_work() as session:
        for n in range(ACCOUNTS):
            for type_, connection in (
                ("stripe", {"mode": "connect", "stripe_account_id": f"acct_bench{n:04d}"}),
                (
                    "shopify",
                    {"mode": "access_token", "shop_domain": f"bench-{n:04d}.myshopify.com"},
                ),
            ):
                session.add(
                    Account(
                        org_id=f"org-bench-{n % 10}",
                        name=f"{type_} {n}",
                        type=type_,
                        status="connected",
                        connection=connection,
                        meta={},
                        settings={},
                        credentials=vault.encrypt({}),
                        created_at=now,
                        updated_at=now,
                    )
                )
    db.dispose()


def verify_stored_once(url: str, ids: list[str], processed: bool, in_flight: int = 0) -> str:
    """Every event id that was sent is one inbox row (and, end to end, processed with exactly
    one `provider.event`). Up to `in_flight` ids may be missing: the requests wrk had sent but
    not seen answered when its time ran out (it closes their connections)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT provider_event_id, count(*), min(status), max(status), min(id::text) "
            "FROM inbound_events WHERE provider_event_id = ANY(%s) GROUP BY 1",
            (ids,),
        ).fetchall()
        problems = [r for r in rows if r[1] != 1]
        missing = len(ids) - len(rows)
        text = f"stored: {len(rows)}/{len(ids)} once each, {missing} missing, {len(problems)} twice"
        if in_flight:
            text += f" (up to {in_flight} may be missing: in flight when wrk stopped)"
            missing = max(0, missing - in_flight)
        if processed:
            not_done = [r for r in rows if r[2] != "processed" or r[3] != "processed"]
            inbox_ids = [r[4] for r in rows]
            effects = conn.execute(
                "SELECT data->>'event_id', count(*) FROM outbox_events "
                "WHERE type = 'provider.event' AND data->>'event_id' = ANY(%s) GROUP BY 1",
                (inbox_ids,),
            ).fetchall()
            once = sum(1 for _, n in effects if n == 1)
            text += (
                f"; processed: {len(rows) - len(not_done)}/{len(rows)}; "
                f"exactly one provider.event: {once}/{len(rows)}"
            )
            ok = not problems and not missing and not not_done and once == len(rows)
        else:
            ok = not problems and not missing
    return ("OK   " if ok else "FAIL ") + text


def wait_processed(url: str, ids: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            left = conn.execute(
                "SELECT count(*) FROM inbound_events "
                "WHERE provider_event_id = ANY(%s) AND status <> 'processed'",
                (ids,),
            ).fetchone()
            if left and left[0] == 0:
                return
            time.sleep(0.5)


def processed_times(url: str, sent_at: dict[str, float]) -> tuple[list[float], float]:
    """Request-to-processed latencies (seconds) and the last processed time."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT provider_event_id, extract(epoch FROM processed_at) FROM inbound_events "
            "WHERE provider_event_id = ANY(%s) AND processed_at IS NOT NULL",
            (list(sent_at),),
        ).fetchall()
    latencies = [float(done) - sent_at[eid] for eid, done in rows]
    return latencies, max((float(done) for _, done in rows), default=0.0)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000 if ordered else 0.0


# -- the run ----------------------------------------------------------------------------------


def print_medians(runs: dict[str, list[tuple[LoadResult, float, float]]]) -> None:
    medians = {n: sorted(r[0].rate for r in rs)[len(rs) // 2] for n, rs in runs.items()}
    print("\nmedian accepted/s: " + ", ".join(f"{n} {v:.0f}" for n, v in medians.items()))
    ours, noop = medians["ours (inbox)"], medians["no-op (ceiling)"]
    print(
        f"ratios: ours/no-op {ours / noop:.2f}, "
        f"ours/textbook {ours / medians['textbook (delay)']:.2f}, "
        f"ours/no group commit {ours / medians['ours, no group commit']:.2f}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--seconds", type=float, default=8.0, help="per throughput run (wrk)")
    parser.add_argument(
        "--pool", type=int, default=250_000, help="signed requests made for the first wrk runs"
    )
    parser.add_argument("--rounds", type=int, default=3, help="throughput runs per server")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument(
        "--server-workers", type=int, default=2, help="uvicorn processes of every server"
    )
    parser.add_argument("--clients", type=int, default=1, help="paced generator processes")
    parser.add_argument(
        "--latency-rates", default="1000,2000", help="offered rates (per second) for latency"
    )
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--e2e-rate", type=float, default=1000.0)
    parser.add_argument("--e2e-seconds", type=float, default=10.0)
    parser.add_argument("--e2e-burst-seconds", type=float, default=8.0)
    parser.add_argument("--worker-concurrency", type=int, default=4)
    parser.add_argument(
        "--parts", default="throughput,latency,e2e", help="which parts to run, comma-separated"
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed for the throughput runs: apt-get install wrk")

    logs = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    url = fresh_database(args.admin_url, f"bench_ingest_{uuid.uuid4().hex[:8]}")
    key = Fernet.generate_key().decode()
    seed_accounts(url, key)
    broker = redis.Redis.from_url(args.redis_url)
    broker.flushdb()
    env = {
        **os.environ,
        "CONNECTIONS_DATABASE_URL": url,
        "CONNECTIONS_BROKER_URL": args.redis_url,
        "CONNECTIONS_RESULT_BACKEND": args.redis_url,
        "CONNECTIONS_EVENTS_REDIS_URL": args.redis_url,
        "CONNECTIONS_ENCRYPTION_KEYS": key,
        "CONNECTIONS_SHOPIFY_CLIENT_SECRET": SHOPIFY_SECRET,
        "CONNECTIONS_STRIPE_WEBHOOK_SECRET": STRIPE_SECRET,
        "CONNECTIONS_LOG_FORMAT": "json",
        "CONNECTIONS_LOG_LEVEL": "WARNING",
        "BENCH_BROKER_URL": args.redis_url,
        "PYTHONUNBUFFERED": "1",
    }
    workers = args.server_workers
    print(f"machine: {os.cpu_count()} cores; logs in {logs}")
    print(
        f"throughput: wrk, 1 thread x {args.connections} connections, {args.seconds:.0f} s per "
        f"run, signed webhooks (half Stripe, half Shopify); every server {workers} uvicorn "
        f"processes\n"
    )
    try:
        ours_port = free_port()
        ours_command = [
            sys.executable,
            "-m",
            "worker.cli",
            "ingest",
            "--port",
            str(ours_port),
            "--workers",
            str(workers),
        ]
        servers = {
            "ours (inbox)": ours_command,
            "ours, no group commit": uvicorn_args(
                "bench.ingest:unbatched_app", free_port(), workers
            ),
            "no-op (ceiling)": uvicorn_args("bench.ingest:noop_app", free_port(), workers),
            "no-op, Starlette": uvicorn_args(
                "bench.ingest:starlette_noop_app", free_port(), workers
            ),
            "textbook (delay)": uvicorn_args("bench.ingest:textbook_app", free_port(), workers),
        }
        ours_ids: list[str] = []
        in_flight = 0
        with contextlib.ExitStack() as stack:
            bases: dict[str, str] = {}
            pids: dict[str, int] = {}
            for name, command in servers.items():
                base = f"http://127.0.0.1:{command[command.index('--port') + 1]}"
                log = logs / f"{name.split()[0]}-{len(bases)}.log"
                child = stack.enter_context(process(command, env, log, f"{base}/healthz"))
                bases[name], pids[name] = base, child.pid
            for name, base in bases.items():
                load(base, deliveries(1000, f"warm{len(name)}"), clients=1, concurrency=16)
            # Rounds take turns, so a neighbour's load on this shared machine hits every
            # server alike; medians are reported.
            runs: dict[str, list[tuple[LoadResult, float, float]]] = {n: [] for n in servers}
            # Requests made per run: enough for twice the server's rate in the round before.
            pools = dict.fromkeys(servers, args.pool)
            for round_ in range(args.rounds if "throughput" in parts else 0):
                for name, base in bases.items():
                    batch = deliveries(pools[name], f"tp{round_}{len(name)}{name[:4]}")
                    backends = postgres_backends(url)
                    server = descendants(pids[name])
                    cpu_server, cpu_db = cpu_seconds(server), cpu_seconds(backends)
                    result = wrk_load(
                        base, batch, seconds=args.seconds, connections=args.connections
                    )
                    served = max(1, sum(result.statuses.values()))
                    pools[name] = max(20_000, 2 * served)
                    if len(result.sent_at) >= len(batch):
                        pools[name] = 2 * len(batch)
                    server_us = (cpu_seconds(server) - cpu_server) / served * 1e6
                    db_us = (cpu_seconds(backends) - cpu_db) / served * 1e6
                    runs[name].append((result, server_us, db_us))
                    print(
                        result.line(f"{name} max")
                        + f"   CPU/request: server {server_us:.0f} us, PostgreSQL {db_us:.0f} us"
                    )
                    if name.startswith("ours"):
                        ours_ids += list(result.sent_at)
                        in_flight += args.connections
                broker.flushdb()
            if "throughput" in parts:
                print_medians(runs)
            for name, base in bases.items() if "latency" in parts else ():
                for rate in [float(r) for r in args.latency_rates.split(",")]:
                    paced = deliveries(int(rate * args.latency_seconds), f"lat{rate}{name[:4]}")
                    paced_result = load(
                        base, paced, clients=args.clients, concurrency=256, rate=rate
                    )
                    print(paced_result.line(f"{name} @{rate:.0f}/s"))
                    if name.startswith("ours"):
                        ours_ids += [d[3] for d in paced]
                broker.flushdb()
        print("check, ours:", verify_stored_once(url, ours_ids, False, in_flight))

        if "e2e" not in parts:
            return
        print("\nend to end: ingest + celery worker (-Q events) + relay to the Redis stream")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("TRUNCATE inbound_events, outbox_events")
        worker = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker",
            "worker",
            "-Q",
            "events",
            f"--concurrency={args.worker_concurrency}",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
        ]
        base = f"http://127.0.0.1:{ours_port}"
        with (
            process(ours_command, env, logs / "ours-e2e.log", f"{base}/healthz") as ingest_child,
            process(worker, env, logs / "worker.log", None) as worker_child,
        ):
            time.sleep(4.0)
            warm = deliveries(1000, "e2ewarm")
            load(base, warm, clients=1, concurrency=16)
            wait_processed(url, [d[3] for d in warm], 60)

            paced = deliveries(int(args.e2e_rate * args.e2e_seconds), "e2epaced")
            result = load(base, paced, clients=args.clients, concurrency=256, rate=args.e2e_rate)
            print(result.line(f"ingest @{args.e2e_rate:.0f}/s"))
            wait_processed(url, list(result.sent_at), 120)
            lat, _ = processed_times(url, result.sent_at)
            print(
                f"request-to-processed @{args.e2e_rate:.0f}/s: p50 {pct(lat, 50):.1f} ms, "
                f"p99 {pct(lat, 99):.1f} ms, max {pct(lat, 100):.1f} ms ({len(lat)} events)"
            )
            print("check:", verify_stored_once(url, list(result.sent_at), processed=True))

            burst = deliveries(args.pool, "e2eburst")
            ingest_pids = descendants(ingest_child.pid)
            worker_pids = descendants(worker_child.pid)
            backends = postgres_backends(url)
            cpu_before = [
                cpu_seconds(ingest_pids),
                cpu_seconds(worker_pids),
                cpu_seconds(backends),
            ]
            result = wrk_load(
                base, burst, seconds=args.e2e_burst_seconds, connections=args.connections
            )
            print(result.line(f"ingest burst {args.e2e_burst_seconds:.0f} s"))
            ids = list(result.sent_at)
            wait_processed(url, ids, 300)
            with psycopg.connect(url) as conn:
                row = conn.execute(
                    "SELECT count(*), extract(epoch FROM max(processed_at)) FROM inbound_events "
                    "WHERE provider_event_id = ANY(%s) AND status = 'processed'",
                    (ids,),
                ).fetchone()
            processed, last = (int(row[0]), float(row[1])) if row and row[1] else (0, 0.0)
            start = min(result.sent_at.values()) if result.sent_at else time.time()
            print(
                f"end to end burst: {processed} events processed in {last - start:.1f} s "
                f"= {processed / (last - start):.0f} events/s"
            )
            cpu_after = [
                cpu_seconds(ingest_pids),
                cpu_seconds(worker_pids),
                cpu_seconds(backends + [p for p in postgres_backends(url) if p not in backends]),
            ]
            ingest_us, worker_us, db_us = (
                (after - before) / max(1, processed) * 1e6
                for before, after in zip(cpu_before, cpu_after, strict=True)
            )
            print(
                f"CPU per event: ingest {ingest_us:.0f} us, worker processes {worker_us:.0f} us "
                f"(process + relay), PostgreSQL {db_us:.0f} us"
            )
            print("check:", verify_stored_once(url, ids, True, args.connections))
            published = broker.xlen("connections:events")
            print(f"outbox relayed to connections:events: {published} entries")
    finally:
        broker.flushdb()
        drop_database(args.admin_url, url)


if __name__ == "__main__":
    main()
