"""What Stripe's answers to the health call mean: the account object read into metadata, a
disablement by Stripe's requirements, and each failure sorted into the contract's error codes."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import httpx

from connectors.base import ErrorCode, PermanentFailure, ProviderError, TemporaryFailure
from connectors.http import common_failure, json_object

REVOKED = re.compile(r"does not have access to account|access may have been revoked", re.I)
SECRET = re.compile(r"\b(sk_live|sk_test|rk_live|rk_test|whsec)_[A-Za-z0-9*]{8,}")


def key_digest(credentials: dict[str, Any]) -> str:
    """A limiter key for an API-key account that is not the key itself."""
    return hashlib.sha256(str(credentials.get("api_key")).encode()).hexdigest()[:16]


def error_message(response: httpx.Response) -> str:
    """Stripe's words in a failed answer: the API's `error.message`, or an OAuth endpoint's
    `error_description` (else its `error` code)."""
    body = json_object(response)
    error = body.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or "")
    if isinstance(error, str):
        return str(body.get("error_description") or error)
    return ""


def scrub_keys(text: str) -> str:
    """Stripe's messages may quote a key; keep at most its last four characters."""
    return SECRET.sub(lambda m: f"{m.group(1)}_****{m.group(0)[-4:]}", text)


def classify_api(response: httpx.Response) -> ProviderError | None:
    """The API's answer (`GET /v1/account`) as a failure, or None when it succeeded."""
    if response.is_success:
        return None
    message = error_message(response)
    # A Connect account that deauthorized the platform answers 403 (older API versions 401)
    # with this wording; it is the connection that is gone, not the key.
    if response.status_code in (401, 403) and REVOKED.search(message):
        return PermanentFailure(
            ErrorCode.CONNECTION_REVOKED,
            "the platform has no access to this Stripe account: its owner revoked the "
            "application, or it was never connected; connect it again",
        )
    if response.status_code == 401:
        return PermanentFailure(
            ErrorCode.CREDENTIALS_INVALID, "Stripe rejected the API key; it may have been rolled"
        )
    if response.status_code == 403:
        return PermanentFailure(
            ErrorCode.PERMISSION_MISSING,
            "the Stripe key lacks a permission this check needs; use a key with read access",
        )
    should_retry = response.headers.get("Stripe-Should-Retry")
    if should_retry == "true" or response.status_code == 409:
        # Stripe says a retry may succeed (a lock timeout, an idempotency conflict).
        return TemporaryFailure(
            ErrorCode.PROVIDER_UNAVAILABLE,
            f"Stripe answered {response.status_code} and asked for a retry",
        )
    common = common_failure(response, "Stripe")
    if common is not None and should_retry == "false" and not common.retry_after:
        # Still a provider problem (degraded), but Stripe says retrying now will not help.
        return PermanentFailure(common.code, common.message)
    if common is not None:
        return common
    return PermanentFailure(
        ErrorCode.CREDENTIALS_INVALID,
        scrub_keys(f"Stripe answered {response.status_code}: {message}")[:300],
    )


def account_metadata(account: dict[str, Any]) -> dict[str, Any]:
    """What a check keeps of a Stripe account object."""
    profile = account.get("business_profile") or {}
    settings = (account.get("settings") or {}).get("dashboard") or {}
    requirements = account.get("requirements") or {}
    return {
        "stripe_account_id": account.get("id"),
        "business_name": profile.get("name") or settings.get("display_name"),
        "country": account.get("country"),
        "default_currency": account.get("default_currency"),
        "charges_enabled": account.get("charges_enabled"),
        "payouts_enabled": account.get("payouts_enabled"),
        "disabled_reason": requirements.get("disabled_reason"),
        "currently_due": requirements.get("currently_due") or [],
    }


def disabled_message(account: dict[str, Any]) -> str | None:
    """Words for a person when Stripe's requirements have disabled charges or payouts on
    `account` (a Stripe account object); None otherwise. Payouts that are merely not enabled yet
    (no bank account while onboarding: no `disabled_reason`) are not a disablement."""
    requirements = account.get("requirements")
    requirements = requirements if isinstance(requirements, dict) else {}
    reason = requirements.get("disabled_reason")
    disabled = [k for k in ("charges", "payouts") if account.get(f"{k}_enabled") is False]
    if not disabled or not reason:
        return None
    text = f"Stripe has disabled {' and '.join(disabled)} on this account ({reason})"
    text += "; complete the account's requirements in the Stripe dashboard"
    due = requirements.get("past_due") or requirements.get("currently_due") or []
    if isinstance(due, list) and due:
        text += ": " + ", ".join(str(d) for d in due[:10])
    return text
