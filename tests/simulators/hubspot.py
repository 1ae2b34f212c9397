"""HubSpot simulator: the OAuth pages and endpoints of 2026-03 (the authorize page, the token
endpoint with the client in the form, 30-minute access tokens, refresh tokens that rotate and,
as a strict provider would, die when used, revocation, uninstall), the account details with
HubSpot's error bodies and rate-limit headers, 110 calls per 10 s per portal (429
TEN_SECONDLY_ROLLING), and signed webhook batches (v3) sent to a URL."""

from __future__ import annotations

import html
import itertools
import json
import re
import secrets
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from connectors.hubspot import signed_uri, v3_signature
from tests.simulators.base import Simulator

AUTHORIZE_PATH = "/oauth/authorize"
TOKEN_PATH = "/oauth/2026-03/token"
REVOKE_PATH = "/oauth/2026-03/token/revoke"
DETAILS_PATH = "/account-info/2026-03/details"
APPROVE_LINK = re.compile(r'<a id="approve" href="([^"]*)"')


def approve_link(page: str) -> str:
    """Where the authorize page's link sends the browser back to (the redirect URI)."""
    found = APPROVE_LINK.search(page)
    if found is None:
        raise AssertionError("the page has no approve link")
    return html.unescape(found.group(1))


def webhook_headers(
    secret: str, url: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The headers of a v3-signed delivery to `url` (the URL HubSpot was configured with)."""
    ts = str(timestamp if timestamp is not None else int(time.time() * 1000))
    parts = urlsplit(url)
    uri = signed_uri(f"{parts.scheme}://{parts.netloc}", parts.path, parts.query)
    return {
        "Content-Type": "application/json",
        "X-HubSpot-Signature-v3": v3_signature(secret, "POST", uri, body, ts),
        "X-HubSpot-Request-Timestamp": ts,
    }


def token_error(status: int, error: str, legacy: str, description: str) -> JSONResponse:
    """HubSpot's token errors: RFC 6749's fields, and the older `status` and `message`."""
    body = {"error": error, "error_description": description, "status": legacy}
    return JSONResponse({**body, "message": description}, status_code=status)


def api_error(status: int, category: str, message: str, **extra: Any) -> JSONResponse:
    body = {"status": "error", "message": message, "correlationId": str(uuid.uuid4())}
    return JSONResponse({**body, "category": category, **extra}, status_code=status)


@dataclass
class Portal:
    id: int
    account_type: str = "STANDARD"
    time_zone: str = "Europe/Stockholm"
    currency: str = "SEK"
    ui_domain: str = "app-eu1.hubspot.com"
    data_hosting_location: str = "eu1"
    scopes: set[str] = field(default_factory=lambda: {"oauth", "crm.objects.contacts.read"})


@dataclass
class Grant:
    portal: int
    expires_at: float
    redirect_uri: str = ""
    scopes: list[str] = field(default_factory=lambda: ["oauth"])


class HubSpotSimulator(Simulator):
    def __init__(
        self, client_id: str = "sim-hubspot-client", client_secret: str = "sim-hubspot-secret"
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.portals: dict[int, Portal] = {}
        self.codes: dict[str, Grant] = {}
        self.access_tokens: dict[str, Grant] = {}
        self.refresh_tokens: dict[str, Grant] = {}
        self.revoked: list[str] = []  # refresh tokens revoked, in order
        self._windows: dict[int, deque[float]] = {}
        self._event_ids = itertools.count(1)
        self._lock = threading.Lock()
        super().__init__()
        self.reset()

    def reset(self) -> None:
        """Defaults again between tests; portals and tokens stay (tests make their own)."""
        super().reset()
        with self._lock:
            self.limit = 110
            self.window = 10.0
            self.token_lifetime = 1800
            self.rotate_refresh_tokens = True
            self.refresh_calls = 0
            self.revoke_calls = 0
            self.rate_limited = 0
            self.reject_valid = 0
            self.reject_category = "INVALID_AUTHENTICATION"
            self.rejected_tokens: dict[str, str] = {}
            self._windows.clear()
            self.authorize_requests: list[dict[str, str]] = []
            # The portal the next authorization grants (None: a new one), or a refusal.
            self.authorizing: Portal | None = None
            self.deny_authorizations = False

    # -- test controls ---------------------------------------------------------------------
    def add_portal(self, **kwargs: Any) -> Portal:
        with self._lock:
            portal = Portal(40_000_000 + secrets.randbelow(10**7), **kwargs)
            self.portals[portal.id] = portal
        return portal

    def issue_code(self, portal: Portal, redirect_uri: str, scopes: list[str] | None = None) -> str:
        code = "code-" + secrets.token_urlsafe(18)
        with self._lock:
            self.codes[code] = Grant(
                portal.id, time.time() + 600, redirect_uri, scopes or ["oauth"]
            )
        return code

    def expire_access_token(self, token: str) -> None:
        with self._lock:
            self.access_tokens[token].expires_at = time.time() - 300

    def reject_next_valid_token(
        self, times: int = 1, category: str = "INVALID_AUTHENTICATION"
    ) -> None:
        """Answer the next details calls 401 although their token is valid: HubSpot says a 401
        is not proof the token is dead."""
        with self._lock:
            self.reject_valid = times
            self.reject_category = category

    def reject_token(self, token: str, category: str = "INVALID_AUTHENTICATION") -> None:
        """Answer every call with this access token 401 although it has not expired (as if
        HubSpot had lost it); a refreshed token is taken again."""
        with self._lock:
            self.rejected_tokens[token] = category

    def uninstall(self, portal: Portal) -> None:
        """The portal's admin uninstalls the app: every token of the portal dies at once."""
        with self._lock:
            for tokens in (self.access_tokens, self.refresh_tokens):
                for token in [t for t, g in tokens.items() if g.portal == portal.id]:
                    del tokens[token]

    def portal_of(self, access_token: str) -> int | None:
        with self._lock:
            grant = self.access_tokens.get(access_token)
        return grant.portal if grant is not None and grant.expires_at >= time.time() else None

    def event(
        self, portal: Portal | int, subscription_type: str = "contact.creation", **fields: Any
    ) -> dict[str, Any]:
        """One webhook event as HubSpot sends it; `fields` add to or override it."""
        event_id = next(self._event_ids)
        return {
            "eventId": event_id,
            "subscriptionId": 5000 + len(subscription_type),
            "portalId": portal.id if isinstance(portal, Portal) else portal,
            "appId": 54321,
            "occurredAt": int(time.time() * 1000),
            "subscriptionType": subscription_type,
            "attemptNumber": 0,
            "objectId": 100 + event_id,
            "changeSource": "CRM",
            **fields,
        }

    def send_webhooks(
        self,
        url: str,
        events: list[dict[str, Any]],
        *,
        signed_url: str | None = None,
        secret: str | None = None,
        timestamp: int | None = None,
    ) -> httpx.Response:
        """POST a batch signed with v3 over `signed_url` (the URL HubSpot was configured with;
        by default `url` itself), as HubSpot delivers it."""
        body = json.dumps(events).encode()
        headers = webhook_headers(secret or self.client_secret, signed_url or url, body, timestamp)
        return httpx.post(url, content=body, headers=headers, timeout=10)

    # -- protocol ---------------------------------------------------------------------------
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route(AUTHORIZE_PATH, self._authorize, methods=["GET"]),
                Route(TOKEN_PATH, self._token, methods=["POST"]),
                Route(REVOKE_PATH, self._revoke, methods=["POST"]),
                Route(DETAILS_PATH, self._details, methods=["GET"]),
            ]
        )

    def _client_ok(self, form: dict[str, str]) -> bool:
        return form.get("client_id") == self.client_id and secrets.compare_digest(
            form.get("client_secret", ""), self.client_secret
        )

    async def _authorize(self, request: Request) -> Response:
        """The consent page: it links back to `redirect_uri` with a fresh code for the portal
        being authorized and the caller's `state`, or with `error=access_denied` when the user
        is told to refuse."""
        self.record(request)
        scripted = await self.script.intercept(request)
        if scripted is not None:
            return scripted
        params = dict(request.query_params)
        redirect_uri = params.get("redirect_uri", "")
        problem = None
        if params.get("client_id") != self.client_id:
            problem = "unknown client_id"
        elif not redirect_uri.startswith(("http://", "https://")):
            problem = "redirect_uri is missing"
        elif not params.get("scope"):
            problem = "scope is missing: every required scope must be asked for"
        if problem is not None:
            return HTMLResponse(f"<p>{html.escape(problem)}</p>", 400)
        with self._lock:
            self.authorize_requests.append(params)
        state = params.get("state", "")
        if self.deny_authorizations:
            query = {
                "error": "access_denied",
                "error_description": "The user declined to install the app",
                "state": state,
            }
        else:
            portal = self.authorizing or self.add_portal()
            scopes = params["scope"].split()
            query = {"code": self.issue_code(portal, redirect_uri, scopes), "state": state}
        separator = "&" if "?" in redirect_uri else "?"
        link = redirect_uri + separator + urlencode(query)
        return HTMLResponse(
            "<!doctype html><title>HubSpot</title>"
            f"<p>Install the app with {html.escape(params['scope'])}?</p>"
            f'<a id="approve" href="{html.escape(link)}">Connect app</a>'
        )

    async def _token(self, request: Request) -> Response:
        self.record(request)
        # Parsed by hand: Starlette's form parser needs python-multipart, a dependency we avoid.
        form = dict(parse_qsl((await request.body()).decode()))
        grant_type = form.get("grant_type")
        if grant_type == "refresh_token":
            with self._lock:
                self.refresh_calls += 1
        scripted = await self.script.intercept(request)
        if scripted is not None:
            return scripted
        if not self._client_ok(form):
            return token_error(400, "invalid_client", "BAD_CLIENT_ID", "missing or unknown client")
        if grant_type == "authorization_code":
            with self._lock:
                grant = self.codes.pop(form.get("code", ""), None)
            if grant is None or grant.expires_at < time.time():
                return token_error(400, "invalid_grant", "BAD_AUTH_CODE", "missing or unknown code")
            if grant.redirect_uri != form.get("redirect_uri"):
                return token_error(
                    400, "invalid_grant", "BAD_REDIRECT_URI", "redirect_uri does not match"
                )
            return JSONResponse(self._pair(grant, None))
        if grant_type == "refresh_token":
            token = form.get("refresh_token", "")
            with self._lock:
                grant = self.refresh_tokens.get(token)
                if grant is not None and self.rotate_refresh_tokens:
                    del self.refresh_tokens[token]  # strict: the old one dies with its use
            if grant is None:
                return token_error(
                    400,
                    "invalid_grant",
                    "BAD_REFRESH_TOKEN",
                    "refresh token is invalid, expired or revoked",
                )
            return JSONResponse(self._pair(grant, None if self.rotate_refresh_tokens else token))
        return token_error(400, "unsupported_grant_type", "BAD_GRANT_TYPE", "unsupported")

    def _pair(self, grant: Grant, keep_refresh: str | None) -> dict[str, Any]:
        access = "CJSP" + secrets.token_urlsafe(32)
        refresh = keep_refresh or "na1-" + secrets.token_hex(4) + "-" + secrets.token_hex(12)
        with self._lock:
            self.access_tokens[access] = Grant(
                grant.portal, time.time() + self.token_lifetime, scopes=grant.scopes
            )
            self.refresh_tokens[refresh] = Grant(grant.portal, float("inf"), scopes=grant.scopes)
        return {
            "token_type": "bearer",
            "token_use": "access_token",
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": self.token_lifetime,
            "hub_id": grant.portal,
            "scopes": grant.scopes,
        }

    async def _revoke(self, request: Request) -> Response:
        """Revoke a refresh token (its access tokens live on, as HubSpot says of its legacy
        revocation); a token it does not know is answered as revoked too (RFC 7009)."""
        self.record(request)
        form = dict(parse_qsl((await request.body()).decode()))
        with self._lock:
            self.revoke_calls += 1
        scripted = await self.script.intercept(request)
        if scripted is not None:
            return scripted
        if not self._client_ok(form):
            return token_error(400, "invalid_client", "BAD_CLIENT_ID", "missing or unknown client")
        token = form.get("token", "")
        with self._lock:
            self.revoked.append(token)
            self.refresh_tokens.pop(token, None)
        return JSONResponse({})

    def _window(self, portal: int) -> int:
        """Count this call in the portal's rolling window; the calls left, or -1 when over."""
        now = time.monotonic()
        with self._lock:
            window = self._windows.setdefault(portal, deque())
            while window and window[0] <= now - self.window:
                window.popleft()
            if len(window) >= self.limit:
                self.rate_limited += 1
                return -1
            window.append(now)
            return self.limit - len(window)

    async def _details(self, request: Request) -> Response:
        self.record(request)
        scripted = await self.script.intercept(request)
        if scripted is not None:
            return scripted
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        with self._lock:
            grant = self.access_tokens.get(token)
            category = self.rejected_tokens.get(token) if grant is not None else None
            if grant is not None and category is None and self.reject_valid > 0:
                self.reject_valid -= 1
                category = self.reject_category
        if grant is None or category is not None:
            category = category or "INVALID_AUTHENTICATION"
            return api_error(401, category, "Authentication credentials not found.")
        late = time.time() - grant.expires_at
        if late > 0:
            minutes = max(1, int(late // 60))
            message = f"The OAuth token used to make this call expired {minutes} minute(s) ago."
            return api_error(401, "EXPIRED_AUTHENTICATION", message)
        left = self._window(grant.portal)
        headers = {
            "X-HubSpot-RateLimit-Max": str(self.limit),
            "X-HubSpot-RateLimit-Remaining": str(max(left, 0)),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(self.window * 1000)),
        }
        if left < 0:
            body = {
                "status": "error",
                "message": "You have reached your ten_secondly_rolling limit.",
                "errorType": "RATE_LIMIT",
                "correlationId": str(uuid.uuid4()),
                "policyName": "TEN_SECONDLY_ROLLING",
                "requestId": str(uuid.uuid4()),
            }
            return JSONResponse(body, status_code=429, headers=headers)
        portal = self.portals[grant.portal]
        if "oauth" not in portal.scopes or "oauth" not in grant.scopes:
            context = {"requiredGranularScopes": ["oauth"]}
            return api_error(
                403,
                "MISSING_SCOPES",
                "This app hasn't been granted all required scopes to make this call.",
                errors=[
                    {
                        "message": "One or more of the following scopes are required.",
                        "context": context,
                    }
                ],
            )
        return JSONResponse(
            {
                "portalId": portal.id,
                "accountType": portal.account_type,
                "timeZone": portal.time_zone,
                "companyCurrency": portal.currency,
                "additionalCurrencies": [],
                "utcOffset": "+01:00",
                "utcOffsetMilliseconds": 3600000,
                "uiDomain": portal.ui_domain,
                "dataHostingLocation": portal.data_hosting_location,
            },
            headers=headers,
        )
