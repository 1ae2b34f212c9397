"""A group of processes serves one set of numbers: what forked children count is in every scrape
of the group, the same at each; the group's directory is fresh at start, gone at exit, and
directories that dead leaders left are removed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from worker.observe.group import PREFIX, remove_stale, start_group

LEADER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from worker.observe.group import start_group

    path = start_group("unit", base=Path(sys.argv[1]))
    from worker import metrics
    from worker.observe.serve import group_registry, in_group

    assert in_group()
    children = []
    for n in range(3):
        pid = os.fork()
        if pid == 0:  # a pool child: counts, and is gone
            metrics.JOBS.labels("unit.fork", "succeeded").inc(5)
            metrics.CHECK_SECONDS.labels("unit").observe(0.2)
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
    metrics.JOBS.labels("unit.fork", "succeeded").inc(1)  # the leader counts too
    registry = group_registry()
    for _ in range(2):  # two scrapes
        print(registry.get_sample_value(
            "connections_jobs_total", {"task": "unit.fork", "status": "succeeded"}))
        print(registry.get_sample_value("connections_check_seconds_count", {"provider": "unit"}))
    print(path)
    """
)


def test_what_forked_children_count_is_in_every_scrape_of_the_group(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    done = subprocess.run(
        [sys.executable, "-c", LEADER, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    *values, path = done.stdout.split()
    assert values == ["16.0", "3.0", "16.0", "3.0"]
    assert Path(path).parent == tmp_path
    assert Path(path).name.startswith(f"{PREFIX}unit-")
    assert not Path(path).exists()  # removed when the leader exited


def test_directories_of_leaders_gone_are_removed_and_the_others_kept(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = tmp_path / f"{PREFIX}ingest-{gone.pid}-abc123"
    mine = tmp_path / f"{PREFIX}celery-{os.getpid()}-def456"  # a previous run with our pid
    alive = tmp_path / f"{PREFIX}fortnox-stream-{os.getppid()}-ghi789"
    other = tmp_path / "something-else-1-x"
    for path in (dead, mine, alive, other):
        path.mkdir()
        (path / "counter_1.db").write_bytes(b"")

    removed = remove_stale(tmp_path)

    assert sorted(removed) == sorted([dead, mine])
    assert not dead.exists()
    assert not mine.exists()
    assert alive.exists()
    assert other.exists()


def test_a_group_cannot_start_after_prometheus_client_is_imported(tmp_path: Path) -> None:
    import prometheus_client  # noqa: F401  (as any test process has it)

    with pytest.raises(RuntimeError, match="before prometheus_client is imported"):
        start_group("late", base=tmp_path)
    assert list(tmp_path.iterdir()) == []
