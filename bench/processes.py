"""Child processes and ports, for the benchmarks and the end-to-end tests alike: both start real
servers and workers, wait for them to answer, stop them with everything they forked, and (the
benchmarks) read their CPU and memory from /proc. Only the standard library and httpx, so the
tests can import it without pulling in a benchmark."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def celery_command(*args: str) -> list[str]:
    """`celery -A worker ...` with this interpreter, so a child runs the same venv."""
    return [sys.executable, "-m", "celery", "-A", "worker", *args]


class Process:
    """A child process in its own session, whose output goes to `log_dir/<name>.log` (appended:
    several processes may share a name, and so a log). Signals go to its whole process group,
    so a prefork pool's or uvicorn's children stop with it."""

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

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (a prefork worker's children too)."""
        if self.alive():
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 20.0) -> None:
        self.kill(signal.SIGTERM)
        self.reap(timeout)

    def reap(self, timeout: float) -> None:
        """Wait for a signalled process to end, killing its group if it takes over `timeout`."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._log.close()


def stop_all(processes: Iterable[Process], timeout: float = 20.0) -> None:
    """Stop several at once: every one is signalled before any is waited for, so their graceful
    shutdowns overlap instead of adding up."""
    processes = list(processes)
    for process in processes:
        process.kill(signal.SIGTERM)
    for process in processes:
        process.reap(timeout)


def answers(
    url: str,
    timeout: float,
    *,
    alive: Callable[[], bool] = lambda: True,
    accept: Callable[[int], bool] = lambda status: True,
) -> bool:
    """Poll `url` until it answers with a status `accept` takes: False if `timeout` passes or
    `alive` turns false first (a server that died will not answer)."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            if accept(httpx.get(url, timeout=1).status_code):
                return True
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or not alive():
            return False
        time.sleep(0.1)


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (a prefork pool, uvicorn's workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


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


def rss_mb(pid: int) -> float:
    """Resident memory of one process in MB (0 once it is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(match.group(1)) / 1024 if match else 0.0
