"""The load: signed webhooks for the seeded accounts, built and signed before the clock starts,
and their bytes on the wire."""

from __future__ import annotations

import json
import random
import time
import uuid

SHOPIFY_SECRET = "bench-shopify-app-secret"
STRIPE_SECRET = "whsec_benchbenchbench0000"
ACCOUNTS = 50

Delivery = tuple[str, bytes, dict[str, str], str]  # path, body, headers, provider event id


def deliveries(count: int, tag: str) -> list[Delivery]:
    """Signed deliveries, half Stripe (Connect events routed by `account`), half Shopify, each
    with a new provider event id; signing happens here, before the clock starts."""
    from connectors.shopify import shopify_signature
    from connectors.stripe import stripe_header

    made: list[Delivery] = []
    now = int(time.time())
    for i in range(count):
        n = random.randrange(ACCOUNTS)
        if i % 2:
            event_id = f"evt_{tag}_{i}_{uuid.uuid4().hex[:8]}"
            event = {
                "id": event_id,
                "object": "event",
                "type": "invoice.paid",
                "account": f"acct_bench{n:04d}",
                "created": now,
                "data": {"object": {"id": f"in_{i}", "amount_paid": 4200, "currency": "sek"}},
            }
            body = json.dumps(event).encode()
            headers = {
                "Content-Type": "application/json",
                "Stripe-Signature": stripe_header(STRIPE_SECRET, body, now),
            }
            made.append(("/webhooks/stripe", body, headers, event_id))
        else:
            event_id = f"shop_{tag}_{i}_{uuid.uuid4().hex[:8]}"
            body = json.dumps({"id": i, "name": f"#{1000 + i}", "total_price": "42.00"}).encode()
            headers = {
                "Content-Type": "application/json",
                "X-Shopify-Hmac-Sha256": shopify_signature(SHOPIFY_SECRET, body),
                "X-Shopify-Topic": "orders/create",
                "X-Shopify-Shop-Domain": f"bench-{n:04d}.myshopify.com",
                "X-Shopify-Event-Id": event_id,
                "X-Shopify-Webhook-Id": str(uuid.uuid4()),
            }
            made.append(("/webhooks/shopify", body, headers, event_id))
    return made


def raw_request(host: str, delivery: Delivery) -> bytes:
    """The delivery as an HTTP/1.1 request, ready to write to a keep-alive connection."""
    path, body, headers, _ = delivery
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode() + b"\r\n" + body
