"""What deploy/ gives an operator: alert rules each with a unit test that fires it and one that
does not (run by promtool when it is installed; the lint tier requires it), a scrape config with
a target for every process docker-compose.yml runs, and a dashboard with a panel for every
family of the contract."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_metrics import CONTRACT

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "connections.json"
# The port each kind of process serves its metrics on in compose (worker/settings.py
# METRICS_PORTS; the ingest's own --port).
KINDS = {"worker": 9464, "beat": 9465, "fortnox-stream": 9466}


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alert_names() -> list[str]:
    return [r["alert"] for g in load(PROMETHEUS / "alerts.yml")["groups"] for r in g["rules"]]


def test_every_alert_has_a_test_that_fires_it_and_one_that_does_not() -> None:
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in load(PROMETHEUS / "alerts_test.yml")["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = alert_names()
    assert len(names) == len(set(names))
    assert set(names) == fires
    assert set(names) == quiet


def test_every_alert_has_a_severity_and_a_runbook_section() -> None:
    runbook = (ROOT / "docs" / "operations.md").read_text().lower()
    for group in load(PROMETHEUS / "alerts.yml")["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"warning", "critical"}
            anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
            assert anchor == rule["alert"].lower()
            assert f"### {rule['alert'].lower()}" in runbook, rule["alert"]


def test_promtool_checks_the_rules_and_runs_their_tests() -> None:
    if shutil.which("promtool") is None:
        missing = "promtool is not installed (Debian's `prometheus`; scripts/test installs it)"
        if os.environ.get("CONNECTIONS_TEST_REQUIRE_SERVICES") == "1":
            pytest.fail(missing)
        pytest.skip(missing)
    for args in (
        ["check", "rules", str(PROMETHEUS / "alerts.yml")],
        ["check", "config", str(PROMETHEUS / "prometheus.yml")],
        ["test", "rules", str(PROMETHEUS / "alerts_test.yml")],
    ):
        done = subprocess.run(["promtool", *args], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


def compose_targets() -> dict[str, set[str]]:
    """For each scrape job, the `service:port` of every compose service of its kind."""
    wanted: dict[str, set[str]] = {"ingest": set(), **{kind: set() for kind in KINDS}}
    for name, service in load(ROOT / "docker-compose.yml")["services"].items():
        command = [str(part) for part in service.get("command", [])]
        if command[:2] == ["connections", "ingest"]:
            wanted["ingest"].add(f"{name}:{command[command.index('--port') + 1]}")
        elif command[:2] == ["connections", "fortnox-stream"]:
            wanted["fortnox-stream"].add(f"{name}:{KINDS['fortnox-stream']}")
        elif command[:1] == ["celery"] and "worker" in command[3:4]:
            wanted["worker"].add(f"{name}:{KINDS['worker']}")
        elif command[:1] == ["celery"] and "beat" in command[3:4]:
            wanted["beat"].add(f"{name}:{KINDS['beat']}")
    return wanted


def test_prometheus_scrapes_every_process_compose_runs() -> None:
    config = load(PROMETHEUS / "prometheus.yml")
    jobs = {
        job["job_name"]: {t for static in job["static_configs"] for t in static["targets"]}
        for job in config["scrape_configs"]
    }
    wanted = compose_targets()
    assert all(wanted.values()), wanted
    assert jobs == wanted
    assert config["rule_files"] == ["alerts.yml"]


def test_the_dashboard_has_a_panel_for_every_family() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    exprs = " ".join(t["expr"] for p in panels for t in p["targets"])
    for family in [*CONTRACT, "connections_account_errors_open"]:
        assert family in exprs, family
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
    assert dashboard["uid"] == "connections-worker"
