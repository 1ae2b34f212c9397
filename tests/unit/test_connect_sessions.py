"""Connect sessions without a database: the authorize link each provider's session is sent to
(exact host, path and query, the redirect URI on PUBLIC_BASE_URL), the rules of `return_url`,
what a session refuses, the job its callback orders, Shopify's callback signature vector, and the
sealing of credentials."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from connectors import Connectors, ConnectorSettings
from connectors.fortnox import FortnoxSettings
from connectors.hubspot import HubSpotSettings
from connectors.shopify import ShopifySettings, query_hmac, verify_callback
from connectors.stripe import StripeSettings
from models import ConnectSession
from worker.service import connect, sealed
from worker.service.connect import ConnectConfig
from worker.service.connect_callback import job_for
from worker.service.connect_state import Claims, state_key, verify
from worker.service.deps import Deps
from worker.service.outcomes import Rejected
from worker.vault import Vault

NOW = datetime(2026, 12, 1, 12, 0, 30, 123456, tzinfo=UTC)
PUBLIC = "https://connections.example.com"
ADMIN = {"user_id": "u-admin", "role": "admin"}
KEY = state_key("token")
CONFIG = ConnectConfig(
    key=KEY,
    public_base_url=PUBLIC,
    return_urls=("https://app.example.com/settings/", "http://localhost:3000"),
    ttl=timedelta(seconds=600),
)


class Rows:
    """Stands in for the database session: create only adds the new row."""

    def __init__(self) -> None:
        self.added: list[Any] = []

    def add(self, row: Any) -> None:
        self.added.append(row)


@pytest.fixture
def deps() -> Iterator[Deps]:
    settings = ConnectorSettings(
        shopify=ShopifySettings(
            base_url="https://{shop}",
            client_id="shopify-client",
            client_secret=SecretStr("shopify-secret"),
            scopes="read_products,read_orders",
        ),
        stripe=StripeSettings(
            connect_base_url="https://connect.stripe.com",
            platform_key=SecretStr("sk_test_platform000000"),
            connect_client_id="ca_client123",
        ),
        fortnox=FortnoxSettings(
            auth_base_url="https://apps.fortnox.se",
            client_id="fortnox-client",
            client_secret=SecretStr("fortnox-secret"),
            scopes="companyinformation invoice",
        ),
        hubspot=HubSpotSettings(
            auth_base_url="https://app.hubspot.com",
            client_id="hubspot-client",
            client_secret=SecretStr("hubspot-secret"),
            scopes="oauth crm.objects.contacts.read",
        ),
    )
    connectors = Connectors(settings)
    yield Deps(db=None, vault=Vault([Fernet.generate_key().decode()]), connectors=connectors)  # type: ignore[arg-type]
    connectors.close()


def create(deps: Deps, body: dict[str, Any], *, rows: Rows | None = None, **kw: Any) -> Any:
    return connect.create(
        rows or Rows(),  # type: ignore[arg-type]
        deps,
        kw.pop("config", CONFIG),
        org_id=kw.pop("org_id", "org-1"),
        actor=kw.pop("actor", ADMIN),
        body=body,
        now=NOW,
    )


def made(deps: Deps, body: dict[str, Any]) -> tuple[Any, ConnectSession, dict[str, str]]:
    rows = Rows()
    answer = create(deps, body, rows=rows)
    (row,) = rows.added
    url = urlsplit(answer["authorize_url"])
    query = dict(parse_qsl(url.query, strict_parsing=True))
    return url, row, query


def assert_state_is_the_sessions(row: ConnectSession, state: str, type_: str) -> None:
    claims = Claims(row.id, "org-1", "u-admin", "admin", type_, None, row.expires_at)
    verify(KEY, state, claims, NOW, called_type=type_)


def test_shopify_session_links_to_the_shops_authorize_page(deps: Deps) -> None:
    url, row, query = made(
        deps, {"type": "shopify", "name": "Shop", "shop_domain": "Acme.myshopify.com"}
    )
    assert (url.scheme, url.netloc, url.path) == (
        "https",
        "acme.myshopify.com",
        "/admin/oauth/authorize",
    )
    assert set(query) == {"client_id", "scope", "redirect_uri", "state"}
    assert query["client_id"] == "shopify-client"
    assert query["scope"] == "read_products,read_orders"
    assert query["redirect_uri"] == f"{PUBLIC}/connect/shopify/callback"
    assert row.shop_domain == "acme.myshopify.com"
    assert_state_is_the_sessions(row, query["state"], "shopify")


def test_stripe_session_links_to_connect_oauth(deps: Deps) -> None:
    url, row, query = made(deps, {"type": "stripe", "name": "Payments"})
    assert (url.scheme, url.netloc, url.path) == ("https", "connect.stripe.com", "/oauth/authorize")
    assert query == {
        "response_type": "code",
        "client_id": "ca_client123",
        "scope": "read_write",
        "redirect_uri": f"{PUBLIC}/connect/stripe/callback",
        "state": query["state"],
    }
    assert_state_is_the_sessions(row, query["state"], "stripe")


def test_fortnox_session_asks_for_offline_access(deps: Deps) -> None:
    url, row, query = made(deps, {"type": "fortnox", "name": "Books"})
    assert (url.scheme, url.netloc, url.path) == ("https", "apps.fortnox.se", "/oauth-v1/auth")
    assert query == {
        "client_id": "fortnox-client",
        "redirect_uri": f"{PUBLIC}/connect/fortnox/callback",
        "scope": "companyinformation invoice",
        "state": query["state"],
        "access_type": "offline",
        "response_type": "code",
    }
    assert "scope=companyinformation%20invoice" in url.query
    assert_state_is_the_sessions(row, query["state"], "fortnox")


def test_hubspot_session_asks_for_hubspot_scopes(deps: Deps) -> None:
    url, row, query = made(deps, {"type": "hubspot", "name": "CRM"})
    assert (url.scheme, url.netloc, url.path) == ("https", "app.hubspot.com", "/oauth/authorize")
    assert query == {
        "client_id": "hubspot-client",
        "scope": "oauth crm.objects.contacts.read",
        "redirect_uri": f"{PUBLIC}/connect/hubspot/callback",
        "state": query["state"],
    }
    assert_state_is_the_sessions(row, query["state"], "hubspot")


def test_a_session_answers_id_link_and_expiry_and_stores_a_pending_row(deps: Deps) -> None:
    rows = Rows()
    answer = create(deps, {"type": "fortnox", "name": "  Books  AB "}, rows=rows)
    (row,) = rows.added
    assert set(answer) == {"id", "authorize_url", "expires_at"}
    assert answer["id"] == str(row.id)
    assert row.expires_at == datetime(2026, 12, 1, 12, 10, 30, tzinfo=UTC)
    assert answer["expires_at"] == "2026-12-01T12:10:30+00:00"
    assert (row.org_id, row.actor, row.type, row.name) == ("org-1", ADMIN, "fortnox", "Books AB")
    assert (row.status, row.used_at, row.account_id, row.return_url) == (
        "pending",
        None,
        None,
        None,
    )


def refused(deps: Deps, body: Any, **kw: Any) -> Rejected:
    rows = Rows()
    with pytest.raises(Rejected) as caught:
        create(deps, body, rows=rows, **kw)
    assert rows.added == []  # a refused session stores nothing
    return caught.value


def test_a_reader_may_not_start_a_session(deps: Deps) -> None:
    reader = {"user_id": "u-r", "role": "reader"}
    assert refused(deps, {"type": "stripe", "name": "x"}, actor=reader).reason == "forbidden"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x"}, "type"),
        ({"type": "ebay", "name": "x"}, "type"),
        ({"type": ["stripe"], "name": "x"}, "type"),
        ({"type": "stripe"}, "name"),
        ({"type": "stripe", "name": "  "}, "name"),
        ({"type": "shopify", "name": "x"}, "shop_domain"),
        ({"type": "shopify", "name": "x", "shop_domain": "evil.example.com"}, "shop_domain"),
        ({"type": "stripe", "name": "x", "shop_domain": "a.myshopify.com"}, "shop_domain"),
        ({"type": "stripe", "name": "x", "account_id": "not-a-uuid"}, "account_id"),
        ({"type": "stripe", "name": "x", "credentials": {}}, "credentials"),
        ({"type": "stripe", "name": "x", "return_url": "https://evil.test/"}, "return_url"),
    ],
)
def test_bad_bodies_are_invalid_naming_the_field(deps: Deps, body: Any, field: str) -> None:
    refusal = refused(deps, body)
    assert refusal.reason == "invalid"
    assert field in refusal.extra["fields"]


def test_a_body_that_is_not_an_object_is_invalid(deps: Deps) -> None:
    assert refused(deps, ["stripe"]).reason == "invalid"


def test_without_public_base_url_no_session_can_be_made(deps: Deps) -> None:
    config = ConnectConfig(KEY, None, (), timedelta(seconds=600))
    refusal = refused(deps, {"type": "stripe", "name": "x"}, config=config)
    assert "CONNECTIONS_PUBLIC_BASE_URL" in refusal.message


def test_a_provider_whose_app_is_not_configured_is_refused(deps: Deps) -> None:
    deps.connectors.settings["hubspot"].client_id = None  # type: ignore[attr-defined]
    refusal = refused(deps, {"type": "hubspot", "name": "x"})
    assert refusal.reason == "invalid"
    assert "CONNECTIONS_HUBSPOT_CLIENT_ID" in refusal.message


@pytest.mark.parametrize(
    "url",
    [
        "https://app.example.com/settings/",
        "https://app.example.com/settings/accounts?tab=new#top",
        "http://localhost:3000",
        "http://localhost:3000/",
        "http://localhost:3000?x=1",
    ],
)
def test_return_urls_under_an_allowed_prefix_are_kept(url: str) -> None:
    assert connect.allowed_return_url(CONFIG, url) == url


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.test/",
        "https://app.example.com/other",
        "https://app.example.com/settings",  # the prefix ends in "/": this is not under it
        "http://localhost:30000/",
        "http://localhost:3000.evil.test/",
        "http://localhost:3000@evil.test/",
        "https://app.example.com/settings/\nSet-Cookie: x",
        "https://app.example.com/settings/ x",
        "https://app.example.com/settings/" + "a" * 2000,
        "",
        42,
    ],
)
def test_other_return_urls_are_invalid(url: Any) -> None:
    with pytest.raises(Rejected) as refusal:
        connect.allowed_return_url(CONFIG, url)
    assert refusal.value.extra["fields"].keys() == {"return_url"}


def test_no_return_url_is_allowed_when_none_is_configured() -> None:
    config = ConnectConfig(KEY, PUBLIC, (), timedelta(seconds=600))
    with pytest.raises(Rejected) as refusal:
        connect.allowed_return_url(config, "https://app.example.com/settings/")
    assert "no return URL is allowed" in refusal.value.extra["fields"]["return_url"]


def test_a_session_past_its_expiry_reads_expired_until_used() -> None:
    row = ConnectSession(
        id=uuid.uuid4(), type="stripe", status="pending", expires_at=NOW, used_at=None
    )
    assert connect.status_of(row, NOW - timedelta(seconds=1)) == "pending"
    assert connect.status_of(row, NOW) == "expired"
    row.used_at = NOW - timedelta(seconds=5)  # used in time, its job still running
    assert connect.status_of(row, NOW + timedelta(hours=1)) == "pending"


def test_the_callback_orders_add_as_the_sessions_actor_with_the_session_as_request_id() -> None:
    row = ConnectSession(id=uuid.uuid4(), org_id="org-1", actor=ADMIN, type="fortnox", name="B")
    name, kwargs = job_for(row, "sealed-token")
    assert name == "accounts.add"
    assert kwargs == {
        "org_id": "org-1",
        "actor": ADMIN,
        "type": "fortnox",
        "name": "B",
        "credentials_sealed": "sealed-token",
        "request_id": str(row.id),
    }


def test_a_reconnect_orders_update_of_its_account() -> None:
    account_id = uuid.uuid4()
    row = ConnectSession(
        id=uuid.uuid4(), org_id="org-1", actor=ADMIN, type="hubspot", account_id=account_id
    )
    name, kwargs = job_for(row, "sealed-token")
    assert name == "accounts.update"
    assert kwargs == {
        "org_id": "org-1",
        "actor": ADMIN,
        "account_id": str(account_id),
        "credentials_sealed": "sealed-token",
        "request_id": str(row.id),
    }


# -- Shopify's callback signature (the vector of PROVIDERS.md) --------------------------------

VECTOR = {
    "code": "a94a110d86d2452eb3e2af4cfb8a3828",
    "shop": "some-shop.myshopify.com",
    "timestamp": "1337178173",
}
VECTOR_HMAC = "2cb1a277650a659f1b11e92a4a64275b128e037f2c3390e3c8fd2d8721dac9e2"
SIGNED_AT = datetime.fromtimestamp(1337178173, UTC)


def test_shopify_callback_hmac_vector() -> None:
    assert query_hmac(VECTOR, "hush") == VECTOR_HMAC
    assert query_hmac({**VECTOR, "hmac": VECTOR_HMAC}, "hush") == VECTOR_HMAC


def test_shopify_callback_vector_verifies_fresh_and_with_the_previous_secret() -> None:
    signed = {**VECTOR, "hmac": VECTOR_HMAC}
    verify_callback(signed, ["hush"], SIGNED_AT + timedelta(seconds=30), 90)
    verify_callback(signed, ["new-secret", "hush"], SIGNED_AT, 90)


@pytest.mark.parametrize(
    ("query", "secrets", "at"),
    [
        ({**VECTOR, "hmac": VECTOR_HMAC}, ["other"], SIGNED_AT),
        ({**VECTOR, "hmac": VECTOR_HMAC, "state": "added"}, ["hush"], SIGNED_AT),
        ({**VECTOR, "shop": "other.myshopify.com", "hmac": VECTOR_HMAC}, ["hush"], SIGNED_AT),
        (VECTOR, ["hush"], SIGNED_AT),
        ({**VECTOR, "hmac": VECTOR_HMAC}, ["hush"], SIGNED_AT + timedelta(seconds=91)),
    ],
    ids=["wrong secret", "added parameter", "changed shop", "no hmac", "too old"],
)
def test_shopify_callback_refusals(query: dict[str, str], secrets: list[str], at: Any) -> None:
    from connectors import ProviderError

    with pytest.raises(ProviderError):
        verify_callback(query, secrets, at, 90)


# -- sealed credentials ------------------------------------------------------------------------


def test_sealed_credentials_open_with_the_vault_that_sealed_them() -> None:
    vault = Vault([Fernet.generate_key().decode()])
    text = sealed.seal(vault, {"code": "the-code", "redirect_uri": "https://x/cb"})
    assert isinstance(text, str)
    assert "the-code" not in text
    assert sealed.unseal(vault, text) == {"code": "the-code", "redirect_uri": "https://x/cb"}


def test_sealed_credentials_open_after_a_key_rotation() -> None:
    old = Fernet.generate_key().decode()
    text = sealed.seal(Vault([old]), {"api_key": "sk_test_abc"})
    rotated = Vault([Fernet.generate_key().decode(), old])
    assert sealed.unseal(rotated, text) == {"api_key": "sk_test_abc"}


@pytest.mark.parametrize(
    "make",
    [
        lambda v: sealed.seal(Vault([Fernet.generate_key().decode()]), {"code": "x"}),
        lambda v: v.encrypt({"access_token": "stored"}).decode(),  # an account's stored blob
        lambda v: v.encrypt({"sealed_credentials": "not an object"}).decode(),
        lambda v: sealed.seal(v, {"code": "x"})[:-4] + "AAAA",
        lambda v: "not a token",
        lambda v: "",
        lambda v: {"code": "x"},
        lambda v: None,
        lambda v: "é" * 10,
        lambda v: "A" * 100_000,
    ],
    ids=[
        "other vault",
        "stored credentials",
        "not an object",
        "altered",
        "garbage",
        "empty",
        "an object",
        "null",
        "not ascii",
        "huge",
    ],
)
def test_anything_but_this_vaults_sealed_credentials_is_invalid(make: Any) -> None:
    vault = Vault([Fernet.generate_key().decode()])
    value = make(vault)
    with pytest.raises(Rejected) as refusal:
        sealed.unseal(vault, value)
    assert refusal.value.reason == "invalid"
    assert refusal.value.extra["fields"].keys() == {"credentials_sealed"}
    assert refusal.value.message == "the sealed credentials cannot be used"
    assert "stored" not in str(refusal.value.extra)
