"""The operator CLI against a real worker process over real Redis: `accounts check` is queued to the
worker (which alone knows where the provider is) and answers the check's result; `--no-wait`
answers a job id at once; `status` lists the workers that answer. And the worker and beat refuse
to start, in one log line, when a setting they need is missing or what it names is unreachable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from bench.processes import free_port
from models import Account, Database
from tests.e2e.harness import ROOT, Process, eventually
from tests.integration.jobs import add
from tests.simulators.stripe import StripeSimulator
from worker.service.deps import Deps


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )


def operator_shell(e2e_env: dict[str, str]) -> dict[str, str]:
    """The operator's shell knows the database, the broker and the keys, but not where Stripe is
    (here: the simulator): a check run by the CLI itself would reach the real Stripe."""
    return {k: v for k, v in e2e_env.items() if not k.startswith("CONNECTIONS_STRIPE_")}


def checked_account(deps: Deps, stripe_sim: StripeSimulator) -> dict[str, Any]:
    _, key = stripe_sim.add_account("Checked AB")
    result = add(deps, org_id="org-cli", credentials={"api_key": key})
    assert result["status"] == "succeeded", result
    account: dict[str, Any] = result["account"]
    return account


def test_check_is_queued_to_the_worker_and_answers_its_result(
    deps: Deps,
    db: Database,
    stripe_sim: StripeSimulator,
    worker_process: Process,
    e2e_env: dict[str, str],
) -> None:
    account = checked_account(deps, stripe_sim)
    with db.unit_of_work() as session:
        first_checked = session.get(Account, account["id"]).last_checked_at  # type: ignore[union-attr]

    done = cli("accounts", "check", account["id"], "--json", env=operator_shell(e2e_env))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # nothing logged, no unclosed HTTP session or connection reported
    result = json.loads(done.stdout)
    assert (result["status"], result["checked"], result["passed"]) == ("succeeded", True, True)
    assert result["account"]["id"] == account["id"]
    assert result["account"]["status"] == "connected"
    with db.unit_of_work() as session:
        stored = session.get(Account, account["id"])
        assert stored is not None
        assert stored.status == "connected"
        assert stored.last_checked_at is not None
        assert first_checked is None or stored.last_checked_at > first_checked

    shown = cli("jobs", "show", result["job_id"], "--json", env=operator_shell(e2e_env))
    assert json.loads(shown.stdout) == result

    text = cli("accounts", "check", account["id"], env=operator_shell(e2e_env))
    assert text.returncode == 0, text.stderr
    assert text.stdout.strip() == "succeeded: check passed"


def test_check_no_wait_answers_a_job_id_the_worker_then_finishes(
    deps: Deps,
    db: Database,
    stripe_sim: StripeSimulator,
    worker_process: Process,
    e2e_env: dict[str, str],
) -> None:
    account = checked_account(deps, stripe_sim)
    done = cli(
        "accounts", "check", account["id"], "--no-wait", "--json", env=operator_shell(e2e_env)
    )
    assert done.returncode == 0, done.stderr
    queued = json.loads(done.stdout)
    assert queued["status"] == "queued"

    def finished() -> dict[str, Any]:
        shown = cli("jobs", "show", queued["job_id"], "--json", env=operator_shell(e2e_env))
        assert shown.returncode == 0, shown.stdout
        value: dict[str, Any] = json.loads(shown.stdout)
        return value

    result = eventually(finished, timeout=60, interval=0.5)
    assert (result["job_id"], result["status"], result["passed"]) == (
        queued["job_id"],
        "succeeded",
        True,
    )


def test_a_check_of_an_unknown_account_is_the_workers_refusal_in_one_line(
    db: Database, worker_process: Process, e2e_env: dict[str, str]
) -> None:
    unknown = "00000000-0000-0000-0000-00000000c0de"
    done = cli("accounts", "check", unknown, "--json", env=operator_shell(e2e_env))
    assert done.returncode == 1
    assert json.loads(done.stdout) == {
        "error": {"reason": "not_found", "message": "no such account"}
    }


def test_status_lists_the_workers_that_answer(
    db: Database, worker_process: Process, e2e_env: dict[str, str]
) -> None:
    ours = f"worker-{os.getpid()}@"
    done = cli("status", "--timeout", "3", "--json", env=e2e_env)
    assert done.returncode == 0, done.stderr
    workers = json.loads(done.stdout)["workers"]
    assert any(name.startswith(ours) for name in workers["answered"]), workers
    assert workers["problem"] is None

    screen = cli("status", "--timeout", "3", env=e2e_env)
    assert screen.returncode == 0, screen.stderr
    [line] = [x for x in screen.stdout.splitlines() if x.startswith("workers")]
    assert " answered: " in line
    assert ours in line


def refused(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run a Celery process that must refuse to start: its exit status is 2 and it says why in
    one JSON log line (no traceback); that line's fields."""
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "worker", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output
    [line] = [x for x in output.splitlines() if "startup_refused" in x]
    said: dict[str, Any] = json.loads(line)
    return said


def test_the_worker_refuses_to_start_without_keys_or_database(
    e2e_env: dict[str, str], tmp_path: Any
) -> None:
    worker = ["worker", "--pool=solo", "--without-gossip", "--without-mingle"]
    no_keys = {k: v for k, v in e2e_env.items() if k != "CONNECTIONS_ENCRYPTION_KEYS"}
    said = refused(worker, no_keys)
    assert said["level"] == "error"
    assert "CONNECTIONS_ENCRYPTION_KEYS is required outside development" in said["error"]

    closed = f"postgresql://connections:pw-5678@127.0.0.1:{free_port()}/connections"
    said = refused(worker, {**e2e_env, "CONNECTIONS_DATABASE_URL": closed})
    assert "cannot reach the database" in said["error"]
    assert "pw-5678" not in json.dumps(said)

    beat = ["beat", "--schedule", str(tmp_path / "beat-schedule")]
    said = refused(beat, {**e2e_env, "CONNECTIONS_DATABASE_URL": closed})
    assert said["process"] == "beat"
    assert "cannot reach the database" in said["error"]
