"""Every SQL statement the service runs lives in this package, one module per resource type."""

import functools
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, String, any_, bindparam, inspect
from sqlalchemy.dialects.postgresql import ARRAY

from app.db import db

T = TypeVar("T")

CHUNK = 5000  # ids per IN (...) list: far below SQLite's 32,766 bound parameters (3.32+)


def chunks(items: list[T]) -> Iterator[list[T]]:
    """`items` in slices small enough for one IN (...) list or one multi-row INSERT each."""
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def could_be_id(text: str) -> bool:
    """False for text no resource id can be (ids are UUIDs): answered 404 without a query.

    PostgreSQL cannot even compare a string holding NUL (`GET /Users/%00`).
    """
    return len(text) <= 64 and "\x00" not in text


def one_of(column: Any, values: list[str]) -> ColumnElement[bool]:
    """`column IN (values)`; on PostgreSQL `= ANY(array)`, one parameter however many values.

    Binding thousands of parameters one by one costs the client more than the query costs the
    server (a 20,000-member list, say).
    """
    if db.session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=ARRAY(String)))
    return column.in_(values)


def one_of_parameter(column: Any, name: str, dialect: str) -> ColumnElement[bool]:
    """one_of for a statement built once: the values a required parameter `name` (a list)."""
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=ARRAY(String), required=True))
    return column.in_(bindparam(name, expanding=True, required=True))


@functools.cache
def entity_columns(model: type[Any]) -> tuple[Any, ...]:
    """The columns an entity of `model` loads (all but the deferred): a read of these as
    columns gives what `as_entity` needs."""
    mapper = inspect(model)
    return tuple(
        column
        for column in model.__table__.columns
        if not mapper.get_property_by_column(column).deferred
    )


def as_entity(model: type[T], values: Mapping[str, Any]) -> T:
    """An instance of `model` outside the session, holding `values` as its loaded attributes:
    a row just written by statement, or read as columns, for code that reads it as an entity
    and writes it by statement. Made as the ORM makes a row it loads (no __init__): the model's
    constructor sends every column through the attribute events that track changes for a
    flush, which such a row never has (28 µs of a user's 30), and the session's loading of
    an entity cost a GET by id 4% of its instructions."""
    instance = inspect(model).class_manager.new_instance()
    instance.__dict__.update(values)
    return instance
