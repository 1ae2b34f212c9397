"""Scheduled checks at scale: 100,000 accounts of mixed providers in PostgreSQL, simulators that
answer in 20 ms, real Celery worker and beat processes; compared with the naive design and with
the simulators' raw capacity. Run: `.venv/bin/python -m bench.checks` (see bench/README.md)."""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import redis
from cryptography.fernet import Fernet
from psycopg.types.json import Jsonb

from bench.common import descendants, fresh_database

ROOT = Path(__file__).resolve().parents[1]
PROVIDERS = ("stripe", "shopify", "fortnox")
STRIPE_BODY = {
    "id": "acct_bench",
    "object": "account",
    "business_profile": {"name": "Bench AB"},
    "country": "SE",
    "default_currency": "sek",
    "charges_enabled": True,
    "payouts_enabled": True,
    "requirements": {"currently_due": [], "disabled_reason": None},
}
SHOPIFY_BODY = {
    "data": {
        "shop": {
            "name": "Bench Shop",
            "plan": {"displayName": "Basic"},
            "currencyCode": "SEK",
            "myshopifyDomain": "bench.myshopify.com",
        }
    },
    "extensions": {
        "cost": {
            "requestedQueryCost": 1,
            "throttleStatus": {
                "maximumAvailable": 2000,
                "currentlyAvailable": 1999,
                "restoreRate": 100,
            },
        }
    },
}
FORTNOX_BODY = {
    "CompanyInformation": {"CompanyName": "Bench AB", "OrganizationNumber": "556000-0000"}
}
# What each provider's check writes into the account's metadata, so accounts start as an add
# would leave them and an unchanged answer writes nothing.
META = {
    "stripe": {
        "stripe_account_id": "acct_bench",
        "business_name": "Bench AB",
        "country": "SE",
        "default_currency": "sek",
        "charges_enabled": True,
        "payouts_enabled": True,
        "disabled_reason": None,
        "currently_due": [],
    },
    "shopify": {
        "shop_name": "Bench Shop",
        "plan": "Basic",
        "currency": "SEK",
        "myshopify_domain": "bench.myshopify.com",
    },
    "fortnox": {"company_name": "Bench AB", "organization_number": "556000-0000"},
}


# -- the lean simulator --------------------------------------------------------------------------
def serve(port: int, latency: float) -> None:
    """One simulator process: aiohttp on uvloop, sharing the port with its siblings."""
    import uvloop
    from aiohttp import web

    stripe = json.dumps(STRIPE_BODY)
    shopify = json.dumps(SHOPIFY_BODY)
    fortnox = json.dumps(FORTNOX_BODY)
    denied = json.dumps({"error": {"message": "Invalid API Key provided"}})
    fortnox_denied = json.dumps(
        {"ErrorInformation": {"error": 1, "message": "Invalid token", "code": 2000310}}
    )

    def answer(body: str, status: int = 200) -> web.Response:
        return web.Response(text=body, status=status, content_type="application/json")

    async def stripe_account(request: web.Request) -> web.Response:
        await asyncio.sleep(latency)
        if "bad" in request.headers.get("Authorization", ""):
            return answer(denied, 401)
        return answer(stripe)

    async def shopify_graphql(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(latency)
        if "bad" in request.headers.get("X-Shopify-Access-Token", ""):
            return answer(denied, 401)
        return answer(shopify)

    async def fortnox_company(request: web.Request) -> web.Response:
        await asyncio.sleep(latency)
        if "bad" in request.headers.get("Authorization", ""):
            return answer(fortnox_denied, 401)
        return answer(fortnox)

    app = web.Application()
    app.router.add_get("/v1/account", stripe_account)
    app.router.add_post("/{shop}/admin/api/{version}/graphql.json", shopify_graphql)
    app.router.add_get("/3/companyinformation", fortnox_company)
    uvloop.install()
    web.run_app(
        app,
        host="127.0.0.1",
        port=port,
        reuse_port=True,
        access_log=None,
        print=lambda *_: None,
        backlog=4096,
        handle_signals=True,
    )


def start_simulators(count: int, port: int, latency: float) -> list[multiprocessing.Process]:
    sims = [
        multiprocessing.Process(target=serve, args=(port, latency), daemon=True)
        for _ in range(count)
    ]
    for sim in sims:
        sim.start()
    import httpx

    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/v1/account", timeout=1)
            return sims
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# -- the accounts --------------------------------------------------------------------------------
def seed(url: str, key: str, count: int, bad_share: float) -> dict[str, int]:
    """`count` accounts, providers in turn, a share with rejected credentials; none due yet."""
    fernet = Fernet(key.encode())
    now = datetime.now(UTC)
    far = now + timedelta(days=30)
    kinds = {p: 0 for p in PROVIDERS}
    rng = random.Random(1)
    columns = (
        "id, org_id, name, type, status, connection, metadata, settings, credentials, "
        "credentials_version, credentials_expire_at, created_at, updated_at, next_check_at, "
        "consecutive_failures"
    )
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY accounts ({columns}) FROM STDIN") as copy:
            for n in range(count):
                provider = PROVIDERS[n % 3]
                kinds[provider] += 1
                bad = "bad" if rng.random() < bad_share else ""
                token = secrets.token_hex(12)
                expires: datetime | None = None
                if provider == "stripe":
                    creds: dict[str, Any] = {"api_key": f"sk_test_{bad}{token}"}
                    connection: dict[str, Any] = {"mode": "api_key", "key_last4": token[-4:]}
                elif provider == "shopify":
                    creds = {"access_token": f"shpat_{bad}{token}"}
                    connection = {"shop_domain": f"bench-{n}.myshopify.com", "mode": "access_token"}
                else:
                    creds = {
                        "access_token": f"eyJ{bad}{token}",
                        "refresh_token": secrets.token_hex(12),
                        "expires_at": far.isoformat(),
                    }
                    connection = {
                        "company_name": "Bench AB",
                        "organization_number": f"556{n:07d}",
                    }
                    expires = far
                copy.write_row(
                    (
                        uuid.uuid4(),
                        f"org-{n % 5000}",
                        f"{provider} {n}",
                        provider,
                        "connected",
                        Jsonb(connection),
                        Jsonb(META[provider]),
                        Jsonb({}),
                        fernet.encrypt(json.dumps(creds).encode()),
                        1,
                        expires,
                        now,
                        now,
                        None,
                        0,
                    )
                )
        conn.commit()
        cur.execute("ANALYZE accounts")
        conn.commit()
    return kinds


def make_due(url: str, where: str = "TRUE") -> datetime:
    """Make the accounts due at once; returns when they became due to the scheduler: when the
    UPDATE committed (updating every row takes seconds, and that is the bench's work)."""
    with psycopg.connect(url) as conn:
        conn.execute(f"UPDATE accounts SET next_check_at = %s WHERE {where}", (datetime.now(UTC),))
        conn.commit()
    return datetime.now(UTC)


def count_checked(url: str, since: datetime, where: str = "TRUE") -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            f"SELECT count(*) FROM accounts WHERE last_checked_at >= %s AND {where}", (since,)
        ).fetchone()
    return int(row[0]) if row else 0


def wait_checked(
    url: str, since: datetime, total: int, timeout: float, where: str = "TRUE"
) -> tuple[float, int]:
    """Seconds until `total` accounts were checked after `since` (or the timeout), and how many."""
    deadline = time.monotonic() + timeout
    done = 0
    while time.monotonic() < deadline:
        done = count_checked(url, since, where)
        if done >= total:
            break
        # The time comes from the last `last_checked_at`, not from this loop: polling slowly
        # only spares PostgreSQL a count over every account while it is busy.
        time.sleep(1.0)
    with psycopg.connect(url) as conn:
        row = conn.execute(
            f"SELECT max(last_checked_at) FROM accounts WHERE last_checked_at >= %s AND {where}",
            (since,),
        ).fetchone()
    last = row[0] if row and row[0] else datetime.now(UTC)
    return (last - since).total_seconds(), done


# -- processes and memory ------------------------------------------------------------------------
def celery(env: dict[str, str], log: Path, args: list[str], name: str) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker", *args],
        env=env,
        cwd=ROOT,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_ready(log: Path, workers: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and log.read_text(errors="replace").count("ready.") >= workers:
            return
        time.sleep(0.2)
    raise RuntimeError(f"workers did not start; see {log}")


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for p in processes:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in processes:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def rss_mb(pid: int) -> float:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(match.group(1)) / 1024 if match else 0.0


class RssSampler(threading.Thread):
    """The largest RSS seen of any process under the given roots."""

    def __init__(self, roots: Callable[[], list[int]]) -> None:
        super().__init__(daemon=True)
        self.roots = roots
        self.peak: dict[int, float] = {}
        self.running = True

    def run(self) -> None:
        while self.running:
            for root in self.roots():
                for pid in descendants(root):
                    self.peak[pid] = max(self.peak.get(pid, 0.0), rss_mb(pid))
            time.sleep(0.5)

    def stop(self) -> float:
        self.running = False
        self.join(timeout=5)
        return max(self.peak.values(), default=0.0)


# -- the ceiling and the transports --------------------------------------------------------------
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


# -- the runs ------------------------------------------------------------------------------------
def run_design(
    url: str, env: dict[str, str], logs: Path, args: argparse.Namespace, total: int
) -> dict[str, Any]:
    log = logs / "design.log"
    workers = [
        celery(
            env,
            log,
            [
                "worker",
                "-Q",
                "checks",
                f"--concurrency={args.concurrency}",
                "--loglevel=WARNING",
                f"--hostname=bench-{n}@%h",
                "--without-gossip",
                "--without-mingle",
            ],
            f"worker-{n}",
        )
        for n in range(args.workers)
    ]
    beat = celery(
        env,
        logs / "beat.log",
        ["beat", "--loglevel=WARNING", "-s", str(logs / "beat-schedule")],
        "beat",
    )
    try:
        wait_ready_workers(workers, log, args.concurrency)
        sampler = RssSampler(lambda: [w.pid for w in workers])
        sampler.start()
        started = make_due(url)
        seconds, done = wait_checked(url, started, total, args.timeout)
        peak = sampler.stop()
    finally:
        stop([beat, *workers])
    return {"seconds": seconds, "checked": done, "peak_rss_mb": peak}


def wait_ready_workers(workers: list[subprocess.Popen[bytes]], log: Path, pool: int) -> None:
    # --loglevel=WARNING hides "ready.": wait for every pool process to exist instead.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if all(len(descendants(w.pid)) >= pool + 1 for w in workers):
            time.sleep(3)  # imports done, consumers attached
            return
        time.sleep(0.2)
    raise RuntimeError(f"workers did not start; see {log}")


def run_naive(
    url: str, env: dict[str, str], logs: Path, args: argparse.Namespace, sample: int
) -> dict[str, Any]:
    log = logs / "naive.log"
    workers = [
        celery(
            env,
            log,
            [
                "worker",
                "-Q",
                "naive",
                "-I",
                "bench.naive",
                f"--concurrency={args.concurrency}",
                "--loglevel=WARNING",
                f"--hostname=naive-{n}@%h",
                "--without-gossip",
                "--without-mingle",
            ],
            f"naive-{n}",
        )
        for n in range(args.workers)
    ]
    try:
        wait_ready_workers(workers, log, args.concurrency)
        from celery import Celery

        client = Celery("bench", broker=env["CONNECTIONS_BROKER_URL"])
        client.conf.update(task_serializer="json")
        with psycopg.connect(url) as conn:
            ids = [
                str(r[0])
                for r in conn.execute(
                    "SELECT id FROM accounts ORDER BY random() LIMIT %s", (sample,)
                ).fetchall()
            ]
        # What beat would do in the naive design: one task per due account.
        started = datetime.now(UTC)
        with client.producer_or_acquire() as producer:
            for account_id in ids:
                client.send_task(
                    "bench.naive_check",
                    args=[account_id],
                    queue="naive",
                    producer=producer,
                    ignore_result=True,
                )
        in_list = "id IN (" + ",".join(f"'{i}'" for i in ids) + ")"
        seconds, done = wait_checked(url, started, len(ids), args.timeout, in_list)
    finally:
        stop(workers)
    return {"seconds": seconds, "checked": done, "sample": len(ids)}


def write_readme(section: str) -> None:
    path = ROOT / "bench" / "README.md"
    start, end = "<!-- checks-bench:start -->", "<!-- checks-bench:end -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{start}\n{section.rstrip()}\n{end}"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--naive-sample", type=int, default=3_000)
    parser.add_argument("--workers", type=int, default=1, help="celery worker processes")
    parser.add_argument("--concurrency", type=int, default=3, help="pool processes per worker")
    parser.add_argument("--sims", type=int, default=2, help="simulator processes")
    parser.add_argument("--latency", type=float, default=0.020)
    parser.add_argument("--bad-share", type=float, default=0.01)
    parser.add_argument("--port", type=int, default=18_431)
    parser.add_argument("--redis-db", type=int, default=14)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "CONNECTIONS_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--write", action="store_true", help="write the figures to bench/README.md")
    args = parser.parse_args()

    logs = Path(tempfile.mkdtemp(prefix="bench-checks-"))
    load = os.getloadavg()[0]  # the machine is shared: say how busy it was
    print(f"logs in {logs}; load average {load:.2f}")
    sims = start_simulators(args.sims, args.port, args.latency)
    try:
        key = Fernet.generate_key().decode()
        url = fresh_database(args.admin_url, "connections_bench")
        t = time.monotonic()
        kinds = seed(url, key, args.accounts, args.bad_share)
        print(f"seeded {args.accounts} accounts {kinds} in {time.monotonic() - t:.1f}s")
        broker = f"redis://127.0.0.1:6379/{args.redis_db}"
        redis.Redis.from_url(broker).flushdb()
        simulators_url = f"http://127.0.0.1:{args.port}"
        env = {
            **os.environ,
            "CONNECTIONS_DATABASE_URL": url,
            "CONNECTIONS_BROKER_URL": broker,
            "CONNECTIONS_RESULT_BACKEND": broker,
            "CONNECTIONS_ENCRYPTION_KEYS": key,
            "CONNECTIONS_CHECK_INTERVAL_SECONDS": "3600",
            "CONNECTIONS_STRIPE_API_BASE_URL": simulators_url,
            "CONNECTIONS_SHOPIFY_BASE_URL": simulators_url + "/{shop}",
            "CONNECTIONS_FORTNOX_API_BASE_URL": simulators_url,
            "CONNECTIONS_LOG_FORMAT": "json",
            "CONNECTIONS_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
            "CONNECTIONS_VAR_DIR": str(logs / "var"),
            "PYTHONUNBUFFERED": "1",
        }
        processes = args.workers * args.concurrency

        transports = {
            kind: measure_clients(args.port, 1, 4.0, 100, kind)
            for kind in ("httpx", "httpx-aiohttp", "layer", "aiohttp")
        }
        print(
            "one process, 100 in flight: "
            + ", ".join(f"{k} {v:,.0f}/s" for k, v in transports.items())
        )
        ceiling = measure_clients(args.port, processes, 8.0, 64, "layer")
        print(f"ceiling ({processes} processes, the checks' HTTP layer): {ceiling:,.0f} req/s")
        # What bounds any client here: the simulators' capacity against bare aiohttp.
        bound = measure_clients(args.port, processes, 8.0, 64, "aiohttp")
        print(f"bound ({processes} processes, bare aiohttp): {bound:,.0f} req/s")

        design = run_design(url, env, logs, args, args.accounts)
        rate = design["checked"] / design["seconds"]
        print(
            f"design: {design['checked']:,} accounts checked in {design['seconds']:.1f}s "
            f"= {rate:,.0f}/s; peak RSS {design['peak_rss_mb']:.0f} MB per process"
        )
        naive_rate = None
        if not args.skip_naive:
            redis.Redis.from_url(broker).flushdb()
            naive = run_naive(url, env, logs, args, args.naive_sample)
            naive_rate = naive["checked"] / naive["seconds"]
            print(
                f"naive: {naive['checked']:,} of a {naive['sample']:,} sample in "
                f"{naive['seconds']:.1f}s = {naive_rate:,.0f}/s; 100,000 would take "
                f"~{100_000 / naive_rate:,.0f}s (extrapolated)"
            )
        figures = {
            "accounts": args.accounts,
            "kinds": kinds,
            "workers": args.workers,
            "concurrency": args.concurrency,
            "design_seconds": round(design["seconds"], 1),
            "design_rate": round(rate),
            "peak_rss_mb": round(design["peak_rss_mb"]),
            "ceiling_rate": round(ceiling),
            "bound_rate": round(bound),
            "naive_rate": round(naive_rate) if naive_rate else None,
            "transports": {k: round(v) for k, v in transports.items()},
            "load": load,
        }
        vs_naive = f"{rate / naive_rate:.1f}x" if naive_rate else "not measured"
        print(f"ratios: {vs_naive} the naive design; {rate / ceiling:.0%} of the ceiling")
        print(json.dumps(figures))
        if args.write:
            write_readme(section(figures, args, vs_naive, rate / ceiling, naive_rate))
    finally:
        for sim in sims:
            sim.terminate()


def section(
    f: dict[str, Any], args: argparse.Namespace, vs_naive: str, of_ceiling: float, naive: Any
) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    naive_line = (
        f"| naive: one task per account, one synchronous httpx call each | {naive:,.0f} checks/s "
        f"(measured on {args.naive_sample:,} accounts; 100,000 extrapolated to "
        f"~{100_000 / naive:,.0f} s) |"
        if naive
        else "| naive | not measured |"
    )
    t = f["transports"]
    rows = [
        (
            f"time to check every account once ({f['kinds']}), from when they are all due",
            f"**{f['design_seconds']} s** ({f['design_rate']:,} checks/s)",
        ),
        (
            f"ceiling: the simulators' raw capacity, the same client (the checks' `HttpLayer`, "
            f"httpx requests over httpx-aiohttp), {args.workers * args.concurrency} processes x "
            f"64 in flight",
            f"{f['ceiling_rate']:,} requests/s",
        ),
        (
            f"bound: the same with bare aiohttp, {args.workers * args.concurrency} processes",
            f"{f['bound_rate']:,} requests/s",
        ),
        ("design vs naive", vs_naive),
        ("design vs ceiling", f"{of_ceiling:.0%}"),
        ("peak RSS of any worker process", f"{f['peak_rss_mb']} MB"),
        (
            "one process, 100 requests in flight: httpx / httpx over aiohttp / `HttpLayer` / "
            "aiohttp",
            f"{t['httpx']:,} / {t['httpx-aiohttp']:,} / {t['layer']:,} / {t['aiohttp']:,} "
            f"requests/s",
        ),
        ("load average (1 min) when the run started", f"{f['load']:.2f}"),
    ]
    table = "\n".join(f"| {a} | {b} |" for a, b in rows[:1]) + "\n" + naive_line + "\n"
    table += "\n".join(f"| {a} | {b} |" for a, b in rows[1:])
    return f"""## Scheduled checks (`bench/checks.py`)

Command: `.venv/bin/python -m bench.checks --write` (defaults: {f["accounts"]:,} accounts,
{args.workers} Celery worker with {args.concurrency} pool processes, beat, {args.sims} simulator
processes answering in {args.latency * 1000:.0f} ms, {args.bad_share:.0%} of accounts with
rejected credentials). Measured {when} on this shared 2-core machine, PostgreSQL, Redis and the
simulators on the same machine; figures move by tens of percent from run to run.

| what | figure |
|---|---|
{table}

Targets: all 100,000 in <= 60 s; >= 5x naive; >= half the ceiling; <= 250 MB per process.
"""


if __name__ == "__main__":
    main()
