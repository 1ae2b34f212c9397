"""A scenario's world before the load: the processes' environment (only the suite's own
servers, simulator and test secrets), the seeded accounts, and the secrets no log may hold."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg

from bench.chaos.invariants import dsn
from bench.ingest.deliveries import SHOPIFY_SECRET, STRIPE_SECRET
from bench.ingest.seed import seed_accounts
from models import Database
from tests.fixtures.checks import CheckedStripe, insert_stripe_accounts
from worker.vault import Vault

CHECK_INTERVAL = 10  # seconds: accounts are checked often enough to see them converge


def environment(
    url: str, broker: str, key: str, token: str, sim: CheckedStripe, logs: Path
) -> dict[str, str]:
    """Every process's environment; nothing `CONNECTIONS_*` is inherited from the caller's."""
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CONNECTIONS_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    return {
        **inherited,
        "CONNECTIONS_DATABASE_URL": url,
        "CONNECTIONS_BROKER_URL": broker,
        "CONNECTIONS_RESULT_BACKEND": broker,
        "CONNECTIONS_EVENTS_REDIS_URL": broker,
        "CONNECTIONS_ENCRYPTION_KEYS": key,
        "CONNECTIONS_SERVICE_TOKEN": token,
        "CONNECTIONS_SHOPIFY_CLIENT_SECRET": SHOPIFY_SECRET,
        "CONNECTIONS_STRIPE_WEBHOOK_SECRET": STRIPE_SECRET,
        "CONNECTIONS_STRIPE_API_BASE_URL": sim.url,
        "CONNECTIONS_STRIPE_CONNECT_BASE_URL": sim.url,
        "CONNECTIONS_STRIPE_PLATFORM_KEY": sim.platform_key,
        "CONNECTIONS_CHECK_INTERVAL_SECONDS": str(CHECK_INTERVAL),
        "CONNECTIONS_LOG_FORMAT": "json",
        "CONNECTIONS_LOG_LEVEL": "INFO",
        "CONNECTIONS_VAR_DIR": str(logs / "var"),
        "PYTHONUNBUFFERED": "1",
    }


def seed(url: str, key: str, sim: CheckedStripe, checked: int) -> list[str]:
    """The ingest benchmark's 100 webhook accounts (never due for a check: the simulator does
    not know them), and `checked` Stripe accounts the simulator knows; their API keys."""
    seed_accounts(url, key)
    with psycopg.connect(dsn(url)) as conn:
        conn.execute("UPDATE accounts SET next_check_at = now() + interval '1 day'")
    if not checked:
        return []
    db = Database(url)
    made = insert_stripe_accounts(db, Vault([key]), sim, checked, org_id="org-chaos-checks")
    db.dispose()
    return [api_key for _, api_key in made]


def secrets(key: str, token: str, sim: CheckedStripe, api_keys: list[str]) -> list[tuple[str, str]]:
    """Every secret the suite configured or handed to a job, by kind."""
    return [
        ("Shopify app secret", SHOPIFY_SECRET),
        ("Stripe webhook secret", STRIPE_SECRET),
        ("encryption key", key),
        ("service token", token),
        ("Stripe platform key", sim.platform_key),
    ] + [("a Stripe API key", api_key) for api_key in api_keys]
