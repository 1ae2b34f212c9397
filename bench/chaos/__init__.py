"""The chaos suite (`bash scripts/chaos [scenario...]`): real ingest, workers, beat and provider
simulators on a PostgreSQL cluster and Redis servers of its own, webhooks and jobs sent while a
fault is made, then every invariant checked; one row per scenario (docs/reliability.md)."""
