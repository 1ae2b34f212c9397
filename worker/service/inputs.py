"""Parsing of job and request arguments: every bad value becomes `invalid` with its field named."""

from __future__ import annotations

import re
import uuid
from typing import Any

from pydantic import BaseModel, ValidationError

from worker.service.outcomes import Reason, Rejected, fields_at_fault

ORG_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
EXTERNAL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
NAME_MAX = 200
SETTINGS_MAX_KEYS = 50


def invalid(fields: dict[str, str], message: str | None = None) -> Rejected:
    return Rejected(
        Reason.INVALID, message or "invalid input: " + ", ".join(sorted(fields)), fields=fields
    )


def org_id(value: Any, field: str = "org_id") -> str:
    if not isinstance(value, str) or not ORG_ID.match(value):
        raise invalid({field: "must be 1 to 100 letters, digits, '_', '.', ':' or '-'"})
    return value


def external_id(value: Any, field: str) -> str:
    if not isinstance(value, str) or not EXTERNAL_ID.match(value):
        raise invalid({field: "must be 1 to 100 letters, digits, '_', '.', ':' or '-'"})
    return value


def account_id(value: Any, field: str = "account_id") -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise invalid({field: "must be an account id (a UUID)"})


def name(value: Any, field: str = "name") -> str:
    if not isinstance(value, str) or not value.strip():
        raise invalid({field: "must be a non-empty string"})
    cleaned = " ".join(value.split())
    if len(cleaned) > NAME_MAX:
        raise invalid({field: f"must be at most {NAME_MAX} characters"})
    return cleaned


def settings(value: Any, field: str = "settings") -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > SETTINGS_MAX_KEYS:
        raise invalid({field: f"must be an object of at most {SETTINGS_MAX_KEYS} keys"})
    if not all(isinstance(k, str) and len(k) <= 100 for k in value):
        raise invalid({field: "keys must be strings of at most 100 characters"})
    return value


def credentials(model: type[BaseModel], value: Any) -> BaseModel:
    if not isinstance(value, dict):
        raise invalid({"credentials": "must be an object of credential fields"})
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise invalid(fields_at_fault(exc, "credentials")) from exc
