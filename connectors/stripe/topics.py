"""What each Stripe event topic says about its account, as data; the service layer applies it."""

from __future__ import annotations

from typing import Any

from connectors.base import ErrorCode
from connectors.provider import Change, Topic, disconnects
from connectors.stripe.check import disabled_message

# Copied from the account object as they are; requirements and the name are read below.
ACCOUNT_FIELDS = ("charges_enabled", "payouts_enabled", "country", "default_currency")
REENABLED = "Stripe enabled charges and payouts again"


def account_updated(payload: dict[str, Any], _key: str | None) -> Change:
    """`account.updated`: the account's new state, a disablement by Stripe's requirements as an
    `account_locked` error, and its end when the payload says charges and payouts are not
    disabled. ValueError when the event carries no account object."""
    data = payload.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise ValueError("account.updated carries no data.object")
    requirements = obj.get("requirements")
    requirements = requirements if isinstance(requirements, dict) else {}
    profile = obj.get("business_profile")
    profile = profile if isinstance(profile, dict) else {}
    values: dict[str, Any] = {k: obj[k] for k in ACCOUNT_FIELDS if k in obj}
    if "requirements" in obj:
        values["disabled_reason"] = requirements.get("disabled_reason")
        values["currently_due"] = requirements.get("currently_due") or []
    if profile.get("name"):
        values["business_name"] = profile["name"]

    message = disabled_message(obj)
    if message is not None:
        return Change(metadata=values, error=(ErrorCode.ACCOUNT_LOCKED, message))
    if "charges_enabled" in obj or "requirements" in obj:  # Stripe says: not disabled
        return Change(
            metadata=values,
            resolve=frozenset({ErrorCode.ACCOUNT_LOCKED}),
            resolved_reason=REENABLED,
        )
    return Change(metadata=values)


TOPICS: dict[str, Topic] = {
    # `{key}` is the account id, or "the account" when the event named none.
    "account.application.deauthorized": disconnects(
        "Stripe says {key} deauthorized the application; connect it again to restore access"
    ),
    "account.updated": Topic(account_updated),
}
