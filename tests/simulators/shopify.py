"""Shopify simulator: per-shop OAuth (the authorize page, codes, expiring offline tokens, rotating
refresh tokens), the GraphQL shop query with its cost bucket, `shop.json` with the REST call-limit
header, shop states (frozen 402, locked 423, missing scope 403), and uninstall (by the merchant or
by the app deleting its permission), which revokes every token.

Shops live under the path `/{shop}`, so the connector's base URL is `{sim.url}/{shop}`.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from tests.simulators.base import Simulator, oauth_error

INVALID_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"
APPROVE_LINK = re.compile(r'<a id="approve" href="([^"]*)"')


def approve_link(page: str) -> str:
    """The callback URL the authorize page's "Install app" link leads to."""
    found = APPROVE_LINK.search(page)
    if found is None:
        raise AssertionError("the page has no approve link")
    return html.unescape(found.group(1))


def install_page(shop: str, link: str) -> str:
    return (
        "<!doctype html><title>Install app</title>"
        f"<p>Install the app on {html.escape(shop)}?</p>"
        f'<a id="approve" href="{html.escape(link)}">Install app</a>'
    )


@dataclass
class Shop:
    domain: str
    name: str
    plan: str = "Basic"
    currency: str = "SEK"
    state: str = "active"  # active | frozen | locked
    scopes: set[str] = field(default_factory=lambda: {"read_products", "read_orders"})
    graphql_available: float = 2000.0
    graphql_updated: float = 0.0
    rest_used: float = 0.0
    rest_updated: float = 0.0


@dataclass
class Token:
    shop: str
    expires_at: float | None  # simulator time; None: never expires


class ShopifySimulator(Simulator):
    def __init__(
        self, client_id: str = "sim-shopify-client", client_secret: str = "sim-shopify-secret"
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.shops: dict[str, Shop] = {}
        self.codes: dict[str, str] = {}
        self.tokens: dict[str, Token] = {}
        self.refresh_tokens: dict[str, Token] = {}
        self._lock = threading.Lock()
        super().__init__()
        self.reset()

    def reset(self) -> None:
        """Back to defaults between tests (shops and tokens stay: tests use fresh shops)."""
        super().reset()
        with self._lock:
            self.offset = 0.0
            self.token_lifetime = 3600.0
            self.refresh_token_lifetime = 90 * 24 * 3600.0
            self.graphql_bucket = 2000.0
            self.graphql_restore_rate = 100.0
            self.rest_bucket = 40
            self.rest_leak_rate = 2.0
            self.refresh_calls = 0
            self.failures: list[tuple[str, int]] = []
            self.access_tokens_used: list[str] = []
            self.authorize_requests: list[dict[str, str]] = []
            self.revoked: list[str] = []  # shops whose app permission was deleted

    # -- test controls ---------------------------------------------------------------------
    def now(self) -> float:
        """Simulator time: real time shifted by `advance`, so tests need not wait an hour."""
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def add_shop(self, name: str = "Acme Shop", **kwargs: Any) -> str:
        domain = f"sim-{secrets.token_hex(5)}.myshopify.com"
        with self._lock:
            self.shops[domain] = Shop(domain=domain, name=name, **kwargs)
        return domain

    def custom_app_token(self, shop: str) -> str:
        """A custom app's non-expiring Admin API access token."""
        token = "shpat_" + secrets.token_hex(16)
        with self._lock:
            self.tokens[token] = Token(shop, None)
        return token

    def issue_code(self, shop: str) -> str:
        code = secrets.token_hex(16)
        with self._lock:
            self.codes[code] = shop
        return code

    def callback_query(
        self,
        shop: str,
        code: str,
        *,
        timestamp: int | None = None,
        secret: str | None = None,
        state: str | None = None,
    ) -> dict[str, str]:
        """The query string Shopify redirects the merchant back with, signed with the secret."""
        query = {
            "code": code,
            "shop": shop,
            "state": secrets.token_hex(8) if state is None else state,
            "host": "YWRtaW4uc2hvcGlmeS5jb20vc3RvcmUvc2lt",
            "timestamp": str(int(time.time()) if timestamp is None else timestamp),
        }
        message = "&".join(f"{k}={v}" for k, v in sorted(query.items()))
        key = (secret or self.client_secret).encode()
        query["hmac"] = hmac.new(key, message.encode(), hashlib.sha256).hexdigest()
        return query

    def set_state(self, shop: str, state: str) -> None:
        with self._lock:
            self.shops[shop].state = state

    def remove_scope(self, shop: str, scope: str) -> None:
        with self._lock:
            self.shops[shop].scopes.discard(scope)

    def uninstall(self, shop: str) -> None:
        """The merchant uninstalled the app: every token of the shop dies at once."""
        with self._lock:
            for store in (self.tokens, self.refresh_tokens):
                for token in [t for t, v in store.items() if v.shop == shop]:
                    del store[token]

    def drain_graphql(self, shop: str, available: float) -> None:
        with self._lock:
            self.shops[shop].graphql_available = available
            self.shops[shop].graphql_updated = self.now()

    def fill_rest_bucket(self, shop: str, used: float) -> None:
        with self._lock:
            self.shops[shop].rest_used = used
            self.shops[shop].rest_updated = self.now()

    # -- protocol ---------------------------------------------------------------------------
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/{shop}/admin/oauth/authorize", self._authorize, methods=["GET"]),
                Route("/{shop}/admin/oauth/access_token", self._token, methods=["POST"]),
                Route(
                    "/{shop}/admin/api_permissions/current.json",
                    self._delete_permission,
                    methods=["DELETE"],
                ),
                Route("/{shop}/admin/api/{version}/graphql.json", self._graphql, methods=["POST"]),
                Route("/{shop}/admin/api/{version}/shop.json", self._shop_json, methods=["GET"]),
            ]
        )

    async def _answer(self, request: Request) -> Response | None:
        self.record(request)
        return await self.script.intercept(request)

    def _fail(self, request: Request, response: Response) -> Response:
        with self._lock:
            self.failures.append((request.url.path, response.status_code))
        return response

    async def _authorize(self, request: Request) -> Response:
        """The merchant's install page: it grants the scopes asked for and links back to
        `redirect_uri` with a fresh code, signed as Shopify signs its callbacks."""
        scripted = await self._answer(request)
        if scripted is not None:
            return self._fail(request, scripted)
        shop = request.path_params["shop"]
        params = dict(request.query_params)
        redirect_uri = params.get("redirect_uri", "")
        problem = None
        if shop not in self.shops:
            problem = (404, "There is no store at this address")
        elif params.get("client_id") != self.client_id:
            problem = (400, "Oauth error invalid_request: The client_id is not valid")
        elif not redirect_uri.startswith(("http://", "https://")):
            problem = (400, "Oauth error invalid_request: The redirect_uri is missing")
        if problem is not None:
            status, text = problem
            return self._fail(request, HTMLResponse(f"<p>{html.escape(text)}</p>", status))
        scopes = {s.strip() for s in params.get("scope", "").split(",") if s.strip()}
        with self._lock:
            self.authorize_requests.append(params)
            if scopes:
                self.shops[shop].scopes = scopes
        query = self.callback_query(shop, self.issue_code(shop), state=params.get("state", ""))
        separator = "&" if "?" in redirect_uri else "?"
        return HTMLResponse(install_page(shop, redirect_uri + separator + urlencode(query)))

    async def _delete_permission(self, request: Request) -> Response:
        """The app deletes its own permission: it is uninstalled and every token dies."""
        refused = await self._admin_refusal(request)
        if refused is not None:
            return refused
        shop = request.path_params["shop"]
        self.uninstall(shop)
        with self._lock:
            self.revoked.append(shop)
        return JSONResponse({})

    async def _token(self, request: Request) -> Response:
        scripted = await self._answer(request)
        if scripted is not None:
            return self._fail(request, scripted)
        shop = request.path_params["shop"]
        if request.headers.get("content-type", "").startswith("application/json"):
            body = await request.json()
        else:
            body = dict(parse_qsl((await request.body()).decode()))
        if body.get("client_id") != self.client_id or not hmac.compare_digest(
            str(body.get("client_secret", "")), self.client_secret
        ):
            return self._fail(request, oauth_error(400, "invalid_client", "Invalid client"))
        if body.get("grant_type") == "refresh_token":
            return self._refresh(request, shop, str(body.get("refresh_token", "")))
        with self._lock:
            owner = self.codes.pop(str(body.get("code", "")), None)
        if owner != shop:
            return self._fail(
                request,
                oauth_error(
                    400,
                    "invalid_request",
                    "The authorization code was not found or was already used",
                ),
            )
        if str(body.get("expiring", "0")) != "1":
            token = "shpua_" + secrets.token_hex(16)
            with self._lock:
                self.tokens[token] = Token(shop, None)
            return JSONResponse({"access_token": token, "scope": self._scope(shop)})
        return JSONResponse(self._expiring_pair(shop))

    def _refresh(self, request: Request, shop: str, refresh_token: str) -> Response:
        with self._lock:
            self.refresh_calls += 1
            # Rotating: the refresh token is spent by its first use.
            held = self.refresh_tokens.pop(refresh_token, None)
        if held is None or held.shop != shop:
            return self._fail(
                request, oauth_error(400, "invalid_grant", "Refresh token is invalid or revoked")
            )
        if held.expires_at is not None and held.expires_at <= self.now():
            return self._fail(request, oauth_error(400, "invalid_grant", "Refresh token expired"))
        return JSONResponse(self._expiring_pair(shop))

    def _expiring_pair(self, shop: str) -> dict[str, Any]:
        token = "shpat_" + secrets.token_hex(16)
        refresh = "shprt_" + secrets.token_hex(16)
        now = self.now()
        with self._lock:
            self.tokens[token] = Token(shop, now + self.token_lifetime)
            self.refresh_tokens[refresh] = Token(shop, now + self.refresh_token_lifetime)
        return {
            "access_token": token,
            "scope": self._scope(shop),
            "expires_in": int(self.token_lifetime),
            "associated_user_scope": self._scope(shop),
            "refresh_token": refresh,
            "refresh_token_expires_in": int(self.refresh_token_lifetime),
        }

    def _scope(self, shop: str) -> str:
        return ",".join(sorted(self.shops[shop].scopes)) if shop in self.shops else ""

    async def _admin_refusal(self, request: Request) -> Response | None:
        """What the Admin API answers before the query runs: a scripted answer, then auth and
        the shop's state."""
        scripted = await self._answer(request)
        if scripted is not None:
            return self._fail(request, scripted)
        shop = request.path_params["shop"]
        token = request.headers.get("x-shopify-access-token", "")
        with self._lock:
            self.access_tokens_used.append(token)
            held = self.tokens.get(token)
            record = self.shops.get(shop)
        if record is None:
            return self._fail(request, JSONResponse({"errors": "Not Found"}, status_code=404))
        if held is None or held.shop != shop:
            return self._fail(request, JSONResponse({"errors": INVALID_TOKEN}, status_code=401))
        if held.expires_at is not None and held.expires_at <= self.now():
            return self._fail(request, JSONResponse({"errors": INVALID_TOKEN}, status_code=401))
        if record.state == "frozen":
            return self._fail(request, JSONResponse({"errors": "Unavailable Shop"}, 402))
        if record.state == "locked":
            return self._fail(request, JSONResponse({"errors": "This shop is unavailable"}, 423))
        return None

    async def _graphql(self, request: Request) -> Response:
        refused = await self._admin_refusal(request)
        if refused is not None:
            return refused
        shop = request.path_params["shop"]
        try:
            query = str((await request.json()).get("query", ""))
        except json.JSONDecodeError:
            return self._fail(request, JSONResponse({"errors": "Bad Request"}, status_code=400))
        if "shop" not in query:
            return JSONResponse({"errors": [{"message": "unsupported query by the simulator"}]})
        cost = 1.0
        with self._lock:
            record = self.shops[shop]
            now = self.now()
            restored = (now - record.graphql_updated) * self.graphql_restore_rate
            available = min(self.graphql_bucket, record.graphql_available + restored)
            record.graphql_updated = now
            throttled = available < cost
            if not throttled:
                available -= cost
            record.graphql_available = available
        extensions = {
            "cost": {
                "requestedQueryCost": cost,
                "actualQueryCost": None if throttled else cost,
                "throttleStatus": {
                    "maximumAvailable": self.graphql_bucket,
                    "currentlyAvailable": int(available),
                    "restoreRate": self.graphql_restore_rate,
                },
            }
        }
        if throttled:
            errors = [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}]
            with self._lock:
                self.failures.append((request.url.path, 200))
            return JSONResponse({"errors": errors, "extensions": extensions})
        data = {
            "shop": {
                "name": record.name,
                "plan": {"displayName": record.plan},
                "currencyCode": record.currency,
                "myshopifyDomain": record.domain,
            }
        }
        return JSONResponse({"data": data, "extensions": extensions})

    async def _shop_json(self, request: Request) -> Response:
        refused = await self._admin_refusal(request)
        if refused is not None:
            return refused
        shop = request.path_params["shop"]
        with self._lock:
            record = self.shops[shop]
            now = self.now()
            leaked = (now - record.rest_updated) * self.rest_leak_rate
            used = max(0.0, record.rest_used - leaked)
            record.rest_updated = now
            full = used + 1 > self.rest_bucket
            if not full:
                used += 1
            record.rest_used = used
        limit = {"X-Shopify-Shop-Api-Call-Limit": f"{int(used)}/{self.rest_bucket}"}
        if full:
            headers = {**limit, "Retry-After": "1.0"}
            return self._fail(
                request,
                JSONResponse({"errors": "Exceeded 2 calls per second"}, 429, headers=headers),
            )
        body = {
            "shop": {
                "name": record.name,
                "plan_display_name": record.plan,
                "currency": record.currency,
                "myshopify_domain": record.domain,
                "domain": record.domain,
            }
        }
        return JSONResponse(body, headers=limit)
