"""The process's dependencies, made once per process (after fork, under prefork Celery), and the
checks every process makes at start: settings that parse, usable keys, a reachable database."""

from __future__ import annotations

import gc
import os
import threading
from typing import Any

from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from connectors import Connectors, ConnectorSettings
from connectors.registry import PROVIDERS
from models import Database
from worker.service.deps import Deps
from worker.settings import Settings, get_settings
from worker.vault import KeysMisconfigured, Vault

_lock = threading.Lock()
_deps: Deps | None = None
_pid: int | None = None

# How long a process waits at start for the database before saying it is unreachable.
CONNECT_TIMEOUT_SECONDS = 10


class ConfigurationError(Exception):
    """The process cannot start: a setting is missing or malformed, or what it names cannot be
    reached. The message is one line naming the setting, never its value."""


def load_settings() -> Settings:
    """This process's settings, or a ConfigurationError naming each malformed one."""
    try:
        return get_settings()
    except ValidationError as exc:
        raise ConfigurationError(problems(exc, "CONNECTIONS_")) from None


def problems(exc: ValidationError, prefix: str) -> str:
    """`CONNECTIONS_NAME: what is wrong` for each error, never echoing the value."""
    said = []
    for error in exc.errors(include_input=False, include_url=False):
        name = prefix + "_".join(str(p) for p in error["loc"]).upper() if error["loc"] else prefix
        said.append(f"{name.rstrip('_')}: {error['msg'].removeprefix('Value error, ')}")
    return "; ".join(said)


def connector_settings() -> ConnectorSettings:
    """Each provider's settings from the environment, a malformed one named with its prefix."""
    given = {}
    for type_, spec in PROVIDERS.items():
        try:
            given[type_] = spec.settings()
        except ValidationError as exc:
            prefix = str(spec.settings.model_config.get("env_prefix", ""))
            raise ConfigurationError(problems(exc, prefix)) from None
    return ConnectorSettings(given)


def open_vault(settings: Settings) -> Vault:
    try:
        return Vault.from_setting(
            settings.encryption_keys.get_secret_value() if settings.encryption_keys else None,
            settings.var_dir,
            allow_dev_key=settings.is_embedded,
        )
    except KeysMisconfigured as exc:
        raise ConfigurationError(str(exc)) from None


NOT_A_URL = (
    "CONNECTIONS_DATABASE_URL is not a database URL "
    "(postgresql://user:password@host:5432/name, or sqlite:///path/to/file.db)"
)


def open_database(url: str, **engine_kwargs: Any) -> Database:
    """A Database for the URL; a malformed URL or an unknown database is a ConfigurationError
    (SQLAlchemy's own message may quote the URL, and with it a password)."""
    try:
        return Database(url, **engine_kwargs)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise ConfigurationError(NOT_A_URL) from None
    except (NoSuchModuleError, ImportError):
        raise ConfigurationError(
            "CONNECTIONS_DATABASE_URL names a database or driver this worker does not support; "
            "use postgresql:// (psycopg 3) or sqlite:///"
        ) from None
    except OSError as exc:  # SQLite: the file's directory cannot be made
        raise ConfigurationError(
            f"cannot create the SQLite database's directory (CONNECTIONS_DATABASE_URL): "
            f"{exc.strerror or exc}"
        ) from None


def shown(url: str) -> str:
    """The URL with its password hidden, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def check_database(url: str) -> None:
    """Connect once, with a short timeout; a ConfigurationError if the database cannot be
    reached. A probe engine of its own, so the process's pool keeps its usual options."""
    try:
        postgres = make_url(url).get_backend_name() == "postgresql"
    except (ArgumentError, ValueError):
        raise ConfigurationError(NOT_A_URL) from None
    timeout = {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    probe = open_database(url, **({"connect_args": timeout} if postgres else {}))
    try:
        with probe.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except DBAPIError as exc:
        said = str(exc.orig if exc.orig is not None else exc).strip()
        cause = said.splitlines()[0] if said else type(exc.orig).__name__
        raise ConfigurationError(
            f"cannot reach the database at {shown(url)} (CONNECTIONS_DATABASE_URL): {cause}"
        ) from None
    finally:
        probe.dispose()


def build_deps(settings: Settings) -> Deps:
    """The database, the vault and the connectors; a ConfigurationError when a setting they need
    is missing or malformed. Nothing is connected yet (see `started_deps`)."""
    vault = open_vault(settings)
    connectors = Connectors(connector_settings())
    return Deps(db=open_database(settings.database_url), vault=vault, connectors=connectors)


def started_deps(settings: Settings | None = None) -> Deps:
    """What a process checks at start, then uses: settings, keys, and a database that answers.
    The caller closes what it gets (`close_deps`)."""
    settings = settings or load_settings()
    deps = build_deps(settings)
    try:
        check_database(settings.database_url)
    except ConfigurationError:
        close_deps(deps)
        raise
    return deps


def close_deps(deps: Deps) -> None:
    deps.connectors.close()
    deps.db.dispose()


def get_deps() -> Deps:
    """This process's dependencies; a forked child builds its own instead of sharing sockets."""
    global _deps, _pid
    with _lock:
        if _deps is None or _pid != os.getpid():
            _deps = build_deps(get_settings())
            _pid = os.getpid()
        return _deps


def reset_deps() -> None:
    global _deps, _pid
    with _lock:
        if _deps is not None and _pid == os.getpid():
            close_deps(_deps)
        _deps = None
        _pid = None


def tune_collector() -> None:
    """Garbage collection for a worker process that allocates much per check and keeps little:
    what exists at process start (the imported code) is frozen out of every collection, and a
    collection waits for 10,000 new objects instead of 700. By measurement this saves about
    40 us of CPU per scheduled check (bench/README.md); reference cycles live a little longer."""
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
