"""Every SQL statement about audit events: appended, read newest first, purged by age."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import delete, insert, select
from sqlalchemy import event as sql_events
from sqlalchemy.orm import Session

from app import tenancy
from app.db import TRANSACTION_ID, db, transaction_id_returned, utcnow
from app.models import AuditEvent, Group, User
from app.store import events


def record_with_changes(
    *,
    to_commit: Callable[[], AuditEvent | None],
    committed: Callable[[], None],
    rolled_back: Callable[[], None],
    created: Callable[[str], None],
) -> None:
    """Have the request's session (db.session) commit a change with its audit row.

    Before each commit, `to_commit` gives the event to write in that transaction (or None),
    written by one INSERT (added to the session instead in a Bulk's deferred change, whose rows
    the session writes together); `committed` and `rolled_back` say how that transaction ended
    (a rolled back event is gone with it); `created` gets the id of each user or group added to
    the session or written by statement (`created`, below): a POST's new resource. The store's
    other sessions (a token's, an audit row's own) are not a request's change and are left
    alone.
    """

    def before_commit(session: Session) -> None:
        if (row := to_commit()) is None:
            return
        row.txn = events.current_txn()  # the change's events' txn; None if it changed nothing
        if events.is_deferring(session):
            session.add(row)  # written with the deferred changes' rows (store/batch.py)
            return
        # One Core INSERT in the same transaction, built once; the row stays an unsaved object
        # (app/audit.py logs it). Through the ORM it cost a flush of its own.
        values = {key: getattr(row, key) for key in _AUDIT_COLUMNS}
        connection = session.connection()
        if connection.dialect.name == "postgresql":
            # Returns the transaction's id, which app.db.commit would otherwise ask for.
            written = connection.execute(_INSERT_AUDIT_POSTGRESQL, values)
            transaction_id_returned(written.scalar())
        else:
            connection.execute(_INSERT_AUDIT, values)

    def added(_session: Session, instance: object) -> None:
        if isinstance(instance, (User, Group)):
            created(instance.id)

    _created[:] = [created]

    listeners = {
        "before_commit": before_commit,
        "after_commit": lambda _session: committed(),
        "after_rollback": lambda _session: rolled_back(),
        "transient_to_pending": added,
    }
    for name, listener in listeners.items():
        sql_events.listen(db.session, name, listener)


# What record_with_changes was given as `created`: a store function that writes a new user or
# group by statement, not through the session, names its id itself (created).
_created: list[Callable[[str], None]] = []

# A granted change's row, in its change's transaction: every column but the id, which the
# database draws.
_AUDIT_COLUMNS = tuple(column.key for column in AuditEvent.__table__.columns if column.key != "id")
_INSERT_AUDIT = insert(AuditEvent.__table__)
_INSERT_AUDIT_POSTGRESQL = _INSERT_AUDIT.returning(TRANSACTION_ID)


def created(resource_id: str) -> None:
    """A user or group was created by statement, which the session's hook does not see: its
    id, for the audit row of the change (as record_with_changes' `created` receives it)."""
    for receiver in _created:
        receiver(resource_id)


def record(events: list[AuditEvent]) -> None:
    """Append events (one request's) in a short transaction of their own, apart from the
    request's session.

    It runs after the response, outside the request's tenant scope, so it enters the events'
    own tenant (or all of them, for a request no token identified).
    """
    tenant_id = events[0].tenant_id
    scope = tenancy.ALL_TENANTS if tenant_id is None else tenant_id
    with (
        tenancy.entered(scope),
        Session(db.engine, expire_on_commit=False) as session,
        session.begin(),
    ):
        session.add_all(events)


def for_resource(resource_type: str, resource_id: str, limit: int = 100) -> list[AuditEvent]:
    """What was done to one user or group, newest first."""
    query = (
        select(AuditEvent)
        .where(AuditEvent.resource_type == resource_type, AuditEvent.resource_id == resource_id)
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        .limit(limit)
    )
    return list(db.session.scalars(query))


def recent(limit: int = 50) -> list[AuditEvent]:
    """The latest events of every resource, newest first."""
    query = select(AuditEvent).order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).limit(limit)
    return list(db.session.scalars(query))


def purge(older_than_days: int) -> int:
    """Delete events older than this many days; returns how many."""
    cutoff = utcnow() - timedelta(days=older_than_days)
    deleted = db.session.execute(delete(AuditEvent).where(AuditEvent.at < cutoff)).rowcount
    db.session.commit()
    return deleted
