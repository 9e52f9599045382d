"""Every SQL statement about groups and memberships.

A membership change costs O(members changed): members are inserted and deleted row by row in
group_members, never loaded and rewritten, and a PATCH never reads the member list. Each write
also records the members it added and removed in membership_changes, in its own transaction,
from what the INSERT and DELETE statements RETURN: the console shows them on a user's timeline.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from itertools import islice
from operator import gt
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    Select,
    and_,
    bindparam,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    text,
    true,
    type_coerce,
    update,
)
from sqlalchemy import delete as sql_delete
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.functions import FunctionElement

from app import serialize, tenancy, validate
from app.db import commit, db, read_again_on_outage, utcnow
from app.errors import InvalidPath, InvalidValue, NoTarget, NotFound, Uniqueness
from app.filters import sql as filters
from app.filters.grammar import Compare, Filter
from app.fold import fold
from app.limits import DEFAULT_LIMITS
from app.models import (
    Group,
    GroupMember,
    Member,
    Members,
    Membership,
    MembershipChange,
    ShownUser,
    User,
    new_id,
)
from app.paging import PageRequest
from app.patch import Operation
from app.patch import apply as apply_patch
from app.projection import Projection
from app.schema.core import GROUP_RESOURCE
from app.store import (
    as_entity,
    audit,
    chunks,
    could_be_id,
    entity_columns,
    events,
    locked,
    one_of,
    one_of_parameter,
    pages,
    scope,
)

MEMBERS = GROUP_RESOURCE.schema.attribute("members")

# The unique indexes a group's write can run into, and what the client is told. The index is
# the only check of a displayName: the SELECT that used to run before every group write (a
# member PATCH's too, whose name had not changed) found only what the index refuses, with
# the same answer.
_REFUSALS: locked.Refusals[Group] = {
    "uq_groups_live_display_name": lambda group: Uniqueness(
        f"displayName '{group.display_name}' is already taken"
    ),
}


@functools.cache
def live() -> Select[tuple[Group]]:
    """Every read of Group entities starts here, so a tombstone can never leak into an answer.
    Built once: a statement is immutable (each .where() makes a new one)."""
    return select(Group).where(Group.deleted_at.is_(None))


def get(group_id: str, *, for_update: bool = False, with_members: bool = False) -> Group:
    """A live group; `for_update` locks its row until commit (PostgreSQL; SQLite locks the file).

    A read to show the group (GET) reads it as columns, with its members if asked, returned
    outside the session (store.as_entity), which costs less than the session's loading of an
    entity; a change (`for_update`) reads the entity the session flushes, under its lock, and
    never its members (a change's response is built after it).
    """
    if not could_be_id(group_id):
        raise NotFound(f"Group {group_id!r} not found")
    parameters = {"group_id": group_id}
    if for_update:
        group = db.session.scalars(_entity_by_id(), parameters).one_or_none()
    else:
        row = scope.read(db.session, _by_id(with_members), parameters).one_or_none()
        group = None if row is None else as_entity(Group, row._asdict())
    if group is None:
        raise NotFound(f"Group {group_id} not found")
    return group


@functools.cache
def _entity_by_id() -> Select[tuple[Group]]:
    """A change's read of the group, built once, the id a parameter (store/scope.py)."""
    return live().where(Group.id == bindparam("group_id")).with_for_update()


@functools.cache
def _by_id(with_members: bool) -> Select[Any]:
    """get()'s statement to show a group, built once, the id a parameter: the same statement
    object every time, whose tenant confinement and cache key are then made once
    (store/scope.py). Its columns are those of a Group entity, and its members as
    `members_read` if asked."""
    query = _live_shown().where(Group.id == bindparam("group_id"))
    return _with_members_shown(query) if with_members else query


@functools.cache
def _live_shown() -> Select[Any]:
    """live(), its rows the columns of a Group instead of Group entities (a page's rows, read
    as entities, each cost the session's loading of one), `members_read` NULL: not read."""
    columns = (*entity_columns(Group), null().label("members_read"))
    return select(*columns).where(Group.deleted_at.is_(None))


def _with_members_shown(query: Select[Any]) -> Select[Any]:
    """_live_shown() with each group's members read into the row's `members_read`, in the same
    statement (_members_column)."""
    return query.with_only_columns(*entity_columns(Group), _members_shown())


@functools.cache
def _members_shown() -> Any:
    return _members_column().label("members_read")


def search(
    filter: Filter | None,
    page: PageRequest,
    *,
    sort_by: str | None = None,
    descending: bool = False,
    across_types: bool = False,
    with_members: bool = False,
) -> pages.Page:
    """One page of live groups matching a parsed SCIM filter, and how many match in all.

    `across_types` (the root /.search): attributes groups lack have no value, not an error.
    `with_members`: the page's statement reads the groups' members too, where pages.fetch can.
    """
    where = None
    if filter is not None:
        where = filters.groups_where(filter, unknown_is_missing=across_types)
    keys = []
    if sort_by and not (across_types and GROUP_RESOURCE.resolve(sort_by) is None):
        keys.append(pages.Key(filters.groups_sort_key(sort_by), descending, nullable=True))
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
        expand=_with_members_shown if with_members and not sort_by else None,
    )


# Creation order with the id as tiebreak: every page of a crawl is stable and disjoint.
_CREATION_ORDER = (pages.Key(Group.created_at), pages.Key(Group.id))


def _count_live(_query: Select[Any]) -> int:
    """How many live groups the tenant has, from its counter rows (models.LiveCount)."""
    return pages.count_live("Group")


@read_again_on_outage
def members_of(group_ids: list[str]) -> dict[str, list[Member]]:
    """Members of several groups in two queries, with the display name of each member."""
    out: dict[str, list[Member]] = {group_id: [] for group_id in group_ids}
    for chunk in chunks(group_ids):
        users = (
            select(
                GroupMember.group_id,
                GroupMember.member_id,
                literal("User").label("member_type"),
                func.coalesce(User.display_name, User.user_name).label("display"),
            )
            .join(User, User.id == GroupMember.member_id)
            .where(GroupMember.group_id.in_(chunk), GroupMember.member_type == "User")
            .where(User.deleted_at.is_(None))
        )
        nested = Group.__table__.alias("nested")
        groups = (
            select(
                GroupMember.group_id,
                GroupMember.member_id,
                literal("Group").label("member_type"),
                nested.c.display_name.label("display"),
            )
            .join(nested, nested.c.id == GroupMember.member_id)
            .where(GroupMember.group_id.in_(chunk), GroupMember.member_type == "Group")
            .where(nested.c.deleted_at.is_(None))
        )
        both = users.union_all(groups)
        rows = db.session.execute(both.order_by(both.selected_columns.member_id))
        for group_id, member_id, member_type, display in rows:
            out[group_id].append(Member(member_id, member_type, display))
    return out


def _members_column() -> ColumnElement[Any]:
    """A group's live members as one JSON value of the statement that reads the group (read
    into Group.members_read): [[id, ...], [type, ...], [display, ...]], in id order.

    Three arrays of strings, not an array per member: Python decodes them into three lists and
    no object per member (models.Members says why that matters at 100,000). The rows are
    ordered in a subquery and aggregated in that order. In the database's collation, not by
    code point as members_read wants them: PostgreSQL then reads them in the order of
    ix_group_members_group_id_member instead of sorting 100,000 rows (COLLATE "C" did, on
    disk, a sixth of the read); members_read checks the order, and canonical UUIDs (letters
    of one case, dashes in the same places) compare alike in every collation."""
    user, nested = aliased(User), aliased(Group)
    member = GroupMember
    # A nested group is read by a correlated subquery, not by a second outer join: with that
    # join PostgreSQL could probe the groups' index for each of 100,000 user members (a third
    # of the read) before checking member_type. COALESCE and OR stop at their first answer, so
    # the subquery runs only where no live user was found. A scalar subquery, not EXISTS,
    # which PostgreSQL may run as a hash of every live group (display_name is never NULL).
    live_group = select(nested.display_name).where(_live_member(nested, "Group")).scalar_subquery()
    rows = (
        select(
            member.member_id.label("value"),
            member.member_type.label("type"),
            func.coalesce(user.display_name, user.user_name, live_group).label("display"),
        )
        .select_from(member)
        .outerjoin(user, _live_member(user, "User"))
        .where(
            member.tenant_id == Group.tenant_id,
            member.group_id == Group.id,
            or_(user.id.is_not(None), live_group.is_not(None)),
        )
        .order_by(member.member_id)
        .correlate(Group)
        .subquery()
    )
    return type_coerce(
        select(_json_columns(rows.c.value, rows.c.type, rows.c.display))
        .select_from(rows)
        .scalar_subquery(),
        JSON,
    )


def _live_member(resource: Any, kind: str) -> ColumnElement[bool]:
    """The live user or group (an alias of its model) that a group_members row names."""
    member = GroupMember
    return and_(
        member.member_type == kind,
        resource.tenant_id == member.tenant_id,
        resource.id == member.member_id,
        resource.deleted_at.is_(None),
    )


def members_read(group: Group) -> Members | None:
    """The members the statement that read `group` read with it (_with_members_shown), or
    None."""
    if group.members_read is None:
        return None
    # [] for a group created without members; JSON null for a column of no rows (PostgreSQL).
    values, types, displays = (column or [] for column in group.members_read or ([], [], []))
    # By id, compared by code point as Python compares: the database's collation may differ.
    if any(map(gt, values, islice(values, 1, None))):
        order = sorted(range(len(values)), key=values.__getitem__)
        values, types, displays = (
            [column[i] for i in order] for column in (values, types, displays)
        )
    return Members(values, types, displays)


@read_again_on_outage
def memberships_of(member_ids: list[str]) -> dict[str, list[Membership]]:
    """The live groups each of several users or groups belongs to directly.

    The ids as one parameter on PostgreSQL (one_of): an IN list of a page's 100 ids was
    rendered into the statement's text afresh each time, and parsed anew by the driver (8% of
    a page past the first)."""
    out: dict[str, list[tuple[str, str, str]]] = {member_id: [] for member_id in member_ids}
    statement = _memberships(db.session.get_bind().dialect.name)
    for chunk in chunks(member_ids):
        rows = scope.read(db.session, statement, {"member_ids": chunk})
        for member_id, *group in rows:
            out[member_id].append(group)
    return {member_id: _in_order(groups) for member_id, groups in out.items()}


@functools.cache
def _memberships(dialect: str) -> Select[Any]:
    """The memberships of the members named by the parameter `member_ids`, with their group's id
    and names: built once, as scope.py keeps it.

    On PostgreSQL each membership finds its group by the group's primary key, in a LATERAL
    subquery that OFFSET 0 keeps from being merged into a join. As a plain join the planner
    hashed the tenant's every group to match a page's 250 memberships: 2.4 of a page's 12 ms
    at 10,000 groups, growing with the groups (the only page cost that grew from 1,000 users
    to 1,000,000). SQLite always finds each group by its key."""
    columns = (Group.id, Group.display_name, Group.display_name_key)
    same_group = and_(Group.tenant_id == GroupMember.tenant_id, Group.id == GroupMember.group_id)
    live = Group.deleted_at.is_(None)
    members = one_of_parameter(GroupMember.member_id, "member_ids", dialect)
    if dialect != "postgresql":
        return select(GroupMember.member_id, *columns).join(Group, same_group).where(live, members)
    group = select(*columns).where(same_group, live).offset(0).lateral()
    return select(GroupMember.member_id, *group.c).join(group, true()).where(members)


def memberships_column() -> ColumnElement[Any]:
    """A user's live groups as one JSON value of the statement that reads the user (read into
    User.groups_read), instead of a statement of their own: a lookup runs one statement."""
    return type_coerce(
        select(_json_rows(Group.id, Group.display_name, Group.display_name_key))
        .select_from(GroupMember)
        .join(
            Group,
            and_(Group.tenant_id == GroupMember.tenant_id, Group.id == GroupMember.group_id),
        )
        .where(
            GroupMember.tenant_id == User.tenant_id,
            GroupMember.member_id == User.id,
            Group.deleted_at.is_(None),
        )
        .correlate(User)
        .scalar_subquery(),
        JSON,
    )


def memberships_read(user: ShownUser) -> list[Membership] | None:
    """The groups the statement that read `user` read with it (memberships_column), or None."""
    if user.groups_read is None:
        return None
    return _in_order(user.groups_read)


def _in_order(groups: Iterable[Sequence[str]]) -> list[Membership]:
    # By folded name, then id, compared by code point on both databases (as filters compare).
    return [
        Membership(id, display) for id, display, _ in sorted(groups, key=lambda g: (g[2], g[0]))
    ]


class _json_rows(FunctionElement[Any]):  # noqa: N801 - used like a SQL function
    """An aggregate: a JSON array holding one array per row of its arguments' values, [] for no
    row."""

    inherit_cache = True


class _json_columns(FunctionElement[Any]):  # noqa: N801 - used like a SQL function
    """An aggregate: a JSON array holding, for each argument, an array of its values over the
    rows, in their order; [[], ...] or [null, ...] (PostgreSQL) for no row."""

    inherit_cache = True


@compiles(_json_columns)
def _json_columns_sqlite(element: _json_columns, compiler: Any, **kw: Any) -> str:
    columns = (f"json_group_array({compiler.process(c, **kw)})" for c in element.clauses)
    return f"json_array({', '.join(columns)})"


@compiles(_json_columns, "postgresql")
def _json_columns_postgresql(element: _json_columns, compiler: Any, **kw: Any) -> str:
    columns = (f"json_agg({compiler.process(c, **kw)})" for c in element.clauses)
    return f"json_build_array({', '.join(columns)})"


@compiles(_json_rows)
def _json_rows_sqlite(element: _json_rows, compiler: Any, **kw: Any) -> str:
    return f"json_group_array(json_array({compiler.process(element.clauses, **kw)}))"


@compiles(_json_rows, "postgresql")
def _json_rows_postgresql(element: _json_rows, compiler: Any, **kw: Any) -> str:
    rows = f"json_agg(json_build_array({compiler.process(element.clauses, **kw)}))"
    return f"coalesce({rows}, '[]'::json)"


def create(
    body: dict[str, Any], *, max_members: int = DEFAULT_LIMITS.members, request_id: str = ""
) -> Group:
    """POST. `request_id` (app.requests) names the request in the membership changes recorded."""
    checked = validate.resource(GROUP_RESOURCE, body)
    document = checked.document
    members = _existing(_elements(document.pop("members", []), max_members))
    group = Group(id=new_id(), version=1, tenant_id=tenancy.current_id(), deleted_at=None)
    _set_columns(group, document)
    group.created_at = group.last_modified = utcnow()
    with locked.refusing(_REFUSALS, group):
        # The group's row, before the member rows that refer to it: one Core INSERT built
        # once, cheaper than the session's flush. The row returned is not in the session.
        values = {column: getattr(group, column) for column in _GROUP_COLUMNS}
        db.session.connection().execute(_INSERT_GROUP, values)
        audit.created(group.id)  # for the audit row (the session's hook does not see it)
        changes = _Changes(request_id)
        changes.note("added", group.id, _add_members(group.id, members))
        changes.record()
        _note(group, "create", {}, changes.recorded, request_id)
        commit(db.session)
    if not members:
        set_committed_value(group, "members_read", [])  # none to read back for the response
    return group


_INSERT_GROUP = insert(Group.__table__)
_GROUP_COLUMNS = tuple(column.key for column in Group.__table__.columns)


def replace(
    group_id: str,
    body: dict[str, Any],
    *,
    if_match: str | None = None,
    max_members: int = DEFAULT_LIMITS.members,
    request_id: str = "",
) -> Group:
    """PUT: displayName, externalId and the whole member list (Okta's AIW apps send this)."""
    checked = validate.resource(GROUP_RESOURCE, body)
    document = checked.document
    wanted = _elements(document.pop("members", []), max_members)

    def change(group: Group) -> None:
        members = _existing(wanted)
        changes = _Changes(request_id)  # net: a member kept is deleted and added back, unrecorded
        changes.note("removed", group.id, _delete_members(GroupMember.group_id == group.id))
        changes.note("added", group.id, _add_members(group.id, members))
        changes.record()
        before = _document(group)
        _save(group, document)
        _note(group, "put", before, changes.recorded, request_id)

    return _update(group_id, change, if_match)


def patch(
    group_id: str,
    operations: list[Operation],
    *,
    if_match: str | None = None,
    max_members: int = DEFAULT_LIMITS.members,
    request_id: str = "",
) -> Group:
    """Apply a PatchOp in one transaction: members by SQL, the rest on the small document."""
    listed = sum(
        len(_as_list(o.value)) for o in operations if o.target.resolved.attribute is MEMBERS
    )
    _check_member_count(listed, max_members)

    def change(group: Group) -> None:
        document = _document(group)
        changes = _Changes(request_id)  # created per attempt: a retried change starts afresh
        batch = _MemberBatch(group.id, changes)
        rows_changed = 0
        for operation in operations:
            if operation.target.resolved.attribute is not MEMBERS:
                document = apply_patch(document, [operation], resource_id=group.id)
            elif not batch.take(operation):
                # Anything but a plain add or remove sees the members as the batch leaves them.
                rows_changed += batch.apply() + _patch_members(group.id, operation, changes)
        rows_changed += batch.apply()
        checked = validate.resource(GROUP_RESOURCE, document).document
        if rows_changed == 0 and checked == _document(group):
            return  # nothing changed (an existing member added, say): no new version
        changes.record()
        before = _document(group)
        _save(group, checked)
        _note(group, "patch", before, changes.recorded, request_id)

    return _update(group_id, change, if_match)


def delete(group_id: str, *, if_match: str | None = None, request_id: str = "") -> None:
    """Keep a tombstone (RFC 7644 §3.6); its memberships, both ways, are gone."""

    def change(group: Group) -> None:
        changes = _Changes(request_id)
        changes.note("removed", group.id, _delete_members(GroupMember.group_id == group.id))
        changes.record()
        forget_member(group.id, request_id=request_id)
        _save(group, _document(group), deleted=True)
        events.note(
            events.Change(
                "Group", group.id, "delete", [], group.external_id, row=group, request_id=request_id
            )
        )

    _update(group_id, change, if_match)


def forget_member(member_id: str, *, request_id: str = "") -> None:
    """Remove a deleted user or group from every group it was in, bumping those groups."""
    parents = select(GroupMember.group_id).where(GroupMember.member_id == member_id)
    bumped = db.session.execute(
        update(Group)
        .where(Group.id.in_(parents))
        .values(version=Group.version + 1, last_modified=utcnow())
        .returning(Group.id, Group.version, Group.external_id),
        execution_options={"synchronize_session": False},
    ).all()
    for group_id, version, external_id in bumped:  # each lost a member: a patch of members
        events.note(
            events.Change(
                "Group",
                group_id,
                "patch",
                ["members"],
                external_id,
                version=version,
                request_id=request_id,
                render=functools.partial(_render_by_id, group_id),
            )
        )
    gone = db.session.execute(
        sql_delete(GroupMember)
        .where(GroupMember.member_id == member_id)
        .returning(GroupMember.group_id),
        execution_options={"synchronize_session": False},
    ).scalars()
    changes = _Changes(request_id)
    for group_id in gone:
        changes.note("removed", group_id, [member_id])
    changes.record()


class _Changes:
    """The members one write added to and removed from groups, recorded as membership_changes
    rows in the write's transaction.

    Net per (group, member): the INSERT and DELETE statements RETURN only rows that really
    changed, so a member's first and last change tell whether it was there before and after
    the write; a member removed and added back (a PUT that keeps it) is no change at all.
    """

    def __init__(self, request_id: str):
        self.request_id = request_id
        self.recorded = False  # whether a net change was recorded: the members changed
        self._first: dict[tuple[str, str], str] = {}
        self._last: dict[tuple[str, str], str] = {}

    def note(self, change: str, group_id: str, member_ids: Iterable[str]) -> None:
        for member_id in member_ids:
            key = (group_id, member_id)
            self._first.setdefault(key, change)
            self._last[key] = change

    def record(self) -> None:
        """Insert the net changes (one statement per chunk) and start afresh."""
        rows = [(*key, last) for key, last in self._last.items() if self._first[key] == last]
        self._first, self._last = {}, {}
        self.recorded = self.recorded or bool(rows)
        at = utcnow()
        for chunk in chunks(rows):
            _insert_changes(at, self.request_id, chunk)


def _insert_changes(at: datetime, request_id: str, rows: list[tuple[str, str, str]]) -> None:
    if db.session.get_bind().dialect.name == "postgresql":
        group_ids, member_ids, changes = (list(column) for column in zip(*rows, strict=True))
        db.session.execute(
            _INSERT_CHANGES_UNNESTED,
            {
                "tenant_id": tenancy.current_id(),
                "at": at,
                "request_id": request_id,
                "group_ids": group_ids,
                "member_ids": member_ids,
                "changes": changes,
            },
        )
        return
    tenant_id = tenancy.current_id()
    # An executemany: sqlite3 runs one prepared statement per row, in C. A multi-row VALUES
    # was compiled afresh for each number of rows: 80 ms for a group created with 1,000
    # members, against 6 ms.
    db.session.execute(
        insert(MembershipChange.__table__),
        [
            {
                "tenant_id": tenant_id,
                "at": at,
                "request_id": request_id,
                "group_id": group_id,
                "member_id": member_id,
                "change": change,
            }
            for group_id, member_id, change in rows
        ],
    )


_INSERT_CHANGES_UNNESTED = text(
    "INSERT INTO membership_changes (tenant_id, at, request_id, group_id, member_id, change) "
    "SELECT :tenant_id, :at, :request_id, c.group_id, c.member_id, c.change "
    "FROM unnest(CAST(:group_ids AS varchar[]), CAST(:member_ids AS varchar[]), "
    "CAST(:changes AS varchar[])) AS c (group_id, member_id, change)"
).bindparams(bindparam("at", type_=MembershipChange.__table__.c.at.type))


class _MemberBatch:
    """A run of plain member adds and removes, applied as two set operations.

    Okta and Entra ID send one operation per member; applying each with its own statements
    made a 1,000-operation PATCH cost thousands of round trips. Within a run, a member's last
    add or remove decides whether it is in the group, so the run equals one DELETE of the
    members removed last and one INSERT of those added last. Every member added anywhere in
    the run must exist, as it must when the operations are applied one at a time.
    """

    def __init__(self, group_id: str, changes: _Changes):
        self.group_id = group_id
        self.changes = changes
        self.added: set[str] = set()
        self.removed: set[str] = set()
        self.checked: dict[str, str | None] = {}  # every id added: member id -> declared type

    def take(self, operation: Operation) -> bool:
        """Fold a plain add or remove into the batch; False for any other members operation."""
        target = operation.target
        if target.resolved.sub_attribute is not None:
            return False
        if operation.op == "add" and target.value_filter is None:
            for member_id, declared in _elements(_as_list(operation.value)).items():
                self.removed.discard(member_id)
                self.added.add(member_id)
                self.checked.setdefault(member_id, declared)
            return True
        if operation.op != "remove":
            return False
        if target.value_filter is None and operation.value is not None:
            # Entra ID: {"op":"Remove","path":"members","value":[{"value":"<id>"}]} removes
            # exactly the listed members.
            gone = list(_elements(_as_list(operation.value)))
        elif (member_id := _member_id_of(target.value_filter)) is not None:
            gone = [member_id]  # Okta: {"op":"remove","path":"members[value eq \"<id>\"]"}
        else:
            return False
        self.added.difference_update(gone)
        self.removed.update(gone)
        return True

    def apply(self) -> int:
        """Write the batch and empty it; returns the rows changed."""
        members = [m for m in _existing(self.checked) if m.value in self.added]
        removed = [
            member_id
            for chunk in chunks(sorted(self.removed))
            for member_id in _delete_members(
                GroupMember.group_id == self.group_id, one_of(GroupMember.member_id, chunk)
            )
        ]
        added = _add_members(self.group_id, members)
        self.changes.note("removed", self.group_id, removed)
        self.changes.note("added", self.group_id, added)
        self.added, self.removed, self.checked = set(), set(), {}
        return len(removed) + len(added)


def _member_id_of(value_filter: Filter | None) -> str | None:
    """The id in a `value eq "<id>"` members filter; None for any other filter."""
    if not isinstance(value_filter, Compare) or value_filter.op != "eq":
        return None
    path = value_filter.path
    if path.name.lower() != "value" or path.sub is not None or path.uri is not None:
        return None
    member_id = value_filter.value
    # Member ids are compared folded (app.filters.sql): ids are lower-case UUIDs.
    return fold(member_id) if isinstance(member_id, str) else None


def _patch_members(group_id: str, operation: Operation, changes: _Changes) -> int:
    """Apply one members operation that is not a plain add or remove; returns rows changed."""
    target = operation.target
    if target.resolved.sub_attribute is not None:
        raise InvalidPath("members sub-attributes cannot be changed; add or remove members")
    matched: ColumnElement[bool] | None = None
    if target.value_filter is not None:
        matched = filters.members_where(target.value_filter)
    if operation.op == "remove":
        removed = _delete_members(GroupMember.group_id == group_id, matched)
        changes.note("removed", group_id, removed)
        return len(removed)
    members = _existing(_elements(_as_list(operation.value)))
    removed = []
    if operation.op == "replace":
        removed = _delete_members(GroupMember.group_id == group_id, matched)
        if matched is not None and not removed:
            # RFC 7644 §3.5.2.3: a replace whose filter matches no member has no target.
            raise NoTarget("No member matches the filter in the path")
    added = _add_members(group_id, members)
    changes.note("removed", group_id, removed)
    changes.note("added", group_id, added)
    return len(removed) + len(added)


def _delete_members(*conditions: ColumnElement[bool] | None) -> list[str]:
    """Delete the memberships matching the conditions; the ids of the members removed."""
    where = [c for c in conditions if c is not None]
    statement = sql_delete(GroupMember).where(*where).returning(GroupMember.member_id)
    options = {"synchronize_session": False}  # member rows are never loaded as objects
    return list(db.session.execute(statement, execution_options=options).scalars())


def _check_member_count(count: int, max_members: int) -> None:
    if count > max_members:
        raise InvalidValue(
            f"members: the request lists {count} members; at most {max_members} are accepted "
            "in one request (SCIM_MAX_MEMBERS_PER_REQUEST)"
        )


def _elements(values: list[Any], max_members: int | None = None) -> dict[str, str | None]:
    """Member elements, checked in shape: member id -> the type the client declared, if any."""
    if max_members is not None:
        _check_member_count(len(values), max_members)
    elements = validate.value(MEMBERS, values, "members") or []
    wanted: dict[str, str | None] = {}
    for element in elements:
        if "value" not in element:
            raise InvalidValue("members: every member needs a value (the member's id)")
        wanted.setdefault(element["value"], element.get("type"))
    return wanted


@functools.cache
def _live_of(model: type[User] | type[Group], dialect: str) -> Select[tuple[str]]:
    """_existing's statement: the live users (or groups) among the parameter `ids`, locked.
    Built once, as scope.py keeps it."""
    query = select(model.id).where(one_of_parameter(model.id, "ids", dialect))
    query = query.where(model.deleted_at.is_(None))
    return query.with_for_update(read=True, key_share=True)


def _existing(wanted: dict[str, str | None]) -> list[Member]:
    """The members, each a live user or group (else 400), locked until commit.

    FOR KEY SHARE: a concurrent DELETE of that user or group (FOR UPDATE) waits for this
    transaction, and then removes the membership it made; or this one waits for the DELETE
    and finds the member gone. Either way no membership outlives its member (PostgreSQL;
    SQLite runs one writer at a time).
    """
    found: dict[str, str] = {}
    dialect = db.session.get_bind().dialect.name
    for chunk in chunks(list(wanted)):
        missing = chunk
        for kind, model in (("User", User), ("Group", Group)):
            locked = db.session.scalars(_live_of(model, dialect), {"ids": missing})
            found.update((member_id, kind) for member_id in locked)
            missing = [member_id for member_id in missing if member_id not in found]
            if not missing:
                break  # all found among the users: none to look for among the groups
    members = []
    for value, declared in wanted.items():
        kind = found.get(value)
        if kind is None:
            raise InvalidValue(f"members: {value!r} is not an existing user or group")
        if declared is not None and declared.lower() != kind.lower():
            raise InvalidValue(f"members: {value!r} is a {kind}, not a {declared}")
        members.append(Member(value, kind, None))
    return members


def _add_members(group_id: str, members: list[Member]) -> list[str]:
    """Insert the members not already there (adding one is a no-op); the ids of those added."""
    for member in members:
        if member.type == "Group":
            _refuse_cycle(group_id, member.value)
    unique = list({m.value: m for m in members}.values())
    # ON CONFLICT DO NOTHING skips the members already there, and RETURNING names the rows
    # that were new: one statement, on PostgreSQL and SQLite (3.35+) alike.
    if db.session.get_bind().dialect.name == "postgresql":
        # The rows as two arrays: two parameters however many members (see store.one_of).
        return [
            member_id
            for chunk in chunks(unique)
            for member_id in db.session.execute(
                _INSERT_UNNESTED,
                {
                    "tenant_id": tenancy.current_id(),
                    "group_id": group_id,
                    "ids": [m.value for m in chunk],
                    "types": [m.type for m in chunk],
                },
            ).scalars()
        ]
    table = GroupMember.__table__
    new = sqlite.insert(table).on_conflict_do_nothing().returning(table.c.member_id)
    rows = [{"group_id": group_id, "member_id": m.value, "member_type": m.type} for m in unique]
    return [
        member_id
        for chunk in chunks(rows)
        for member_id in db.session.execute(new, chunk).scalars()
    ]


_INSERT_UNNESTED = text(
    "INSERT INTO group_members (tenant_id, group_id, member_id, member_type) "
    "SELECT :tenant_id, :group_id, member.id, member.type "
    "FROM unnest(CAST(:ids AS varchar[]), CAST(:types AS varchar[])) AS member (id, type) "
    "ON CONFLICT DO NOTHING RETURNING member_id"
)


def _refuse_cycle(group_id: str, member_group_id: str) -> None:
    """A group may contain groups, but never itself, directly or through others."""
    if member_group_id == group_id:
        raise InvalidValue("members: a group cannot be a member of itself")
    descendants = (
        select(GroupMember.member_id.label("id"))
        .where(GroupMember.group_id == member_group_id, GroupMember.member_type == "Group")
        .cte("descendants", recursive=True)
    )
    descendants = descendants.union(
        select(GroupMember.member_id).join(
            descendants,
            and_(GroupMember.group_id == descendants.c.id, GroupMember.member_type == "Group"),
        )
    )
    if db.session.scalar(select(descendants.c.id).where(descendants.c.id == group_id).limit(1)):
        raise InvalidValue(
            f"members: adding group {member_group_id} would make a cycle of nested groups"
        )


def _note(
    group: Group, operation: str, before: dict[str, Any], members: bool, request_id: str
) -> None:
    """Note the change for its event (store/events.py): the attributes that changed, if any."""
    paths = events.changed_paths(GROUP_RESOURCE, before, _document(group))
    if members:
        paths.append("members")
    if not paths:
        return  # a PUT that changed nothing announces nothing
    if operation == "create":
        paths.insert(0, "id")
    events.note(
        events.Change(
            "Group",
            group.id,
            operation,
            paths,
            group.external_id,
            row=group,
            request_id=request_id,
            render=lambda: _render(group),
        )
    )


_RELATIVE = Projection(base_url="")  # the links of an event's data, relative to the base URL


def _render(group: Group) -> dict[str, Any]:
    """The group as committed, members included, for `:full` events."""
    return serialize.group(group, _RELATIVE, members_of([group.id])[group.id])


def _render_by_id(group_id: str) -> dict[str, Any]:
    query = live().where(Group.id == group_id).execution_options(populate_existing=True)
    return _render(db.session.scalars(query).one())


def _document(group: Group) -> dict[str, Any]:
    document: dict[str, Any] = {"displayName": group.display_name}
    if group.external_id is not None:
        document["externalId"] = group.external_id
    return document


def _set_columns(group: Group, document: dict[str, Any]) -> None:
    group.display_name = document["displayName"]
    group.display_name_key = fold(document["displayName"])
    group.external_id = document.get("externalId")


def _save(group: Group, document: dict[str, Any], *, deleted: bool = False) -> None:
    """Write the columns and touch the row: the one UPDATE every change ends with.

    Member rows are written by statements the ORM does not see; setting last_modified makes
    the group's own UPDATE happen, and with it the new version (store/locked.py).
    """
    _set_columns(group, document)
    group.last_modified = utcnow()
    if deleted:
        group.deleted_at = group.last_modified


def _update(group_id: str, change: Callable[[Group], None], if_match: str | None) -> Group:
    # Writers to one group queue on its row lock, so concurrent member PATCHes never race.
    return locked.update_locked(
        "Group",
        group_id,
        lambda: get(group_id, for_update=True),
        change,
        if_match=if_match,
        refusals=_REFUSALS,
    )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
