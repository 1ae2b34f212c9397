"""The servers ours is compared with, as uvicorn factories (`bench.ingest.apps:<name>`), each
run in its own processes: the no-op ceiling, the same no-op on Starlette, the textbook design,
and our endpoint without group commit."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

from bench.ingest.deliveries import SHOPIFY_SECRET, STRIPE_SECRET


def noop_app() -> Any:
    """The ceiling: the same server stack as ours (uvicorn, uvloop, httptools, a plain ASGI
    endpoint) reading the body and answering like ours, doing nothing else."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        message = {"more_body": True}
        while message.get("more_body"):
            message = await receive()
        body = b'{"status":"accepted","event_id":"%s"}' % str(uuid.uuid4()).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def starlette_noop_app() -> Any:
    """For reference: the same no-op as a Starlette route (what the issue's 15,000 to 18,000
    requests/s were measured with)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def accept(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"status": "accepted", "event_id": str(uuid.uuid4())})

    return Starlette(
        routes=[
            Route("/webhooks/shopify", accept, methods=["POST"]),
            Route("/webhooks/stripe", accept, methods=["POST"]),
        ]
    )


def textbook_app() -> Any:
    """The textbook design: verify the signature, `task.delay(payload)`, answer 200. Nothing is
    stored; if the broker loses the message, the event is gone."""
    from celery import Celery
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from connectors.events import SignatureError
    from connectors.shopify import verify_shopify
    from connectors.stripe import verify_stripe

    celery = Celery("textbook", broker=os.environ["BENCH_BROKER_URL"])
    celery.conf.update(task_serializer="json", task_default_queue="textbook")

    @celery.task(name="textbook.process_webhook")
    def process_webhook(provider: str, payload: dict[str, Any]) -> None:
        """Never run here: the benchmark measures only the endpoint."""

    async def shopify(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            verify_shopify(body, request.headers.get("x-shopify-hmac-sha256"), [SHOPIFY_SECRET])
        except SignatureError:
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        process_webhook.delay("shopify", json.loads(body))
        return JSONResponse({"status": "accepted"})

    async def stripe(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            verify_stripe(body, request.headers.get("stripe-signature"), [STRIPE_SECRET])
        except SignatureError:
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        process_webhook.delay("stripe", json.loads(body))
        return JSONResponse({"status": "accepted"})

    return Starlette(
        routes=[
            Route("/webhooks/shopify", shopify, methods=["POST"]),
            Route("/webhooks/stripe", stripe, methods=["POST"]),
        ]
    )


def unbatched_app() -> Any:
    """Our endpoint with group commit switched off: one transaction per request, 16 at once."""
    from starlette.applications import Starlette

    from worker.api import health, inbox_writer, webhooks
    from worker.api.app import broker_ping, queue_events
    from worker.runtime import get_deps
    from worker.settings import get_settings

    deps = get_deps()
    writer = inbox_writer.InboxWriter(deps.db, queue_events, max_batch=1, writers=16)
    rest = Starlette(routes=health.routes(deps, broker_ping))
    return webhooks.Webhooks(get_settings(), deps, writer, rest)
