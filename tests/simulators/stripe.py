"""Stripe simulator: `GET /v1/account` for API keys and Connect accounts, and Connect's
`POST /oauth/token`, with Stripe's error bodies (401 bad key, 403 revoked access)."""

from __future__ import annotations

import secrets
import threading
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.simulators.base import Simulator


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
    def __init__(self, platform_key: str = "sk_test_platform0000000000") -> None:
        self.platform_key = platform_key
        self.accounts: dict[str, dict[str, Any]] = {}
        self.keys: dict[str, str] = {}
        self.codes: dict[str, str] = {}
        self.revoked: set[str] = set()
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

    # -- protocol ---------------------------------------------------------------------------
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/account", self._account, methods=["GET"]),
                Route("/oauth/token", self._token, methods=["POST"]),
            ]
        )

    async def _account(self, request: Request) -> Response:
        self.record(request)
        scripted = await self.script.intercept(request)
        if scripted is not None:
            return scripted
        key = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
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

    async def _token(self, request: Request) -> Response:
        self.record(request)
        scripted = await self.script.intercept(request)
        if scripted is not None:
            return scripted
        key = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if key != self.platform_key:
            return _error(401, "Invalid API Key provided")
        # Parsed by hand: Starlette's form parser needs python-multipart, a dependency we avoid.
        form = dict(parse_qsl((await request.body()).decode()))
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


def _error(status: int, message: str) -> JSONResponse:
    kind = "invalid_request_error"
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status)
