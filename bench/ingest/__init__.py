"""Webhook ingest under load: signed Stripe and Shopify webhooks from asyncio load generators
against (a) our ingest endpoint, (b) a no-op endpoint on the same server stack and (c) the
textbook design (verify, then `task.delay(payload)`, no inbox); then end to end through a real
worker. Run: `.venv/bin/python -m bench.ingest` (see bench/README.md)."""
