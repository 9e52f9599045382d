"""Changing one stored resource: its row locked, If-Match checked, one commit, retried if it lost.

Users and groups use one optimistic-locking check: every UPDATE of the row sets
`version = read + 1 WHERE version = read`, and finding no such row raises StaleDataError. A
group's changes go through the ORM, whose `version_id_col` does that. A group's membership
change writes only group_members, so it must bump the version explicitly: it sets
`last_modified` (which must change anyway), and the ORM's UPDATE of the row carries the new
version. A user's PUT and PATCH write its row by a Core UPDATE of the columns that change
(store/users.py; cheaper than the ORM's flush), which carries the same condition and, through
`write`, raises the same StaleDataError; a user's DELETE goes through the ORM like a group's.
Either way the new version is known without reading the row back.

The row lock makes concurrent writers queue (PostgreSQL; SQLite's BEGIN IMMEDIATE runs one
writer at a time), so the version check rarely fires: it catches a row object read before the
lock was taken (the session keeps the attributes it already holds) and any writer that did
not lock. Either way the loser re-reads and applies its change again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol, TypeAlias, TypeVar

from sqlalchemy import Executable, inspect
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm.exc import StaleDataError

from app import etags
from app.db import commit, db, is_retryable, rollback, violated_constraint
from app.errors import Conflict, PreconditionFailed, ScimError

# Concurrent writers to one resource: the loser re-reads and re-applies its change this many times.
WRITE_ATTEMPTS = 5


class Versioned(Protocol):
    version: int
    tenant_id: int


R = TypeVar("R", bound=Versioned)

# A unique index's name -> the error that answers a write running into it, given the row as
# the write left it (app.db.violated_constraint names the index, on both databases).
Refusals: TypeAlias = Mapping[str, Callable[[R], ScimError]]


def update_locked(
    kind: str,
    resource_id: str,
    load: Callable[[], R],
    change: Callable[[R], None],
    *,
    if_match: str | None,
    refusals: Refusals[R],
) -> R:
    """Apply `change` to the row `load` returns and commit; the row as written.

    `load` returns the live row, locked until the commit (the lock strength is the caller's).
    `change` edits it through the ORM; when it also writes other rows by statement, it must
    touch the row, since the new version rides on the row's own UPDATE. Or it writes the row
    by statement itself, through `write`, and sets what it wrote on the row as committed. A
    change that leaves the row as it was writes nothing: no UPDATE, no new version. `kind` and
    `resource_id` name the resource in the 412 and 409 answers ("User 1234").
    """
    for _ in range(WRITE_ATTEMPTS):
        loaded: R | None = None  # the row read by this attempt, to forget when it loses
        try:
            row = loaded = load()
            if if_match is not None and not etags.matches(if_match, row.version, row.tenant_id):
                raise PreconditionFailed(
                    f"{kind} {resource_id} has changed: its ETag is now "
                    f"{etags.etag(row.version, row.tenant_id)}; read it again"
                )
            change(row)
            with refusing(refusals, row):
                commit(db.session)
        except StaleDataError:
            rollback(db.session)  # another writer won: re-read and apply again
            _forget(loaded)
            continue
        except OperationalError as e:
            if not is_retryable(e):
                raise
            rollback(db.session)  # a serialization failure or deadlock: run it again
            _forget(loaded)
            continue
        return row
    raise Conflict(f"{kind} {resource_id} is being changed concurrently; retry the request")


def write(statement: Executable, parameters: dict[str, Any]) -> None:
    """Run an UPDATE of one versioned row that carries `WHERE version = <read>`, on the
    session's connection: finding no such row (another writer changed it since it was read)
    raises StaleDataError, as the ORM's check does, and the write is retried."""
    if db.session.connection().execute(statement, parameters).rowcount != 1:
        raise StaleDataError("the row was changed by another writer since it was read")


def _forget(row: object | None) -> None:
    """The next attempt reads the row afresh: a row written by statement was never dirty in
    the session, so rolling back a savepoint (a Bulk operation) would leave it as it was read,
    and the read of the next attempt would keep those attributes (the session's identity map)."""
    if row is not None and inspect(row).persistent:
        db.session.expire(row)


@contextmanager
def refusing(refusals: Refusals[R], row: R) -> Iterator[None]:
    """Answer a unique index the block runs into with its error in `refusals`; roll back.

    A violation of any other constraint is not the client's doing: it is raised as it is.
    """
    # Built before the block, from the row as the write left it: a failed flush expires the
    # attributes it was writing.
    errors = {name: refuse(row) for name, refuse in refusals.items()}
    try:
        yield
    except IntegrityError as e:
        refusal = errors.get(violated_constraint(e) or "")
        rollback(db.session)
        if refusal is None:
            raise
        raise refusal from None
