"""The ASGI app: ingest endpoint, internal read API, health and metrics."""
