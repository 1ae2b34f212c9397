"""The accounts the deliveries are for: a Stripe Connect account and a Shopify shop for each of
`ACCOUNTS`, so every webhook routes to a connected account."""

from __future__ import annotations

from bench.ingest.deliveries import ACCOUNTS


def seed_accounts(url: str, key: str) -> None:
    from models import Account, Database, utc_now
    from worker.vault import Vault

    vault = Vault([key])
    db = Database(url)
    now = utc_now()
    with db.unit_of_work() as session:
        for n in range(ACCOUNTS):
            for type_, connection in (
                ("stripe", {"mode": "connect", "stripe_account_id": f"acct_bench{n:04d}"}),
                (
                    "shopify",
                    {"mode": "access_token", "shop_domain": f"bench-{n:04d}.myshopify.com"},
                ),
            ):
                session.add(
                    Account(
                        org_id=f"org-bench-{n % 10}",
                        name=f"{type_} {n}",
                        type=type_,
                        status="connected",
                        connection=connection,
                        meta={},
                        settings={},
                        credentials=vault.encrypt({}),
                        created_at=now,
                        updated_at=now,
                    )
                )
    db.dispose()
