"""The naive design, for comparison only: one Celery task per account, each one synchronous httpx
call, recorded in its own transaction. Loaded into a bench worker with `-I bench.naive`."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import Any

import httpx

from connectors import CheckResult, ErrorCode, PermanentFailure, TemporaryFailure
from connectors.fortnox import FortnoxSettings
from connectors.shopify import ShopifySettings
from connectors.stripe import StripeSettings
from models import Account, utc_now
from worker.celery_app import app
from worker.runtime import get_deps
from worker.service.checks import apply_outcome
from worker.settings import get_settings

_local = threading.local()


def _client() -> httpx.Client:
    if getattr(_local, "client", None) is None:
        _local.client = httpx.Client(timeout=10.0)
    client: httpx.Client = _local.client
    return client


def _request(account: Account, credentials: dict[str, Any]) -> httpx.Response:
    settings = get_deps().connectors.settings
    stripe, shopify, fortnox = settings["stripe"], settings["shopify"], settings["fortnox"]
    assert isinstance(stripe, StripeSettings)
    assert isinstance(shopify, ShopifySettings)
    assert isinstance(fortnox, FortnoxSettings)
    if account.type == "stripe":
        return _client().get(
            f"{stripe.api_base_url}/v1/account",
            headers={"Authorization": f"Bearer {credentials['api_key']}"},
        )
    if account.type == "shopify":
        base = shopify.base_url.format(shop=account.connection["shop_domain"])
        return _client().post(
            f"{base}/admin/api/2025-10/graphql.json",
            json={"query": "{ shop { name } }"},
            headers={"X-Shopify-Access-Token": credentials["access_token"]},
        )
    return _client().get(
        f"{fortnox.api_base_url}/3/companyinformation",
        headers={"Authorization": f"Bearer {credentials['access_token']}"},
    )


@app.task(name="bench.naive_check", ignore_result=True)
def naive_check(account_id: str) -> None:
    deps = get_deps()
    with deps.db.unit_of_work() as session:
        account = session.get(Account, uuid.UUID(account_id))
        if account is None:
            return
        credentials = deps.vault.decrypt(account.credentials)
        try:
            response = _request(account, credentials)
            if response.status_code >= 500:
                outcome: Any = TemporaryFailure(ErrorCode.PROVIDER_UNAVAILABLE, "5xx")
            elif response.status_code >= 400:
                outcome = PermanentFailure(ErrorCode.CREDENTIALS_INVALID, "rejected")
            else:
                outcome = CheckResult()
        except httpx.HTTPError:
            outcome = TemporaryFailure(ErrorCode.TIMEOUT, "no answer")
        apply_outcome(session, account, outcome, "check")
        account.next_check_at = utc_now() + timedelta(seconds=get_settings().check_interval_seconds)
