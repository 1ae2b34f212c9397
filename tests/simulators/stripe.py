"""Stripe simulator: `GET /v1/account` for API keys and Connect accounts, and Connect's
`GET /oauth/authorize` (a page a test follows), `POST /oauth/token` and `POST /oauth/deauthorize`,
with Stripe's error bodies (401 bad key, 403 revoked access, `invalid_client`)."""

from __future__ import annotations

import html
import secrets
import threading
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from tests.simulators.base import Simulator, oauth_error


def account_body(account_id: str, name: str) -> dict[str, Any]:
    return {
        "id": account_id,
        "object": "account",
        "business_profile": {"name": name},
        "country": "SE",
        "default_currency": "sek",
        "charges_enabled": True,
        "payouts_enabled": True,
        "requirements": {"currently_due": [], "disabled_reason": None},
    }


class StripeSimulator(Simulator):
    def __init__(
        self,
        platform_key: str = "sk_test_platform0000000000",
        client_id: str = "ca_test_simulator0000",
    ) -> None:
        self.platform_key = platform_key
        self.client_id = client_id
        self.accounts: dict[str, dict[str, Any]] = {}
        self.keys: dict[str, str] = {}
        self.codes: dict[str, str] = {}
        self.revoked: set[str] = set()
        # Each accepted `POST /oauth/deauthorize`: (bearer key, client_id, stripe_user_id).
        self.deauthorizations: list[tuple[str, str, str]] = []
        self._authorizes_as: str | None = None
        self._denial: str | None = None
        self._lock = threading.Lock()
        super().__init__()

    # -- test controls ---------------------------------------------------------------------
    def add_account(self, name: str = "Acme AB", *, api_key: str | None = None) -> tuple[str, str]:
        """A Stripe account reachable with its own new secret key; returns (account id, key)."""
        account_id = "acct_" + secrets.token_hex(8)
        key = api_key or "sk_test_" + secrets.token_hex(12)
        with self._lock:
            self.accounts[account_id] = account_body(account_id, name)
            self.keys[key] = account_id
        return account_id, key

    def roll_key(self, key: str) -> None:
        with self._lock:
            self.keys.pop(key, None)

    def issue_code(self, account_id: str) -> str:
        """An OAuth authorization code for a Connect account (single use)."""
        code = "ac_" + secrets.token_hex(12)
        with self._lock:
            self.codes[code] = account_id
        return code

    def revoke(self, account_id: str) -> None:
        with self._lock:
            self.revoked.add(account_id)

    def authorize_as(self, account_id: str) -> None:
        """The next authorize page connects this account (else a new one, "Connected AB")."""
        with self._lock:
            self._authorizes_as = account_id

    def deny_next(self, description: str = "The user denied your request") -> None:
        """The next authorize page sends the browser back with `error=access_denied`."""
        with self._lock:
            self._denial = description

    def deauthorized(self, account_id: str) -> int:
        """How many accepted deauthorizations named `account_id`."""
        with self._lock:
            return sum(1 for _, _, user in self.deauthorizations if user == account_id)

    # -- protocol ---------------------------------------------------------------------------
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/account", self._account, methods=["GET"]),
                Route("/oauth/authorize", self._authorize_page, methods=["GET"]),
                Route("/oauth/token", self._token, methods=["POST"]),
                Route("/oauth/deauthorize", self._deauthorize, methods=["POST"]),
            ]
        )

    async def _account(self, request: Request) -> Response:
        self.record(request)
        scripted = await self.script.intercept(request)
        if scripted is not None:
            return scripted
        key = _bearer(request)
        target = request.headers.get("stripe-account")
        with self._lock:
            if key == self.platform_key and target:
                if target in self.revoked or target not in self.accounts:
                    return _error(
                        403,
                        f"The provided key 'sk_test_****{key[-4:]}' does not have access to "
                        f"account '{target}' (or that account does not exist). Application "
                        "access may have been revoked.",
                    )
                return JSONResponse(self.accounts[target])
            account_id = self.keys.get(key)
            if account_id is None:
                return _error(401, f"Invalid API Key provided: sk_test_****{key[-4:]}")
            return JSONResponse(self.accounts[account_id])

    async def _platform_form(self, request: Request) -> Response | dict[str, str]:
        """What Connect's POST endpoints do first: record, a scripted answer, the platform key;
        then the form they were sent."""
        self.record(request)
        scripted = await self.script.intercept(request)
        if scripted is not None:
            return scripted
        if _bearer(request) != self.platform_key:
            return _error(401, "Invalid API Key provided")
        # Parsed by hand: Starlette's form parser needs python-multipart, a dependency we avoid.
        return dict(parse_qsl((await request.body()).decode()))

    async def _token(self, request: Request) -> Response:
        form = await self._platform_form(request)
        if isinstance(form, Response):
            return form
        code = str(form.get("code", ""))
        with self._lock:
            account_id = self.codes.pop(code, None)
        if form.get("grant_type") != "authorization_code" or account_id is None:
            return JSONResponse(
                {
                    "error": "invalid_grant",
                    "error_description": f"Authorization code does not exist: {code[:6]}...",
                },
                status_code=400,
            )
        return JSONResponse(
            {
                "access_token": "sk_test_" + secrets.token_hex(12),
                "livemode": False,
                "refresh_token": "rt_" + secrets.token_hex(12),
                "token_type": "bearer",
                "stripe_publishable_key": "pk_test_" + secrets.token_hex(8),
                "stripe_user_id": account_id,
                "scope": "read_write",
            }
        )

    async def _authorize_page(self, request: Request) -> Response:
        """Stripe's consent page, reduced to the link its button follows."""
        self.record(request)
        query = request.query_params
        redirect_uri = query.get("redirect_uri")
        if query.get("client_id") != self.client_id or query.get("response_type") != "code":
            return HTMLResponse("<p>Invalid client_id or response_type</p>", status_code=400)
        if not redirect_uri:
            return HTMLResponse("<p>No redirect_uri</p>", status_code=400)
        with self._lock:
            denial, self._denial = self._denial, None
            account_id, self._authorizes_as = self._authorizes_as, None
        back: dict[str, str] = {"state": query.get("state", "")}
        if denial is not None:
            back = {"error": "access_denied", "error_description": denial, **back}
        else:
            if account_id is None:
                account_id, _ = self.add_account("Connected AB")
            back = {"code": self.issue_code(account_id), **back}
        joiner = "&" if "?" in redirect_uri else "?"
        link = html.escape(f"{redirect_uri}{joiner}{urlencode(back)}")
        page = f'<html><body><a id="authorize" href="{link}">Connect</a></body></html>'
        return HTMLResponse(page)

    async def _deauthorize(self, request: Request) -> Response:
        form = await self._platform_form(request)
        if isinstance(form, Response):
            return form
        client_id, account_id = form.get("client_id", ""), form.get("stripe_user_id", "")
        if client_id != self.client_id:
            return oauth_error(401, "invalid_client", f"No such application: '{client_id}'")
        with self._lock:
            if account_id not in self.accounts or account_id in self.revoked:
                return oauth_error(
                    401,
                    "invalid_client",
                    f"This application is not connected to stripe account {account_id}, "
                    "or that account does not exist.",
                )
            self.revoked.add(account_id)
            self.deauthorizations.append((_bearer(request), client_id, account_id))
        return JSONResponse({"stripe_user_id": account_id})


def _bearer(request: Request) -> str:
    return request.headers.get("authorization", "").removeprefix("Bearer ").strip()


def _error(status: int, message: str) -> JSONResponse:
    kind = "invalid_request_error"
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status)
