"""The SQLAlchemy handle, the Alembic wiring and the portable column types."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import Connection, DateTime, Engine, MetaData, TypeDecorator, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase

# Explicit constraint names so Alembic migrations diff cleanly on both databases.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)
migrate = Migrate()


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored in UTC and always read back timezone-aware (SQLite drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


@event.listens_for(Engine, "connect")
def _tune_sqlite(dbapi_connection: object, connection_record: object) -> None:
    """Make SQLite behave like PostgreSQL where filters depend on it."""
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    # SQLite's lower() folds ASCII only; filters rely on Unicode case folding (MÜLLER = Müller),
    # which PostgreSQL's lower() does under a UTF-8 locale.
    dbapi_connection.create_function("lower", 1, _lower, deterministic=True)
    cursor = dbapi_connection.cursor()
    # LIKE must be case-sensitive, as on PostgreSQL: case-insensitive matches lower() both sides.
    cursor.execute("PRAGMA case_sensitive_like = ON")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA journal_mode = WAL")  # readers do not block the writer
    cursor.close()
    # Transactions are begun by the listener below, not by the driver's own heuristics.
    dbapi_connection.isolation_level = None


@event.listens_for(Engine, "begin")
def _begin_immediate(connection: Connection) -> None:
    """Take SQLite's write lock when a transaction begins, not half-way through it.

    A transaction that read and then writes cannot wait for a concurrent writer in WAL mode:
    SQLite fails it at once ("database is locked"). Beginning IMMEDIATE makes concurrent
    requests (gunicorn threads and workers) queue on the busy timeout instead.
    """
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


# PostgreSQL's serialization_failure and deadlock_detected: the transaction was rolled back
# through no fault of its own, and running it again from the start is expected to succeed.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})


def is_retryable(error: DBAPIError) -> bool:
    """A write that lost a serialization conflict or a deadlock, to run again from a fresh read."""
    return getattr(error.orig, "sqlstate", None) in RETRYABLE_SQLSTATES
