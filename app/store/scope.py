"""Every statement the store runs sees only the entered tenant's rows (app.tenancy).

Two layers, so that one mistake cannot leak a customer's data to another:

1. In the ORM, for both databases: each SELECT, UPDATE and DELETE of a tenant-owned table gets
   `tenant_id = <entered tenant>` wherever that table appears (joins and subqueries included),
   through SQLAlchemy's `with_loader_criteria`: added as the session runs the statement, or by
   `read` for the reads it runs on the session's connection (`confined`, either way). A new
   row takes the entered tenant as its default (models.tenant_column). With no tenant entered
   such a statement fails: unscoped code never silently sees everything.
2. On PostgreSQL, row-level security (migration 0009): every transaction, and every read
   outside one, runs with the connection's `scim.tenant` set to the entered tenant (`*` across
   tenants), and the tables' policies compare every row with it, for any statement, even one
   written without the tenant condition. Superusers and roles
   with BYPASSRLS skip the policies; app/store/rls.py warns at start-up when the service
   connects as one.
"""

from __future__ import annotations

import functools
import threading
import weakref
from typing import Any

from sqlalchemy import BindParameter, Connection, Engine, Integer, event
from sqlalchemy.orm import (
    ORMExecuteState,
    Session,
    SessionTransaction,
    scoped_session,
    with_loader_criteria,
)

from app import tenancy
from app.db import in_autocommit
from app.models import (
    AuditEvent,
    Event,
    EventDelivery,
    EventReceiver,
    EventSigningKey,
    Group,
    GroupMember,
    LiveCount,
    MembershipChange,
    Token,
    User,
    UserValue,
)

TENANT_OWNED: tuple[type[Any], ...] = (
    User,
    UserValue,
    Group,
    GroupMember,
    Token,
    AuditEvent,
    MembershipChange,
    LiveCount,
    Event,
    EventReceiver,
    EventSigningKey,
    EventDelivery,
)
_OWNED_TABLES = frozenset(model.__table__ for model in TENANT_OWNED)

# What `scim.tenant` holds across tenants; the policies (migration 0009) let it see every row.
ALL_TENANTS_SETTING = "*"
_SETTING = "scim.tenant"  # session.info: the value this session's transaction runs under
_CONNECTION_SETTING = "scim.tenant"  # a pooled connection's info: the value set on it


@event.listens_for(Session, "do_orm_execute")
def _scope_statement(state: ORMExecuteState) -> None:
    _keep_row_level_security_current(state.session)
    if state.is_select or state.is_update or state.is_delete:
        state.statement = confined(state.statement)


def confined(statement: Any) -> Any:
    """The statement as the entered tenant may run it: with its criteria on every tenant-owned
    table, as it is across tenants (ALL_TENANTS), refused with no tenant entered."""
    scope = tenancy.current()
    if scope is tenancy.ALL_TENANTS:
        return statement
    owned = _owned_tables(statement)
    if scope is None:
        if owned:
            raise tenancy.NoTenantScope(
                "a statement on tenant-owned rows ran outside a tenant scope"
            )
        return statement
    return _SCOPED.scoped(statement, scope, owned) if owned else statement


def read(
    session: Session | scoped_session[Session], statement: Any, parameters: dict[str, Any]
) -> Any:
    """Run a SELECT of columns (not of entities: its rows would hold no loaded objects) confined
    as the session would confine it: its rows, as Session.execute gives them.

    For the reads every SCIM request makes (a page's or lookup's rows, their groups, the live
    count, a user or group read by id): on the session's connection, since Session.execute's
    ORM layers cost more than the rest of running it (a lookup's SELECT: 132 µs through the
    session, 52 through its connection, the same rows; the sqlite3 driver alone, 11), after
    the flush of pending changes the session would do first.
    """
    # The Session itself: a scoped_session (db.session) does not proxy in_transaction, which
    # _keep_row_level_security_current asks when the scope moved within a transaction.
    plain = session() if isinstance(session, scoped_session) else session
    plain.flush()  # nothing to do, and cheap, unless changes are pending
    _keep_row_level_security_current(plain)
    return plain.connection().execute(confined(statement), parameters)


def _owned_tables(statement: Any) -> frozenset[Any]:
    """The tenant-owned tables a statement touches anywhere: joins, subqueries, aliases,
    `select_from` (an entity need not be among the selected columns, as in
    `select(func.count()).select_from(User)`) and the target of an UPDATE or DELETE. The models
    have no relationships, so every table a statement reads is written in it.

    What sqlalchemy.sql.util.find_tables finds, walked element by element with each element's
    answer kept (_Found): a request's statement is mostly elements built once
    (store.users._live_shown, its subqueries) with a new WHERE on top, and walking all of them
    again took 8% of a lookup.
    """
    return _FOUND.tables(statement)


class _Found:
    """The tenant-owned tables under each statement element walked lately.

    Keyed by id(element), which a later element can reuse once this one is gone: an entry holds
    a weak reference to its element and counts only while that is the very element asked about.
    Bounded: past `size` entries they all go, and an element walked again is found anew.
    Elements are immutable (a statement's .where() makes a new one), so an answer never goes
    stale while its element lives.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: dict[int, tuple[weakref.ref[Any], frozenset[Any]]] = {}

    def tables(self, element: Any) -> frozenset[Any]:
        entry = self.entries.get(id(element))
        if entry is not None and entry[0]() is element:
            return entry[1]
        found = frozenset()
        if element.__visit_name__ == "table":
            found = _OWNED_TABLES.intersection((element,))
        elif element.__visit_name__ in ("insert", "update", "delete"):
            found = _OWNED_TABLES.intersection((element.table,))
        for child in element.get_children():
            found |= self.tables(child)
        self._keep(element, found)
        return found

    def _keep(self, element: Any, found: frozenset[Any]) -> None:
        try:
            reference = weakref.ref(element)
        except TypeError:  # an element without weak references is walked every time
            return
        entries = self.entries
        if len(entries) >= self.size:
            # All at once, in one call: gthread workers share this, and a walk over the entries
            # to drop the oldest saw another thread change them (the collector can switch
            # threads mid-walk). Found again, the hot elements cost one walk each.
            entries.clear()
        entries[id(element)] = (reference, found)


_FOUND = _Found(size=8192)


class _Scoped:
    """Each statement run more than once lately, as confined to each tenant that ran it.

    A statement built once and run again (a read by id, a prepared page: its values bound
    parameters) is then confined once per tenant, not on every run: the confined copy is the
    same object each time, so SQLAlchemy computes its cache key once too (it keeps the key on
    the statement). A statement is remembered by a weak reference the first time, its
    confined copy kept from the second: keeping a copy of every statement built for one
    request kept their conditions and values alive too (30 MB in a worker).

    Keyed and bounded as _Found: by id(statement) and tenant, the entry's weak reference
    telling whether the statement is still the one of that id; all cleared when full."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: dict[tuple[int, int], tuple[weakref.ref[Any], Any]] = {}

    def scoped(self, statement: Any, tenant_id: int, owned: frozenset[Any]) -> Any:
        key = (id(statement), tenant_id)
        entry = self.entries.get(key)
        seen = entry is not None and entry[0]() is statement
        if seen and entry[1] is not None:
            return entry[1]
        confined = statement.options(*_tenant_criteria(tenant_id, owned))
        entries = self.entries
        if len(entries) >= self.size:
            entries.clear()  # at once, as _Found, for the threads of a gthread worker
        try:
            entries[key] = (weakref.ref(statement), confined if seen else None)
        except TypeError:  # a statement without weak references is confined every time
            pass
        return confined


_SCOPED = _Scoped(size=8192)


@functools.lru_cache(maxsize=16384)
def _tenant_criteria(tenant_id: int, tables: frozenset[Any]) -> tuple[Any, ...]:
    """The options that confine a statement on `tables` to one tenant, built once per tenant
    and set of tables: building them anew for every statement cost a tenth of a lookup, and
    the criteria of all seven tenant-owned models on every statement a third of its time.

    The tenant's id is a bound parameter (_TenantId), so every tenant shares one compiled
    statement per query shape.

    Built one at a time in a process (_BUILDING). SQLAlchemy keeps one analysis of a criterion's
    lambda for every tenant, keyed by its code and the shape of what it closes over, and gives
    each new lambda its own tenant's value from there. But when two threads build the first
    criterion of a model at once, the one that finds the other's analysis just stored keeps
    that analysis's value (sqlalchemy.sql.lambdas, _retrieve_tracker_rec): the criteria of
    one tenant confined its statements to the other, for the life of the worker (seen as a
    404 for a tenant's own group when two tenants' first requests came together)."""
    with _BUILDING:
        return tuple(
            with_loader_criteria(model, _owned_by(tenant_id), include_aliases=True)
            for model in TENANT_OWNED
            if model.__table__ in tables
        )


_BUILDING = threading.Lock()


class _TenantId(BindParameter[int]):
    """The entered tenant's id in a statement's criteria, compared with other elements the
    way SQLAlchemy compares them when they meet in a dict or a set: by hash.

    The ORM puts both this parameter and an annotated copy of it (same hash) into each
    compiled statement, and every execution files them in a dict keyed by parameter
    (SQLCompiler.construct_params). Two keys of one hash are compared with `==`, which for a
    plain BindParameter builds a SQL expression only to ask it for its truth: about 20 µs a
    comparison, several per statement (construct_params took 143 µs a statement on PostgreSQL,
    27 with this). Nothing builds SQL from
    this parameter with `==`; it is only ever the right-hand side of `tenant_id == ...`.
    """

    inherit_cache = True

    def __init__(self, tenant_id: int) -> None:
        super().__init__("tenant_id", tenant_id, type_=Integer(), unique=True)

    def __eq__(self, other: object) -> bool:  # type: ignore[override]
        return hash(self) == hash(other)

    __hash__ = BindParameter.__hash__


def _owned_by(tenant_id: int) -> Any:
    # A lambda taking the class, which SQLAlchemy applies to the model's aliases too (a plain
    # expression stays on the model's own table: `groups.tenant_id` under `groups AS groups_1`).
    tenant = _TenantId(tenant_id)
    return lambda cls: cls.tenant_id == tenant


@event.listens_for(Engine, "begin")
def _enter_row_level_security(connection: Connection) -> None:
    """PostgreSQL: before any statement of a transaction, or of a read outside one (app.db),
    the connection's `scim.tenant` is the entered tenant's: the row-level security policies
    compare every row with it. No tenant entered: an empty setting, which they match with no
    row.

    The setting is the connection's (`set_config(..., false)`), kept from one use to the next
    and set only when the entered tenant differs from the last one set on it: a tenant's
    requests on a pooled connection cost no round trip for it (before, two of a lookup's four
    round trips were the setting and the transaction around a single SELECT). Every use of a
    connection begins here, an ORM session's or a Core connection's, so none runs under a
    tenant other than the one entered where it runs.
    """
    if connection.dialect.name == "postgresql":
        wanted = setting(tenancy.current())
        if connection.connection.info.get(_CONNECTION_SETTING, "") != wanted:
            _set_for_the_connection(connection, wanted)


def _set_for_the_connection(connection: Connection, value: str) -> None:
    dbapi_connection: Any = connection.connection.dbapi_connection
    inside = not dbapi_connection.autocommit  # a transaction, which is not begun yet
    if inside:  # so that the setting outlives it, even if it is rolled back
        dbapi_connection.autocommit = True
    try:
        _set_tenant(connection, value, until_transaction_ends=False)
    finally:
        if inside and not dbapi_connection.closed:
            dbapi_connection.autocommit = False
    # Cleared with the pooled connection's info when the connection is replaced.
    connection.connection.info[_CONNECTION_SETTING] = value


@event.listens_for(Session, "after_begin")
def _note_row_level_security(
    session: Session, transaction: SessionTransaction, connection: Connection
) -> None:
    """What _enter_row_level_security set for this session's transaction, which
    _keep_row_level_security_current moves along with the scope."""
    if connection.dialect.name == "postgresql":
        session.info[_SETTING] = setting(tenancy.current())


@event.listens_for(Session, "before_flush")
def _before_flush(session: Session, _flush_context: Any, _instances: Any) -> None:
    _keep_row_level_security_current(session)


def _keep_row_level_security_current(session: Session) -> None:
    """PostgreSQL: a scope entered or left within a transaction (a console page that reads one
    tenant, then all) moves the transaction's setting with it, before the next statement."""
    wanted = setting(tenancy.current())
    if session.info.get(_SETTING) in (None, wanted) or not session.in_transaction():
        return  # not begun yet (after_begin will set it), SQLite, or already current
    connection = session.connection()
    if in_autocommit(connection):  # a read outside any transaction (app.db)
        _set_for_the_connection(connection, wanted)
    else:  # until this transaction ends; the connection's own setting stays as it was
        _set_tenant(connection, wanted, until_transaction_ends=True)
    session.info[_SETTING] = wanted


def _set_tenant(connection: Connection, value: str, *, until_transaction_ends: bool) -> None:
    local = "true" if until_transaction_ends else "false"
    connection.exec_driver_sql(
        f"SELECT set_config('scim.tenant', %(tenant)s, {local})", {"tenant": value}
    )


@event.listens_for(Session, "after_transaction_end")
def _forget_setting(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the outermost transaction: set_config(..., true) ended
        session.info.pop(_SETTING, None)


def setting(scope: tenancy.Scope) -> str:
    """The value of `scim.tenant` for a scope."""
    if scope is tenancy.ALL_TENANTS:
        return ALL_TENANTS_SETTING
    return "" if scope is None else str(scope)
