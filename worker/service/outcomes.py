"""How a service call ends when it does not succeed, and who is asking."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Reason(enum.StrEnum):
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    INVALID = "invalid"
    IN_USE = "in_use"
    AUTHORIZATION_FAILED = "authorization_failed"
    CONFIRMATION_FAILED = "confirmation_failed"
    IDENTITY_MISMATCH = "identity_mismatch"


class Rejected(Exception):
    """The request cannot be done as asked; nothing was changed."""

    status = "rejected"

    def __init__(self, reason: Reason, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.extra = extra


class Failed(Rejected):
    """Not possible now (the provider failed temporarily); trying later may work."""

    status = "failed"


class Role(enum.StrEnum):
    ADMIN = "admin"
    COLLABORATOR = "collaborator"
    READER = "reader"


class Action(enum.StrEnum):
    LIST = "list"
    DETAILS = "details"
    CHANGE = "change"


ALLOWED: dict[Role, frozenset[Action]] = {
    Role.ADMIN: frozenset(Action),
    Role.COLLABORATOR: frozenset(Action),
    Role.READER: frozenset({Action.LIST}),
}


class Actor(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: str = Field(min_length=1, max_length=200)
    role: Role

    def as_dict(self) -> dict[str, str]:
        return {"user_id": self.user_id, "role": self.role.value}


def parse_actor(value: Any) -> Actor:
    if not isinstance(value, dict):
        raise Rejected(
            Reason.INVALID,
            "every job names its actor: {user_id, role}",
            fields={"actor": "required: an object with user_id and role"},
        )
    try:
        return Actor.model_validate(value)
    except ValidationError as exc:
        raise Rejected(
            Reason.INVALID, "the actor is not valid", fields=fields_at_fault(exc, "actor")
        ) from exc


def require(actor: Actor, action: Action) -> None:
    if action not in ALLOWED[actor.role]:
        doing = {
            Action.LIST: "list accounts",
            Action.DETAILS: "open an account's details",
            Action.CHANGE: "add, edit or remove accounts",
        }[action]
        raise Rejected(Reason.FORBIDDEN, f"a {actor.role.value} may not {doing}")


def fields_at_fault(exc: ValidationError, prefix: str = "") -> dict[str, str]:
    """Field path -> message, never echoing the input (it may be a secret)."""
    fields: dict[str, str] = {}
    for error in exc.errors(include_input=False, include_url=False):
        path = ".".join(str(p) for p in (prefix, *error["loc"]) if p != "")
        message = error["msg"].removeprefix("Value error, ")
        fields[path or prefix or "_"] = message
    return fields


@dataclass
class Outcome:
    """A successful service call: words for people and what the job result carries."""

    message: str
    account: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
