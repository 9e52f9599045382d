"""Every SQL statement about users."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from datetime import datetime
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import Connection, Select, Update, bindparam, insert, null, select, update
from sqlalchemy import delete as sql_delete
from sqlalchemy.orm.attributes import set_committed_value
from werkzeug.security import generate_password_hash

from app import serialize, tenancy, validate
from app.db import commit, db, utcnow
from app.errors import NotFound, Uniqueness
from app.filters import sql as filters
from app.filters.grammar import Filter
from app.filters.visitor import folds
from app.fold import fold, folded_copy
from app.models import USER_SHOWN, User, UserValue, new_id
from app.paging import PageRequest
from app.patch import Operation
from app.patch import apply as apply_patch
from app.projection import Projection
from app.schema import ResourceType
from app.store import (
    as_entity,
    audit,
    could_be_id,
    entity_columns,
    events,
    groups,
    locked,
    pages,
    scope,
)

# The unique indexes a user's write can run into, and what the client is told.
_REFUSALS: locked.Refusals[User] = {
    "uq_users_live_user_name": lambda user: Uniqueness(
        f"userName '{user.user_name}' is already taken"
    ),
}


@functools.cache
def live() -> Select[tuple[User]]:
    """Every read of User entities starts here, so a tombstone can never leak into an answer.
    Built once: a statement is immutable (each .where() makes a new one)."""
    return select(User).where(User.deleted_at.is_(None))


@functools.cache
def _live_shown() -> Select[Any]:
    """live(), its rows the columns a response shows (models.USER_SHOWN) instead of User
    entities: making 100 entities took a quarter of a page. `groups_read` is NULL, as for a
    User read without its groups (a Row has no attribute it was not given, and asking for one
    costs an exception)."""
    return select(*USER_SHOWN, null().label("groups_read")).where(User.deleted_at.is_(None))


@functools.cache
def _groups_shown() -> Any:
    return groups.memberships_column().label("groups_read")


def _with_groups_shown(query: Select[Any]) -> Select[Any]:
    """_live_shown() with each user's groups read into the row's `groups_read`, in the same
    statement (groups.memberships_column)."""
    return query.with_only_columns(*USER_SHOWN, _groups_shown())


def get(
    user_id: str, *, for_update: bool = False, deleting: bool = False, with_groups: bool = False
) -> User:
    """A live user; `for_update` locks its row until commit (PostgreSQL; SQLite locks the file).

    Only a DELETE takes the lock that waits for group writers holding the user as a new member
    (groups._existing, FOR KEY SHARE); other changes leave the key alone and need not wait.

    The user is read as columns and returned outside the session (store.as_entity): a GET, PUT and
    PATCH write nothing through the ORM (_rewrite writes by statement), and loading an entity
    cost the session's identity map and loading machinery. A DELETE changes the entity the
    session flushes: read as one.
    """
    if not could_be_id(user_id):
        raise NotFound(f"User {user_id!r} not found")
    parameters = {"user_id": user_id}
    if deleting:
        user = db.session.scalars(_entity_by_id(), parameters).one_or_none()
    else:
        row = scope.read(db.session, _by_id(with_groups, for_update), parameters).one_or_none()
        user = None if row is None else as_entity(User, row._asdict())
    if user is None:
        raise NotFound(f"User {user_id} not found")
    return user


@functools.cache
def _entity_by_id() -> Select[tuple[User]]:
    """A DELETE's read: the entity, locked against group writers adding it as a member."""
    query = live().where(User.id == bindparam("user_id"))
    return query.with_for_update(key_share=False)


@functools.cache
def _by_id(with_groups: bool, for_update: bool) -> Select[Any]:
    """get()'s statement, built once, the id a parameter: the same statement object every time,
    whose tenant confinement and cache key are then made once (store/scope.py). Its columns
    are those a User entity loads, and its groups as `groups_read` if asked."""
    shown = (*entity_columns(User), _groups_shown() if with_groups else null().label("groups_read"))
    query = select(*shown).where(User.deleted_at.is_(None), User.id == bindparam("user_id"))
    return query.with_for_update(key_share=True) if for_update else query


def search(
    rt: ResourceType,
    filter: Filter | None,
    page: PageRequest,
    *,
    sort_by: str | None = None,
    descending: bool = False,
    across_types: bool = False,
    with_groups: bool = False,
) -> pages.Page:
    """One page of live users matching a parsed SCIM filter, and how many match in all: its
    rows are models.ShownUser rows, not User entities.

    `across_types` (the root /.search): attributes users lack have no value, not an error.
    `with_groups`: the page's statement reads the users' groups too, where pages.fetch can.
    """
    where = None
    if filter is not None:
        where = filters.users_where(filter, rt, unknown_is_missing=across_types)
    keys = []
    if sort_by and not (across_types and rt.resolve(sort_by) is None):
        keys.append(pages.Key(filters.users_sort_key(sort_by, rt), descending, nullable=True))
    keys += _CREATION_ORDER
    return pages.fetch(
        _live_shown(),
        keys,
        page,
        where=where,
        prepared=len(keys) == len(_CREATION_ORDER),  # the same keys every time: no sortBy
        count=_count_live if filter is None else None,
        # Not under a client's sortBy: PostgreSQL then computes the subquery for every match
        # it sorts, not only for the page (a third of a sorted page at 100,000 users).
        expand=_with_groups_shown if with_groups and not sort_by else None,
    )


# Creation order with the id as tiebreak: every page of a crawl is stable and disjoint.
_CREATION_ORDER = (pages.Key(User.created_at), pages.Key(User.id))


def _count_live(_query: Select[Any]) -> int:
    """How many live users the tenant has, from its counter rows (models.LiveCount)."""
    return pages.count_live("User")


def create(rt: ResourceType, body: dict[str, Any]) -> User:
    checked = validate.resource(rt, body)
    document = checked.document
    document.setdefault("active", True)  # a new account is active unless the IdP says otherwise
    if events.is_deferring(db.session()):
        # A Bulk create whose rows the batch writes with the others' (store/batch.py).
        user = User(version=1)
        _copy_onto_row(rt, user, document, checked.password)
        user.created_at = user.last_modified
        db.session.add(user)
        _note(rt, user, "create", {}, None, checked.password)
        _commit(user)
        return user
    user = _insert(rt, document, checked.password)
    _note(rt, user, "create", {}, None, checked.password)
    commit(db.session)
    return user


def _insert(rt: ResourceType, document: dict[str, Any], password: str | None) -> User:
    """A new user's rows, written now by Core INSERTs built once (the ORM's flush of the same
    rows cost a third of a POST); the row returned is not in the session, its columns those
    written. The audit row is told its id (store/audit.py)."""
    now = utcnow()
    values = {
        "tenant_id": tenancy.current_id(),
        "id": new_id(),
        **columns(rt, document),
        "password_hash": None if password is None else generate_password_hash(password),
        "created_at": now,
        "last_modified": now,
        "deleted_at": None,
        "version": 1,
    }
    user = as_entity(User, values)
    connection = db.session.connection()
    with locked.refusing(_REFUSALS, user):
        connection.execute(_INSERT_USER, values)
        _insert_values(connection, values["tenant_id"], value_rows(rt, user.id, document))
    audit.created(user.id)
    return user


def _rewrite(rt: ResourceType, user: User, document: dict[str, Any], password: str | None) -> None:
    """Write a validated document over a live user's row, by a Core UPDATE built once that
    carries the version check (locked.write), and rewrite its per-element rows if they changed;
    then set what was written on the row as committed. Nothing when nothing changed."""
    if user.document == document and password is None:
        return
    # The columns that change, as the ORM's UPDATE had them: SQLite rewrites the entries of
    # every index whose column an UPDATE sets, changed or not. document_key is not loaded
    # (deferred): always written.
    values = {
        name: value
        for name, value in columns(rt, document).items()
        if name == "document_key" or getattr(user, name) != value
    }
    values |= {"last_modified": utcnow(), "version": user.version + 1}
    if password is not None:
        values["password_hash"] = generate_password_hash(password)
    elements: list[dict[str, Any]] | None = value_rows(rt, user.id, document)
    # Rewritten only when they changed: a PATCH of givenName or active (most of an IdP's
    # changes) keeps every element, and skips a DELETE and an INSERT with their indexes.
    if elements == value_rows(rt, user.id, user.document):
        elements = None
    key = {"row_tenant": user.tenant_id, "row_id": user.id}
    connection = db.session.connection()
    named = cast(User, SimpleNamespace(user_name=document["userName"]))  # for a refusal's text
    with locked.refusing(_REFUSALS, named):
        locked.write(_update_row(tuple(values)), key | {"row_version": user.version} | values)
        if elements is not None:
            connection.execute(_DELETE_VALUES, key)
            _insert_values(connection, user.tenant_id, elements)
    for name, value in values.items():
        set_committed_value(user, name, value)


def _insert_values(connection: Connection, tenant_id: int, rows: list[dict[str, Any]]) -> None:
    if rows:
        connection.execute(_INSERT_VALUES, [{"tenant_id": tenant_id, **row} for row in rows])


_USERS = User.__table__
_INSERT_USER = insert(_USERS)
_INSERT_VALUES = insert(UserValue.__table__)
_DELETE_VALUES = sql_delete(UserValue.__table__).where(
    UserValue.__table__.c.tenant_id == bindparam("row_tenant"),
    UserValue.__table__.c.user_id == bindparam("row_id"),
)


@functools.lru_cache(maxsize=512)
def _update_row(names: tuple[str, ...]) -> Update:
    """A user's row, these columns set, where it still has the version read: one statement per
    set of columns changed (a PATCH of givenName, of active, a PUT...), built once."""
    return (
        update(_USERS)
        .where(
            _USERS.c.tenant_id == bindparam("row_tenant"),
            _USERS.c.id == bindparam("row_id"),
            _USERS.c.version == bindparam("row_version"),
        )
        .values({name: bindparam(name) for name in names})
    )


def replace(
    rt: ResourceType,
    user_id: str,
    body: dict[str, Any],
    *,
    if_match: str | None = None,
    with_groups: bool = False,
) -> User:
    """PUT: the body becomes the user; readOnly attributes in it are ignored (RFC 7644 §3.5.1)."""
    checked = validate.resource(rt, body)

    def change(user: User) -> None:
        document = dict(checked.document)
        # Absent `active` keeps the current state: a PUT must never reactivate by omission,
        # nor assign a state to a user whose `active` a PATCH left unassigned.
        if user.active is not None:
            document.setdefault("active", user.active)
        validate.check_immutable(rt, user.document, document)
        before, active = user.document, user.active
        _rewrite(rt, user, document, checked.password)
        _note(rt, user, "put", before, active, checked.password)

    return _update(user_id, change, if_match, with_groups=with_groups)


def patch(
    rt: ResourceType,
    user_id: str,
    operations: list[Operation],
    *,
    if_match: str | None = None,
    with_groups: bool = False,
) -> User:
    def change(user: User) -> None:
        patched = apply_patch(user.document, operations, resource_id=user.id)
        checked = validate.resource(rt, patched)
        document = checked.document
        # No default for `active` here: the patched document still has it unless an operation
        # removed it, which leaves it unassigned (RFC 7644 §3.5.2.2; None in the column).
        validate.check_immutable(rt, user.document, document)
        before, active = user.document, user.active
        _rewrite(rt, user, document, checked.password)
        _note(rt, user, "patch", before, active, checked.password)

    return _update(user_id, change, if_match, with_groups=with_groups)


def delete(user_id: str, *, if_match: str | None = None, request_id: str = "") -> None:
    """Keep the row as a tombstone (RFC 7644 §3.6): deactivated, hidden, its userName freed.
    `request_id` names the request in the membership removals recorded."""

    def change(user: User) -> None:
        groups.forget_member(user.id, request_id=request_id)
        user.deleted_at = utcnow()
        user.active = False
        user.last_modified = user.deleted_at
        events.note(
            events.Change(
                "User", user.id, "delete", [], user.external_id, row=user, request_id=request_id
            )
        )

    _update(user_id, change, if_match, deleting=True)


def _update(
    user_id: str,
    change: Callable[[User], None],
    if_match: str | None,
    *,
    deleting: bool = False,
    with_groups: bool = False,
) -> User:
    """`with_groups` reads the user's groups with the locked row: a change to a user never
    changes them, and the response then needs no transaction of its own to show them."""

    def load() -> User:
        return get(user_id, for_update=True, deleting=deleting, with_groups=with_groups)

    # Concurrent writers to one user queue on its row lock instead of failing each other.
    return locked.update_locked(
        "User", user_id, load, change, if_match=if_match, refusals=_REFUSALS
    )


def _note(
    rt: ResourceType,
    user: User,
    operation: str,
    before: dict[str, Any],
    was_active: bool | None,
    password: str | None,
) -> None:
    """Note the change for its event (store/events.py); a write that changed nothing, none.

    RFC 9967 §2.4.5-6: `active` turning true is an activation, turning otherwise (false, or
    unassigned by a PATCH remove) a deactivation; a user created active is activated too.
    """
    paths = events.changed_paths(rt, before, user.document)
    if password is not None:
        paths.append("password")  # its name, never its value
    if not paths:
        return
    if operation == "create":
        paths.insert(0, "id")  # as RFC 9967's Figure 5 lists it: the id was assigned
    activation = None
    if (user.active is True) != (was_active is True):
        activation = "activate" if user.active is True else "deactivate"
    events.note(
        events.Change(
            "User",
            user.id,
            operation,
            paths,
            user.external_id,
            activation=activation,
            row=user,
            render=lambda: serialize.user(rt, user, _RELATIVE),
        )
    )


_RELATIVE = Projection(base_url="")  # the links of an event's data, relative to the base URL


def _copy_onto_row(
    rt: ResourceType, user: User, document: dict[str, Any], password: str | None
) -> None:
    """A new row from a validated document, and its per-element rows, for the session to write
    (a Bulk's deferred create; store/batch.py)."""
    user.id = new_id()
    for column, value in columns(rt, document).items():
        setattr(user, column, value)
    if password is not None:
        user.password_hash = generate_password_hash(password)
    user.last_modified = utcnow()
    db.session.add_all(UserValue(**row) for row in value_rows(rt, user.id, document))


def insert_many(
    rt: ResourceType, documents: list[dict[str, Any]], created_at: list[datetime]
) -> list[str]:
    """New users from validated documents in two INSERTs, the rows exactly as a write makes them.

    For seeding large directories (benchmarks, tests): no uniqueness answer, no audit. The
    caller commits. Returns the new ids in order.
    """
    users, values = [], []
    for document, created in zip(documents, created_at, strict=True):
        user_id = new_id()
        users.append(
            {"id": user_id, "created_at": created, "last_modified": created, "version": 1}
            | columns(rt, document)
        )
        values += value_rows(rt, user_id, document)
    db.session.execute(insert(User), users)
    if values:
        db.session.execute(insert(UserValue), values)
    return [user["id"] for user in users]


def columns(rt: ResourceType, document: dict[str, Any]) -> dict[str, Any]:
    """The users row's columns for a validated document: the copies that filters, sortBy and
    uniqueness query, folded (app.fold) where they compare case-insensitively."""
    name = document.get("name") or {}
    display_name, given_name, family_name = (
        document.get("displayName"),
        name.get("givenName"),
        name.get("familyName"),
    )
    return {
        "document": document,
        "document_key": _document_key(rt, document),
        "user_name": document["userName"],
        "user_name_key": fold(document["userName"]),
        "external_id": document.get("externalId"),
        "display_name": display_name,
        "given_name": given_name,
        "family_name": family_name,
        "display_name_key": _folded(display_name),
        "given_name_key": _folded(given_name),
        "family_name_key": _folded(family_name),
        "active": document.get("active"),
    }


def _document_key(rt: ResourceType, document: dict[str, Any]) -> dict[str, Any]:
    """The folded copy filters and sortBy read for the singular `caseExact: false` strings that
    have no folded column of their own (nickName, title, name.formatted, an extension's
    department...), in the document's shape. Only those: every byte here widens each row that
    a page, a count or a sort reads."""
    own_columns = {name for name, column in filters.USERS.columns.items() if column.folded}
    copy: dict[str, Any] = {}
    for schema in rt.schemas:
        core = schema is rt.schema
        container = document if core else document.get(schema.id)
        if not isinstance(container, dict):
            continue
        folded: dict[str, Any] = {}
        for attribute in schema.attributes:
            value = container.get(attribute.name)
            if attribute.multi_valued:
                continue
            if attribute.is_complex and isinstance(value, dict):
                subs = {
                    sub.name: fold(value[sub.name])
                    for sub in attribute.sub_attributes
                    if folds(sub)
                    and isinstance(value.get(sub.name), str)
                    and not (core and f"{attribute.name}.{sub.name}" in own_columns)
                }
                if subs:
                    folded[attribute.name] = subs
            elif folds(attribute) and isinstance(value, str):
                if not (core and attribute.name in own_columns):
                    folded[attribute.name] = fold(value)
        if folded:
            copy.update(folded if core else {schema.id: folded})
    return copy


def value_rows(rt: ResourceType, user_id: str, document: dict[str, Any]) -> list[dict[str, Any]]:
    """The user_values rows of a validated document: one per element of each multi-valued
    attribute, named as app.filters.sql.element_key names it, in the list's order."""
    return [
        {
            "user_id": user_id,
            "attribute": attribute,
            "value": _text(element.get("value")),
            "value_key": _folded(_text(element.get("value"))),
            "primary": element.get("primary") is True,
            "data": element,
            "data_key": folded_copy(element),
        }
        for attribute, element in _elements(rt, document)
    ]


def _elements(rt: ResourceType, document: dict[str, Any]) -> Iterator[tuple[str, dict]]:
    for schema in rt.schemas:
        container = document if schema is rt.schema else document.get(schema.id, {})
        for attribute in schema.attributes:
            if not attribute.multi_valued:
                continue
            key = attribute.name if schema is rt.schema else f"{schema.id}:{attribute.name}"
            for element in container.get(attribute.name, []):
                # A simple multi-valued attribute (a list of strings) is indexed as {"value": x}.
                yield key, element if attribute.is_complex else {"value": element}


def _text(value: Any) -> str | None:
    # `value` of an element is a string for every core attribute; an extension's may be a
    # number or a boolean, compared as its text.
    return value if value is None or isinstance(value, str) else str(value)


def _folded(text: str | None) -> str | None:
    return None if text is None else fold(text)


def _commit(user: User) -> None:
    with locked.refusing(_REFUSALS, user):
        commit(db.session)
