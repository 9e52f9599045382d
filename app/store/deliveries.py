"""Every SQL statement of push delivery (RFC 8935) and of the operators' view of deliveries:
the worker's claims and their outcomes, status per receiver, dead letters, replay, and the
PostgreSQL channel that wakes the workers.

The rows are those of store/events.py (read its docstring first): one `event_deliveries` row
per event owed to a receiver, written with the event. The worker (app/worker.py) claims the
heads of a push receiver's resource queues (`events.due`), posts their SETs, and records each
outcome here. On PostgreSQL the claim locks the rows (`FOR UPDATE SKIP LOCKED`) and the
transaction stays open while the SETs are posted, so that another worker skips them, and the
next event of each of those resources is no head until the outcome commits: several workers
never send one resource's events at once nor out of order. A worker that dies mid-batch
(kill -9, a cut connection) leaves its rows pending, its locks gone with its connection: they
are sent again (the same jti), which is at-least-once. On SQLite one worker runs (app/worker.py
holds a lock file), so the claim is a plain read, ended before the POSTs: no write lock is
held while a receiver answers, and the API never waits for the worker.

Tenancy: `push_receivers` reads across tenants (the worker serves them all); everything else
here runs in the receiver's own tenant (`tenancy.entered(receiver.tenant_id)`), so that a
receiver's claim reaches its tenant's rows only, through the store's scope and, on PostgreSQL,
row-level security.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import event as sql_events
from sqlalchemy import exists, func, insert, select, update
from sqlalchemy.orm import Session

from app import tenancy
from app.db import db, utcnow
from app.models import Event, EventDelivery, EventReceiver, Tenant, TenantState
from app.store import events

# PostgreSQL: a writing transaction that added delivery rows NOTIFYs this channel as it
# commits (a NOTIFY is delivered at COMMIT, never for a rollback); workers LISTEN on it.
CHANNEL = events.CHANNEL  # the events' write path notifies it too (pg_notify)


@sql_events.listens_for(Session, "after_flush")
def _notify_workers(session: Session, _flush_context: Any) -> None:
    """Wake the workers when this transaction commits, if it queued a delivery (PostgreSQL).
    This module is imported by app/cli.py, which create_app always loads."""
    if not any(isinstance(row, EventDelivery) for row in session.new):
        return
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"NOTIFY {CHANNEL}")


def is_postgresql() -> bool:
    return db.engine.dialect.name == "postgresql"


def database_file() -> str | None:
    """The SQLite database's file (None on PostgreSQL or in memory): the worker's lock is
    beside it."""
    url = db.engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return url.database


def push_receivers() -> list[EventReceiver]:
    """Every tenant's enabled push receivers whose tenant is active, detached from the session
    (the worker keeps them between transactions). A suspended tenant's events wait."""
    with tenancy.across_tenants():
        query = (
            select(EventReceiver)
            .join(Tenant, Tenant.id == EventReceiver.tenant_id)
            .where(
                EventReceiver.delivery == "push",
                EventReceiver.enabled.is_(True),
                Tenant.state == TenantState.ACTIVE,
            )
            .order_by(EventReceiver.tenant_id, EventReceiver.name)
        )
        receivers = list(db.session.scalars(query))
        db.session.expunge_all()
        db.session.rollback()
    return receivers


@dataclass
class Claimed:
    """One delivery the worker holds: what it needs to post it and to record the outcome."""

    event: Event
    attempts: int  # before this one
    created_at: datetime  # the event's time: its age decides when it is given up


def claim(receiver: EventReceiver, limit: int) -> list[Claimed]:
    """The receiver's due heads (store.events.due), oldest first, in its tenant (entered by the
    caller). PostgreSQL: locked, skipping those another worker holds; the transaction stays
    open until `settle`. SQLite: read, and the read ended."""
    query = events.due(receiver, limit)
    if is_postgresql():
        query = query.with_for_update(skip_locked=True, of=EventDelivery)
    rows = db.session.execute(query).all()
    claimed = [Claimed(event, delivery.attempts, delivery.created_at) for delivery, event in rows]
    db.session.expunge_all()
    if not is_postgresql():
        db.session.rollback()  # no transaction held while the SETs are posted
    return claimed


@dataclass(frozen=True)
class Outcome:
    """What became of one attempt: `delivered`, `pending` (again at `next_attempt_at`) or
    `dead`; `attempted` False for a delivery left as it was (the batch stopped before it)."""

    event_id: int
    state: str
    at: datetime
    next_attempt_at: datetime | None = None
    error: str | None = None
    attempted: bool = True


def settle(receiver: EventReceiver, attempts: dict[int, int], outcomes: list[Outcome]) -> None:
    """Record the outcomes of a claim and commit, ending its transaction (and locks)."""
    for outcome in outcomes:
        if not outcome.attempted:
            continue
        values: dict[str, Any] = {
            "state": outcome.state,
            "attempts": attempts[outcome.event_id] + 1,
            "last_attempt_at": outcome.at,
        }
        if outcome.error:  # a delivery keeps its last error: the operator's clue
            values["last_error"] = outcome.error[:500]
        if outcome.state == "pending":
            values["next_attempt_at"] = outcome.next_attempt_at
        else:
            values["delivered_at"] = outcome.at
        db.session.execute(
            update(EventDelivery)
            .where(
                EventDelivery.receiver_id == receiver.id,
                EventDelivery.event_id == outcome.event_id,
                EventDelivery.state == "pending",
            )
            .values(**values),
            execution_options={"synchronize_session": False},
        )
    db.session.commit()


def release() -> None:
    """End a claim without recording anything (its rows stay as they were)."""
    db.session.rollback()


# --- Waking the workers (PostgreSQL) ----------------------------------------------------------


@contextmanager
def listening() -> Iterator[Any]:
    """A connection of its own that LISTENs on CHANNEL, for `wait(connection, seconds)`."""
    raw = db.engine.raw_connection()
    try:
        connection = raw.driver_connection
        connection.autocommit = True
        connection.execute(f"LISTEN {CHANNEL}")
        yield connection
    finally:
        raw.invalidate()  # never back to the pool in LISTEN state


def wait(connection: Any, seconds: float) -> bool:
    """Whether a NOTIFY came within `seconds`; every notification waiting is consumed."""
    notified = False
    for _ in connection.notifies(timeout=seconds, stop_after=1):
        notified = True
    return notified


# --- What operators see and do ----------------------------------------------------------------


@dataclass(frozen=True)
class Status:
    """One receiver's deliveries: counts by state, those pending that failed at least once,
    the last error, the oldest pending event's time."""

    receiver: EventReceiver
    delivered: int
    pending: int
    failing: int
    dead: int
    last_error: str | None
    last_error_at: datetime | None
    oldest_pending: datetime | None


def status(receivers: list[EventReceiver]) -> list[Status]:
    """The status of each receiver, read in its tenant."""
    out = []
    for receiver in receivers:
        with tenancy.entered(receiver.tenant_id):
            mine = EventDelivery.receiver_id == receiver.id
            counts = dict(
                db.session.execute(
                    select(EventDelivery.state, func.count())
                    .where(mine)
                    .group_by(EventDelivery.state)
                ).all()
            )
            pending = EventDelivery.state == "pending"
            failing, oldest = db.session.execute(
                select(
                    func.count().filter(EventDelivery.attempts > 0),
                    func.min(EventDelivery.created_at),
                ).where(mine, pending)
            ).one()
            last = db.session.execute(
                select(EventDelivery.last_error, EventDelivery.last_attempt_at)
                .where(mine, EventDelivery.last_error.is_not(None))
                .order_by(EventDelivery.last_attempt_at.desc())
                .limit(1)
            ).first()
        out.append(
            Status(
                receiver=receiver,
                delivered=counts.get("delivered", 0),
                pending=counts.get("pending", 0),
                failing=failing or 0,
                dead=counts.get("dead", 0),
                last_error=last[0] if last else None,
                last_error_at=last[1] if last else None,
                oldest_pending=oldest,
            )
        )
    db.session.expunge_all()  # read: kept as they are, whatever scope reads them next
    db.session.rollback()
    return out


@dataclass(frozen=True)
class Backlog:
    """One receiver's deliveries still owed, for the metrics' scrape."""

    tenant: str  # its slug
    receiver: str  # its name
    delivery: str  # push or poll
    pending: int
    failing: int  # pending, and tried at least once
    oldest_pending: datetime | None


def backlog() -> list[Backlog]:
    """Every receiver of every tenant not deleted, with its pending deliveries: pending rows
    only (the partial indexes' rows), never the delivered ones, which pile up until purged."""
    pending = (
        select(
            EventDelivery.tenant_id,
            EventDelivery.receiver_id,
            func.count().label("pending"),
            func.count().filter(EventDelivery.attempts > 0).label("failing"),
            func.min(EventDelivery.created_at).label("oldest"),
        )
        .where(EventDelivery.state == "pending")
        .group_by(EventDelivery.tenant_id, EventDelivery.receiver_id)
        .subquery()
    )
    query = (
        select(
            Tenant.slug,
            EventReceiver.name,
            EventReceiver.delivery,
            func.coalesce(pending.c.pending, 0),
            func.coalesce(pending.c.failing, 0),
            pending.c.oldest,
        )
        .join(Tenant, Tenant.id == EventReceiver.tenant_id)
        .outerjoin(
            pending,
            (pending.c.tenant_id == EventReceiver.tenant_id)
            & (pending.c.receiver_id == EventReceiver.id),
        )
        .where(Tenant.state != TenantState.DELETED)
        .order_by(Tenant.slug, EventReceiver.name)
    )
    with tenancy.across_tenants():
        try:
            return [Backlog(*row) for row in db.session.execute(query)]
        finally:
            db.session.rollback()


def dead_letters(receiver: EventReceiver, limit: int) -> list[tuple[EventDelivery, Event]]:
    """The receiver's dead deliveries with their events, newest first (in its tenant)."""
    query = (
        select(EventDelivery, Event)
        .join(
            Event,
            (Event.tenant_id == EventDelivery.tenant_id) & (Event.id == EventDelivery.event_id),
        )
        .where(EventDelivery.receiver_id == receiver.id, EventDelivery.state == "dead")
        .order_by(EventDelivery.event_id.desc())
        .limit(limit)
    )
    rows = [(delivery, event) for delivery, event in db.session.execute(query).all()]
    db.session.expunge_all()
    db.session.rollback()
    return rows


@dataclass(frozen=True)
class Replayed:
    requeued: int  # delivered or dead deliveries made pending again
    added: int  # events stored before the receiver had a delivery row for them


def replay(receiver: EventReceiver, since: datetime, *, dead_only: bool = False) -> Replayed:
    """Queue the receiver's events since a time again, in its tenant; committed. Delivered and
    dead deliveries become pending, due now, with their attempts reset; with `dead_only`, only
    the dead ones. Otherwise stored events it has no delivery of yet (written while it was
    disabled, or before it was added) and subscribes to are queued too. A resource's events
    go out in order again; the receiver sees SETs it had (the same jti and `sequence`)."""
    now = utcnow()
    recent = select(Event.id).where(Event.at >= since)
    states = ("dead",) if dead_only else ("dead", "delivered")
    requeued = db.session.execute(
        update(EventDelivery)
        .where(
            EventDelivery.receiver_id == receiver.id,
            EventDelivery.state.in_(states),
            EventDelivery.event_id.in_(recent),
        )
        .values(
            state="pending",
            attempts=0,
            next_attempt_at=now,
            last_error=None,
            delivered_at=None,
        ),
        execution_options={"synchronize_session": False},
    ).rowcount
    added = 0
    if not dead_only:
        owed = exists().where(
            EventDelivery.receiver_id == receiver.id, EventDelivery.event_id == Event.id
        )
        missing = db.session.execute(
            select(Event.id, Event.resource_id, Event.at, Event.operation, Event.activation)
            .where(Event.at >= since, ~owed)
            .order_by(Event.id)
        ).all()
        subscribed = set(receiver.events)
        rows = [
            {
                "tenant_id": receiver.tenant_id,
                "receiver_id": receiver.id,
                "event_id": event_id,
                "resource_id": resource_id,
                "state": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": at,
            }
            for event_id, resource_id, at, operation, activation in missing
            if operation in subscribed or (activation is not None and activation in subscribed)
        ]
        if rows:
            db.session.execute(insert(EventDelivery), rows)
        added = len(rows)
    db.session.commit()
    return Replayed(requeued, added)
