"""Many changes in one transaction, each as if alone: a SAVEPOINT per change, COMMITs in chunks.

A Bulk request (app/api/bulk.py) runs its operations here, each through the store function its
single request calls. That function's commit (app.db.commit) ends the change at its savepoint
instead: the session's before_commit hooks add what a commit adds (the change's audit row, in
the same savepoint), then RELEASE SAVEPOINT (SQLAlchemy runs those hooks for a savepoint's
release as for a commit). Its rollback (app.db.rollback: a lost race to
retry, a unique index run into) returns to the savepoint. A change that fails thus leaves
nothing behind, and the changes before it stay.

Consecutive creates of users are cheaper still (`defer`): each runs as alone (validated, its
audit row and events added by its commit's hooks), but their rows are written together, one
multi-row INSERT per table, in one savepoint. When that INSERT fails (a userName taken twice
in the run, a value the database refuses), none of them is kept and the caller runs them again
one at a time (Replay), so that each still gets the answer its single request would.

The transaction itself commits between changes, once `max_seconds` have passed since it began:
one COMMIT (and one fsync) per chunk of changes instead of one per change, and no change
re-reads what an earlier one wrote. A chunk is also the longest any lock is held: on SQLite the
write lock (other writers wait no longer than a chunk; readers never wait, in WAL mode), on
PostgreSQL the rows the chunk changed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import insert, inspect
from sqlalchemy.exc import DataError, IllegalStateChangeError, IntegrityError
from sqlalchemy.orm import Session, SessionTransaction

from app.db import commit, db, enclosed
from app.models import AuditEvent, UserValue
from app.store import events

T = TypeVar("T")


class Replay(Exception):
    """The deferred changes could not be written together (one of them ran into a unique index,
    or held a value the database refuses): none of them is kept; run them again one at a time,
    each in a savepoint of its own, so that each gets its own answer."""


class Batch:
    """Changes committed together in chunks; `run` (or `defer`) one at a time, `commit` when
    `due`."""

    def __init__(self, *, max_seconds: float) -> None:
        self.max_seconds = max_seconds
        self._began: float | None = None  # when the open chunk's first change began
        self._deferred: SessionTransaction | None = None  # the savepoint of deferred changes

    def defer(self, change: Callable[[], T]) -> T:
        """Run a change that only adds rows (a POST of a user), without writing them yet.

        Its commit runs the session's before_commit and after_commit hooks (its audit row; its
        events are queued, and written after the rows: events.deferring) but neither flushes
        nor ends a savepoint: the rows of every change deferred
        since the last `write_deferred` are written together by it, one multi-row INSERT per
        table instead of a flush and a savepoint per change. Should that fail, none of them
        is kept and Replay is raised: the caller runs them again with `run`.
        """
        if self._began is None:
            self._began = time.monotonic()
        session = db.session()
        if self._deferred is None:
            self._deferred = session.begin_nested()
        before = set(session.new)
        try:
            with enclosed(_Deferred()), events.deferring(session):
                return change()
        except (Replay, IntegrityError, DataError):
            self._abandon_deferred()
            raise Replay() from None
        except BaseException:
            for added in set(session.new) - before:  # refused before it was complete
                session.expunge(added)
            events.forget_notes(session)
            raise

    def write_deferred(self) -> None:
        """Write the deferred changes' rows (Replay if that fails); before any other change."""
        if self._deferred is None:
            return
        savepoint, self._deferred = self._deferred, None
        try:
            _insert_unread(db.session())
            savepoint.commit()  # RELEASE
        except (IntegrityError, DataError):
            self._deferred = savepoint
            self._abandon_deferred()
            raise Replay() from None

    def _abandon_deferred(self) -> None:
        savepoint, self._deferred = self._deferred, None
        if savepoint is not None:
            with contextlib.suppress(IllegalStateChangeError):
                savepoint.rollback()  # their pending rows are dropped with it
        events.forget_notes(db.session())

    def run(self, change: Callable[[], T]) -> T:
        """Run `change` (store calls, each ending with its commit) in a savepoint of its own.

        Runs nest: a change that runs others keeps or loses them all with its own savepoint
        (the POSTs of a circular reference, which succeed or fail together).
        """
        assert self._deferred is None, "write_deferred first"
        if self._began is None:
            self._began = time.monotonic()
        savepoint = _Savepoint(db.session())
        with enclosed(savepoint):
            try:
                result = change()
            except BaseException:
                savepoint.discard()
                raise
        savepoint.keep()
        return result

    def due(self) -> bool:
        """Whether the open chunk has run long enough to commit now."""
        return self._began is not None and time.monotonic() - self._began >= self.max_seconds

    @property
    def open(self) -> bool:
        """Whether changes have run since the last commit."""
        return self._began is not None

    def commit(self) -> None:
        """Commit every change run since the last commit (between changes, never within one)."""
        assert self._deferred is None, "write_deferred first"
        if self._began is None:
            return
        self._began = None
        commit(db.session)
        # The chunk's rows are written and their answers taken: keep the identity map small.
        db.session.expunge_all()


# Rows whose key the database draws (an autoincrement id) and that nothing reads back. Flushed,
# they would be inserted one at a time on SQLite: the ORM reads each new id back, and SQLAlchemy
# matches a multi-row INSERT's RETURNING to its rows only through a sentinel column, which
# SQLite's rowid is not. Without their ids, one INSERT per table writes them all.
_UNREAD = (UserValue, AuditEvent)


def _insert_unread(session: Session) -> None:
    """Write the pending rows: users (and whatever else is pending) by a flush, a multi-row
    INSERT each, then the rows of _UNREAD by one bulk INSERT per table (after the users: their
    values refer to them), without reading their ids back."""
    unread = [row for row in session.new if isinstance(row, _UNREAD)]
    unread.sort(key=lambda row: inspect(row).insert_order)  # ids in the order rows were added
    for row in unread:
        session.expunge(row)
    session.flush()
    # Rows that set the same attributes share a statement; the others take their defaults.
    shapes: dict[tuple[type, frozenset[str]], list[dict[str, Any]]] = {}
    for row in unread:
        state = inspect(row)
        values = {
            attribute.key: state.dict[attribute.key]
            for attribute in state.mapper.column_attrs
            if attribute.key in state.dict
        }
        shapes.setdefault((type(row), frozenset(values)), []).append(values)
    for (model, _), rows in shapes.items():
        session.execute(insert(model), rows)


class _Deferred:
    """What app.db.commit and app.db.rollback do in a deferred change (Batch.defer)."""

    def commit(self, session: Session) -> None:
        # A commit's hooks, as a savepoint's release runs them: the change's audit row and
        # events are added, to be written with its rows.
        session.dispatch.before_commit(session)
        session.dispatch.after_commit(session)
        events.forget_notes(session)  # written (added): the next change notes afresh

    def rollback(self, session: Session) -> None:
        # Only a write that ran into the database rolls back, and a deferred change writes
        # nothing by itself (but the events' hook may flush): the deferred ones are replayed.
        raise Replay()


class _Savepoint:
    """One change's savepoint: what app.db.commit and app.db.rollback do inside a Batch."""

    def __init__(self, session: Session) -> None:
        self.transaction: SessionTransaction | None = session.begin_nested()

    def commit(self, session: Session) -> None:
        # SQLAlchemy runs the session's before_commit and after_commit hooks around a RELEASE
        # as around a COMMIT: what they add (the audit row) shares the change's savepoint.
        if self.transaction is not None:
            self.transaction.commit()  # before_commit, flush, RELEASE SAVEPOINT, after_commit
        self.transaction = None

    def rollback(self, session: Session) -> None:
        """Back to the savepoint, and a new one for the change's next attempt."""
        self.discard()
        self.transaction = session.begin_nested()

    def discard(self) -> None:
        transaction, self.transaction = self.transaction, None
        if transaction is None:
            return
        try:
            transaction.rollback()  # active, or deactivated by a failed flush: ROLLBACK TO
        except IllegalStateChangeError:
            pass  # closed already, with an enclosing savepoint rolled back

    def keep(self) -> None:
        """The change returned: what it did stays (a change that ran others, and did not commit
        itself, releases its savepoint here)."""
        if self.transaction is not None and self.transaction.is_active:
            self.transaction.commit()
        self.transaction = None
