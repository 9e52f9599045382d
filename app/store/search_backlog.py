"""SQLite's console search backlog, folded into its FTS5 tables by the write that fills it.

The search triggers note each changed user, email address and group in search_backlog instead
of writing the FTS5 tables (app/models.py says why). Just before a transaction that wrote
commits, on SQLite, this module looks at the backlog: once it holds
SEARCH_BACKLOG_FOLDED_EVERY notes, the same transaction folds it into the FTS5 tables and
empties it. Every writer goes through it, the service and `flask` commands and bulk loads
alike, as long as it commits through SQLAlchemy: a batch of changes that no write follows
stays in the backlog, where a search still finds it.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy import Connection, Engine, event

from app.models import SEARCH_BACKLOG_FOLD, SEARCH_BACKLOG_FOLDED_EVERY

_CHANGES_AT_BEGIN = "scim_changes_at_begin"  # a connection's info: its rows changed so far


def fold(connection: Connection) -> None:
    """Write the whole backlog into the FTS5 tables and empty it, in the connection's
    transaction."""
    for statement in SEARCH_BACKLOG_FOLD:
        connection.exec_driver_sql(statement)


@event.listens_for(Engine, "begin")
def _count_changes(connection: Connection) -> None:
    raw = connection.connection.dbapi_connection
    if isinstance(raw, sqlite3.Connection):
        connection.info[_CHANGES_AT_BEGIN] = raw.total_changes


@event.listens_for(Engine, "commit")
def _fold_when_full(connection: Connection) -> None:
    """A transaction that changed rows, and so holds SQLite's write lock, folds a full backlog."""
    raw = connection.connection.dbapi_connection
    if not isinstance(raw, sqlite3.Connection):
        return
    if raw.total_changes == connection.info.pop(_CHANGES_AT_BEGIN, raw.total_changes):
        return  # it wrote nothing: it may hold no lock, and added no note
    try:
        (noted,) = raw.execute("SELECT max(id) FROM search_backlog").fetchone()
    except sqlite3.OperationalError:
        return  # a database before migration 0018 (a migration's own transaction, say)
    if noted is not None and noted >= SEARCH_BACKLOG_FOLDED_EVERY:
        fold(connection)
