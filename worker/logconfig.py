"""structlog setup: JSON in production, readable in development, and no secret in any line.

Secrets are removed twice: by key name (anything that looks like a token, key or password) and by
value (strings shaped like provider secrets, and every secret a job registered while it runs).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import structlog

REDACTED = "[redacted]"
SECRET_KEYS = re.compile(
    r"(token|secret|password|passwd|api_?key|authorization|credential|hmac|signature)|^code$", re.I
)
SECRET_VALUES = re.compile(
    r"\b(sk|rk|pk)_(live|test)_[A-Za-z0-9]{6,}|\bwhsec_[A-Za-z0-9+/=]{6,}|\bshp(at|ca|pa|ss)_[A-Fa-f0-9]{6,}"
)
_known_secrets: ContextVar[tuple[str, ...]] = ContextVar("known_secrets", default=())


@contextmanager
def secrets_known(values: list[str]) -> Iterator[None]:
    """Within this block, these exact strings are scrubbed from every log line."""
    usable = tuple(v for v in values if isinstance(v, str) and len(v) >= 4)
    token = _known_secrets.set(_known_secrets.get() + usable)
    try:
        yield
    finally:
        _known_secrets.reset(token)


def scrub_text(text: str) -> str:
    for secret in _known_secrets.get():
        text = text.replace(secret, REDACTED)
    return SECRET_VALUES.sub(REDACTED, text)


def _scrub(value: Any, depth: int = 0) -> Any:
    if depth > 6:
        return value
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {
            k: REDACTED if isinstance(k, str) and SECRET_KEYS.search(k) else _scrub(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(v, depth + 1) for v in value]
    return value


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: the last word before a line is rendered."""
    for key in list(event_dict):
        value = event_dict[key]
        if key != "event" and SECRET_KEYS.search(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _scrub(value)
    return event_dict


class _ScrubFormatter(logging.Formatter):
    """For lines from libraries that log through the standard library (Celery, uvicorn)."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub_text(super().format(record))


def configure_logging(fmt: str = "auto", level: str = "INFO") -> None:
    """`fmt`: json, console, or auto (console on a terminal, JSON otherwise)."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_secrets,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_ScrubFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
