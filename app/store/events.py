"""Every SQL statement about change events (RFC 9967): the outbox, receivers, deliveries.

How the tables work together
============================

`events` is a transactional outbox. The store's write functions (store/users.py, groups.py)
*note* each resource they changed (`note`), with what changed; when that transaction commits,
the session's `before_commit` (`_write_events`, below) flushes the change, so that every row's
new version is final, and adds in the same transaction:

- one `events` row per resource changed, whether or not anyone listens: operation (create,
  put, patch, delete), activation (activate, deactivate, when the user's `active` turned), the
  changed attribute paths, the resource's new version, its externalId, a `jti`, and the
  transaction's `txn`;
- one `event_deliveries` row per enabled receiver subscribed to any of the event's names,
  state `pending`, due now.

So an event exists exactly when its change committed: a refused request, a failed If-Match, a
uniqueness conflict or any rollback takes the notes and the rows with it (a retried write,
store/locked.py, notes afresh), and a write that changed nothing notes nothing (no event, as
it makes no new version). The `txn` (a UUID, one per committed change) is shared by all the
events of that change: deleting a user also changes the groups it was in, which get `patch`
events listing `members` under the same `txn`. The audit row of the change stores the `txn`
too (store/audit.py reads `current_txn`). Since every change is written, a receiver added
later can be given earlier changes (`flask events replay`), and the console shows any user's events.
SCIM_EVENTS=off turns the outbox off: nothing is noted, written or delivered.

A Bulk request's consecutive creates (store/batch.py, Batch.defer) write their rows together,
unflushed until then: their events are queued meanwhile (`deferring`) and written with the
next commit or savepoint release, after the rows, all in one go.

The cost on a write is kept to round trips and to statements SQLAlchemy compiles once: the
events go in as one INSERT, and the deliveries as one INSERT ... SELECT from event_receivers,
which reads the receivers in the same statement (none cached, so a receiver added a moment ago
is never missed) and returns, per delivery, whether its receiver wants `:full` events. On
PostgreSQL both are one statement (the INSERT of events, over one JSON array of their values, as a
data-modifying WITH, which also NOTIFYs the workers when it queued a delivery); on SQLite,
which has no such WITH, two statements in process, the second only when the events' INSERT
returned that their tenant has an enabled receiver (most have none). The events are written
after the commit's own flush (`_write_after_flush`), when every changed row's version is final:
one flush, not two.

`data` (the resource as committed, for the `:full` variants) is stored only when one of the
event's deliveries is owed to a `:full` receiver: a group's members are read for it, so it
costs an UPDATE of the rows just written, in the same transaction. (A receiver replayed events
written before it was owed them gets notices for those.) It is the resource as GET shows it
(without a user's `groups`), its links relative to the SCIM base URL like `sub_id.uri`;
app/sets.py makes them absolute with the issuer's base URL.

Retention: `flask purge` deletes the events older than SCIM_EVENTS_RETENTION_DAYS none of whose
deliveries is pending, with their deliveries (`purge`).

Delivery (for the worker)
-------------------------
Each delivery row is one event owed to one receiver: `state` is `pending`, `delivered` (the
receiver accepted or acknowledged it) or `dead` (given up: too old or too many attempts), with
`attempts`, `next_attempt_at`, `last_attempt_at`, `last_error` and `delivered_at`.

The fan-out happens in the writing transaction on purpose. A worker that reads `events` past a
cursor would skip events on PostgreSQL: ids are drawn at INSERT, commits land in another order,
so id 7 may become visible after the reader moved past id 8. Delivery rows are instead claimed
by state, whenever they become visible, so no cursor exists to skip over anything. (On SQLite,
BEGIN IMMEDIATE serializes writers, so id order is commit order anyway.)

Per-resource order: one resource's writers queue on its row lock, and the event id is drawn
at commit, under that lock, so within one resource id order is commit order on both
databases. A delivery may be sent only when no earlier pending delivery of the same receiver
and resource exists (`due`, the head of each resource's queue). Several workers claim with
`FOR UPDATE SKIP LOCKED` on PostgreSQL: a head another worker holds is skipped, and the next
event of that resource is not a head while it is pending, so no two workers send one resource's
events at once, and order holds. A dead-lettered event no longer blocks the ones after it.

Poll receivers (RFC 8936) use the same rows: a poll hands out due heads and pushes their
`next_attempt_at` ahead by a redelivery delay; `ack` marks them delivered, `setErrs` marks them
dead with the receiver's error; what is neither comes back after the delay.
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import (
    TextClause,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy import event as sql_events
from sqlalchemy.orm import Session, aliased

from app import tenancy
from app.db import db, utcnow
from app.models import Event, EventDelivery, EventReceiver, EventSigningKey
from app.schema import Attribute, ResourceType
from app.store import chunks

# The names a receiver subscribes to; the SET's event URIs are made from them (app/sets.py).
OPERATIONS = ("create", "put", "patch", "delete")
ACTIVATIONS = ("activate", "deactivate")
EVENT_NAMES = (*OPERATIONS, *ACTIVATIONS)

_NOTES = "scim_event_notes"  # session.info: the changes noted in the open transaction
_TXN = "scim_event_txn"  # session.info: that transaction's txn
_DEFERRING = "scim_event_deferring"  # session.info: set by `deferring`
_QUEUED = "scim_event_queued"  # session.info: the _Queue of changes deferred
_UNWRITTEN = "scim_event_unwritten"  # session.info: changes whose events the next flush writes


@dataclass
class Change:
    """One resource changed by the open transaction, as the store noted it."""

    resource_type: str  # "User", "Group"
    resource_id: str
    operation: str  # create, put, patch, delete
    attributes: list[str]
    external_id: str | None = None
    activation: str | None = None  # activate, deactivate
    row: Any = None  # the ORM row, whose version is read after the flush
    version: int | None = None  # when there is no row (a statement's UPDATE ... RETURNING)
    request_id: str = ""
    # The resource as committed (SCIM JSON, relative links), built only when a receiver of
    # `:full` events wants it: a group's members are read for it.
    render: Callable[[], dict[str, Any]] | None = field(default=None, repr=False)

    @property
    def names(self) -> tuple[str, ...]:
        return (self.operation, self.activation) if self.activation else (self.operation,)


# Where a change's request id comes from: the HTTP edge registers it (app/audit.py).
_request_ids: list[Callable[[], str]] = []


def identify_requests_with(source: Callable[[], str]) -> None:
    _request_ids[:] = [source]


def _request_id() -> str:
    return _request_ids[0]() if _request_ids else ""


def note(change: Change) -> None:
    """Record a change of the open transaction; its event is written when that commits.
    Nothing when the deployment has no outbox (SCIM_EVENTS=off)."""
    if not current_app.config["SCIM_EVENTS"]:
        return
    if not change.request_id:
        change.request_id = _request_id()
    notes: dict[tuple[str, str], Change] = db.session.info.setdefault(_NOTES, {})
    key = (change.resource_type, change.resource_id)
    earlier = notes.get(key)
    if earlier is not None and earlier.operation == "create":
        change.operation = "create"  # created and changed in one transaction: a create
    notes[key] = change
    current_txn(create=True)


def current_txn(*, create: bool = False) -> str | None:
    """The open transaction's txn: None while it noted no change (nothing to announce)."""
    txn = db.session.info.get(_TXN)
    if txn is None and create:
        txn = db.session.info[_TXN] = uuid.uuid4().hex
    return txn


@sql_events.listens_for(Session, "before_commit")
def _write_events(session: Session) -> None:
    notes: dict[tuple[str, str], Change] | None = session.info.get(_NOTES)
    queued: _Queue | None = session.info.get(_QUEUED)
    if notes:
        changes = (session.info[_TXN], list(notes.values()))
        if session.info.get(_DEFERRING):  # written with the deferred rows (`deferring`)
            if queued is None:
                queued = session.info[_QUEUED] = _Queue(session.get_nested_transaction())
            queued.changes.append(changes)
            return
    elif queued is None:
        return
    session.info.pop(_QUEUED, None)
    due = [*(queued.changes if queued else []), *([changes] if notes else [])]
    if session.new or session.dirty or session.deleted:
        # The changes' rows are not all written: the commit's flush (with the audit row, which
        # a later hook adds) writes them, and the events after it (_write_after_flush), when
        # every row's version is final. One flush, not two.
        session.info[_UNWRITTEN] = due
    else:
        _write(session, due)


@sql_events.listens_for(Session, "after_flush_postexec")
def _write_after_flush(session: Session, _flush_context: Any) -> None:
    if (due := session.info.pop(_UNWRITTEN, None)) is not None:
        _write(session, due)


@dataclass
class _Queue:
    """Changes whose events wait for their rows' flush (`deferring`), in the savepoint whose
    rollback drops them."""

    transaction: Any
    changes: list[tuple[str, list[Change]]] = field(default_factory=list)


@contextmanager
def deferring(session: Session) -> Iterator[None]:
    """Within the block, a change's commit hooks queue its events instead of writing them: they
    are written, all together, by the next commit (or savepoint release) outside such a block,
    after the flush that writes the changes' rows (store/batch.py, Batch.defer)."""
    session.info[_DEFERRING] = True
    try:
        yield
    finally:
        session.info.pop(_DEFERRING, None)


def is_deferring(session: Session) -> bool:
    """Whether a change runs deferred (`deferring`): its rows are to be written by the session,
    together with the others' (store/batch.py), not by statements of its own."""
    return _DEFERRING in session.info


def _write(session: Session, changes: list[tuple[str, list[Change]]]) -> None:
    """The events of these changes (txn, its changes), and their deliveries."""
    tenant_id, now = tenancy.current_id(), utcnow()
    everything = [change for _, notes in changes for change in notes]
    rows = [
        {
            "tenant_id": tenant_id,
            "at": now,
            "txn": txn,
            "jti": uuid.uuid4().hex,
            "resource_type": change.resource_type,
            "resource_id": change.resource_id,
            "external_id": change.external_id,
            "operation": change.operation,
            "activation": change.activation,
            "attributes": change.attributes,
            "version": change.row.version if change.row is not None else change.version,
            "request_id": change.request_id[:128],
        }
        for txn, notes in changes
        for change in notes
    ]
    # Core statements on the session's connection, compiled once and cached by SQLAlchemy (a
    # statement built per write, or a multi-row VALUES, which it cannot cache, cost more than
    # running it). They name the tenant themselves (the ORM's tenant criteria are for SELECTs).
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        # One statement for any number of rows: the events (a data-modifying WITH over their
        # values, one JSON parameter: ten arrays cost the driver more to send), their
        # deliveries, whether one is owed to a `:full` receiver, and the workers' wake-up.
        values = json.dumps([{column: row[column] for column in _EVENT_COLUMNS} for row in rows])
        given = {"tenant": tenant_id, "now": now, "rows": values}
        full = connection.execute(_WRITE_POSTGRESQL, given).scalar()
    else:
        full = _write_sqlite(connection, tenant_id, changes, rows)
    if full:
        _store_data(connection, tenant_id, [row["jti"] for row in rows], everything)


def _write_sqlite(
    connection: Any,
    tenant_id: int,
    changes: list[tuple[str, list[Change]]],
    rows: list[dict[str, Any]],
) -> bool:
    """SQLite, in process: the event rows, each returning whether its tenant has an enabled
    receiver, and only then their deliveries, each returning whether its receiver is a `:full`
    one (the answer). Most tenants have no receiver: one statement then. The deliveries of one
    change are found by its txn; of changes deferred together (several txns), by the jtis of
    each chunk (an expanding IN, which SQLAlchemy renders anew each time: twice the cost)."""
    listened = False
    for chunk in chunks(rows):
        listened = any(connection.execute(_INSERT_EVENTS, chunk).scalars()) or listened
    if not listened:
        return False
    if len(changes) == 1:
        given = {"tenant": tenant_id, "txn": changes[0][0]}
        return any(connection.execute(_fan_out_sqlite(by_txn=True), given).scalars())
    full = False
    for chunk in chunks(rows):
        given = {"tenant": tenant_id, "jtis": [row["jti"] for row in chunk]}
        full = any(connection.execute(_fan_out_sqlite(by_txn=False), given).scalars()) or full
    return full


# Built once: SQLite's executemany of the event rows, each returned with whether its tenant has
# an enabled receiver (read in the same statement, as the fan-out reads them: nothing about
# receivers is cached).
_INSERT_EVENTS = insert(Event).returning(
    # Written out: SQLAlchemy names the inserted table's columns unqualified in RETURNING, which
    # SQLite finds ambiguous inside a subquery of another table with the same column.
    literal_column(
        "EXISTS (SELECT 1 FROM event_receivers AS r"
        " WHERE r.tenant_id = events.tenant_id AND r.enabled)"
    ).label("listened")
)

# The events' values but tenant_id and at (the same for all), in _WRITE_POSTGRESQL's JSON
# parameter, with their types there.
_EVENT_COLUMNS = {
    "txn": "varchar",
    "jti": "varchar",
    "resource_type": "varchar",
    "resource_id": "varchar",
    "external_id": "varchar",
    "operation": "varchar",
    "activation": "varchar",
    "attributes": "json",
    "version": "integer",
    "request_id": "varchar",
}

# PostgreSQL: the channel a transaction that queued deliveries notifies as it commits (a
# NOTIFY is delivered at COMMIT, never for a rollback); the workers LISTEN on it
# (store/deliveries.py).
CHANNEL = "scim_events"

# One row of events per element of the JSON array (in its order: WITH ORDINALITY), a delivery per
# event and enabled receiver subscribed to its operation or activation (read from
# event_receivers in the same statement, so a receiver added a moment ago is never missed,
# and nothing about receivers is cached), then whether one of those deliveries is owed to a
# `:full` receiver, and a NOTIFY when a delivery was queued.
_WRITE_POSTGRESQL = text(
    f"""
    WITH written AS (
        INSERT INTO events (tenant_id, at, {", ".join(_EVENT_COLUMNS)})
        SELECT :tenant, :now, {", ".join(f"e.{column}" for column in _EVENT_COLUMNS)}
        FROM ROWS FROM (
            json_to_recordset(CAST(:rows AS json))
            AS ({", ".join(f"{column} {kind}" for column, kind in _EVENT_COLUMNS.items())})
        ) WITH ORDINALITY AS e ({", ".join(_EVENT_COLUMNS)}, n)
        ORDER BY e.n
        RETURNING tenant_id, id, resource_id, operation, activation
    ), fanned AS (
        INSERT INTO event_deliveries
            (tenant_id, receiver_id, event_id, resource_id, state, attempts, next_attempt_at,
             created_at)
        SELECT r.tenant_id, r.id, w.id, w.resource_id, 'pending', 0, :now, :now
        FROM written AS w JOIN event_receivers AS r ON r.tenant_id = w.tenant_id
        WHERE r.enabled
          AND (CAST(r.events AS jsonb) ? w.operation OR CAST(r.events AS jsonb) ? w.activation)
        RETURNING (
            SELECT "full" FROM event_receivers AS f
            WHERE f.tenant_id = event_deliveries.tenant_id AND f.id = event_deliveries.receiver_id
        ) AS "full"
    )
    SELECT EXISTS (SELECT FROM fanned WHERE "full"),
           (SELECT pg_notify('{CHANNEL}', '') FROM fanned LIMIT 1)
    """
).bindparams(bindparam("now", type_=Event.__table__.c.at.type))


@functools.cache
def _fan_out_sqlite(*, by_txn: bool) -> TextClause:
    """SQLite: a delivery per event just written and enabled receiver of its tenant subscribed
    to its operation or activation, each returning whether that receiver is a `:full` one. The
    events are named by their txn (parameter txn) or by their jtis (jtis). By txn is half the
    cost: SQLAlchemy renders an expanding IN list anew at each execution."""
    which = "e.txn = :txn" if by_txn else "e.jti IN :jtis"
    statement = text(
        f"""
        INSERT INTO event_deliveries
            (tenant_id, receiver_id, event_id, resource_id, state, attempts, next_attempt_at,
             created_at)
        SELECT r.tenant_id, r.id, e.id, e.resource_id, 'pending', 0, e.at, e.at
        FROM events AS e JOIN event_receivers AS r ON r.tenant_id = e.tenant_id
        WHERE e.tenant_id = :tenant AND {which} AND r.enabled
          AND EXISTS (SELECT 1 FROM json_each(r.events) WHERE value IN (e.operation, e.activation))
        RETURNING (
            SELECT "full" FROM event_receivers AS f
            WHERE f.tenant_id = event_deliveries.tenant_id AND f.id = event_deliveries.receiver_id
        )
        """
    )
    return statement if by_txn else statement.bindparams(bindparam("jtis", expanding=True))


def forget_notes(session: Session) -> None:
    """The open transaction's notes are written (or gone): the next change notes afresh, under
    a txn of its own (a Bulk operation written without a savepoint of its own, store/batch.py)."""
    session.info.pop(_NOTES, None)
    session.info.pop(_TXN, None)


@sql_events.listens_for(Session, "after_transaction_end")
def _forget_notes(session: Session, transaction: Any) -> None:
    # Committed or rolled back: its notes are done with. A savepoint too: a Bulk operation
    # (store/batch.py) is a change of its own, whose release runs before_commit (its events,
    # under a txn of its own) and whose rollback takes its notes with it.
    if transaction.parent is None or transaction.nested:
        forget_notes(session)
        session.info.pop(_UNWRITTEN, None)  # its flush failed: rolled back
    queued = session.info.get(_QUEUED)
    if queued is not None and (transaction is queued.transaction or transaction.parent is None):
        session.info.pop(_QUEUED)  # rolled back with their rows (written ones are popped)


def _store_data(connection: Any, tenant_id: int, jtis: list[str], changes: list[Change]) -> None:
    """The resources as committed, on their events, for the `:full` receivers."""
    data = [
        {"row_jti": jti, "row_data": change.render()}
        for jti, change in zip(jtis, changes, strict=True)
        if change.render is not None
    ]
    if data:
        connection.execute(
            update(Event)
            .where(Event.tenant_id == tenant_id, Event.jti == bindparam("row_jti"))
            .values(data=bindparam("row_data")),
            data,
        )


def changed_paths(rt: ResourceType, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The attributes that differ between two documents, as RFC 9967 §2.2's `attributes`: paths
    in RFC 7644 §3.5.2's syntax (`name.familyName`, `emails`, an extension's
    `urn:...:User:department`), names only, in the schema's order."""
    # externalId is common to every resource (RFC 7643 §3.1), not in a schema's attributes.
    paths = ["externalId"] if old.get("externalId") != new.get("externalId") else []
    for schema in rt.schemas:
        core = schema is rt.schema
        before = old if core else old.get(schema.id) or {}
        after = new if core else new.get(schema.id) or {}
        prefix = "" if core else f"{schema.id}:"
        for attribute in schema.attributes:
            paths += [prefix + path for path in _differs(attribute, before, after)]
    return paths


def _differs(attribute: Attribute, before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    name = attribute.name
    old, new = before.get(name), after.get(name)
    if old == new:
        return []
    if attribute.is_complex and not attribute.multi_valued:
        if isinstance(old, dict) and isinstance(new, dict):
            return [
                f"{name}.{sub.name}"
                for sub in attribute.sub_attributes
                if old.get(sub.name) != new.get(sub.name)
            ]
    return [name]


# --- Reading events ---------------------------------------------------------------------------


def for_resource(resource_id: str, limit: int = 100) -> list[Event]:
    """One resource's events, oldest first."""
    query = select(Event).where(Event.resource_id == resource_id).order_by(Event.id).limit(limit)
    return list(db.session.scalars(query))


def since(after_id: int = 0, limit: int = 1000) -> list[Event]:
    """The entered tenant's events after an id, in id order (tests, the console)."""
    query = select(Event).where(Event.id > after_id).order_by(Event.id).limit(limit)
    return list(db.session.scalars(query))


def with_txn(txn: str) -> list[Event]:
    return list(db.session.scalars(select(Event).where(Event.txn == txn).order_by(Event.id)))


def purge(older_than_days: int) -> tuple[int, int]:
    """Delete the events older than this many days that no receiver still waits for (none of
    their deliveries pending; all delivered or dead, or none at all), with their deliveries;
    how many events and deliveries. In the tenant scope entered (or across tenants)."""
    cutoff = utcnow() - timedelta(days=older_than_days)
    owed = aliased(EventDelivery)
    pending = exists().where(
        owed.tenant_id == Event.tenant_id, owed.event_id == Event.id, owed.state == "pending"
    )
    done = exists().where(
        Event.tenant_id == EventDelivery.tenant_id,
        Event.id == EventDelivery.event_id,
        Event.at < cutoff,
        ~pending,
    )
    options = {"synchronize_session": False}
    deliveries = db.session.execute(
        delete(EventDelivery).where(done), execution_options=options
    ).rowcount
    # What is left of them has no delivery at all (a pending one, added meanwhile, keeps it).
    any_delivery = exists().where(
        EventDelivery.tenant_id == Event.tenant_id, EventDelivery.event_id == Event.id
    )
    purged = db.session.execute(
        delete(Event).where(Event.at < cutoff, ~any_delivery), execution_options=options
    ).rowcount
    db.session.commit()
    return purged, deliveries


# --- Receivers --------------------------------------------------------------------------------


def add_receiver(receiver: EventReceiver, key: EventSigningKey) -> EventReceiver:
    """A new receiver of the entered tenant, with its first signing key; committed."""
    db.session.add(receiver)
    db.session.flush()
    key.receiver_id = receiver.id
    db.session.add(key)
    db.session.commit()
    return receiver


def receivers() -> list[EventReceiver]:
    """The entered tenant's receivers (every tenant's across tenants), by name."""
    query = select(EventReceiver).order_by(EventReceiver.tenant_id, EventReceiver.name)
    return list(db.session.scalars(query))


def receiver_named(name: str) -> EventReceiver | None:
    return db.session.scalars(select(EventReceiver).where(EventReceiver.name == name)).first()


def receiver(receiver_id: str) -> EventReceiver | None:
    """A receiver by id, whatever its tenant (the JWKS and poll endpoints find it by id)."""
    with tenancy.across_tenants():
        query = select(EventReceiver).where(EventReceiver.id == receiver_id)
        return db.session.scalars(query).first()


def set_enabled(receiver: EventReceiver, enabled: bool) -> None:
    receiver.enabled = enabled
    db.session.commit()


def remove_receiver(receiver: EventReceiver) -> None:
    """Delete a receiver, its keys and its deliveries."""
    for model in (EventDelivery, EventSigningKey):
        db.session.execute(
            delete(model).where(model.receiver_id == receiver.id),
            execution_options={"synchronize_session": False},
        )
    db.session.delete(receiver)
    db.session.commit()


# How long a retired key stays in its receiver's JWKS: SETs signed with it, still in flight
# (polled, not yet verified), verify meanwhile.
RETIRED_KEY_GRACE = timedelta(days=1)


def add_signing_key(receiver: EventReceiver, key: EventSigningKey) -> EventSigningKey:
    """A new key for the receiver, which signs from now on (the newest is current); the older
    ones stay published until retired (`retire_old_keys`). Committed."""
    key.receiver_id = receiver.id
    now, keys = utcnow(), signing_keys(receiver.id)
    # Newest is current: after the newest so far, even if another host's clock ran ahead.
    key.created_at = max(now, keys[0].created_at + timedelta(microseconds=1)) if keys else now
    db.session.add(key)
    db.session.commit()
    return key


def retire_old_keys(receiver: EventReceiver) -> int:
    """Retire every key of the receiver but the current one; how many. A retired key leaves
    the JWKS after RETIRED_KEY_GRACE."""
    old = signing_keys(receiver.id)[1:]
    retiring = [key for key in old if key.retired_at is None]
    for key in retiring:
        key.retired_at = utcnow()
    db.session.commit()
    return len(retiring)


def signing_keys(receiver_id: str, *, published: bool = False) -> list[EventSigningKey]:
    """A receiver's keys, newest first: the current one first. `published`: those in its JWKS
    (asymmetric, current or retired less than RETIRED_KEY_GRACE ago)."""
    query = (
        select(EventSigningKey)
        .where(EventSigningKey.receiver_id == receiver_id)
        .order_by(EventSigningKey.created_at.desc(), EventSigningKey.kid)
    )
    if published:
        recently = utcnow() - RETIRED_KEY_GRACE
        query = query.where(
            EventSigningKey.public_jwk.is_not(None),
            (EventSigningKey.retired_at.is_(None)) | (EventSigningKey.retired_at > recently),
        )
    return list(db.session.scalars(query))


# --- Deliveries -------------------------------------------------------------------------------


def due(receiver: EventReceiver, limit: int, *, now: datetime | None = None) -> Any:
    """The statement selecting a receiver's deliveries due now, each the head of its resource's
    queue (no earlier pending delivery of the same resource), oldest first, with their events.

    On PostgreSQL add `.with_for_update(skip_locked=True, of=EventDelivery)` to claim them.
    """
    now = now or utcnow()
    earlier = aliased(EventDelivery)
    delivery = EventDelivery
    return (
        select(delivery, Event)
        .join(Event, and_(Event.tenant_id == delivery.tenant_id, Event.id == delivery.event_id))
        .where(
            delivery.tenant_id == receiver.tenant_id,
            delivery.receiver_id == receiver.id,
            delivery.state == "pending",
            delivery.next_attempt_at <= now,
            ~exists().where(
                earlier.tenant_id == delivery.tenant_id,
                earlier.receiver_id == delivery.receiver_id,
                earlier.resource_id == delivery.resource_id,
                earlier.state == "pending",
                earlier.event_id < delivery.event_id,
            ),
        )
        .order_by(delivery.event_id)
        .limit(limit)
    )


def pending_count(receiver: EventReceiver) -> int:
    query = select(func.count()).where(
        EventDelivery.receiver_id == receiver.id, EventDelivery.state == "pending"
    )
    return db.session.scalar(query) or 0


def mark(receiver: EventReceiver, jtis: Iterable[str], state: str, error: str | None = None) -> int:
    """Mark the receiver's pending deliveries of these jtis delivered or dead; how many."""
    changed = 0
    for chunk in chunks(list(jtis)):  # a poll may acknowledge tens of thousands at once
        events = select(Event.id).where(Event.jti.in_(chunk))
        changed += db.session.execute(
            update(EventDelivery)
            .where(
                EventDelivery.receiver_id == receiver.id,
                EventDelivery.state == "pending",
                EventDelivery.event_id.in_(events),
            )
            .values(state=state, delivered_at=utcnow(), last_error=error),
            execution_options={"synchronize_session": False},
        ).rowcount
    return changed


@dataclass(frozen=True)
class Polled:
    """What one RFC 8936 poll hands out: jti -> SET, and whether more are due."""

    sets: dict[str, str]
    more_available: bool


def poll(
    receiver: EventReceiver,
    *,
    ack: list[str],
    errors: dict[str, str],
    max_events: int,
    wait_seconds: float,
    redeliver_after: timedelta,
    build: Callable[[Event, EventSigningKey], str | None],
) -> Polled:
    """RFC 8936 §2.4 for one receiver, in its tenant: acknowledge (`ack`: delivered; `errors`,
    jti -> the receiver's error: dead, not sent again), then hand out up to `max_events` due
    SETs (waiting up to `wait_seconds` for one), each due again after `redeliver_after` unless
    acknowledged by then. Only the head of each resource's queue is handed out (`due`), so a
    resource's next event waits for the previous one's acknowledgement: per-resource order."""
    with tenancy.entered(receiver.tenant_id):
        mark(receiver, ack, "delivered")
        by_error: dict[str, list[str]] = {}
        for jti, error in errors.items():
            by_error.setdefault(error[:500], []).append(jti)
        for error, jtis in by_error.items():
            mark(receiver, jtis, "dead", error)
        db.session.commit()
        if max_events == 0:
            return Polled({}, False)
        deadline = time.monotonic() + wait_seconds
        while True:
            polled = _hand_out(receiver, max_events, redeliver_after, build)
            if polled.sets or time.monotonic() >= deadline:
                return polled
            time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))


def _hand_out(
    receiver: EventReceiver,
    max_events: int,
    redeliver_after: timedelta,
    build: Callable[[Event, EventSigningKey], str | None],
) -> Polled:
    now = utcnow()
    query = due(receiver, max_events + 1, now=now)
    if db.session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=EventDelivery)
    rows = db.session.execute(query).all()
    keys = signing_keys(receiver.id)
    out: dict[str, str] = {}
    for delivery, event in rows[:max_events]:
        delivery.attempts += 1
        delivery.last_attempt_at = now
        token = build(event, keys[0]) if keys else None
        if token is None:  # no longer subscribed to any of its events (or no key)
            delivery.state, delivery.delivered_at = "dead", now
            delivery.last_error = "not subscribed" if keys else "no signing key"
            continue
        delivery.next_attempt_at = now + redeliver_after
        out[event.jti] = token
    db.session.commit()
    return Polled(out, len(rows) > max_events)
