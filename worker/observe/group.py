"""One set of numbers for a group of processes: uvicorn's workers behind one port, a prefork
Celery pool behind its parent. prometheus_client's multiprocess mode keeps each process's values
in files of one directory, and a scrape of any process of the group adds them up. A fresh
directory per group, made when the group starts and removed when it ends, so a restart never
counts a previous run's numbers and two groups on one host never mix theirs."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "connections-metrics-"
# PREFIX, the role, the leader's pid, mkdtemp's random part (which holds no "-").
_NAME = re.compile(rf"^{PREFIX}(?P<role>.+)-(?P<pid>\d+)-[^-]+$")


def start_group(role: str, base: Path | None = None) -> Path:
    """Make this process the leader of a group: a fresh directory for its values and its
    children's, named in PROMETHEUS_MULTIPROC_DIR (children inherit it), and removed when this
    process exits. Directories that leaders now gone left behind (killed, or a container
    restarted) are removed first.

    prometheus_client chooses where values live when it is imported: this must run before."""
    if "prometheus_client" in sys.modules:
        raise RuntimeError(
            "start_group() must run before prometheus_client is imported, or this process's "
            "values would not be shared with its group"
        )
    where = base or Path(tempfile.gettempdir())
    remove_stale(where)
    path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{role}-{os.getpid()}-", dir=where))
    os.environ[ENV] = str(path)
    atexit.register(_remove, path, os.getpid())
    return path


def remove_stale(base: Path) -> list[Path]:
    """Remove the group directories under `base` whose leader is gone; those removed."""
    removed: list[Path] = []
    for entry in base.glob(f"{PREFIX}*"):
        match = _NAME.match(entry.name)
        if match is None or not entry.is_dir():
            continue
        pid = int(match["pid"])
        # Our own pid on a directory we did not make yet: a previous run's, as when the leader
        # is a container's pid 1 each time it starts.
        if pid == os.getpid() or not _alive(pid):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _remove(path: Path, leader: int) -> None:
    # A forked child inherits atexit handlers; only the leader removes the directory.
    if os.getpid() == leader:
        shutil.rmtree(path, ignore_errors=True)
