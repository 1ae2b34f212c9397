"""A service written in Node sends a job: examples/node/send-job.js (celery-node over Redis),
installed with `npm ci` from its lock file into a copy of the example, sends `integrations.link`
to a real worker and prints the job's result, which must be the one the worker stored. Skipped
when Node or npm is not installed, or the npm registry cannot be reached."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bench.processes import ROOT
from models import Database, IntegrationRef, Job
from tests.e2e.harness import Process
from tests.fixtures.ingest import make_account
from worker.vault import Vault

EXAMPLE = ROOT / "examples" / "node"
FILES = ("package.json", "package-lock.json", "send-job.js")
# npm's words when the registry cannot be reached at all (as opposed to a broken lock file).
OFFLINE = ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ETIMEDOUT", "ENETUNREACH")


@pytest.fixture(scope="module")
def node_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the example with its dependencies installed exactly as locked."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("Node.js and npm are not installed: the Node sender example is not run")
    copy = tmp_path_factory.mktemp("node-sender")
    for name in FILES:
        shutil.copy(EXAMPLE / name, copy / name)
    installed = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if installed.returncode != 0:
        said = installed.stdout + installed.stderr
        if any(word in said for word in OFFLINE):
            pytest.skip(f"the npm registry cannot be reached: {said.strip()[-300:]}")
        raise AssertionError(f"npm ci failed:\n{said[-3000:]}")
    return copy


def send(example: Path, env: dict[str, str]) -> dict[str, Any]:
    node = shutil.which("node")
    assert node is not None
    ran = subprocess.run(
        [node, "send-job.js"], cwd=example, env=env, capture_output=True, text=True, timeout=120
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    result = json.loads(ran.stdout.strip().splitlines()[-1])
    assert isinstance(result, dict)
    return result


def test_a_node_service_links_an_integration_and_reads_the_stored_result(
    node_example: Path,
    worker_process: Process,
    e2e_env: dict[str, str],
    db: Database,
    vault: Vault,
) -> None:
    org_id = f"org-node-{uuid.uuid4().hex[:8]}"
    account = make_account(db, vault, "stripe", org_id=org_id, name="Node AB")
    env = {
        "PATH": e2e_env["PATH"],
        "BROKER_URL": e2e_env["CONNECTIONS_BROKER_URL"],
        "RESULT_BACKEND": e2e_env["CONNECTIONS_RESULT_BACKEND"],
        "ORG_ID": org_id,
        "ACCOUNT_ID": str(account.id),
        "INTEGRATION_ID": "wf-node",
        "INTEGRATION_NAME": "Node sync",
        "REQUEST_ID": f"node-{uuid.uuid4().hex}",
    }

    result = send(node_example, env)
    again = send(node_example, env)  # the same request_id: answered from the first result

    assert (result["status"], result["reason"]) == ("succeeded", None), result
    assert (result["account"]["id"], result["integration_id"]) == (str(account.id), "wf-node")
    assert result["request_id"] == env["REQUEST_ID"]
    assert again == result
    with db.unit_of_work() as s:
        stored = s.get(Job, result["job_id"])
        assert stored is not None
        assert stored.result == result
        refs = list(s.scalars(select(IntegrationRef).where(IntegrationRef.org_id == org_id)))
        assert [(r.integration_id, r.name) for r in refs] == [("wf-node", "Node sync")]
