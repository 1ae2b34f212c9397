"""`GET /openapi.json` against the running routes: every Starlette route and every webhook path the
ingest serves is in the document, with its methods, and the document has nothing else."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.fernet import Fernet
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from connectors import Connectors, ConnectorSettings
from connectors.registry import PROVIDERS
from models import Database
from worker.api.app import create_app
from worker.api.openapi import document
from worker.api.webhooks import Webhooks
from worker.service.deps import Deps
from worker.settings import Settings
from worker.vault import Vault

METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture
def ingest() -> Iterator[Webhooks]:
    """The ingest as `connections ingest` assembles it; nothing here touches the database."""
    connectors = Connectors(ConnectorSettings())
    deps = Deps(Database("sqlite:///:memory:"), Vault([Fernet.generate_key().decode()]), connectors)
    app = create_app(Settings(), deps, enqueue=lambda _: None)
    assert isinstance(app, Webhooks)
    yield app
    connectors.close()
    deps.db.dispose()


def served(app: Webhooks) -> set[tuple[str, str]]:
    """(path, method) of every route the ingest answers, HEAD aside (Starlette adds it to GET)."""
    routes = {(path, "post") for path in app.routes}
    routes |= {(prefix + "{account_id}", "post") for prefix in app.account_routes}
    assert isinstance(app.fallback, Starlette)
    for route in app.fallback.routes:
        assert isinstance(route, Route), route
        routes |= {(route.path, m.lower()) for m in route.methods or () if m != "HEAD"}
    return routes


def documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, m) for path, item in doc["paths"].items() for m in item if m in METHODS}


def references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if "$ref" in node:
            yield node["$ref"]
        for value in node.values():
            yield from references(value)
    elif isinstance(node, list):
        for value in node:
            yield from references(value)


def test_every_route_is_documented_and_nothing_else(ingest: Webhooks) -> None:
    assert documented(document()) == served(ingest)


def test_every_provider_that_sends_webhooks_has_its_path() -> None:
    paths = document()["paths"]
    for type_, spec in PROVIDERS.items():
        assert (f"/webhooks/{type_}" in paths) == (spec.webhooks is not None), type_
        per_account = f"/webhooks/{type_}/{{account_id}}" in paths
        assert per_account == (spec.webhooks is not None and spec.account_secret_field is not None)


def test_the_ingest_serves_the_document(ingest: Webhooks) -> None:
    with TestClient(ingest) as client:
        answer = client.get("/openapi.json")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == json.loads(json.dumps(document()))


def test_every_reference_resolves_and_every_operation_answers_json_errors() -> None:
    doc = document()
    schemas = doc["components"]["schemas"]
    refs = list(references(doc))
    assert refs
    for ref in refs:
        prefix, _, name = ref.rpartition("/")
        assert prefix == "#/components/schemas", ref
        assert name in schemas, ref
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            assert any(code.startswith("2") for code in operation["responses"]), (path, method)
            params = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert params == {seg[1:-1] for seg in path.split("/") if seg.startswith("{")}


def test_read_api_operations_name_the_token_and_the_actor() -> None:
    operations = [
        operation
        for path, item in document()["paths"].items()
        # The job intake's actor travels in the job's kwargs, as over Celery.
        if path.startswith("/api/") and path != "/api/v1/jobs"
        for operation in item.values()
    ]
    assert operations
    for operation in operations:
        assert operation["security"] == [{"serviceToken": []}]
        headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
        assert headers == {"X-Actor-Id", "X-Actor-Role"}
        assert {"401", "400"} <= set(operation["responses"])
