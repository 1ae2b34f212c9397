"""A secret given in credentials appears in no log line, job result, API answer or stored row."""

from __future__ import annotations

import pytest
import structlog
from pydantic import SecretStr
from sqlalchemy import text
from starlette.testclient import TestClient

from tests.integration.jobs import add, update
from tests.simulators.stripe import StripeSimulator
from worker.api.app import create_app
from worker.logconfig import configure_logging
from worker.service.deps import Deps
from worker.settings import Settings


def test_secret_is_never_shown(
    deps: Deps, stripe_sim: StripeSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("json", "DEBUG")
    _, key = stripe_sim.add_account()
    stripe_sim.fail_next(503)  # a retry, so failures get logged too
    results = [
        add(deps, credentials={"api_key": key}),
        add(deps, credentials={"api_key": key + "x"}),  # rejected by the provider
        add(deps, credentials={"api_key": key, "webhook_secret": "not-a-whsec-" + key}),  # invalid
    ]
    account_id = results[0]["account"]["id"]
    results.append(update(deps, account_id=account_id, credentials={"api_key": key + "y"}))
    structlog.get_logger().info("probe", credentials={"api_key": key}, detail=f"key={key}")

    api = TestClient(create_app(Settings(service_token=SecretStr("t0ken-for-tests")), deps))
    answers = [
        api.get(
            path,
            headers={
                "Authorization": "Bearer t0ken-for-tests",
                "X-Actor-Id": "u",
                "X-Actor-Role": "admin",
            },
        ).text
        for path in (
            "/api/v1/orgs/org-1/accounts",
            f"/api/v1/orgs/org-1/accounts/{account_id}",
            *(f"/api/v1/jobs/{r['job_id']}" for r in results),
        )
    ]
    logs = capsys.readouterr().err
    assert "account_added" in logs  # the log really was captured
    with deps.db.engine.connect() as conn:
        dump = " ".join(
            str(row)
            for table in ("accounts", "jobs", "outbox_events", "status_changes", "account_errors")
            for row in conn.execute(text(f"SELECT * FROM {table}"))  # noqa: S608
        )
    for place, content in {
        "logs": logs,
        "results": str(results),
        "api": " ".join(answers),
        "db": dump,
    }.items():
        assert key not in content, f"the secret leaked into {place}"
    structlog.reset_defaults()
