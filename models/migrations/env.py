"""Alembic environment: runs against the connection or URL that `models.migrate` hands over, or,
run as `alembic` from the repository root (alembic.ini), against `CONNECTIONS_DATABASE_URL`."""

from __future__ import annotations

import os
import warnings
from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy import Connection

import models  # noqa: F401  (registers every table on Base.metadata)
from models.base import DIALECTS, Base
from models.session import make_engine

config = context.config
target_metadata = Base.metadata

if config.config_file_name is not None and config.file_config.has_section("loggers"):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("CONNECTIONS_DATABASE_URL")
    if not url:
        raise SystemExit(
            "error: set CONNECTIONS_DATABASE_URL to the database to migrate "
            "(e.g. postgresql://connections@127.0.0.1:5432/connections)"
        )
    return url


def run_migrations_offline() -> None:
    context.configure(
        url=database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(database_url())
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


def _run(connection: Connection) -> None:
    dialect = connection.dialect.name

    def include_object(obj: Any, _name: Any, type_: str, _reflected: Any, _other: Any) -> bool:
        # An index that exists on some dialects only (models.base.postgresql_expression_index)
        # is no difference on the others.
        dialects = obj.info.get(DIALECTS) if type_ == "index" else None
        return dialects is None or dialect in dialects

    # Batch mode lets the same migrations alter tables on SQLite.
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        include_object=include_object,
    )
    with context.begin_transaction(), warnings.catch_warnings():
        # Other dialects cannot reflect expression indexes, and ours are PostgreSQL's only.
        warnings.filterwarnings("ignore", "autogenerate skipping metadata-specified expression")
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
