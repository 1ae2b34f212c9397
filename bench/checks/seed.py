"""The accounts: `count` of them, the providers in turn, a share with credentials the simulator
refuses, each as an add would leave it; then all made due at once."""

from __future__ import annotations

import json
import random
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from cryptography.fernet import Fernet
from psycopg.types.json import Jsonb

PROVIDERS = ("stripe", "shopify", "fortnox")
# What each provider's check writes into the account's metadata, so accounts start as an add
# would leave them and an unchanged answer writes nothing.
META = {
    "stripe": {
        "stripe_account_id": "acct_bench",
        "business_name": "Bench AB",
        "country": "SE",
        "default_currency": "sek",
        "charges_enabled": True,
        "payouts_enabled": True,
        "disabled_reason": None,
        "currently_due": [],
    },
    "shopify": {
        "shop_name": "Bench Shop",
        "plan": "Basic",
        "currency": "SEK",
        "myshopify_domain": "bench.myshopify.com",
    },
    "fortnox": {"company_name": "Bench AB", "organization_number": "556000-0000"},
}


def seed(url: str, key: str, count: int, bad_share: float) -> dict[str, int]:
    """`count` accounts, providers in turn, a share with rejected credentials; none due yet."""
    fernet = Fernet(key.encode())
    now = datetime.now(UTC)
    far = now + timedelta(days=30)
    kinds = {p: 0 for p in PROVIDERS}
    rng = random.Random(1)
    columns = (
        "id, org_id, name, type, status, connection, metadata, settings, credentials, "
        "credentials_version, credentials_expire_at, created_at, updated_at, next_check_at, "
        "consecutive_failures"
    )
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY accounts ({columns}) FROM STDIN") as copy:
            for n in range(count):
                provider = PROVIDERS[n % 3]
                kinds[provider] += 1
                bad = "bad" if rng.random() < bad_share else ""
                token = secrets.token_hex(12)
                expires: datetime | None = None
                if provider == "stripe":
                    creds: dict[str, Any] = {"api_key": f"sk_test_{bad}{token}"}
                    connection: dict[str, Any] = {"mode": "api_key", "key_last4": token[-4:]}
                elif provider == "shopify":
                    creds = {"access_token": f"shpat_{bad}{token}"}
                    connection = {"shop_domain": f"bench-{n}.myshopify.com", "mode": "access_token"}
                else:
                    creds = {
                        "access_token": f"eyJ{bad}{token}",
                        "refresh_token": secrets.token_hex(12),
                        "expires_at": far.isoformat(),
                    }
                    connection = {
                        "company_name": "Bench AB",
                        "organization_number": f"556{n:07d}",
                    }
                    expires = far
                copy.write_row(
                    (
                        uuid.uuid4(),
                        f"org-{n % 5000}",
                        f"{provider} {n}",
                        provider,
                        "connected",
                        Jsonb(connection),
                        Jsonb(META[provider]),
                        Jsonb({}),
                        fernet.encrypt(json.dumps(creds).encode()),
                        1,
                        expires,
                        now,
                        now,
                        None,
                        0,
                    )
                )
        conn.commit()
        cur.execute("ANALYZE accounts")
        conn.commit()
    return kinds


def make_due(url: str, where: str = "TRUE") -> datetime:
    """Make the accounts due at once; returns when they became due to the scheduler: when the
    UPDATE committed (updating every row takes seconds, and that is the bench's work)."""
    with psycopg.connect(url) as conn:
        conn.execute(f"UPDATE accounts SET next_check_at = %s WHERE {where}", (datetime.now(UTC),))
        conn.commit()
    return datetime.now(UTC)
