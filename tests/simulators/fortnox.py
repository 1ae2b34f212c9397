"""Fortnox simulator: the OAuth pages and endpoints (the authorize page, the token endpoint with
Basic client auth, ten-minute authorization codes, single-use rotating refresh tokens, and
revocation), `/3/companyinformation` with Fortnox's ErrorInformation bodies, and the limit of 25
requests per 5 s sliding window per client and tenant (429)."""

from __future__ import annotations

import base64
import html
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from tests.simulators.base import Simulator, oauth_error

APPROVE_LINK = re.compile(r'<a id="approve" href="([^"]*)"')


def approve_link(page: str) -> str:
    """Where the authorize page's link sends the browser back to (the redirect URI)."""
    found = APPROVE_LINK.search(page)
    if found is None:
        raise AssertionError("the page has no approve link")
    return html.unescape(found.group(1))


@dataclass
class Tenant:
    id: int
    company_name: str
    organization_number: str
    api_licence: bool = True


@dataclass
class Grant:
    tenant: int
    expires_at: float
    redirect_uri: str = ""
    access_token: str = ""  # of a refresh token: the access token issued with it


def error_information(code: int, message: str, *, capitalized: bool = False) -> dict[str, Any]:
    """Fortnox's error body; its keys come capitalized from some endpoints and not others."""
    if capitalized:
        return {"ErrorInformation": {"Error": 1, "Message": message, "Code": code}}
    return {"ErrorInformation": {"error": 1, "message": message, "code": code}}


class FortnoxSimulator(Simulator):
    def __init__(self, client_id: str = "8VurtMGDTeAI", client_secret: str = "yFKwme8LEQ") -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.tenants: dict[int, Tenant] = {}
        self.codes: dict[str, Grant] = {}
        self.access_tokens: dict[str, Grant] = {}
        self.refresh_tokens: dict[str, Grant] = {}
        self.spent_refresh_tokens: set[str] = set()
        self._windows: dict[int, deque[float]] = {}
        self._lock = threading.Lock()
        super().__init__()
        self.reset()

    def reset(self) -> None:
        """Defaults again between tests; tenants and tokens stay (tests make their own)."""
        super().reset()
        with self._lock:
            self.limit = 25
            self.window = 5.0
            self.token_lifetime = 3600
            self.refresh_calls = 0
            self.rate_limited = 0
            self._windows.clear()
            self.authorize_requests: list[dict[str, str]] = []
            # The company the next authorization grants (None: a new one), or a refusal.
            self.authorizing: Tenant | None = None
            self.deny_authorizations = False
            self.revoked: list[str] = []  # refresh tokens revoked, in order

    # -- test controls ---------------------------------------------------------------------
    def add_tenant(self, company_name: str = "Acme AB", **kwargs: Any) -> Tenant:
        with self._lock:
            tenant_id = 1_000_000 + len(self.tenants) + 1
            number = f"55{secrets.randbelow(10**8):08d}"
            tenant = Tenant(tenant_id, company_name, f"{number[:6]}-{number[6:]}", **kwargs)
            self.tenants[tenant_id] = tenant
        return tenant

    def issue_code(self, tenant: Tenant, redirect_uri: str) -> str:
        code = secrets.token_urlsafe(24)
        with self._lock:
            self.codes[code] = Grant(tenant.id, time.time() + 600, redirect_uri)
        return code

    def tenant_of(self, access_token: str) -> int | None:
        """The tenant a live access token of ours belongs to (the stream simulator asks)."""
        with self._lock:
            grant = self.access_tokens.get(access_token)
        return grant.tenant if grant is not None and grant.expires_at >= time.time() else None

    def expire_access_token(self, token: str) -> None:
        with self._lock:
            self.access_tokens[token].expires_at = time.time() - 1

    def use_refresh_token(self, token: str) -> None:
        """Someone else (another process, a copy of the tokens) spent this refresh token."""
        with self._lock:
            self.refresh_tokens.pop(token, None)
            self.spent_refresh_tokens.add(token)

    # -- protocol ---------------------------------------------------------------------------
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/oauth-v1/auth", self._authorize, methods=["GET"]),
                Route("/oauth-v1/token", self._token, methods=["POST"]),
                Route("/oauth-v1/revoke", self._revoke, methods=["POST"]),
                Route("/3/companyinformation", self._company, methods=["GET"]),
            ]
        )

    def _client_ok(self, request: Request) -> bool:
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        given = request.headers.get("authorization", "")
        return secrets.compare_digest(given, f"Basic {expected}")

    async def _authorize(self, request: Request) -> Response:
        """The consent page: it links back to `redirect_uri` with a fresh code for the company
        being authorized and the caller's `state`, or with `error=access_denied` when the
        user is told to refuse."""
        self.record(request)
        scripted = await self.script.intercept(request)
        if scripted is not None:
            return scripted
        params = dict(request.query_params)
        redirect_uri = params.get("redirect_uri", "")
        problem = None
        if params.get("client_id") != self.client_id:
            problem = "error=invalid_client: unknown client_id"
        elif not redirect_uri.startswith(("http://", "https://")):
            problem = "error=invalid_request: redirect_uri is missing"
        elif params.get("response_type") != "code":
            problem = "error=unsupported_response_type"
        if problem is not None:
            return HTMLResponse(f"<p>{html.escape(problem)}</p>", 400)
        with self._lock:
            self.authorize_requests.append(params)
        state = params.get("state", "")
        if self.deny_authorizations:
            query = {"error": "access_denied", "error_description": "refused", "state": state}
        else:
            tenant = self.authorizing or self.add_tenant("Fortnox Demo AB")
            query = {"code": self.issue_code(tenant, redirect_uri), "state": state}
        separator = "&" if "?" in redirect_uri else "?"
        link = redirect_uri + separator + urlencode(query)
        return HTMLResponse(
            "<!doctype html><title>Fortnox</title>"
            f"<p>Allow the integration access to {html.escape(params.get('scope', ''))}?</p>"
            f'<a id="approve" href="{html.escape(link)}">Continue</a>'
        )

    async def _revoke(self, request: Request) -> Response:
        """Revoke a refresh token and the access token issued with it; a token it does not
        know is answered as revoked too (RFC 7009)."""
        self.record(request)
        form = dict(parse_qsl((await request.body()).decode()))
        scripted = await self.script.intercept(request)
        if scripted is not None:
            return scripted
        if not self._client_ok(request):
            return oauth_error(401, "invalid_client", "Invalid client credentials")
        token = str(form.get("token", ""))
        with self._lock:
            self.revoked.append(token)
            grant = self.refresh_tokens.pop(token, None)
            if grant is not None:
                self.spent_refresh_tokens.add(token)
                self.access_tokens.pop(grant.access_token, None)
        return JSONResponse({})

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
        if not self._client_ok(request):
            return oauth_error(401, "invalid_client", "Invalid client credentials")
        if grant_type == "authorization_code":
            with self._lock:
                grant = self.codes.pop(str(form.get("code", "")), None)
            if grant is None or grant.expires_at < time.time():
                return oauth_error(400, "invalid_grant", "Invalid authorization code")
            if grant.redirect_uri != form.get("redirect_uri"):
                return oauth_error(400, "invalid_grant", "Invalid redirect uri")
            return JSONResponse(self._pair(grant.tenant))
        if grant_type == "refresh_token":
            with self._lock:
                token = str(form.get("refresh_token", ""))
                # Single use: the first refresh spends it, whoever asked.
                grant = self.refresh_tokens.pop(token, None)
                if grant is not None:
                    self.spent_refresh_tokens.add(token)
            if grant is None or grant.expires_at < time.time():
                return oauth_error(400, "invalid_grant", "Invalid refresh token")
            return JSONResponse(self._pair(grant.tenant))
        return oauth_error(400, "unsupported_grant_type", "Unsupported grant type")

    def _pair(self, tenant: int) -> dict[str, Any]:
        access = "eyJ" + secrets.token_urlsafe(32)
        refresh = secrets.token_urlsafe(24)
        now = time.time()
        with self._lock:
            self.access_tokens[access] = Grant(tenant, now + self.token_lifetime)
            self.refresh_tokens[refresh] = Grant(tenant, now + 45 * 24 * 3600, "", access)
        return {
            "access_token": access,
            "refresh_token": refresh,
            "scope": "companyinformation invoice",
            "expires_in": self.token_lifetime,
            "token_type": "Bearer",
        }

    def _over_limit(self, tenant: int) -> bool:
        """The sliding window per client and tenant: count this call, or refuse it."""
        now = time.monotonic()
        with self._lock:
            window = self._windows.setdefault(tenant, deque())
            while window and window[0] <= now - self.window:
                window.popleft()
            if len(window) >= self.limit:
                self.rate_limited += 1
                return True
            window.append(now)
            return False

    async def _company(self, request: Request) -> Response:
        self.record(request)
        scripted = await self.script.intercept(request)
        if scripted is not None:
            return scripted
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        with self._lock:
            grant = self.access_tokens.get(token)
        if grant is None or grant.expires_at < time.time():
            return JSONResponse(
                error_information(2000310, "Ogiltig access-token (invalid access token)"), 401
            )
        if self._over_limit(grant.tenant):
            return JSONResponse({"message": "Too Many Requests"}, status_code=429)
        tenant = self.tenants[grant.tenant]
        if not tenant.api_licence:
            return JSONResponse(
                error_information(
                    2001103, "Det saknas en licens för att använda API:t", capitalized=True
                ),
                status_code=400,
            )
        return JSONResponse(
            {
                "CompanyInformation": {
                    "@url": f"{self.url}/3/companyinformation",
                    "Address": "Storgatan 1",
                    "City": "Växjö",
                    "CompanyName": tenant.company_name,
                    "CountryCode": "SE",
                    "DatabaseNumber": tenant.id,
                    "OrganizationNumber": tenant.organization_number,
                    "VisitAddress": "Storgatan 1",
                    "VisitCity": "Växjö",
                    "VisitCountryCode": "SE",
                    "VisitZipCode": "35230",
                    "ZipCode": "35230",
                }
            }
        )
