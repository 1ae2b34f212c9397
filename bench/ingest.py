"""Webhook ingest under load: signed Stripe and Shopify webhooks from asyncio load generators
against (a) our ingest endpoint, (b) a no-op endpoint on the same server stack and (c) the
textbook design (verify, then `task.delay(payload)`, no inbox); then end to end through a real
worker. Run: `.venv/bin/python -m bench.ingest` (see bench/README.md)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import random
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
from typing import Any

import psycopg
import redis
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[1]
SHOPIFY_SECRET = "bench-shopify-app-secret"
STRIPE_SECRET = "whsec_benchbenchbench0000"
ACCOUNTS = 50

Delivery = tuple[str, bytes, dict[str, str], str]  # path, body, headers, provider event id


# -- the two comparison servers (run by uvicorn in their own processes) ----------------------


def noop_app() -> Any:
    """The ceiling: the same server stack (uvicorn, uvloop, httptools, Starlette) reading the
    body and answering like ours, doing nothing else."""
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

    from worker.api import health, ingest
    from worker.api.app import broker_ping, queue_events
    from worker.runtime import get_deps
    from worker.settings import get_settings

    deps = get_deps()
    writer = ingest.InboxWriter(deps.db, queue_events, max_batch=1, writers=16)
    return Starlette(
        routes=[*health.routes(deps, broker_ping), *ingest.routes(get_settings(), deps, writer)]
    )


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


def family(pid: int) -> list[int]:
    """A process and its children (a prefork Celery worker's pool)."""
    pids = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            pids.append(int(stat.parent.name))
    return pids


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


def _client(
    url: str, batch: list[Delivery], concurrency: int, rate: float | None, start: float
) -> ClientResult:
    import aiohttp

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def run() -> ClientResult:
        statuses: dict[int, int] = {}
        latencies: list[float] = []
        sent_at: dict[str, float] = {}
        connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            while time.monotonic() < start:
                await asyncio.sleep(min(0.01, start - time.monotonic()))
            first = time.monotonic()

            async def send(item: Delivery, scheduled: float) -> None:
                path, body, headers, event_id = item
                sent_at[event_id] = time.time() - (time.monotonic() - scheduled)
                try:
                    async with session.post(url + path, data=body, headers=headers) as response:
                        await response.read()
                        status = response.status
                except (aiohttp.ClientError, TimeoutError):
                    status = 0
                statuses[status] = statuses.get(status, 0) + 1
                latencies.append(time.monotonic() - scheduled)

            if rate is None:
                queue = iter(batch)

                async def loop() -> None:
                    for item in queue:
                        await send(item, time.monotonic())

                await asyncio.gather(*[loop() for _ in range(concurrency)])
            else:
                # Open loop: requests leave on schedule whatever the answers do, and latency
                # counts from the scheduled time (no coordinated omission).
                tasks = []
                for i, item in enumerate(batch):
                    scheduled = first + i / rate
                    delay = scheduled - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    tasks.append(asyncio.ensure_future(send(item, scheduled)))
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

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
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


def uvicorn_args(target: str, port: int) -> list[str]:
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
        "--no-access-log",
        "--log-level",
        "warning",
    ]


def fresh_database(admin_url: str) -> str:
    from models.migrate import upgrade

    name = f"bench_ingest_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    return url


def drop_database(admin_url: str, url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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


def verify_stored_once(url: str, ids: list[str], processed: bool) -> str:
    """Every event id that was sent is one inbox row (and, end to end, processed with exactly
    one `provider.event`)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT provider_event_id, count(*), min(status), max(status), min(id::text) "
            "FROM inbound_events WHERE provider_event_id = ANY(%s) GROUP BY 1",
            (ids,),
        ).fetchall()
        problems = [r for r in rows if r[1] != 1]
        missing = len(ids) - len(rows)
        text = f"stored: {len(rows)}/{len(ids)} once each, {missing} missing, {len(problems)} twice"
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
            time.sleep(0.2)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--requests", type=int, default=20_000, help="per throughput run")
    parser.add_argument("--rounds", type=int, default=3, help="throughput runs per server")
    parser.add_argument("--clients", type=int, default=2, help="load generator processes")
    parser.add_argument("--concurrency", type=int, default=64, help="connections per client")
    parser.add_argument(
        "--latency-rates", default="1000,2000", help="offered rates (per second) for latency"
    )
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--e2e-rate", type=float, default=1000.0)
    parser.add_argument("--e2e-seconds", type=float, default=10.0)
    parser.add_argument("--e2e-burst", type=int, default=20_000)
    parser.add_argument("--worker-concurrency", type=int, default=2)
    args = parser.parse_args()

    logs = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    url = fresh_database(args.admin_url)
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
    print(f"machine: {os.cpu_count()} cores; logs in {logs}")
    print(
        f"load: {args.clients} aiohttp client processes x {args.concurrency} connections; "
        f"{args.requests} signed webhooks per run (half Stripe, half Shopify)\n"
    )
    try:
        ours_port = free_port()
        servers = {
            "ours (inbox)": [
                sys.executable,
                "-m",
                "worker.cli",
                "ingest",
                "--port",
                str(ours_port),
            ],
            "ours, no group commit": uvicorn_args("bench.ingest:unbatched_app", free_port()),
            "no-op (ceiling)": uvicorn_args("bench.ingest:noop_app", free_port()),
            "textbook (delay)": uvicorn_args("bench.ingest:textbook_app", free_port()),
        }
        ours_ids: list[str] = []
        with contextlib.ExitStack() as stack:
            bases: dict[str, str] = {}
            pids: dict[str, int] = {}
            for name, command in servers.items():
                base = f"http://127.0.0.1:{command[command.index('--port') + 1]}"
                log = logs / f"{name.split()[0]}-{len(bases)}.log"
                child = stack.enter_context(process(command, env, log, f"{base}/healthz"))
                bases[name], pids[name] = base, child.pid
            for name, base in bases.items():
                load(base, deliveries(500, f"warm{len(name)}"), clients=1, concurrency=8)
            # Rounds take turns, so a neighbour's load on this shared machine hits every
            # server alike; medians are reported.
            runs: dict[str, list[tuple[LoadResult, float, float]]] = {n: [] for n in servers}
            for round_ in range(args.rounds):
                for name, base in bases.items():
                    batch = deliveries(args.requests, f"tp{round_}{len(name)}{name[:4]}")
                    backends = postgres_backends(url)
                    cpu_server, cpu_db = cpu_seconds([pids[name]]), cpu_seconds(backends)
                    result = load(base, batch, clients=args.clients, concurrency=args.concurrency)
                    server_us = (cpu_seconds([pids[name]]) - cpu_server) / args.requests * 1e6
                    db_us = (cpu_seconds(backends) - cpu_db) / args.requests * 1e6
                    runs[name].append((result, server_us, db_us))
                    print(
                        result.line(f"{name} max")
                        + f"   CPU/request: server {server_us:.0f} us, PostgreSQL {db_us:.0f} us"
                    )
                    if name.startswith("ours"):
                        ours_ids += [d[3] for d in batch]
                broker.flushdb()
            medians = {n: sorted(r[0].rate for r in rs)[len(rs) // 2] for n, rs in runs.items()}
            print("\nmedian accepted/s: " + ", ".join(f"{n} {v:.0f}" for n, v in medians.items()))
            ours, noop = medians["ours (inbox)"], medians["no-op (ceiling)"]
            print(
                f"ratios: ours/no-op {ours / noop:.2f}, "
                f"ours/textbook {ours / medians['textbook (delay)']:.2f}, "
                f"ours/no group commit {ours / medians['ours, no group commit']:.2f}"
            )
            print()
            for name, base in bases.items():
                for rate in [float(r) for r in args.latency_rates.split(",")]:
                    paced = deliveries(int(rate * args.latency_seconds), f"lat{rate}{name[:4]}")
                    paced_result = load(
                        base, paced, clients=args.clients, concurrency=256, rate=rate
                    )
                    print(paced_result.line(f"{name} @{rate:.0f}/s"))
                    if name.startswith("ours"):
                        ours_ids += [d[3] for d in paced]
                broker.flushdb()
        print("check, ours:", verify_stored_once(url, ours_ids, processed=False))

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
            process(
                servers["ours (inbox)"], env, logs / "ours-e2e.log", f"{base}/healthz"
            ) as ingest_child,
            process(worker, env, logs / "worker.log", None) as worker_child,
        ):
            time.sleep(4.0)
            warm = deliveries(500, "e2ewarm")
            load(base, warm, clients=1, concurrency=8)
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

            burst = deliveries(args.e2e_burst, "e2eburst")
            t0 = time.time()
            workers = family(worker_child.pid)
            backends = postgres_backends(url)
            cpu_before = [
                cpu_seconds([ingest_child.pid]),
                cpu_seconds(workers),
                cpu_seconds(backends),
            ]
            result = load(base, burst, clients=args.clients, concurrency=args.concurrency)
            print(result.line(f"ingest burst {args.e2e_burst}"))
            wait_processed(url, list(result.sent_at), 300)
            _, last = processed_times(url, result.sent_at)
            start = min(result.sent_at.values()) if result.sent_at else t0
            print(
                f"end to end burst: {args.e2e_burst} events processed in {last - start:.1f} s "
                f"= {args.e2e_burst / (last - start):.0f} events/s"
            )
            cpu_after = [
                cpu_seconds([ingest_child.pid]),
                cpu_seconds(workers),
                cpu_seconds(backends + [p for p in postgres_backends(url) if p not in backends]),
            ]
            ingest_us, worker_us, db_us = (
                (after - before) / args.e2e_burst * 1e6
                for before, after in zip(cpu_before, cpu_after, strict=True)
            )
            print(
                f"CPU per event: ingest {ingest_us:.0f} us, worker processes {worker_us:.0f} us "
                f"(process + relay), PostgreSQL {db_us:.0f} us"
            )
            print("check:", verify_stored_once(url, list(result.sent_at), processed=True))
            published = broker.xlen("connections:events")
            print(f"outbox relayed to connections:events: {published} entries")
    finally:
        broker.flushdb()
        drop_database(args.admin_url, url)


if __name__ == "__main__":
    main()
