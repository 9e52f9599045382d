"""Many changes in one transaction, each as if alone: a SAVEPOINT per change, COMMITs in chunks.

A Bulk request (app/api/bulk.py) runs its operations here, each through the store function its
single request calls. That function's commit (app.db.commit) ends the change at its savepoint
instead: the session's before_commit hooks add what a commit adds (the change's audit row, in
the same savepoint), then RELEASE SAVEPOINT (SQLAlchemy runs those hooks for a savepoint's
release as for a commit). Its rollback (app.db.rollback: a lost race to
retry, a unique index run into) returns to the savepoint. A change that fails thus leaves
nothing behind, and the changes before it stay.

The transaction itself commits between changes, once `max_seconds` have passed since it began:
one COMMIT (and one fsync) per chunk of changes instead of one per change, and no change
re-reads what an earlier one wrote. A chunk is also the longest any lock is held: on SQLite the
write lock (other writers wait no longer than a chunk; readers never wait, in WAL mode), on
PostgreSQL the rows the chunk changed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import IllegalStateChangeError
from sqlalchemy.orm import Session, SessionTransaction

from app.db import commit, db, enclosed

T = TypeVar("T")


class Batch:
    """Changes committed together in chunks; `run` one at a time, `commit` when `due`."""

    def __init__(self, *, max_seconds: float) -> None:
        self.max_seconds = max_seconds
        self._began: float | None = None  # when the open chunk's first change began

    def run(self, change: Callable[[], T]) -> T:
        """Run `change` (store calls, each ending with its commit) in a savepoint of its own.

        Runs nest: a change that runs others keeps or loses them all with its own savepoint
        (the POSTs of a circular reference, which succeed or fail together).
        """
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
        if self._began is None:
            return
        self._began = None
        commit(db.session)
        # The chunk's rows are written and their answers taken: keep the identity map small.
        db.session.expunge_all()


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
