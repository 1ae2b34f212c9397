"""SQL shared by the services."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, any_, literal
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session


def among(session: Session, column: Any, values: Iterable[Any]) -> ColumnElement[bool]:
    """`column IN values`. On PostgreSQL `column = ANY(array)`: one parameter whatever the count,
    so the statement's text stays constant and is parsed and planned once (by measurement about
    1 ms less CPU per statement of 200 ids)."""
    listed = list(values)
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(literal(listed, ARRAY(column.type)))
    return column.in_(listed)
