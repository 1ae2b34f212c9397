"""The job intake over HTTP on the real PostgreSQL: every task through `POST /api/v1/jobs`, run by
the Celery task itself (in-process, as a delivery from the broker would run it, under
JOB_CREDENTIALS=refuse: so nothing the intake sends may carry plaintext credentials); the edge's
refusals, which queue nothing; the org-scoped read; and JOB_CREDENTIALS applied to jobs arriving
over Celery. tests/e2e/test_job_intake.py does the same with real processes over Redis."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import jsonschema_rs
import pytest
from celery.backends.base import DisabledBackend
from kombu.exceptions import OperationalError
from pydantic import SecretStr
from sqlalchemy import func, select
from starlette.testclient import TestClient

from models import Account, Job
from tests.integration.jobs import ADMIN, READER, add, counts, link
from tests.simulators.stripe import StripeSimulator
from tests.unit.test_job_schemas import SCHEMAS
from worker.api.app import create_app
from worker.service import sealed
from worker.service.connect_callback import JobOrder
from worker.service.deps import Deps
from worker.settings import Settings
from worker.tasks import jobtask
from worker.tasks.jobtask import TASKS
from worker.tasks.table import JOBS, PLAINTEXT_REFUSED

TOKEN = "job-intake-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def reading_as(actor: dict[str, str]) -> dict[str, str]:
    return {**AUTH, "X-Actor-Id": actor["user_id"], "X-Actor-Role": actor["role"]}


def schema_errors(name: str, instance: Any) -> list[str]:
    found = json.loads((SCHEMAS / f"{name}.json").read_text())
    return [e.message for e in jsonschema_rs.validator_for(found).iter_errors(instance)]


class Broker:
    """The ingest's `send_job`: keeps each order as it would reach the broker (JSON) and, unless
    `hold` is set, delivers it to the job's Celery task at once."""

    def __init__(self) -> None:
        self.orders: list[JobOrder] = []
        self.hold = False
        self.down = False

    def __call__(self, order: JobOrder) -> None:
        if self.down:
            raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        self.orders.append(JobOrder(order.job_id, order.name, json.loads(json.dumps(order.kwargs))))
        if not self.hold:
            self.deliver(self.orders[-1])

    @staticmethod
    def deliver(order: JobOrder) -> dict[str, Any]:
        return deliver(order.name, order.kwargs, order.job_id)


def deliver(name: str, kwargs: dict[str, Any], job_id: str | None = None) -> dict[str, Any]:
    """Run the job's Celery task as a worker runs a message from the broker."""
    result = TASKS[name].apply(kwargs=kwargs, task_id=job_id or str(uuid.uuid4())).get()
    assert isinstance(result, dict)
    return result


@pytest.fixture
def job_credentials(deps: Deps, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """The Celery tasks run on `deps`, with JOB_CREDENTIALS as set (`refuse` until told), and no
    result backend (the job's result is stored in the database either way)."""
    monkeypatch.setattr(jobtask, "get_deps", lambda: deps)
    for task in TASKS.values():
        monkeypatch.setattr(task, "_backend", DisabledBackend(task.app))

    def set_to(value: str) -> None:
        settings = Settings(database_url="postgresql://db/connections", job_credentials=value)
        monkeypatch.setattr(jobtask, "get_settings", lambda: settings)

    set_to("refuse")
    return set_to


@pytest.fixture
def broker(job_credentials: Callable[[str], None]) -> Broker:
    return Broker()


@pytest.fixture
def client(deps: Deps, broker: Broker) -> Iterator[TestClient]:
    settings = Settings(service_token=SecretStr(TOKEN))
    app = create_app(settings, deps, enqueue=lambda _ids: None, send_job=broker)
    with TestClient(app) as test_client:
        yield test_client


def submit(client: TestClient, task: str, kwargs: dict[str, Any], **more: Any) -> dict[str, Any]:
    answer = client.post(
        "/api/v1/jobs", json={"task": task, "kwargs": kwargs, **more}, headers=AUTH
    )
    assert answer.status_code == 202, answer.text
    queued = answer.json()
    assert set(queued) == {"job_id", "request_id"}
    return queued


def read(client: TestClient, org: str, job_id: str, actor: dict[str, str] = ADMIN) -> Any:
    return client.get(f"/api/v1/orgs/{org}/jobs/{job_id}", headers=reading_as(actor))


def stripe_account(deps: Deps, stripe_sim: StripeSimulator) -> str:
    _, key = stripe_sim.add_account("Fika AB")
    added = add(deps, credentials={"api_key": key})
    assert added["status"] == "succeeded", added
    return str(added["account"]["id"])


# -- every task ---------------------------------------------------------------------------------


def _add(deps: Deps, sim: StripeSimulator) -> dict[str, Any]:
    _, key = sim.add_account("Kanelbulle AB")
    credentials = {"api_key": key}
    return {
        "org_id": "org-1",
        "actor": ADMIN,
        "type": "stripe",
        "name": "Main",
        "credentials": credentials,
    }


def _update(deps: Deps, sim: StripeSimulator) -> dict[str, Any]:
    return {
        "org_id": "org-1",
        "actor": ADMIN,
        "account_id": stripe_account(deps, sim),
        "name": "New",
    }


def _remove(deps: Deps, sim: StripeSimulator) -> dict[str, Any]:
    return {"org_id": "org-1", "actor": ADMIN, "account_id": stripe_account(deps, sim)}


def _check(deps: Deps, sim: StripeSimulator) -> dict[str, Any]:
    return {"account_id": stripe_account(deps, sim)}


def _link(deps: Deps, sim: StripeSimulator) -> dict[str, Any]:
    account = stripe_account(deps, sim)
    return {"org_id": "org-1", "integration_id": "wf-1", "account_id": account, "name": "Sync"}


def _unlink(deps: Deps, sim: StripeSimulator) -> dict[str, Any]:
    account = stripe_account(deps, sim)
    assert link(deps, account_id=account, integration_id="wf-1")["status"] == "succeeded"
    return {"org_id": "org-1", "integration_id": "wf-1", "account_id": account}


KWARGS: dict[str, Callable[[Deps, StripeSimulator], dict[str, Any]]] = {
    "accounts.add": _add,
    "accounts.update": _update,
    "accounts.remove": _remove,
    "accounts.check": _check,
    "integrations.link": _link,
    "integrations.unlink": _unlink,
}


def test_every_task_of_the_table_is_sent_below() -> None:
    assert set(KWARGS) == set(JOBS)


@pytest.mark.parametrize("task", sorted(KWARGS))
def test_every_task_through_the_intake_succeeds_and_reads_back(
    task: str, client: TestClient, broker: Broker, deps: Deps, stripe_sim: StripeSimulator
) -> None:
    kwargs = KWARGS[task](deps, stripe_sim)
    queued = submit(client, task, kwargs, request_id=f"intake-{task}")

    [order] = broker.orders
    assert (order.job_id, order.name) == (queued["job_id"], task)
    assert "credentials" not in order.kwargs
    assert schema_errors(f"{task}.kwargs", order.kwargs) == []
    answer = read(client, "org-1", queued["job_id"])
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["status"], result["job_id"]) == ("succeeded", queued["job_id"]), result
    assert result["request_id"] == queued["request_id"] == f"intake-{task}"
    assert schema_errors("result", result) == []
    with deps.db.unit_of_work() as s:
        job = s.get(Job, queued["job_id"])
        assert job is not None
        assert job.result == result


def test_credentials_reach_the_broker_sealed_and_the_account_with_them(
    client: TestClient, broker: Broker, deps: Deps, stripe_sim: StripeSimulator
) -> None:
    kwargs = _add(deps, stripe_sim)
    key = kwargs["credentials"]["api_key"]
    queued = submit(client, "accounts.add", kwargs)

    [order] = broker.orders
    assert key not in json.dumps(order.kwargs)
    assert sealed.unseal(deps.vault, order.kwargs[sealed.FIELD]) == {"api_key": key}
    result = read(client, "org-1", queued["job_id"]).json()
    assert result["status"] == "succeeded", result
    assert key not in json.dumps(result)
    with deps.db.unit_of_work() as s:
        account = s.get(Account, uuid.UUID(result["account"]["id"]))
        assert account is not None
        assert deps.vault.decrypt(account.credentials) == {"api_key": key}


def test_an_oauth_code_reaches_the_broker_sealed(
    client: TestClient, broker: Broker, deps: Deps, stripe_sim: StripeSimulator
) -> None:
    connected, _ = stripe_sim.add_account("Connected AB")
    code = stripe_sim.issue_code(connected)
    kwargs = {**_add(deps, stripe_sim), "credentials": {"code": code}}
    queued = submit(client, "accounts.add", kwargs)

    assert code not in json.dumps(broker.orders[0].kwargs)
    result = read(client, "org-1", queued["job_id"]).json()
    assert result["status"] == "succeeded", result
    assert code not in json.dumps(result)


def test_the_same_request_id_twice_has_one_effect(
    client: TestClient, deps: Deps, stripe_sim: StripeSimulator
) -> None:
    kwargs = _add(deps, stripe_sim)
    first = submit(client, "accounts.add", kwargs, request_id="add-once")
    again = submit(client, "accounts.add", {**kwargs, "request_id": "add-once"})

    assert first["job_id"] != again["job_id"]
    results = [read(client, "org-1", q["job_id"]).json() for q in (first, again)]
    assert results[0] == results[1]
    assert results[0]["status"] == "succeeded"
    with deps.db.unit_of_work() as s:
        assert s.scalar(select(func.count()).select_from(Account)) == 1


# -- refused at the edge -------------------------------------------------------------------------


ADD = {"org_id": "org-1", "actor": ADMIN, "type": "stripe", "name": "Main"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", None),
        (b"\xff\xfe\x00", None),
        (b"[" * 5000 + b"]" * 5000, None),
        (json.dumps(["accounts.add", {}]).encode(), "_"),
        (json.dumps({"task": "accounts.nope", "kwargs": {}}).encode(), "task"),
        (json.dumps({"task": "accounts.add", "kwargs": "org_id=org-1"}).encode(), "kwargs"),
        (json.dumps({"task": "accounts.add", "kwargs": {**ADD, "colour": 1}}).encode(), None),
        (json.dumps({"task": "accounts.add", "kwargs": ADD, "request_id": ""}).encode(), None),
        (json.dumps({"task": "accounts.add", "kwargs": ADD, "extra": 1}).encode(), "extra"),
        (json.dumps({"task": "accounts.add", "kwargs": {**ADD, "org_id": "a b"}}).encode(), None),
        (
            json.dumps(
                {"task": "accounts.add", "kwargs": {**ADD, "credentials": "sk_test_plain0000"}}
            ).encode(),
            "kwargs.credentials",
        ),
    ],
)
def test_a_bad_request_is_400_and_queues_nothing(
    body: bytes, field: str | None, client: TestClient, broker: Broker, deps: Deps
) -> None:
    answer = client.post("/api/v1/jobs", content=body, headers=AUTH)
    assert answer.status_code == 400, answer.text
    problem = answer.json()
    assert problem["error"] == "invalid"
    assert problem["message"]
    if field is not None:
        assert field in problem["fields"]
    assert "sk_test_plain0000" not in answer.text
    assert broker.orders == []
    with deps.db.unit_of_work() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 0


def test_a_body_over_the_limit_is_413_and_queues_nothing(
    client: TestClient, broker: Broker
) -> None:
    body = {"task": "accounts.add", "kwargs": {**ADD, "name": "x" * 70_000}}
    answer = client.post("/api/v1/jobs", json=body, headers=AUTH)
    assert answer.status_code == 413
    assert answer.json()["error"] == "too_large"
    assert broker.orders == []


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}]
)
def test_without_the_token_nothing_is_queued_or_read(
    headers: dict[str, str], client: TestClient, broker: Broker
) -> None:
    body = {"task": "accounts.check", "kwargs": {"account_id": str(uuid.uuid4())}}
    assert client.post("/api/v1/jobs", json=body, headers=headers).status_code == 401
    assert client.get("/api/v1/orgs/org-1/jobs/some-job", headers=headers).status_code == 401
    assert broker.orders == []


def test_an_ingest_without_a_token_takes_no_job(deps: Deps, broker: Broker) -> None:
    app = create_app(Settings(), deps, enqueue=lambda _ids: None, send_job=broker)
    body = {"task": "accounts.check", "kwargs": {"account_id": str(uuid.uuid4())}}
    with TestClient(app) as test_client:
        answer = test_client.post("/api/v1/jobs", json=body, headers={"Authorization": "Bearer "})
    assert answer.status_code == 401
    assert broker.orders == []


def test_an_unreachable_broker_is_503_and_stores_nothing(
    client: TestClient, broker: Broker, deps: Deps
) -> None:
    broker.down = True
    body = {"task": "accounts.check", "kwargs": {"account_id": str(uuid.uuid4())}}
    answer = client.post("/api/v1/jobs", json=body, headers=AUTH)
    assert answer.status_code == 503
    assert answer.json()["error"] == "unavailable"
    assert "6379" not in answer.text
    with deps.db.unit_of_work() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 0


# -- the org-scoped read -----------------------------------------------------------------------


def test_a_job_reads_queued_then_running_then_its_result_and_only_in_its_org(
    client: TestClient, broker: Broker, deps: Deps, stripe_sim: StripeSimulator
) -> None:
    broker.hold = True
    kwargs = _link(deps, stripe_sim)
    job_id = submit(client, "integrations.link", kwargs)["job_id"]

    assert read(client, "org-1", job_id).json() == {"status": "queued"}
    assert read(client, "org-1", job_id).status_code == 202
    assert read(client, "org-1", job_id, READER).status_code == 202
    assert read(client, "org-2", job_id).status_code == 404
    with deps.db.unit_of_work() as s:
        s.add(Job(id=job_id, name="integrations.link", org_id="org-1"))  # a worker claimed it
    assert read(client, "org-1", job_id).json() == {"status": "running"}
    assert read(client, "org-2", job_id).status_code == 404
    with deps.db.unit_of_work() as s:
        s.delete(s.get(Job, job_id))
    Broker.deliver(broker.orders[0])

    done = read(client, "org-1", job_id, READER)
    assert done.status_code == 200
    assert done.json()["status"] == "succeeded"
    other = read(client, "org-2", job_id)
    assert other.status_code == 404
    assert other.json()["error"] == "not_found"


def test_an_unknown_or_altered_job_id_is_404(client: TestClient, broker: Broker) -> None:
    broker.hold = True
    kwargs = {"org_id": "org-1", "actor": ADMIN, "account_id": str(uuid.uuid4())}
    job_id = submit(client, "accounts.remove", kwargs)["job_id"]
    base, _, mac = job_id.partition(".")
    for wrong in (
        str(uuid.uuid4()),
        base,
        f"{uuid.uuid4()}.{mac}",
        f"{base}.{mac[::-1]}",
        "x" * 400,
        f"{base}.\u00e9{mac[1:]}",
    ):
        assert read(client, "org-1", wrong).status_code == 404, wrong


def test_a_check_job_belongs_to_its_accounts_org_once_it_ran(
    client: TestClient, deps: Deps, stripe_sim: StripeSimulator
) -> None:
    job_id = submit(client, "accounts.check", _check(deps, stripe_sim))["job_id"]
    assert read(client, "org-1", job_id).json()["status"] == "succeeded"
    assert read(client, "org-2", job_id).status_code == 404


def test_reading_a_job_needs_the_actor_and_a_valid_org(client: TestClient) -> None:
    assert client.get("/api/v1/orgs/org-1/jobs/j-1", headers=AUTH).status_code == 400
    bad_role = {**AUTH, "X-Actor-Id": "u-1", "X-Actor-Role": "owner"}
    assert client.get("/api/v1/orgs/org-1/jobs/j-1", headers=bad_role).status_code == 400
    assert read(client, "org%20one", "j-1").status_code == 400


# -- JOB_CREDENTIALS: plaintext credentials arriving over Celery ---------------------------------


def test_plaintext_credentials_over_celery_are_refused_when_refuse(
    job_credentials: Callable[[str], None], deps: Deps, stripe_sim: StripeSimulator
) -> None:
    kwargs = _add(deps, stripe_sim)
    key = kwargs["credentials"]["api_key"]
    before, asked = counts(deps), stripe_sim.count("/v1/account")

    result = deliver("accounts.add", kwargs)

    assert (result["status"], result["reason"]) == ("rejected", "invalid")
    assert result["fields"] == {"credentials": PLAINTEXT_REFUSED}
    assert "POST /api/v1/jobs" in result["fields"]["credentials"]
    assert key not in json.dumps(result)
    assert counts(deps) == before
    assert stripe_sim.count("/v1/account") == asked  # refused before Stripe was asked anything


def test_a_refused_update_changes_nothing(
    job_credentials: Callable[[str], None], deps: Deps, stripe_sim: StripeSimulator
) -> None:
    account_id = stripe_account(deps, stripe_sim)
    _, other_key = stripe_sim.add_account("Other AB")
    kwargs = {"org_id": "org-1", "actor": ADMIN, "account_id": account_id, "name": "Renamed"}

    result = deliver("accounts.update", {**kwargs, "credentials": {"api_key": other_key}})

    assert (result["status"], result["reason"]) == ("rejected", "invalid")
    with deps.db.unit_of_work() as s:
        account = s.get(Account, uuid.UUID(account_id))
        assert account is not None
        assert account.name != "Renamed"
        assert deps.vault.decrypt(account.credentials)["api_key"] != other_key


def test_sealed_credentials_over_celery_are_taken_when_refuse(
    job_credentials: Callable[[str], None], deps: Deps, stripe_sim: StripeSimulator
) -> None:
    kwargs = _add(deps, stripe_sim)
    credentials = kwargs.pop("credentials")
    sealed_kwargs = {**kwargs, sealed.FIELD: sealed.seal(deps.vault, credentials)}
    assert deliver("accounts.add", sealed_kwargs)["status"] == "succeeded"


def test_plaintext_credentials_over_celery_are_taken_when_accept(
    job_credentials: Callable[[str], None], deps: Deps, stripe_sim: StripeSimulator
) -> None:
    job_credentials("accept")
    assert deliver("accounts.add", _add(deps, stripe_sim))["status"] == "succeeded"
