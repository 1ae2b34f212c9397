"""The README's run command: `connections dev` on the embedded defaults, with no servers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.e2e.harness import ROOT, client_app, eventually
from tests.simulators.base import free_port


def test_connections_dev_runs_jobs_on_sqlite(tmp_path: Path) -> None:
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("CONNECTIONS_")}
    log = (tmp_path / "dev.log").open("wb")
    dev = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "dev", "--port", str(port)],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:

        def ready() -> None:
            assert dev.poll() is None, (tmp_path / "dev.log").read_text()
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).json()
            except httpx.TransportError as exc:
                raise AssertionError(str(exc)) from exc
            assert body["status"] == "ready", body
            assert "ready." in (tmp_path / "dev.log").read_text()

        eventually(ready, timeout=90, interval=0.5)
        client = client_app(
            f"sqla+sqlite:///{tmp_path}/var/broker.db", f"db+sqlite:///{tmp_path}/var/results.db"
        )
        sent = client.send_task(
            "accounts.add",
            kwargs={
                "org_id": "org-1",
                "actor": {"user_id": "u", "role": "reader"},
                "type": "stripe",
                "name": "Main",
                "credentials": {"api_key": "sk_test_abcdefgh12345"},
            },
        )
        result = sent.get(timeout=90)
        assert (result["status"], result["reason"]) == ("rejected", "forbidden")

        shown = subprocess.run(
            [sys.executable, "-m", "worker.cli", "jobs", "show", result["job_id"], "--json"],
            cwd=tmp_path,
            env={**env, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert json.loads(shown.stdout) == result
        assert (tmp_path / "var" / "connections.db").exists()
        assert (tmp_path / "var" / "dev-encryption.key").exists()
    finally:
        os.killpg(dev.pid, signal.SIGTERM)
        try:
            dev.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)
        log.close()
