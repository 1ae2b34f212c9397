"""The system under test as docker-compose.yml deploys it: `connections ingest --workers 2`, one
worker pool per queue (`-Q jobs,celery`, `-Q checks`, `-Q events`, two pool processes each on
this small machine) and beat, each a child process whose exits are watched. Without the restart
policy a process that exits on its own stays down, as with no orchestrator; with it, it is
started again after a second (docker's `unless-stopped`)."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.processes import Process, answers, celery_command, free_port


@dataclass
class Exit:
    """A process that ended without being told to."""

    name: str
    at: float
    code: int | None
    last_error: str


def last_error(text: str) -> str:
    """The line that says why a process ended: Celery's "Unrecoverable error", else the last
    critical, else the last error line, else the last line (the event of a JSON line)."""
    events: list[tuple[str, str]] = []
    for raw in text.splitlines()[-300:]:
        try:
            parsed = json.loads(raw)
            events.append((str(parsed.get("level", "")), str(parsed.get("event", ""))))
        except (ValueError, AttributeError):
            events.append(("", raw))
    tests: list[Callable[[str, str], bool]] = [
        lambda level, event: "Unrecoverable error" in event,
        lambda level, event: level == "critical",
        lambda level, event: level == "error" or "Error" in event or "Traceback" in event,
        lambda level, event: bool(event.strip()),
    ]
    for test in tests:
        for level, event in reversed(events):
            if test(level, event):
                return event.strip().splitlines()[0][:300]
    return ""


class Supervised:
    """One role's process; started again by a fault, or by the restart policy after an exit."""

    def __init__(
        self, name: str, args: list[str], env: dict[str, str], logs: Path, ready: str | None
    ) -> None:
        self.name, self.args, self.env, self.logs, self.ready = name, args, env, logs, ready
        self.process: Process | None = None
        self.held = False  # stopped or killed on purpose: not an exit, not restarted
        self.restarts = 0
        self.lock = threading.Lock()  # the watcher reads `held` and liveness together
        self._started_at_byte = 0

    def start(self, wait: bool = True) -> None:
        log = self.logs / f"{self.name}.log"
        self._started_at_byte = log.stat().st_size if log.exists() else 0
        with self.lock:
            self.process = Process(self.name, self.args, self.env, self.logs)
            self.held = False
        if wait:
            self.wait_ready()

    def output_since_start(self) -> str:
        with (self.logs / f"{self.name}.log").open("rb") as f:
            f.seek(self._started_at_byte)
            return f.read().decode(errors="replace")

    def wait_ready(self, timeout: float = 90.0) -> None:
        assert self.process is not None
        process = self.process
        if self.ready is None:
            return
        if self.ready.startswith("http"):
            ok = answers(self.ready, timeout, alive=process.alive, accept=lambda s: s == 200)
        else:
            deadline = time.monotonic() + timeout
            while self.ready not in self.output_since_start():
                if not process.alive() or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            ok = self.ready in self.output_since_start()
        if not ok:
            raise RuntimeError(f"{self.name} did not start: {last_error(process.output())}")

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def signal(self, sig: int, timeout: float = 90.0) -> float:
        """Send `sig` to the process group and wait for it to end; the seconds that took."""
        assert self.process is not None
        with self.lock:
            self.held = True
        began = time.monotonic()
        self.process.kill(sig)
        self.process.reap(timeout)
        return time.monotonic() - began


class Stack:
    """Every process of one scenario, and a watcher that notes (and by policy restarts) exits."""

    def __init__(self, env: dict[str, str], logs: Path, restart_policy: bool) -> None:
        self.env, self.logs, self.restart_policy = env, logs, restart_policy
        self.port = free_port()
        ingest = [sys.executable, "-m", "worker.cli", "ingest", "--host", "127.0.0.1"]
        ingest += ["--port", str(self.port), "--workers", "2"]
        self.roles = {
            "ingest": self._role("ingest", ingest, f"{self.url}/healthz"),
            "worker-jobs": self._role("worker-jobs", self._worker("jobs,celery", "jobs"), "ready."),
            "worker-checks": self._role(
                "worker-checks", self._worker("checks", "checks"), "ready."
            ),
            "worker-events": self._role(
                "worker-events", self._worker("events", "events"), "ready."
            ),
            "beat": self._role(
                "beat",
                celery_command(
                    "beat", "--loglevel", "INFO", "--schedule", str(logs / "celerybeat-schedule")
                ),
                None,
            ),
        }
        self.exits: list[Exit] = []
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _worker(self, queues: str, name: str) -> list[str]:
        return celery_command(
            "worker",
            "-Q",
            queues,
            "--concurrency",
            "2",
            "--loglevel",
            "INFO",
            f"--hostname={name}@%h",
        )

    def _role(self, name: str, args: list[str], ready: str | None) -> Supervised:
        env = {**self.env, "CONNECTIONS_METRICS_PORT": str(free_port())}
        return Supervised(name, args, env, self.logs, ready)

    def __getitem__(self, name: str) -> Supervised:
        return self.roles[name]

    def start(self) -> None:
        for role in self.roles.values():
            role.start(wait=False)
        for role in self.roles.values():
            role.wait_ready()
        self._watcher.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            for role in self.roles.values():
                with role.lock:
                    process = role.process
                    if role.held or process is None or process.alive():
                        continue
                    role.held = True
                why = last_error(role.output_since_start())
                self.exits.append(Exit(role.name, time.time(), process.proc.returncode, why))
                process.reap(1)
                if self.restart_policy:
                    time.sleep(1.0)
                    role.restarts += 1
                    role.start(wait=False)

    def workers_alive(self) -> bool:
        """Some process can still take events (or will: the policy restarts it)."""
        return self.restart_policy or self["worker-events"].alive()

    def restarts(self) -> int:
        return sum(role.restarts for role in self.roles.values())

    def stop(self) -> dict[str, float]:
        """SIGTERM to every running process at once; the seconds each took to end."""
        self._stop.set()
        if self._watcher.is_alive():
            self._watcher.join(timeout=5)
        running = [r for r in self.roles.values() if r.alive()]
        began = time.monotonic()
        for role in running:
            with role.lock:
                role.held = True
            assert role.process is not None
            role.process.kill(signal.SIGTERM)
        took: dict[str, float] = {}
        while len(took) < len(running) and time.monotonic() - began < 60:
            for role in running:
                if role.name not in took and not role.alive():
                    took[role.name] = time.monotonic() - began
            time.sleep(0.05)
        for role in running:
            assert role.process is not None
            role.process.reap(1)  # kills the group of one still running after 60 s
            took.setdefault(role.name, time.monotonic() - began)
        return took

    def log_files(self) -> Iterator[Path]:
        yield from sorted(self.logs.glob("*.log"))
