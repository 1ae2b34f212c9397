"""Real processes for end-to-end tests: a Celery worker, the ingest server, and a client app that
sends jobs the way another service would. Each test run gets its own Redis database number."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import redis
from celery import Celery
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from bench.processes import ROOT as ROOT  # re-exported: the e2e tests take it from here
from bench.processes import Process, answers, celery_command, free_port
from tests import services

T = TypeVar("T")
LOCK_PREFIX = "connections-tests:redis-db:"


def allocate_redis_db() -> int:
    """Claim a free Redis database number (1..15) so concurrent test runs do not share queues."""
    base = services.REDIS_URL.rsplit("/", 1)[0]
    control = redis.Redis.from_url(f"{base}/0")
    for number in range(1, 16):
        if control.set(f"{LOCK_PREFIX}{number}", os.getpid(), nx=True, ex=3600):
            redis.Redis.from_url(f"{base}/{number}").flushdb()
            return number
    raise RuntimeError("no free Redis database for this test run (all 15 claimed)")


def release_redis_db(number: int) -> None:
    base = services.REDIS_URL.rsplit("/", 1)[0]
    redis.Redis.from_url(f"{base}/{number}").flushdb()
    redis.Redis.from_url(f"{base}/0").delete(f"{LOCK_PREFIX}{number}")


def redis_url(number: int) -> str:
    return services.REDIS_URL.rsplit("/", 1)[0] + f"/{number}"


def eventually(probe: Callable[[], T], timeout: float = 30.0, interval: float = 0.2) -> T:
    """Poll `probe` until it returns without AssertionError (or the timeout passes)."""
    for attempt in Retrying(
        retry=retry_if_exception_type(AssertionError),
        stop=stop_after_delay(timeout),
        wait=wait_fixed(interval),
        reraise=True,
    ):
        with attempt:
            return probe()
    raise AssertionError("unreachable")


def start_worker(
    env: dict[str, str],
    log_dir: Path,
    name: str = "worker",
    *,
    queues: str | None = None,
    concurrency: int = 2,
    beat: bool = False,
    extra: list[str] | None = None,
) -> Process:
    args = celery_command(
        "worker",
        "--loglevel=INFO",
        f"--concurrency={concurrency}",
        f"--hostname={name}-{os.getpid()}@%h",
        "--without-gossip",
        "--without-mingle",
    )
    if queues:
        args.append(f"--queues={queues}")
    if beat:
        args += ["--beat", "--schedule", str(log_dir / f"{name}-beat-schedule")]
    process = Process(name, args + (extra or []), env, log_dir)
    try:
        eventually(lambda: _assert_in("ready.", process), timeout=60)
    except AssertionError:
        process.stop()
        raise AssertionError(f"worker did not start:\n{process.output()[-3000:]}") from None
    return process


def start_ingest(env: dict[str, str], log_dir: Path, name: str = "ingest") -> tuple[Process, str]:
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "worker.cli",
        "ingest",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    process = Process(name, args, env, log_dir)
    url = f"http://127.0.0.1:{port}"
    if not answers(f"{url}/healthz", 30, alive=process.alive, accept=lambda status: status == 200):
        process.stop()
        raise AssertionError(f"ingest did not answer /healthz:\n{process.output()[-3000:]}")
    return process, url


def _assert_in(text: str, process: Process) -> None:
    assert process.alive(), process.output()[-3000:]
    assert text in process.output()


def client_app(broker: str, backend: str) -> Celery:
    """A Celery app as another service would have it: it knows only the broker and task names."""
    app = Celery("other-service", broker=broker, backend=backend)
    app.conf.update(task_serializer="json", accept_content=["json"], result_serializer="json")
    return app


def send_and_wait(
    app: Celery, task: str, kwargs: dict[str, Any], timeout: float = 60.0
) -> dict[str, Any]:
    """Send a job by name (no routing: it lands on the default queue) and wait for its result."""
    result = app.send_task(task, kwargs=kwargs)
    value = result.get(timeout=timeout)
    assert isinstance(value, dict)
    return value
