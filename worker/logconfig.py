"""Logging for every process: JSON lines in production, readable lines on a terminal, and no secret
in any line, whether structlog or a library (Celery, kombu, uvicorn) wrote it.

Secrets are removed by key name (a field that looks like a token, key or password) and by value:
strings shaped like provider secrets or `token=...` pairs, the settings' secrets (known for the
process's life) and those a job or check registered for its block (`secrets_known`).
"""

from __future__ import annotations

import io
import json
import logging
import re
import sys
import threading
from collections.abc import Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from typing import Any
from urllib.parse import quote, quote_plus

import structlog
from pydantic import BaseModel, SecretStr, ValidationError
from structlog.contextvars import merge_contextvars
from structlog.processors import JSONRenderer, TimeStamper, format_exc_info
from structlog.stdlib import ProcessorFormatter, add_log_level, add_logger_name

REDACTED = "[redacted]"
SECRET_KEYS = re.compile(
    r"(token|secret|password|passwd|api_?key|authorization|credential|hmac|signature)|^code$", re.I
)
# No word boundaries: a key glued to other text (`xsk_live_...`, the bytes of a pickled message)
# is found as well.
SECRET_SHAPES = re.compile(
    r"(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{6,}"
    r"|whsec_[A-Za-z0-9+/=]{6,}"
    r"|shp(?:at|ca|pa|ss)_[A-Fa-f0-9]{6,}"
    r"|eyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]*"  # a JWT (Fortnox's tokens)
    r"|pat-(?:na|eu)\d-[A-Fa-f0-9-]{16,}"  # a HubSpot private app token
    r"|(?P<url>://[^\s/:@\"']*:)[^\s/@\"']+(?=@)"  # a URL's password
)
# `token=...`, `"client_secret": "..."` (quotes escaped or not), `Bearer ...`: the value goes.
KEYED_VALUES = re.compile(
    r"(?P<kv>(?<![A-Za-z0-9_])(?i:(?:[a-z]+[_-])*(?:token|secret|password|passwd|api[_-]?key)"
    r"|code|hmac|signature)(?:\\?[\"'])?\s*[=:]\s*(?:\\?[\"'])?|(?i:bearer|basic)\s+)"
    r"(?=[^\s\[])[^\s\"'\\&,;)}\]]{4,}"
)
# A line with none of these (most lines) costs a few substring searches, no regular expression.
SUSPECT_WORDS = "_live_ _test_ whsec_ shp eyj pat- :// token secret passw key code hmac".split()
SUSPECT_WORDS += ["signature", "bearer", "basic"]
PLAIN = re.compile(r"[A-Za-z0-9._~-]*")  # a secret of these characters looks alike escaped

_process_secrets: tuple[str, ...] = ()
_known_secrets: ContextVar[tuple[str, ...]] = ContextVar("known_secrets", default=())


def _forms(values: Iterable[Any]) -> tuple[str, ...]:
    """Each secret as it may appear in a line: itself, JSON- or repr-escaped, URL-encoded."""
    forms: set[str] = set()
    for value in values:
        if not isinstance(value, str) or len(value) < 4:
            continue
        forms.add(value)
        if not PLAIN.fullmatch(value):
            forms.update((json.dumps(value)[1:-1], repr(value)[1:-1]))
            forms.update((quote(value, safe=""), quote_plus(value)))
    return tuple(sorted(forms, key=len, reverse=True))  # a longer secret before its substring


@contextmanager
def secrets_known(values: Iterable[Any]) -> Iterator[None]:
    """Within this block, these exact strings are scrubbed from every log line."""
    token = _known_secrets.set(_known_secrets.get() + _forms(values))
    try:
        yield
    finally:
        _known_secrets.reset(token)


def remember_secrets(values: Iterable[Any]) -> None:
    """Known for the rest of the process's life: the secrets of its settings."""
    global _process_secrets
    _process_secrets = _forms([*_process_secrets, *values])


def secret_values(value: Any, secret: bool = False) -> list[str]:
    """The strings in `value` that are secrets: under a secret-looking key (at any depth, with
    everything below it), or SecretStr; a comma-separated list (of keys) also item by item. (A
    URL's password is recognized by its shape.)"""
    if isinstance(value, SecretStr):
        return secret_values(value.get_secret_value(), True)
    if isinstance(value, str):
        return [value, *(p.strip() for p in value.split(",") if "," in value)] if secret else []
    if isinstance(value, dict):
        found = []
        for key, item in value.items():
            keyed = isinstance(key, str) and bool(SECRET_KEYS.search(key))
            found += secret_values(item, secret or keyed)
        return found
    if isinstance(value, list | tuple):
        return [s for item in value for s in secret_values(item, secret)]
    return []


def _suspect(text: str) -> bool:
    """Whether `text` may hold a secret: cheap, so that most lines skip the scrubbing."""
    lower = text.lower()
    for word in SUSPECT_WORDS:
        if word in lower:
            return True
    for secret in _process_secrets + _known_secrets.get():
        if secret in text:
            return True
    return False


def scrub_text(text: str) -> str:
    """`text` without any secret this process knows or can recognize."""
    if not _suspect(text):
        return text
    for secret in _process_secrets + _known_secrets.get():
        text = text.replace(secret, REDACTED)
    return KEYED_VALUES.sub(_redacted, SECRET_SHAPES.sub(_redacted, text))


def _redacted(match: re.Match[str]) -> str:
    return (match.groupdict().get("kv") or match.groupdict().get("url") or "") + REDACTED


@lru_cache(maxsize=4096)
def _secret_key(key: str) -> bool:
    return bool(SECRET_KEYS.search(key))


def _texts(values: Iterable[Any], depth: int = 0) -> Iterator[str]:
    for value in values:
        if isinstance(value, str):
            yield value
        elif depth < 6 and isinstance(value, dict | list | tuple):
            yield from _texts(value.values() if isinstance(value, dict) else value, depth + 1)


def _scrub(value: Any, strings: bool, depth: int = 0) -> Any:
    if isinstance(value, str):
        return scrub_text(value) if strings else value
    if depth > 6:
        return value
    if isinstance(value, dict):
        return {
            k: REDACTED if isinstance(k, str) and _secret_key(k) else _scrub(v, strings, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(v, strings, depth + 1) for v in value]
    return value


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor, the last before rendering: a field whose name says secret is
    redacted whole, at any depth; every string is scrubbed (`scrub_text`), unless all of them
    together hold nothing suspect (one check for the line, the common case)."""
    return _scrub(event_dict, _suspect("\n".join(_texts(event_dict.values()))))


def wants_json(fmt: str) -> bool:
    """`fmt`: json, console, or auto (console on a terminal, JSON otherwise)."""
    return fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())


class _PrintsAsLogs(io.TextIOBase):
    """A process's stdout or stderr as log lines: what a library or task prints is JSON too."""

    def __init__(self, logger: logging.Logger, level: int, original: Any) -> None:
        self.logger, self.level, self.original = logger, level, original
        self._partial = ""
        self._busy = threading.local()

    def write(self, text: str) -> int:
        if getattr(self._busy, "on", False):  # logging itself reporting an error: not a loop
            return int(self.original.write(text))
        self._busy.on = True
        try:
            *lines, self._partial = (self._partial + text).split("\n")
            for line in lines:
                if line.strip():
                    self.logger.log(self.level, line.rstrip())
        finally:
            self._busy.on = False
        return len(text)


def _process_settings_secrets() -> list[str]:
    """Every SecretStr of the core settings and of each provider's (client and webhook secrets,
    the platform key, the service token, the encryption keys)."""
    from connectors.registry import ConnectorSettings
    from worker.settings import get_settings

    try:
        models: list[BaseModel] = [get_settings(), *ConnectorSettings().values()]
    except ValidationError:
        return []  # the process refuses these settings at start, with its own clear message
    return secret_values([getattr(m, name) for m in models for name in type(m).model_fields])


class _HandlerWriter:
    """structlog's logger: the rendered line goes straight to the root handler's stream, under
    the handler's lock (so lines never interleave), without a LogRecord: by measurement a third
    of the cost of routing structlog through `logging`."""

    def __init__(self, handler: logging.StreamHandler[Any], name: str = "") -> None:
        self.lock, self.stream, self.name = handler.lock, handler.stream, name

    def msg(self, line: str) -> None:
        with self.lock:  # type: ignore[union-attr]
            self.stream.write(line + "\n")
            self.stream.flush()

    debug = info = warning = error = critical = exception = msg


def configure_logging(
    fmt: str = "auto", level: str = "INFO", *, whole_process: bool = False
) -> None:
    """One handler on the root logger; structlog's lines and every library's come out alike.

    `whole_process` (a server: worker, beat, ingest), with JSON: what the process prints, its
    warnings and an uncaught exception become log lines too."""
    use_json = wants_json(fmt)
    stream = sys.stderr.original if isinstance(sys.stderr, _PrintsAsLogs) else sys.stderr
    remember_secrets(_process_settings_secrets())
    # JSON: scrubbed field by field, so a redaction never breaks the JSON. Console: the pretty
    # traceback is rendered last, so the finished line is scrubbed too.
    render: list[Any] = (
        # What JSON cannot hold (an exception, a UUID) is written as its repr, scrubbed.
        [format_exc_info, redact_secrets, JSONRenderer(default=lambda v: scrub_text(repr(v)))]
        if use_json
        else [
            redact_secrets,
            structlog.dev.ConsoleRenderer(colors=stream.isatty()),
            lambda _logger, _method, line: scrub_text(line),
        ]
    )
    shared: list[Any] = [
        merge_contextvars,
        add_log_level,
        add_logger_name,
        TimeStamper("iso", utc=True),
    ]
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[ProcessorFormatter.remove_processors_meta, *render],
        )
    )
    numeric = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[*shared, *render],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=lambda *names: _HandlerWriter(handler, *names[:1]),
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    if use_json and whole_process:
        logging.captureWarnings(True)
        sys.excepthook = lambda *exc: logging.getLogger().critical("uncaught", exc_info=exc)
        sys.stdout = _PrintsAsLogs(logging.getLogger("stdout"), logging.INFO, sys.__stdout__)
        sys.stderr = _PrintsAsLogs(logging.getLogger("stderr"), logging.WARNING, stream)


def root_handler(fmt: str, log_level: str) -> logging.Handler:
    """For `logging.config.dictConfig`: configure this process and return its root handler."""
    configure_logging(fmt, log_level, whole_process=True)
    return logging.getLogger().handlers[0]


def uvicorn_log_config(fmt: str, level: str) -> dict[str, Any]:
    """uvicorn's `log_config`: applied in every server process, the spawned children of
    `--workers N` too (which run nothing of ours before); uvicorn's loggers reach the root."""
    handler = {"()": f"{__name__}.root_handler", "fmt": fmt, "log_level": level}
    root = {"handlers": ["root"], "level": level.upper()}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"root": handler},
        "root": root,
    }
