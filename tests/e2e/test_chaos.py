"""The chaos suite's short selection (`scripts/chaos --quick`, docs/reliability.md), one scenario
per test: each runs the real ingest, workers, beat and simulator on a PostgreSQL cluster and a
Redis server of its own, makes its fault under load, and checks every invariant. Only scenarios
that pass on the current code are here; the rest of the suite is run with `bash scripts/chaos`."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bench.chaos.scenarios import SCENARIOS
from bench.chaos.servers import missing_binaries
from bench.processes import ROOT

QUICK = [name for name, scenario in SCENARIOS.items() if scenario.quick]
BOUND = 300  # seconds for one scenario; each takes 30 to 120 s on a shared 2-core machine


@pytest.mark.timeout(BOUND + 90)
@pytest.mark.parametrize("scenario", QUICK)
def test_chaos_scenario_passes(scenario: str, tmp_path: Path) -> None:
    problem = missing_binaries()
    if problem:
        pytest.skip(problem)
    args = [sys.executable, "-m", "bench.chaos", scenario, "--logs", str(tmp_path)]
    suite = subprocess.Popen(
        args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        output, _ = suite.communicate(timeout=BOUND)
    except subprocess.TimeoutExpired:
        suite.send_signal(signal.SIGTERM)  # the suite stops its servers and processes on SIGTERM
        output, _ = suite.communicate(timeout=60)
        pytest.fail(f"{scenario} took over {BOUND} s:\n{output[-6000:]}")
    assert suite.returncode == 0, output[-6000:]
