"""Real processes for end-to-end tests: a Celery worker, the ingest server, and a client app that
sends jobs the way another service would. Each test run gets its own Redis database number."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import redis
from celery import Celery
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from tests import services
from tests.simulators.base import free_port

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
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


class Process:
    """A child process whose output goes to a log file the test can show on failure."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            args,
            env=env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (a prefork worker's children too)."""
        if self.alive():
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 20.0) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()


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
    args = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker",
        "worker",
        "--loglevel=INFO",
        f"--concurrency={concurrency}",
        f"--hostname={name}-{os.getpid()}@%h",
        "--without-gossip",
        "--without-mingle",
    ]
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

    def up() -> None:
        assert process.alive(), process.output()[-3000:]
        try:
            assert httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError as exc:
            raise AssertionError(str(exc)) from exc

    try:
        eventually(up, timeout=30)
    except AssertionError:
        process.stop()
        raise
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
