"""The SQLAlchemy handle, the Alembic wiring and the portable column types."""

from __future__ import annotations

import functools
import itertools
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from enum import Enum
from typing import Any, ParamSpec, Protocol, TypeVar

from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import (
    URL,
    Connection,
    DateTime,
    Engine,
    MetaData,
    PrimaryKeyConstraint,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
    literal_column,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import DeclarativeBase, Session, scoped_session
from sqlalchemy.pool import NullPool, Pool, QueuePool

from app.writer_queue import QueueTimeout, WriterQueue

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")

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


# Objects keep their values after commit: the response to a write is built from what was
# written, so no read-back after COMMIT can fail a write that already happened.
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})
migrate = Migrate()


def migration_engine(config: Mapping[str, object]) -> Engine:
    """The engine `flask db` migrates with, from the app's config: MIGRATION_DATABASE_URL's when
    set (on PostgreSQL the tables' owner, while the service connects as a role that is not;
    docs/tenancy.md), else the app's own. Unpooled: a connection closes when released."""
    url = config.get("MIGRATION_DATABASE_URL")
    if not isinstance(url, str) or not url:
        return db.engine
    # The same bounds as the service's connections (SCIM_DB_TIMEOUT_SECONDS), not its pool.
    options = config["SQLALCHEMY_ENGINE_OPTIONS"]
    connect_args = options.get("connect_args", {}) if isinstance(options, dict) else {}
    return create_engine(url, poolclass=NullPool, connect_args=connect_args)


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

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any] | None:
        """On SQLite, text as SQLAlchemy writes it (2026-11-23 09:51:49.123456) is read by
        datetime.fromisoformat, a tenth of the time of its parser and process_result_value
        (a page of 100 users reads 200); any other text as before."""
        general = super().result_processor(dialect, coltype)
        if dialect.name != "sqlite" or general is None:
            return general

        def read(value: Any) -> datetime | None:
            if type(value) is str and len(value) == 26 and value[10] == " ":
                return datetime.fromisoformat(value + "+00:00")
            return general(value)

        return read


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
    # ANALYZE (run by PRAGMA optimize below) samples this many rows per index: fast at any size.
    cursor.execute("PRAGMA analysis_limit = 1000")
    cursor.close()
    # Transactions are begun by the listener below, not by the driver's own heuristics.
    dbapi_connection.isolation_level = None


# Whether the transactions begun now will only read (see start_reading_only).
_reads_only: ContextVar[bool] = ContextVar("reads_only", default=False)


# How often each pooled SQLite connection refreshes the planner's statistics (seconds).
SQLITE_OPTIMIZE_SECONDS = 5.0


@event.listens_for(Pool, "checkin")
def _keep_sqlite_statistics(dbapi_connection: object, connection_record: object) -> None:
    """SQLite: refresh the query planner's statistics now and then (PRAGMA optimize, as SQLite
    advises for long-lived connections).

    Without them SQLite cannot tell a selective index from a broad one: a lookup by externalId
    walked the tenant's creation-order index to avoid a sort, reading every user. The refresh
    runs when a connection returns to the pool, at most every SQLITE_OPTIMIZE_SECONDS; it
    analyses only tables whose size changed much, sampling rows (analysis_limit). It never
    waits for the write lock: a busy database skips it until next time.
    """
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    info = connection_record.info  # type: ignore[attr-defined]
    now = time.monotonic()
    if now < info.get("scim_optimize_due", 0.0):
        return
    info["scim_optimize_due"] = now + SQLITE_OPTIMIZE_SECONDS
    try:
        (timeout,) = dbapi_connection.execute("PRAGMA busy_timeout").fetchone()
        dbapi_connection.execute("PRAGMA busy_timeout = 0")
        try:
            dbapi_connection.execute("PRAGMA optimize")
        finally:
            dbapi_connection.execute(f"PRAGMA busy_timeout = {int(timeout)}")
    except sqlite3.Error as e:  # busy, or a connection already broken: next time
        log.debug("PRAGMA optimize skipped: %s", e)


# A pooled connection that sat unused this long is pinged before use (SELECT 1).
PING_AFTER_IDLE_SECONDS = 1.0


@event.listens_for(Pool, "checkin")
def _note_idle_since(dbapi_connection: object, connection_record: object) -> None:
    connection_record.info["scim_idle_since"] = time.monotonic()  # type: ignore[attr-defined]


@event.listens_for(Pool, "checkout")
def _ping_if_idle(dbapi_connection: object, connection_record: object, proxy: object) -> None:
    """A connection that waited in the pool is pinged before a request uses it, and replaced
    when the database no longer answers on it (restarted, or the network cut): the pool then
    opens a fresh one (DisconnectionError), so the first request after an outage succeeds.

    SQLAlchemy's pool_pre_ping pings at every checkout, a round trip per request; one that was
    returned a moment ago (steady traffic) was alive then. Should it have died since, the
    request's statement fails as an outage (a retryable 503, or read again on a new
    connection), and SQLAlchemy then replaces every connection the pool holds. SQLite is a
    file: nothing to ping.
    """
    if isinstance(dbapi_connection, sqlite3.Connection):
        return
    info = connection_record.info  # type: ignore[attr-defined]
    idle_since = info.get("scim_idle_since")  # none yet: a connection opened just now
    if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
        return
    try:
        cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
        try:
            cursor.execute("SELECT 1")
        finally:
            cursor.close()
        dbapi_connection.rollback()  # type: ignore[attr-defined]
    except Exception as e:  # any driver error: the connection is of no use
        raise DisconnectionError(f"pooled connection failed its ping: {type(e).__name__}") from e


@event.listens_for(Engine, "begin")
def _begin(connection: Connection) -> None:
    """How a transaction begins: on SQLite, taking the write lock at once unless it only reads;
    on PostgreSQL, not at all when it only reads.

    SQLite: a transaction that read and then writes cannot wait for a concurrent writer in WAL
    mode: SQLite fails it at once ("database is locked"). Beginning IMMEDIATE makes concurrent
    requests (gunicorn threads and workers) queue for the lock instead (_begin_writing).
    Transactions known to only read begin DEFERRED: in WAL mode they read a snapshot and never
    wait for a writer, nor make one wait.

    PostgreSQL: a read runs its statements in autocommit (psycopg then sends no BEGIN, and
    the request's end no ROLLBACK): two round trips fewer for a lookup of one statement. It
    sees what it would have seen in a transaction: at PostgreSQL's READ COMMITTED, the level
    used here, each statement of a transaction takes a snapshot of its own anyway. The
    connection goes back to transactions when it next writes, or when it returns to the pool
    (_end_autocommit). Only code that never writes may run as a read (start_reading_only):
    in autocommit each statement would commit by itself.
    """
    if connection.dialect.name == "sqlite":
        if _reads_only.get():
            connection.exec_driver_sql("BEGIN")
        else:
            _begin_writing(connection)
    elif _reads_only.get():
        driver: Any = connection.connection.dbapi_connection
        if not driver.autocommit:  # else its engine runs in autocommit: nothing to undo
            driver.autocommit = True
            connection.connection.info[_READING_OUTSIDE_TRANSACTIONS] = True
    elif connection.connection.info.pop(_READING_OUTSIDE_TRANSACTIONS, False):
        # A connection that read, still checked out, now writes: in a transaction again.
        connection.connection.dbapi_connection.autocommit = False  # type: ignore[union-attr]


def in_autocommit(connection: Connection) -> bool:
    """Whether this PostgreSQL connection runs a read outside any transaction (_begin)."""
    return bool(getattr(connection.connection.dbapi_connection, "autocommit", False))


_READING_OUTSIDE_TRANSACTIONS = "scim_reading_outside_transactions"  # a pooled connection's info


@event.listens_for(Pool, "checkin")
def _end_autocommit(dbapi_connection: object, connection_record: object) -> None:
    """A connection that _begin put in autocommit goes back to transactions (not one that its
    engine runs in autocommit: `isolation_level="AUTOCOMMIT"`)."""
    reading = connection_record.info.pop(_READING_OUTSIDE_TRANSACTIONS, False)  # type: ignore[attr-defined]
    if reading and dbapi_connection is not None and not dbapi_connection.closed:  # type: ignore[attr-defined]
        dbapi_connection.autocommit = False  # type: ignore[attr-defined]


# How long a writer waiting for SQLite's lock sleeps between tries: doubling from the first to
# the last, then the last until its busy timeout is spent.
_WRITER_NAPS = (0.0002, 0.0004, 0.0008, 0.0016)


def _begin_writing(connection: Connection) -> None:
    """BEGIN IMMEDIATE, waiting up to the connection's busy timeout for the write lock.

    SQLite's own busy handler waits in steps that grow to 100 ms: with eight requests writing
    at once, a writer could sleep through many commits (the 99th percentile of a PUT was 0.8 s
    where its median was 47 ms). Trying again every few tenths of a millisecond takes the lock
    within a moment of its release; the tries are SQLite calls of microseconds. The threads of
    this process try one at a time, in the order they came (app.writer_queue), so that no
    writer keeps losing to later ones. Other statements keep the busy timeout (in WAL mode only
    beginning a write waits for a lock).
    """
    raw = connection.connection.dbapi_connection
    (timeout_ms,) = raw.execute("PRAGMA busy_timeout").fetchone()
    deadline = time.monotonic() + timeout_ms / 1000
    try:
        with _writers.first_in_line(timeout_ms / 1000):
            raw.execute("PRAGMA busy_timeout = 0")
            try:
                for attempt in itertools.count():
                    try:
                        if attempt == 0:
                            connection.exec_driver_sql("BEGIN IMMEDIATE")
                        else:
                            # Tries again on the driver's connection: SQLAlchemy's handling of
                            # each refusal cost more CPU than the try (a writer at 8 requests
                            # writing tried a dozen times).
                            raw.execute("BEGIN IMMEDIATE")
                        return
                    except (OperationalError, sqlite3.OperationalError) as e:
                        refusal = getattr(e, "orig", e)
                        busy = getattr(refusal, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY
                        if not busy or time.monotonic() >= deadline:
                            if isinstance(e, OperationalError):
                                raise
                            raise OperationalError("BEGIN IMMEDIATE", None, e) from None
                    time.sleep(_WRITER_NAPS[min(attempt, len(_WRITER_NAPS) - 1)])
            finally:
                raw.execute(f"PRAGMA busy_timeout = {int(timeout_ms)}")
    except QueueTimeout:
        # As SQLite says it when its own wait for the lock runs out: the same 503 follows.
        raise OperationalError(
            "BEGIN IMMEDIATE", None, sqlite3.OperationalError("database is locked")
        ) from None


_writers = WriterQueue()  # one per process: its threads share the SQLite file's lock


def start_reading_only() -> Token[bool]:
    """From now on, in this context, transactions only read (a GET, a .search): on SQLite they
    take no write lock, on PostgreSQL they are no transactions (_begin). A write begun
    meanwhile could fail at once on SQLite when another writer got there first, and would not
    be atomic on PostgreSQL, so only code that never writes may run under it. Undo with
    stop_reading_only.
    """
    return _reads_only.set(True)


def reads_only() -> bool:
    """Whether transactions begun now only read (start_reading_only)."""
    return _reads_only.get()


def stop_reading_only(token: Token[bool]) -> None:
    _reads_only.reset(token)


@contextmanager
def reading_only() -> Iterator[None]:
    """start_reading_only for the duration of a block."""
    token = start_reading_only()
    try:
        yield
    finally:
        stop_reading_only(token)


@contextmanager
def writing() -> Iterator[None]:
    """Within a reading-only context (a GET), a block whose transactions write: on SQLite they
    take the write lock when they begin. The session's transaction must have ended before it."""
    token = _reads_only.set(False)
    try:
        yield
    finally:
        _reads_only.reset(token)


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


# --- What statements and the pool cost, for app/metrics.py (attached only when metrics are on)


class _StatementClock(threading.local):
    """Per thread, as a gunicorn gthread worker serves one request per thread at a time: the
    seconds its statements took so far, and when the one running now began (0: none runs)."""

    seconds = 0.0
    started = 0.0


_clock = _StatementClock()


def statement_seconds() -> float:
    """The seconds this thread has spent in SQL statements so far: a request's share is the
    difference between its end and its start, so nothing needs resetting between requests."""
    return _clock.seconds


def time_statements(engine: Engine) -> None:
    """From now on, add the time each of `engine`'s statements takes to statement_seconds():
    from the cursor's execute to its return (COMMIT and the pool's pre-ping are not statements
    run on a cursor, and are not counted)."""
    # retval=True: SQLAlchemy calls the listener as it is, without a wrapper that returns the
    # statement for it (one call less per statement).
    event.listen(engine, "before_cursor_execute", _statement_starts, retval=True)
    event.listen(engine, "after_cursor_execute", _statement_ends)
    event.listen(engine, "handle_error", _statement_failed)  # a lock timeout takes seconds too


def _statement_starts(
    _connection: object,
    _cursor: object,
    statement: str,
    parameters: object,
    _context: object,
    _executemany: bool,
) -> tuple[str, object]:
    _clock.started = time.perf_counter()
    return statement, parameters


def _statement_ends(*_: object) -> None:
    _clock.seconds += time.perf_counter() - _clock.started
    _clock.started = 0.0


def _statement_failed(_context: object) -> None:
    # Also called when connecting fails, with no statement started.
    if _clock.started:
        _statement_ends()


def watch_checkouts(engine: Engine, report: Callable[[int], None]) -> None:
    """Call `report` with the number of `engine`'s pooled connections this process has checked
    out, whenever it changes.

    Counted from the pool's events, pairing each checkin with a checkout seen: a connection
    whose checkout failed part-way (a pre-ping that could not reconnect) is checked in without
    having been checked out, and a detached one is never checked in.
    """
    out: set[object] = set()
    lock = threading.Lock()

    def checked_out(_dbapi: object, record: object, _proxy: object) -> None:
        with lock:
            out.add(record)
            report(len(out))

    def returned(_dbapi: object, record: object) -> None:
        with lock:
            if record in out:
                out.discard(record)
                report(len(out))

    event.listen(engine, "checkout", checked_out)
    event.listen(engine, "checkin", returned)
    event.listen(engine, "detach", returned)


def pool_limits(engine: Engine) -> tuple[int, int]:
    """(pool_size, max_overflow) of `engine`'s pool: the connections kept open, and how many
    more it opens under load; (0, 0) for a pool without such bounds (SQLite in memory)."""
    pool = engine.pool
    if not isinstance(pool, QueuePool):
        return 0, 0
    # QueuePool has no public accessor for max_overflow; -1 (unbounded) is never configured here.
    return pool.size(), max(getattr(pool, "_max_overflow", 0), 0)


# PostgreSQL's serialization_failure and deadlock_detected: the transaction was rolled back
# through no fault of its own, and running it again from the start is expected to succeed.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})


def is_retryable(error: DBAPIError) -> bool:
    """A write that lost a serialization conflict or a deadlock, to run again from a fresh read."""
    return getattr(error.orig, "sqlstate", None) in RETRYABLE_SQLSTATES


def violated_constraint(error: IntegrityError) -> str | None:
    """The name of the unique index or constraint a write ran into; None when not known.

    PostgreSQL names it. SQLite names only the columns ("UNIQUE constraint failed:
    users.user_name_key"; a partial unique index too), so the models' metadata names the index.
    """
    original = error.orig
    named = getattr(getattr(original, "diag", None), "constraint_name", None)
    if named or not isinstance(original, sqlite3.IntegrityError):
        return named
    failed = str(original).removeprefix("UNIQUE constraint failed: ")
    if failed == str(original):
        return None  # NOT NULL, CHECK, FOREIGN KEY: SQLite does not say which one
    if quoted := re.fullmatch(r"index '(.+)'", failed):  # an index on expressions
        return quoted[1]
    return _unique_by_columns().get(failed)


_UNIQUE_KINDS = (UniqueConstraint, PrimaryKeyConstraint)


def _unique_by_columns() -> dict[str, str | None]:
    """Every unique index and constraint of the models, keyed as SQLite's message lists columns
    ("group_members.group_id, group_members.member_id"); None where two share the columns."""
    out: dict[str, str | None] = {}
    for table in db.metadata.tables.values():
        constraints = [c for c in table.constraints if isinstance(c, _UNIQUE_KINDS)]
        for constraint in [*(i for i in table.indexes if i.unique), *constraints]:
            key = ", ".join(f"{table.name}.{column.name}" for column in constraint.columns)
            out[key] = None if key in out else constraint.name
    return out


# SQLSTATE classes and codes after which the same request, sent again, can succeed: the
# connection broke (08), the server is short of resources or shutting down (53, 57P0x), a
# statement or lock wait hit SCIM_DB_TIMEOUT_SECONDS (57014, 55P03), a lost race (40xxx).
_TRANSIENT_CLASSES = ("08", "40", "53")
_TRANSIENT_SQLSTATES = frozenset({"57014", "57P01", "57P02", "57P03", "55P03", "25P03"})
# The data itself is what the database refused (class 22, data exception; 54, program limit
# exceeded, such as an index entry too large): sending it again cannot succeed.
_DATA_CLASSES = ("22", "54")
# SQLite says OperationalError for programming errors too; only these mean "unavailable".
_SQLITE_UNAVAILABLE = ("locked", "busy", "unable to open", "disk i/o")


def is_unavailable(error: BaseException) -> bool:
    """The database is down, unreachable, overloaded or too slow: a retry can succeed."""
    original = getattr(error, "orig", None)
    if isinstance(original, sqlite3.Error):
        return any(reason in str(original).lower() for reason in _SQLITE_UNAVAILABLE)
    sqlstate = getattr(original, "sqlstate", None)
    if sqlstate is None:
        # No answer from the server at all (a dropped connection, a pool timeout).
        return isinstance(error, OperationalError | InterfaceError) or original is None
    return sqlstate in _TRANSIENT_SQLSTATES or sqlstate.startswith(_TRANSIENT_CLASSES)


def is_refused_data(error: BaseException) -> bool:
    """The database refused a value sent to it (too large, malformed): the client's to fix."""
    sqlstate = getattr(getattr(error, "orig", None), "sqlstate", None) or ""
    return sqlstate.startswith(_DATA_CLASSES)


# What a request can end with when the database fails it; the HTTP edge registers a handler
# for each and asks `fault` what to answer.
REQUEST_ERRORS: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    PoolTimeout,
    DataError,
)


class Fault(Enum):
    REFUSED_DATA = "refused data"  # a value the database cannot hold: the client's to fix
    UNAVAILABLE = "unavailable"  # down, unreachable or too slow: a retry can succeed


def fault(error: BaseException) -> Fault | None:
    """Whose fault one of REQUEST_ERRORS is; None when it is a bug, not the database's state
    (SQLite says OperationalError for "no such table" too)."""
    if is_refused_data(error):
        return Fault.REFUSED_DATA
    if is_unavailable(error):
        return Fault.UNAVAILABLE
    return None


def error_class(error: BaseException) -> str:
    """The driver's error class (and SQLSTATE): enough to diagnose, no SQL and no parameters."""
    original = getattr(error, "orig", None) or error
    sqlstate = getattr(original, "sqlstate", None)
    name = type(original).__name__
    return f"{name} (SQLSTATE {sqlstate})" if sqlstate else name


def is_missing_table(error: BaseException) -> bool:
    """The migrations have not run: SQLite's "no such table", PostgreSQL's undefined_table."""
    original = getattr(error, "orig", None)
    return getattr(original, "sqlstate", None) == "42P01" or "no such table" in str(original)


def describe_outage(error: BaseException) -> str:
    """`describe_failure` for the database of the current app."""
    return describe_failure(error, db.engine.url)


def describe_failure(error: BaseException, url: URL) -> str:
    """One line for the operator: which database (host, port, name, user) and what went wrong.

    For connection failures and outages (`is_unavailable`), whose driver messages carry no SQL
    and no values; a value the database refused is logged by class and SQLSTATE only. Never the
    password: the URL's is not shown, and scrubbed from the driver's text should it appear.
    """
    return f"{_database_name(url)}: {_failure_cause(error, url.password)}"


def _database_name(url: URL) -> str:
    if url.get_backend_name() == "sqlite":
        return f'SQLite database "{url.database or ":memory:"}"'
    host = url.host or url.query.get("host") or "localhost"  # no host: the local socket
    where = f'PostgreSQL database "{url.database}" on {host}:{url.port or 5432}'
    return f'{where} as user "{url.username}"' if url.username else where


# libpq's wording around the reason: 'connection failed: connection to server at "127.0.0.1",
# port 1 failed: Connection refused', 'FATAL:  database "x" does not exist'.
_LIBPQ_NOISE = re.compile(
    r'^(connection failed: )?(connection to server (at|on socket) "[^"]*"( \([^)]*\))?'
    r"(, port \d+)? failed: )?((FATAL|ERROR): +)?"
)
_MAX_CAUSE_CHARS = 300


def _failure_cause(error: BaseException, password: str | None) -> str:
    original = getattr(error, "orig", None) or error
    diagnostic = getattr(original, "diag", None)
    text = getattr(diagnostic, "message_primary", None) or str(original)
    # psycopg lists every address it tried after the first failure; the first says it.
    text = text.split("\nMultiple connection attempts failed", 1)[0]
    # SQLAlchemy's own errors (a pool timeout) end with a link to its documentation.
    text = text.split(" (Background on this error at:", 1)[0]
    lines = [_LIBPQ_NOISE.sub("", line.strip()) for line in text.splitlines()]
    cause = "; ".join(line for line in lines if line) or type(original).__name__
    if len(cause) > _MAX_CAUSE_CHARS:
        cause = cause[: _MAX_CAUSE_CHARS - 3] + "..."
    if password:
        cause = cause.replace(password, "***")
    sqlstate = getattr(original, "sqlstate", None)
    return f"{cause} (SQLSTATE {sqlstate})" if sqlstate else cause


def end_request(session: Session | scoped_session[Session]) -> None:
    """Discard whatever a request left uncommitted; never raise for a connection already gone.

    Runs at teardown, after the response is built: a database that dropped the connection
    (a restart, pg_terminate_backend) must not turn that response into an HTML 500.
    """
    try:
        session.rollback()
    except SQLAlchemyError as e:
        log.warning("rollback at the end of a request failed: %s", type(e).__name__)
        # Close the connections without talking to them; the pool replaces them.
        (session() if isinstance(session, scoped_session) else session).invalidate()


class Enclosing(Protocol):
    """A larger transaction a change runs in (app/store/batch.py): what the change's commit
    and rollback mean there."""

    def commit(self, session: Session) -> None: ...

    def rollback(self, session: Session) -> None: ...


_enclosing: ContextVar[Enclosing | None] = ContextVar("scim_enclosing", default=None)


@contextmanager
def enclosed(transaction: Enclosing | None) -> Iterator[None]:
    """Within the block, commit() and rollback() end a change in `transaction` (None: in a
    transaction of its own again)."""
    token = _enclosing.set(transaction)
    try:
        yield
    finally:
        _enclosing.reset(token)


def rollback(session: Session | scoped_session[Session]) -> None:
    """Undo the change under way: its transaction, or its savepoint in an enclosing one."""
    if (enclosing := _enclosing.get()) is not None:
        enclosing.rollback(_plain(session))
        return
    session.rollback()


def _plain(session: Session | scoped_session[Session]) -> Session:
    return session() if isinstance(session, scoped_session) else session


def commit(session: Session | scoped_session[Session]) -> None:
    """Commit; on PostgreSQL, a commit whose answer was lost is looked up, not guessed at.

    Within an enclosing transaction (enclosed), the change ends there instead, and commits
    with it.

    When the connection breaks during COMMIT, the server may have committed before it could
    answer. Answering 503 then would make the IdP retry a write that happened (a create would
    come back 409). pg_xact_status tells, on a fresh connection, what became of the
    transaction; only a transaction that did not commit raises. Its id is known before the
    COMMIT is sent: returned by the change's audit row (TRANSACTION_ID), else asked for just
    before (_know_the_transaction), when every row of the change has been written.
    """
    if (enclosing := _enclosing.get()) is not None:
        enclosing.commit(_plain(session))
        return
    if session.get_bind().dialect.name != "postgresql":
        session.commit()
        return
    wanted = _transaction_id.set(_WANTED)
    try:
        session.commit()
    except (OperationalError, InterfaceError) as e:
        xid = _transaction_id.get()
        if xid is _WANTED or xid is None or not is_unavailable(e):
            raise
        end_request(session)
        if _committed(session, xid):
            log.warning("the commit's answer was lost, but transaction %s committed", xid)
            return
        raise
    finally:
        _transaction_id.reset(wanted)


# A PostgreSQL write's transaction id, for commit(): unset outside commit(), _WANTED until a
# statement returned it or the COMMIT is about to be sent, then the id (None: it wrote nothing).
_WANTED = "wanted"
_transaction_id: ContextVar[str | None] = ContextVar("scim_transaction_id", default=None)

# What a statement of a PostgreSQL write returns to save commit() asking for its transaction's
# id (a round trip): its last INSERT, the audit row's, returns it (transaction_id_returned).
TRANSACTION_ID = literal_column("pg_current_xact_id()::text")


def transaction_id_returned(xid: str | None) -> None:
    """A statement of the write under way returned its TRANSACTION_ID."""
    if _transaction_id.get() is _WANTED and xid is not None:
        _transaction_id.set(xid)


@event.listens_for(Engine, "commit")
def _know_the_transaction(connection: Connection) -> None:
    """Just before commit() sends COMMIT: the transaction's id, unless a statement returned it
    (a Bulk's audit rows are written with its other rows, by the session)."""
    if _transaction_id.get() is _WANTED:
        query = "SELECT pg_current_xact_id_if_assigned()::text"
        _transaction_id.set(connection.exec_driver_sql(query).scalar())


def read_again_on_outage(read: Callable[P, T]) -> Callable[P, T]:
    """A read outside any write, run once more on a new connection when the database dropped it.

    The reads that complete a response after its write committed (a user's groups, a group's
    members) must not turn that write into a 503 because a connection broke in between. When
    such a read begins a transaction of its own, that transaction only reads: on SQLite it
    takes no write lock, so the response of a write never queues behind other writers again
    after its commit (nothing in a request writes after its response is rendered; the audit
    row is written after teardown, in a transaction of its own).
    """

    @functools.wraps(read)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return _reading(read, *args, **kwargs)
        except (OperationalError, InterfaceError) as e:
            if not is_unavailable(e) or db.session.new or db.session.dirty:
                raise
            end_request(db.session)  # a fresh connection (pinged if it sat idle) for the second try
            return _reading(read, *args, **kwargs)

    return wrapper


def _reading(read: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    if db.session().in_transaction():  # inside a write's own transaction: part of it
        return read(*args, **kwargs)
    with reading_only():
        return read(*args, **kwargs)


def _committed(session: Session | scoped_session[Session], xid: str) -> bool:
    """Whether transaction `xid` committed, asked on a new connection; False if unknown."""
    deadline = time.monotonic() + 2
    while True:
        try:
            with session.get_bind().connect() as connection:
                status = connection.scalar(
                    text("SELECT pg_xact_status(CAST(:xid AS xid8))"), {"xid": xid}
                )
        except SQLAlchemyError:
            return False  # the database is still unreachable: the caller answers 503
        # "in progress": the backend has not yet noticed its client is gone.
        if status != "in progress" or time.monotonic() > deadline:
            return status == "committed"
        time.sleep(0.05)
