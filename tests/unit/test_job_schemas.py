"""The JSON Schemas of docs/schemas/ held to the code: one per task of the job table, naming exactly
the task's arguments, with the limits the services enforce; the result's; and every example in
docs/jobs.md valid against them (the Celery envelope's body included)."""

from __future__ import annotations

import base64
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from connectors import Connectors, ConnectorSettings
from connectors.registry import PROVIDERS
from models import AccountStatus
from worker.api.jobs import REQUEST_ID_MAX
from worker.api.shapes import JobResult
from worker.service import inputs, sealed
from worker.service.outcomes import Reason, Role
from worker.tasks.table import JOBS, REQUEST_ID

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "docs" / "schemas"
GUIDE = ROOT / "docs" / "jobs.md"
EXAMPLE = re.compile(r"<!-- example: ([^>]+?) -->\s*```json\n(.*?)```", re.S)
ACCOUNT = "3f0c2a8e-6b0e-4c57-9a1d-2b7e5f9c1d10"


@cache
def schema(name: str) -> dict[str, Any]:
    loaded = json.loads((SCHEMAS / f"{name}.json").read_text())
    assert isinstance(loaded, dict)
    return loaded


def kwargs_schema(task: str) -> dict[str, Any]:
    return schema(f"{task}.kwargs")


def valid(name: str, instance: Any) -> list[str]:
    """What is wrong with `instance` under the schema `name` (empty: valid)."""
    return [
        error.message for error in jsonschema_rs.validator_for(schema(name)).iter_errors(instance)
    ]


def examples() -> list[tuple[str, Any]]:
    return [(label, json.loads(text)) for label, text in EXAMPLE.findall(GUIDE.read_text())]


def test_there_is_one_kwargs_schema_per_task_and_a_result_schema() -> None:
    names = {path.name for path in SCHEMAS.glob("*.json")}
    assert names == {f"{task}.kwargs.json" for task in JOBS} | {"result.json"}


@pytest.mark.parametrize("name", [*(f"{t}.kwargs" for t in sorted(JOBS)), "result"])
def test_each_schema_is_a_valid_schema_and_its_examples_are_valid(name: str) -> None:
    jsonschema_rs.meta.validate(schema(name))
    assert schema(name)["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema(name)["examples"]
    for example in schema(name)["examples"]:
        assert valid(name, example) == [], example


@pytest.mark.parametrize("task", sorted(JOBS))
def test_a_kwargs_schema_names_exactly_the_arguments_of_its_task(task: str) -> None:
    found = kwargs_schema(task)
    assert set(found["properties"]) == {*JOBS[task].arguments, REQUEST_ID}
    assert found["additionalProperties"] is False
    assert set(found["required"]) <= set(JOBS[task].arguments)


@pytest.mark.parametrize("task", sorted(JOBS))
def test_a_kwargs_schema_refuses_an_unknown_argument_and_a_missing_required_one(task: str) -> None:
    name = f"{task}.kwargs"
    [example, *_] = kwargs_schema(task)["examples"]
    assert valid(name, {**example, "colour": "blue"})
    for required in kwargs_schema(task)["required"]:
        assert valid(name, {k: v for k, v in example.items() if k != required}), required


@pytest.mark.parametrize("task", sorted(JOBS))
def test_the_limits_are_the_ones_the_services_enforce(task: str) -> None:
    properties = kwargs_schema(task)["properties"]
    assert properties[REQUEST_ID]["maxLength"] == REQUEST_ID_MAX
    if "org_id" in properties:
        assert properties["org_id"]["pattern"] == inputs.ORG_ID.pattern
    if "integration_id" in properties:
        assert properties["integration_id"]["pattern"] == inputs.EXTERNAL_ID.pattern
    if "actor" in properties:
        actor = properties["actor"]
        assert actor["properties"]["role"]["enum"] == [r.value for r in Role]
        assert actor["properties"]["user_id"]["maxLength"] == 200
    if "name" in properties:
        assert properties["name"]["maxLength"] == inputs.NAME_MAX
    if "settings" in properties:
        assert properties["settings"]["maxProperties"] == inputs.SETTINGS_MAX_KEYS
    if "type" in properties:
        assert properties["type"]["enum"] == sorted(PROVIDERS)
    if sealed.FIELD in properties:
        assert properties[sealed.FIELD]["maxLength"] == sealed.MAX_LENGTH


@pytest.mark.parametrize("task", [t for t in sorted(JOBS) if "credentials" in JOBS[t].arguments])
def test_credentials_are_each_providers_own_fields(task: str) -> None:
    defs = kwargs_schema(task)["$defs"]
    connectors = Connectors(ConnectorSettings())
    try:
        models = {t: c.credentials_model for t, c in connectors.by_type.items()}
    finally:
        connectors.close()
    assert set(defs) == {f"{t}_credentials" for t in PROVIDERS}
    for type_, model in models.items():
        assert set(defs[f"{type_}_credentials"]["properties"]) == set(model.model_fields), type_
        assert defs[f"{type_}_credentials"]["additionalProperties"] is False


def test_credentials_come_once_plain_or_sealed() -> None:
    [add] = kwargs_schema("accounts.add")["examples"]
    neither = {k: v for k, v in add.items() if k != "credentials"}
    assert valid("accounts.add.kwargs", neither)
    assert valid("accounts.add.kwargs", {**add, "credentials_sealed": "gAAAAA"})
    assert valid("accounts.add.kwargs", {**neither, "credentials_sealed": "gAAAAA"}) == []
    update = {"org_id": "org-1", "actor": add["actor"], "account_id": ACCOUNT}
    both = {**update, "credentials": {"api_key": "sk_test_1"}, "credentials_sealed": "gAAAAA"}
    assert valid("accounts.update.kwargs", both)


def test_the_result_schema_is_the_contracts_result() -> None:
    result = schema("result")
    assert set(result["required"]) == set(JobResult.model_fields)
    assert result["properties"]["status"]["enum"] == ["succeeded", "rejected", "failed"]
    assert result["properties"]["reason"]["enum"] == [None, *(r.value for r in Reason)]
    account = result["$defs"]["account"]
    assert account["properties"]["status"]["enum"] == [*(s.value for s in AccountStatus), "removed"]
    assert account["properties"]["type"]["enum"] == sorted(PROVIDERS)
    assert valid("result", {"job_id": "j-1", "status": "succeeded"})


def test_the_guide_has_an_example_of_every_tasks_kwargs() -> None:
    labels = [label for label, _ in examples()]
    assert {f"kwargs {task}" for task in JOBS} <= set(labels)
    assert {"intake", "envelope", "body", "result", "result-meta"} <= set(labels)


@pytest.mark.parametrize(("label", "example"), examples(), ids=lambda v: str(v)[:30])
def test_every_example_in_the_guide_is_valid(label: str, example: Any) -> None:
    kind, _, task = label.partition(" ")
    if kind == "kwargs":
        assert valid(f"{task}.kwargs", example) == []
    elif kind == "intake":
        assert set(example) <= {"task", "kwargs", "request_id"}
        assert valid(f"{example['task']}.kwargs", example["kwargs"]) == []
    elif kind in ("envelope", "body"):
        envelope, body = (dict(examples())[k] for k in ("envelope", "body"))
        assert json.loads(base64.b64decode(envelope["body"])) == body
        assert envelope["properties"]["body_encoding"] == "base64"
        assert envelope["content-type"] == "application/json"
        args, kwargs, _embed = body
        assert args == []
        assert valid(f"{envelope['headers']['task']}.kwargs", kwargs) == []
    elif kind == "result":
        assert valid("result", example) == []
    elif kind == "result-meta":
        assert example["status"] == "SUCCESS"
        assert example["task_id"] == example["result"]["job_id"]
        assert valid("result", example["result"]) == []
    else:
        raise AssertionError(f"an example of no known kind: {label}")
