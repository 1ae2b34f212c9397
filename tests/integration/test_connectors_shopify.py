"""Shopify against its simulator and the real PostgreSQL: each credential form, the callback
check, every failure answer a check can get, throttling, expiring tokens refreshed in time, and
the OAuth edges (the authorize page's round trip, revoking the app's permission)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from connectors import Connectors, ConnectorSettings, ErrorCode, PermanentFailure
from connectors.base import Authorized, TemporaryFailure
from connectors.http import HttpLayer
from connectors.shopify import ShopifyConnector, ShopifyFields, ShopifySettings
from models import Account
from models.clock import set_clock, utc_now
from tests.conftest import FAST_RETRY
from tests.fixtures.connectors import (
    assert_fails_then_recovers,
    assert_slow_answers_time_out,
    stored,
)
from tests.simulators.base import Answer
from tests.simulators.shopify import ShopifySimulator, approve_link
from worker.service.deps import Deps


def with_token(deps: Deps, sim: ShopifySimulator, add_account: Any, **shop: Any) -> tuple[str, str]:
    domain = sim.add_shop(**shop)
    credentials = {"shop_domain": domain, "access_token": sim.custom_app_token(domain)}
    result = add_account(deps, "shopify", credentials)
    assert result["status"] == "succeeded", result
    return domain, str(result["account"]["id"])


def failures_for(sim: ShopifySimulator, domain: str) -> list[tuple[str, int]]:
    """The shop's failed answers (another test's late answers are not this test's)."""
    return [(path, status) for path, status in sim.failures if path.startswith(f"/{domain}/")]


@pytest.fixture
def frozen_clock() -> Iterator[list[datetime]]:
    """The service's clock, frozen at the list's single value (tests move it)."""
    now = [datetime.now(UTC)]
    set_clock(lambda: now[0])
    yield now
    set_clock(None)


# -- adding ---------------------------------------------------------------------------------
def test_add_with_a_custom_app_token(
    deps: Deps, shopify_sim: ShopifySimulator, add_account: Any
) -> None:
    domain, account_id = with_token(
        deps, shopify_sim, add_account, name="Fika Shop", plan="Shopify Plus", currency="EUR"
    )
    account, errors = stored(deps, account_id)
    assert account.status == "connected"
    assert account.connection == {"shop_domain": domain, "mode": "access_token"}
    assert account.meta == {
        "shop_name": "Fika Shop",
        "plan": "Shopify Plus",
        "currency": "EUR",
        "myshopify_domain": domain,
    }
    assert account.credentials_expire_at is None
    assert errors == []


@pytest.mark.parametrize("form", ["bare", "callback", "fields"])
def test_add_with_an_oauth_code(
    deps: Deps, shopify_sim: ShopifySimulator, add_account: Any, form: str
) -> None:
    domain = shopify_sim.add_shop("Code Shop")
    code = shopify_sim.issue_code(domain)
    credentials: dict[str, Any] = {"shop_domain": domain, "code": code}
    query = shopify_sim.callback_query(domain, code)
    if form == "callback":
        credentials["callback"] = query
    elif form == "fields":
        credentials.update({k: query[k] for k in ("hmac", "timestamp", "state", "host")})
    result = add_account(deps, "shopify", credentials)
    assert result["status"] == "succeeded", result
    account, _ = stored(deps, result["account"]["id"])
    assert account.status == "connected"
    assert account.meta["shop_name"] == "Code Shop"
    assert account.connection["mode"] == "oauth"
    secrets = deps.vault.decrypt(account.credentials)
    assert secrets["access_token"].startswith("shpat_")
    assert secrets["refresh_token"].startswith("shprt_")
    assert account.credentials_expire_at is not None
    assert timedelta(minutes=55) < account.credentials_expire_at - utc_now() <= timedelta(hours=1)


@pytest.mark.parametrize("problem", ["forged", "stale", "other_secret", "other_shop"])
def test_a_bad_callback_is_rejected_and_the_code_left_unexchanged(
    deps: Deps, shopify_sim: ShopifySimulator, add_account: Any, problem: str
) -> None:
    domain = shopify_sim.add_shop()
    code = shopify_sim.issue_code(domain)
    if problem == "forged":
        query = {**shopify_sim.callback_query(domain, code), "hmac": "0" * 64}
    elif problem == "stale":
        query = shopify_sim.callback_query(domain, code, timestamp=int(time.time()) - 120)
    elif problem == "other_secret":
        query = shopify_sim.callback_query(domain, code, secret="someone-elses-secret")
    else:
        query = shopify_sim.callback_query(shopify_sim.add_shop(), code)
    result = add_account(deps, "shopify", {"shop_domain": domain, "code": code, "callback": query})
    assert (result["status"], result["reason"]) == ("rejected", "authorization_failed")
    assert result["error_code"] == "credentials_invalid"
    assert result["step"] == "authorize"
    assert code not in str(result)
    assert shopify_sim.count(f"/{domain}/admin/oauth/access_token") == 0
    with deps.db.unit_of_work() as s:
        assert s.scalars(select(Account)).first() is None


def test_a_used_code_or_a_bad_domain_is_rejected(
    deps: Deps, shopify_sim: ShopifySimulator, add_account: Any
) -> None:
    domain = shopify_sim.add_shop()
    code = shopify_sim.issue_code(domain)
    assert add_account(deps, "shopify", {"shop_domain": domain, "code": code})["account"]
    again = add_account(deps, "shopify", {"shop_domain": domain, "code": code})
    assert (again["reason"], again["error_code"]) == ("authorization_failed", "credentials_invalid")

    bad = add_account(deps, "shopify", {"shop_domain": "shop.example.com", "access_token": "x"})
    assert (bad["status"], bad["reason"]) == ("rejected", "invalid")
    assert "credentials.shop_domain" in bad["fields"]


def test_a_wrong_custom_app_token_is_rejected_at_confirmation(
    deps: Deps, shopify_sim: ShopifySimulator, add_account: Any
) -> None:
    domain = shopify_sim.add_shop()
    token = "shpat_" + "0" * 32
    result = add_account(deps, "shopify", {"shop_domain": domain, "access_token": token})
    assert (result["status"], result["reason"]) == ("rejected", "confirmation_failed")
    assert result["error_code"] == "credentials_invalid"
    assert token not in str(result)


# -- checks ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("answer", "times", "status", "code"),
    [
        (Answer(401, {"errors": "Invalid API key"}), 1, "error", "credentials_invalid"),
        (Answer(402, {"errors": "Unavailable Shop"}), 1, "error", "account_frozen"),
        (Answer(403, {"errors": "Forbidden"}), 1, "error", "permission_missing"),
        (Answer(423, {"errors": "Locked"}), 1, "error", "account_locked"),
        (
            Answer(429, {"errors": "Throttled"}, {"Retry-After": "0.01"}),
            3,
            "degraded",
            "rate_limited",
        ),
        (Answer(500, {"errors": "Internal"}), 3, "degraded", "provider_unavailable"),
        (Answer(503), 3, "degraded", "provider_unavailable"),
    ],
)
def test_check_failures_set_status_and_error(
    deps: Deps,
    shopify_sim: ShopifySimulator,
    add_account: Any,
    check_account: Any,
    answer: Answer,
    times: int,
    status: str,
    code: str,
) -> None:
    _, account_id = with_token(deps, shopify_sim, add_account)
    shopify_sim.script.push(answer, times)
    assert_fails_then_recovers(deps, check_account, account_id, status, code)


def test_a_429_within_the_retries_passes(
    deps: Deps, shopify_sim: ShopifySimulator, add_account: Any, check_account: Any
) -> None:
    _, account_id = with_token(deps, shopify_sim, add_account)
    shopify_sim.script.push(Answer(429, {"errors": "Throttled"}, {"Retry-After": "0.05"}))
    started = time.monotonic()
    assert check_account(deps, account_id)["passed"] is True
    assert time.monotonic() - started >= 0.05  # Retry-After was waited for
    assert stored(deps, account_id)[0].status == "connected"


@pytest.mark.parametrize(
    ("state", "status", "code"),
    [
        ("frozen", "error", "account_frozen"),
        ("locked", "error", "account_locked"),
        ("uninstalled", "error", "credentials_invalid"),
    ],
)
def test_shop_states_seen_by_a_check(
    deps: Deps,
    shopify_sim: ShopifySimulator,
    add_account: Any,
    check_account: Any,
    state: str,
    status: str,
    code: str,
) -> None:
    domain, account_id = with_token(deps, shopify_sim, add_account)
    if state == "uninstalled":
        shopify_sim.uninstall(domain)
    else:
        shopify_sim.set_state(domain, state)
    assert check_account(deps, account_id)["error_code"] == code
    assert stored(deps, account_id)[0].status == status


def test_a_slow_shopify_is_a_timeout(
    deps: Deps,
    shopify_sim: ShopifySimulator,
    add_account: Any,
    check_account: Any,
    connector_settings: ConnectorSettings,
) -> None:
    _, account_id = with_token(deps, shopify_sim, add_account)
    assert_slow_answers_time_out(deps, connector_settings, shopify_sim, check_account, account_id)


# -- throttling -----------------------------------------------------------------------------
def test_graphql_throttling_is_waited_out(
    db: Any,
    vault: Any,
    shopify_sim: ShopifySimulator,
    add_account: Any,
    check_account: Any,
    connector_settings: ConnectorSettings,
) -> None:
    # A slow restore (0.5 s a point), so the bucket is still empty when the check arrives, and
    # a reserve of one point, so the pause after the answer is as short.
    shopify = connector_settings["shopify"].model_copy(update={"graphql_reserve_points": 1.0})
    settings = ConnectorSettings({**connector_settings, "shopify": shopify})
    connectors = Connectors(settings, HttpLayer(timeout=2.0, retry=FAST_RETRY))
    deps = Deps(db, vault, connectors)
    try:
        domain, account_id = with_token(deps, shopify_sim, add_account)
        shopify_sim.graphql_restore_rate = 2.0
        shopify_sim.drain_graphql(domain, 0)
        assert check_account(deps, account_id)["passed"] is True
    finally:
        connectors.close()
    # One THROTTLED answer (status 200), waited out, then success.
    assert failures_for(shopify_sim, domain) == [(f"/{domain}/admin/api/2025-10/graphql.json", 200)]


def test_few_graphql_points_left_pause_the_shop(
    deps: Deps, shopify_sim: ShopifySimulator, add_account: Any, check_account: Any
) -> None:
    domain, account_id = with_token(deps, shopify_sim, add_account)
    other, _ = with_token(deps, shopify_sim, add_account)
    shopify_sim.graphql_restore_rate = 10.0
    shopify_sim.drain_graphql(domain, 20)
    assert check_account(deps, account_id)["passed"] is True
    limiter = deps.connectors.http.limiters["shopify"]
    # About 19 points left of the 50 kept in reserve, restoring 10 a second: about 3.1 s,
    # less what restored between the drain and the check.
    assert 2.5 < limiter.paused_for(domain) <= 3.1
    assert limiter.paused_for(other) == 0.0


def test_a_nearly_full_rest_bucket_pauses_the_shop(
    deps: Deps,
    shopify_sim: ShopifySimulator,
    add_account: Any,
    connector_settings: ConnectorSettings,
) -> None:
    domain, _ = with_token(deps, shopify_sim, add_account)
    token = shopify_sim.custom_app_token(domain)
    settings = connector_settings["shopify"].model_copy(update={"health_check": "rest"})
    http = HttpLayer(timeout=2.0, retry=FAST_RETRY)
    rest = ShopifyConnector(settings, http)
    runner = Connectors(connector_settings, http)
    try:
        shopify_sim.fill_rest_bucket(domain, 38)
        result = runner.run(rest.check({"access_token": token}, {"shop_domain": domain}))
        assert result.metadata["myshopify_domain"] == domain
        # The answer says 38/40: 2 calls left of the 4 kept in reserve; 3 must leak, 2 a second.
        assert 1.4 < rest.limiter.paused_for(domain) <= 1.5
    finally:
        runner.close()
    assert failures_for(shopify_sim, domain) == []


# -- expiring tokens ------------------------------------------------------------------------
def oauth_account(
    deps: Deps, sim: ShopifySimulator, add_account: Any
) -> tuple[str, str, dict[str, Any]]:
    domain = sim.add_shop()
    result = add_account(deps, "shopify", {"shop_domain": domain, "code": sim.issue_code(domain)})
    assert result["status"] == "succeeded", result
    account, _ = stored(deps, result["account"]["id"])
    return domain, str(result["account"]["id"]), deps.vault.decrypt(account.credentials)


def test_an_expiring_token_is_refreshed_before_it_expires(
    db: Any,
    vault: Any,
    shopify_sim: ShopifySimulator,
    add_account: Any,
    check_account: Any,
    connector_settings: ConnectorSettings,
    frozen_clock: list[datetime],
) -> None:
    connectors = Connectors(
        connector_settings, HttpLayer(timeout=2.0, retry=FAST_RETRY), clock=utc_now
    )
    deps = Deps(db, vault, connectors)
    try:
        domain, account_id, first = oauth_account(deps, shopify_sim, add_account)
        start = frozen_clock[0]

        # 57 minutes on: three minutes left, inside the refresh margin.
        frozen_clock[0] = start + timedelta(minutes=57)
        shopify_sim.advance(57 * 60)
        assert check_account(deps, account_id)["passed"] is True
        assert shopify_sim.refresh_calls == 1
        second = deps.vault.decrypt(stored(deps, account_id)[0].credentials)
        assert second["access_token"] != first["access_token"]
        assert second["refresh_token"] != first["refresh_token"]
        assert shopify_sim.access_tokens_used[-1] == second["access_token"]

        # 62 minutes on: the first token is dead at Shopify; the refreshed one is used.
        frozen_clock[0] = start + timedelta(minutes=62)
        shopify_sim.advance(5 * 60)
        assert check_account(deps, account_id)["passed"] is True
        assert shopify_sim.refresh_calls == 1
        assert shopify_sim.access_tokens_used[-1] == second["access_token"]
        dead = httpx.post(
            f"{shopify_sim.url}/{domain}/admin/api/2025-10/graphql.json",
            json={"query": "{ shop { name } }"},
            headers={"X-Shopify-Access-Token": first["access_token"]},
        )
        assert dead.status_code == 401  # without the refresh, this check would have failed

        # Not one failed call on the way but our probe: the refresh came before the expiry.
        assert failures_for(shopify_sim, domain) == [
            (f"/{domain}/admin/api/2025-10/graphql.json", 401)
        ]
        account, errors = stored(deps, account_id)
        assert account.status == "connected"
        assert errors == []
        assert account.credentials_expire_at == start + timedelta(minutes=117)
    finally:
        connectors.close()


def test_a_refused_refresh_leaves_the_account_in_error(
    db: Any,
    vault: Any,
    shopify_sim: ShopifySimulator,
    add_account: Any,
    check_account: Any,
    connector_settings: ConnectorSettings,
    frozen_clock: list[datetime],
) -> None:
    connectors = Connectors(
        connector_settings, HttpLayer(timeout=2.0, retry=FAST_RETRY), clock=utc_now
    )
    deps = Deps(db, vault, connectors)
    try:
        domain, account_id, _ = oauth_account(deps, shopify_sim, add_account)
        shopify_sim.uninstall(domain)  # revokes the refresh token too
        frozen_clock[0] += timedelta(minutes=58)
        result = check_account(deps, account_id)
        assert result["error_code"] == "refresh_failed"
        assert shopify_sim.refresh_calls == 1
        account, errors = stored(deps, account_id)
        assert account.status == "error"
        assert [e.code for e in errors] == ["refresh_failed"]
    finally:
        connectors.close()


# -- the OAuth edges: authorize page, revoke ------------------------------------------------
CALLBACK = "https://connect.example.com/connect/shopify/callback"


@pytest.fixture
def direct(shopify_sim: ShopifySimulator) -> Iterator[tuple[ShopifyConnector, asyncio.Runner]]:
    """A Shopify connector on the simulator, with the loop its calls run in."""
    settings = ShopifySettings(
        base_url=shopify_sim.url + "/{shop}",
        client_id=shopify_sim.client_id,
        client_secret=SecretStr(shopify_sim.client_secret),
        scopes="read_products,write_orders",
    )
    http = HttpLayer(timeout=2.0, retry=FAST_RETRY)
    with asyncio.Runner() as runner:
        yield ShopifyConnector(settings, http), runner
        runner.run(http.aclose())


def installed(
    sim: ShopifySimulator, shopify: ShopifyConnector, runner: asyncio.Runner
) -> Authorized:
    domain = sim.add_shop("Linked Shop")
    fields = ShopifyFields(shop_domain=domain, code=SecretStr(sim.issue_code(domain)))
    return runner.run(shopify.authorize(fields))


def test_the_authorize_page_sends_the_merchant_back_with_a_code_we_can_use(
    shopify_sim: ShopifySimulator, direct: tuple[ShopifyConnector, asyncio.Runner]
) -> None:
    shopify, runner = direct
    domain = shopify_sim.add_shop("Linked Shop")
    url = shopify.authorize_url(state="st-42", redirect_uri=CALLBACK, shop_domain=domain)
    page = httpx.get(url)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert shopify_sim.authorize_requests == [
        {
            "client_id": shopify_sim.client_id,
            "scope": "read_products,write_orders",
            "redirect_uri": CALLBACK,
            "state": "st-42",
        }
    ]
    link = urlsplit(approve_link(page.text))
    assert f"{link.scheme}://{link.netloc}{link.path}" == CALLBACK
    query = dict(parse_qsl(link.query))
    assert (query["shop"], query["state"]) == (domain, "st-42")

    # The callback as the ingest hands it on: verified, exchanged, and the shop reachable.
    fields = ShopifyFields(shop_domain=domain, code=SecretStr(query["code"]), callback=query)
    authorized = runner.run(shopify.authorize(fields))
    assert authorized.connection == {
        "shop_domain": domain,
        "mode": "oauth",
        "scope": "read_products,write_orders",
    }
    assert shopify.identity(authorized.connection, {}) == domain
    assert shopify.can_refresh(authorized.credentials)
    checked = runner.run(shopify.check(authorized.credentials, authorized.connection))
    assert checked.metadata["shop_name"] == "Linked Shop"


def test_the_authorize_page_refuses_another_app_or_an_unknown_shop(
    shopify_sim: ShopifySimulator, direct: tuple[ShopifyConnector, asyncio.Runner]
) -> None:
    shopify, _ = direct
    domain = shopify_sim.add_shop()
    other_app = shopify.settings.model_copy(update={"client_id": "not-our-app"})
    url = ShopifyConnector(other_app, shopify.http).authorize_url(
        state="s", redirect_uri=CALLBACK, shop_domain=domain
    )
    assert httpx.get(url).status_code == 400
    unknown = shopify.authorize_url(
        state="s", redirect_uri=CALLBACK, shop_domain="no-such-shop.myshopify.com"
    )
    assert httpx.get(unknown).status_code == 404
    assert shopify_sim.authorize_requests == []


def test_revoke_uninstalls_the_app_and_every_token_dies(
    shopify_sim: ShopifySimulator, direct: tuple[ShopifyConnector, asyncio.Runner]
) -> None:
    shopify, runner = direct
    authorized = installed(shopify_sim, shopify, runner)
    credentials, connection = authorized.credentials, authorized.connection
    domain = connection["shop_domain"]

    assert runner.run(shopify.revoke(credentials, connection)) is True
    assert shopify_sim.revoked == [domain]
    assert shopify_sim.access_tokens_used == [credentials["access_token"]]
    with pytest.raises(PermanentFailure) as checked:
        runner.run(shopify.check(credentials, connection))
    assert checked.value.code is ErrorCode.CREDENTIALS_INVALID
    with pytest.raises(PermanentFailure) as refreshed:
        runner.run(shopify.refresh(credentials, connection))
    assert refreshed.value.code is ErrorCode.REFRESH_FAILED
    # Revoked already: Shopify answers 401, which means there is nothing left to revoke.
    assert runner.run(shopify.revoke(credentials, connection)) is True
    assert shopify_sim.revoked == [domain]


def test_a_custom_apps_token_is_not_revoked(
    shopify_sim: ShopifySimulator, direct: tuple[ShopifyConnector, asyncio.Runner]
) -> None:
    shopify, runner = direct
    domain = shopify_sim.add_shop()
    credentials = {"access_token": shopify_sim.custom_app_token(domain)}
    connection = {"shop_domain": domain, "mode": "access_token"}
    assert runner.run(shopify.revoke(credentials, connection)) is False
    assert shopify_sim.count(f"/{domain}/admin/api_permissions/current.json") == 0
    assert runner.run(shopify.check(credentials, connection)).metadata["myshopify_domain"] == domain


def test_a_failing_revoke_is_temporary_and_leaves_the_app_installed(
    shopify_sim: ShopifySimulator, direct: tuple[ShopifyConnector, asyncio.Runner]
) -> None:
    shopify, runner = direct
    authorized = installed(shopify_sim, shopify, runner)
    permission = f"/{authorized.connection['shop_domain']}/admin/api_permissions/current.json"
    shopify_sim.script.push(Answer(503, path=permission), times=3)  # every try of FAST_RETRY
    with pytest.raises(TemporaryFailure) as info:
        runner.run(shopify.revoke(authorized.credentials, authorized.connection))
    assert info.value.code is ErrorCode.PROVIDER_UNAVAILABLE
    assert shopify_sim.revoked == []
    runner.run(shopify.check(authorized.credentials, authorized.connection))
