"""Every SQL statement of the operator console: its admins, sessions, lockouts, listings,
dashboard, tenants overview, failures and hourly chart.

Read-only towards users and groups: listings page in SQL (LIMIT/OFFSET after a COUNT), a
group's members are read one page at a time in the order of the membership key, so that a group
of 100,000 opens as fast as a group of ten. SCIM filters go through app.filters, as in the API.

Change events: per receiver, how its deliveries stand (store/deliveries.py counts them), and per
resource, the events each of its requests emitted, matched by the change's txn.

Admins, sessions and lockouts belong to no tenant. Everything else reads tenant-owned rows, so
it runs in the tenant scope the page entered (app/store/scope.py adds the tenant to every
statement); the tenants overview runs across tenants, deliberately.
"""

from __future__ import annotations

import functools
import json
import math
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Integer,
    Select,
    Update,
    and_,
    cast,
    delete,
    func,
    inspect,
    literal_column,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import aliased
from werkzeug.security import check_password_hash, generate_password_hash

from app import tenancy
from app.db import db, utcnow, writing
from app.errors import InvalidFilter, InvalidPath, InvalidValue
from app.filters import grammar
from app.filters import sql as filters
from app.fold import fold
from app.models import (
    AuditEvent,
    ConsoleAdmin,
    ConsoleLoginFailure,
    ConsoleSession,
    Event,
    EventDelivery,
    Group,
    GroupMember,
    Membership,
    MembershipChange,
    Tenant,
    TenantState,
    User,
    UserValue,
    groups_search,
    groups_search_ids,
    search_backlog,
    user_values_search,
    users_search,
    users_search_ids,
)
from app.paging import PageRequest
from app.schema import ResourceType
from app.store import audit, deliveries, groups, maintenance, pages, tenants
from app.store import events as events_store
from app.store import users as users_store

PER_PAGE = 50
USER_SORTS = {
    "userName": ("userName",),
    "name": ("name.familyName", "name.givenName"),
    "active": ("active",),
    "lastModified": ("meta.lastModified",),
}
GROUP_SORTS = {"displayName": ("displayName",), "lastModified": ("meta.lastModified",)}
_FILTER_ERRORS = (InvalidFilter, InvalidPath, InvalidValue)
# Plain text this long (folded) is looked up in the search index (app/models.py: trigrams);
# shorter text is matched user by user.
INDEXED_TEXT = 3
# A users search counts its matches up to this many; past it, the page says "more than".
TEXT_COUNT_LIMIT = 1000
# PostgreSQL, for the rest of a text search's transaction. Each statement is planned for the
# text searched: a plan made once for any text (a prepared statement's, after a few runs) reads
# every user instead of the trigram indexes. No JIT compilation: the trigram indexes' guesses
# of how many rows match put these statements over jit_above_cost, and compiling took 15 ms of
# a 20 ms statement.
_SEARCH_SETTINGS = text(
    "SELECT set_config('plan_cache_mode', 'force_custom_plan', true), "
    "set_config('jit', 'off', true)"
)
# Text with an operator or a value filter was probably meant as a filter: say why it was not one.
_LOOKS_LIKE_FILTER = re.compile(r"\s(eq|ne|co|sw|ew|gt|ge|lt|le|pr)(\s|$)|\[", re.IGNORECASE)


# --- Admins and the login lockout ----------------------------------------------------------


@dataclass(frozen=True)
class Login:
    """The outcome of a login attempt: the admin, or why not."""

    admin: ConsoleAdmin | None
    locked_seconds: int = 0  # > 0: refused without checking the password, locked this long


def admin_exists() -> bool:
    """Whether any admin password is set: without one the console stays off."""
    return db.session.scalar(select(ConsoleAdmin.username).limit(1)) is not None


def get_admin(username: str) -> ConsoleAdmin | None:
    return db.session.get(ConsoleAdmin, _username_key(username))


# What set_password does with an admin's tenant: keep it (a new admin is then global), or bind.
KEEP_TENANT: Any = object()


def set_password(
    username: str, password: str, *, tenant_id: int | None = KEEP_TENANT
) -> ConsoleAdmin:
    """Create the admin or change its password; every session it had ends with it.

    `tenant_id`: the one tenant the admin may see, or None for a global admin (every tenant);
    left out, an existing admin keeps what it had and a new one is global.
    """
    key, now = _username_key(username), utcnow()
    admin = db.session.get(ConsoleAdmin, key)
    if admin is None:
        admin = ConsoleAdmin(username=key, tenant_id=None)
        db.session.add(admin)
    if tenant_id is not KEEP_TENANT:
        admin.tenant_id = tenant_id
    admin.password_hash = generate_password_hash(password)
    admin.password_changed_at = now
    db.session.execute(_end(now).where(ConsoleSession.username == key))
    db.session.commit()
    return admin


def log_in(
    remote_addr: str, username: str, password: str, *, attempts: int, lockout_seconds: int
) -> Login:
    """Check a password, counting failures per (address, username); `attempts` failures within
    `lockout_seconds` lock that pair out for `lockout_seconds`, whatever is tried meanwhile."""
    key, addr, now = _username_key(username), remote_addr[:64], utcnow()
    window = timedelta(seconds=lockout_seconds)
    failure = db.session.get(ConsoleLoginFailure, (addr, key), with_for_update=True)
    if failure is not None and failure.locked_until is not None and failure.locked_until > now:
        db.session.rollback()
        return Login(None, math.ceil((failure.locked_until - now).total_seconds()))
    admin = db.session.get(ConsoleAdmin, key)
    # An unknown name costs a hash check too, so timing does not tell which names exist.
    valid = check_password_hash(admin.password_hash if admin else _decoy_hash(), password)
    if admin is not None and valid:
        if failure is not None:
            db.session.delete(failure)
        db.session.commit()
        return Login(admin)
    if failure is None:
        failure = ConsoleLoginFailure(remote_addr=addr, username=key, failures=0)
        db.session.add(failure)
    if failure.failures == 0 or failure.first_failure_at + window <= now:
        failure.failures, failure.first_failure_at, failure.locked_until = 0, now, None
    failure.failures += 1
    if failure.failures >= attempts:
        failure.failures, failure.first_failure_at, failure.locked_until = 0, now, now + window
    # Forget what no longer counts, so the table stays as small as the attacks are recent.
    db.session.execute(
        delete(ConsoleLoginFailure).where(
            ConsoleLoginFailure.first_failure_at < now - window,
            or_(ConsoleLoginFailure.locked_until.is_(None), ConsoleLoginFailure.locked_until < now),
        )
    )
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()  # a concurrent first failure of the same pair inserted the row
    return Login(None)


# --- Sessions (app/console/sessions.py keeps the id in the cookie, only its hash is here) ---

SEEN_EVERY = timedelta(minutes=1)  # last_seen_at is written at most once a minute per session


def start_session(username: str, id_hash: str, *, idle: timedelta) -> None:
    """Record a new session of the admin, and forget every session unused for `idle`."""
    now = utcnow()
    db.session.execute(delete(ConsoleSession).where(ConsoleSession.last_seen_at < now - idle))
    db.session.add(
        ConsoleSession(
            id_hash=id_hash, username=_username_key(username), created_at=now, last_seen_at=now
        )
    )
    db.session.commit()


def session_admin(id_hash: str, *, idle: timedelta) -> ConsoleAdmin | None:
    """The admin of a session that has neither ended nor gone unused for `idle`; marks it seen.

    Idleness is checked here, not only by the cookie's expiry: a copy of the cookie kept
    refreshed by its holder opens nothing once the server has not seen the session for that long.
    """
    now = utcnow()
    row = db.session.execute(
        select(ConsoleSession.last_seen_at, ConsoleAdmin)
        .join(ConsoleAdmin, ConsoleAdmin.username == ConsoleSession.username)
        .where(
            ConsoleSession.id_hash == id_hash,
            ConsoleSession.ended_at.is_(None),
            ConsoleSession.last_seen_at > now - idle,
        )
    ).first()
    if row is None:
        return None
    last_seen, admin = row
    if now - last_seen >= SEEN_EVERY:
        # A console GET reads without SQLite's write lock; this write takes it, in a
        # transaction of its own, once a minute per session.
        db.session.commit()
        with writing():
            db.session.execute(
                update(ConsoleSession)
                .where(ConsoleSession.id_hash == id_hash, ConsoleSession.ended_at.is_(None))
                .values(last_seen_at=now)
            )
            db.session.commit()
    return admin


def end_session(id_hash: str) -> None:
    """Logout: this session ends for good, whoever holds a copy of its cookie."""
    db.session.execute(_end(utcnow()).where(ConsoleSession.id_hash == id_hash))
    db.session.commit()


def end_sessions(*, idle: timedelta) -> int:
    """End every admin's open sessions (`flask console logout-all`); returns how many there were."""
    now = utcnow()
    ended = db.session.execute(_end(now).where(ConsoleSession.last_seen_at > now - idle))
    db.session.commit()
    return ended.rowcount


def _end(now: datetime) -> Update:
    return update(ConsoleSession).where(ConsoleSession.ended_at.is_(None)).values(ended_at=now)


def _username_key(username: str) -> str:
    return fold(username.strip())[:64]


@functools.cache
def _decoy_hash() -> str:
    return generate_password_hash("no admin has this name")


# --- Listings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Listing:
    """One page of a console table, and how the search text was understood."""

    rows: list[Any]
    total: int
    page: int
    pages: int
    mode: str  # "all", "text" or "filter"
    note: str | None = None  # why text that looked like a filter was searched as text
    more: bool = False  # more than `total` match (a broad text search stops counting there)


@dataclass(frozen=True)
class MemberRow:
    value: str
    type: str  # "User" or "Group"
    display: str | None
    user_name: str | None  # users only
    active: bool | None  # users only


def users(
    rt: ResourceType,
    search: str,
    *,
    sort: str = "userName",
    descending: bool = False,
    page: int = 1,
    per_page: int = PER_PAGE,
) -> Listing:
    """Live users matching plain text (userName, name, emails) or a SCIM filter."""
    mode, where, note = _understand(search, functools.partial(filters.users_where, rt=rt), _text)
    keys = [
        pages.Key(filters.users_sort_key(path, rt), descending, nullable=True)
        for path in USER_SORTS.get(sort, USER_SORTS["userName"])
    ]
    keys += [pages.Key(User.created_at), pages.Key(User.id)]
    counted = None  # every match counted
    if mode == "text":
        where, counted = _text_search(search.strip())
    query = users_store.live() if where is None else users_store.live().where(where)
    return _listing(query, keys, page, per_page, mode, note, counted)


def groups_listing(
    search: str,
    *,
    sort: str = "displayName",
    descending: bool = False,
    page: int = 1,
    per_page: int = PER_PAGE,
) -> Listing:
    """Live groups matching text (in displayName) or a SCIM filter."""
    mode, where, note = _understand(search, filters.groups_where, _group_text)
    keys = [
        pages.Key(filters.groups_sort_key(path), descending, nullable=True)
        for path in GROUP_SORTS.get(sort, GROUP_SORTS["displayName"])
    ]
    keys += [pages.Key(Group.created_at), pages.Key(Group.id)]
    query = groups.live() if where is None else groups.live().where(where)
    return _listing(query, keys, page, per_page, mode, note)


def member_counts(group_ids: list[str]) -> dict[str, int]:
    """How many direct members each group has, in one grouped count."""
    rows = db.session.execute(
        select(GroupMember.group_id, func.count())
        .where(GroupMember.group_id.in_(group_ids))
        .group_by(GroupMember.group_id)
    )
    counted = {group_id: count for group_id, count in rows}
    return {group_id: counted.get(group_id, 0) for group_id in group_ids}


def members(group_id: str, *, page: int = 1, per_page: int = PER_PAGE) -> Listing:
    """One page of a group's members: the primary key's order, so only that page is read."""
    total = member_counts([group_id])[group_id]
    page = _clamp(page, total, per_page)
    nested = aliased(Group)
    rows = db.session.execute(
        select(
            GroupMember.member_id,
            GroupMember.member_type,
            func.coalesce(User.display_name, User.user_name, nested.display_name),
            User.user_name,
            User.active,
        )
        .outerjoin(User, and_(GroupMember.member_type == "User", User.id == GroupMember.member_id))
        .outerjoin(
            nested, and_(GroupMember.member_type == "Group", nested.id == GroupMember.member_id)
        )
        .where(GroupMember.group_id == group_id)
        .order_by(GroupMember.member_id)
        .offset((page - 1) * per_page)
        .limit(per_page)
    )
    return Listing(
        [MemberRow(*row) for row in rows], total, page, _page_count(total, per_page), "all"
    )


def memberships(user_id: str) -> list[Membership]:
    return groups.memberships_of([user_id])[user_id]


def _understand(
    search: str,
    as_filter: Callable[[grammar.Filter], ColumnElement[bool]],
    as_text: Callable[[str], ColumnElement[bool]],
) -> tuple[str, ColumnElement[bool] | None, str | None]:
    """A SCIM filter when the text parses as one, else plain text (with the parser's reason)."""
    search = search.strip()
    if not search:
        return "all", None, None
    try:
        return "filter", as_filter(grammar.parse(search)), None
    except _FILTER_ERRORS as e:
        note = e.detail if _LOOKS_LIKE_FILTER.search(search) else None
        return "text", as_text(search), note


def _text(search: str) -> ColumnElement[bool]:
    """Plain text, anywhere in userName, displayName, "given family" or an email address, as
    each user is read (_text_search finds the users through the search index instead)."""
    pattern = _contains(search)
    email = (
        select(UserValue.id)
        .where(
            UserValue.user_id == User.id,
            UserValue.attribute == "emails",
            UserValue.value_key.like(pattern, escape="\\"),
        )
        .exists()
    )
    return or_(*(c.like(pattern, escape="\\") for c in _name_keys()), email)


def _text_search(search: str) -> tuple[ColumnElement[bool], Counted]:
    """How the users page finds plain text: the condition on users, and how they are counted.

    Text of 3 characters or more is looked up in the search index (app/models.py), name and
    email addresses apart, up to TEXT_COUNT_LIMIT users each: the users found are the matches,
    counted as found. Where either finds more (a common name, a domain), the users are read in
    the page's order and each checked (_text), until a page is full: in userName order, the
    first page of a broad match comes after a few thousand users, and is not counted ("more
    than"). Shorter text is checked user by user, and counted up to the limit.
    """
    if not _on_sqlite():
        db.session.execute(_SEARCH_SETTINGS)
    if not _indexed(search):
        return _text(search), Counted(pages.count_up_to(TEXT_COUNT_LIMIT), capped=True)
    found: set[str] = set()
    for matched in _matched(search):
        ids = db.session.scalars(matched.limit(TEXT_COUNT_LIMIT + 1)).all()
        if len(ids) > TEXT_COUNT_LIMIT:
            return _text(search), Counted(_more_than_limit, capped=True)
        found.update(ids)
    if _on_sqlite():
        # The ids as one JSON parameter: SQLite then reads those users by key. Spelled out as
        # an IN list, it guessed that most users match and walked the whole userName index.
        listed = func.json_each(json.dumps(sorted(found))).table_valued("value")
        return User.id.in_(select(listed.c.value)), Counted(lambda query: len(found))
    return User.id.in_(found), Counted(lambda query: len(found))


def _matched(search: str) -> tuple[Select[Any] | CompoundSelect, Select[Any] | CompoundSelect]:
    """The live users whose userName, displayName or "given family" has the text, and those
    with an email address that has it (a user with two such addresses, twice)."""
    pattern = _contains(search)
    names = select(User.id).where(
        User.deleted_at.is_(None), or_(*(c.like(pattern, escape="\\") for c in _name_keys()))
    )
    emails = select(UserValue.user_id).where(
        User.deleted_at.is_(None),
        UserValue.attribute == "emails",
        UserValue.value_key.like(pattern, escape="\\"),
    )
    if not _on_sqlite():  # PostgreSQL's trigram indexes serve the LIKEs themselves
        return names, emails.join(User, User.id == UserValue.user_id)
    # The FTS5 tables name the rows that have the text's trigrams, and LIKE keeps the exact
    # meaning; joined, not IN (...), so that a LIMIT stops reading the index early. The rows
    # changed since the tables were last written are in the backlog (app/models.py), checked
    # by LIKE alone: fewer than SEARCH_BACKLOG_FOLDED_EVERY unless one transaction or a writer
    # outside SQLAlchemy added more (store/search_backlog.py).
    phrase = _phrase(search)
    indexed_names = (
        names.select_from(users_search)
        .join(users_search_ids, users_search_ids.c.id == users_search.c.rowid)
        .join(User, User.id == users_search_ids.c.user_id)
        .where(_match(users_search, phrase))
    )
    backlogged_names = (
        names.select_from(search_backlog)
        .join(users_search_ids, users_search_ids.c.id == search_backlog.c.row)
        .join(User, User.id == users_search_ids.c.user_id)
        .where(search_backlog.c.kind == "user")
    )
    indexed_emails = (
        emails.select_from(user_values_search)
        .join(UserValue, UserValue.id == user_values_search.c.rowid)
        .join(User, User.id == UserValue.user_id)
        .where(_match(user_values_search, phrase))
    )
    backlogged_emails = (
        emails.select_from(search_backlog)
        .join(UserValue, UserValue.id == search_backlog.c.row)
        .join(User, User.id == UserValue.user_id)
        .where(search_backlog.c.kind == "value")
    )
    # UNION ALL, not UNION: a LIMIT then stops reading the index early, where UNION's removal of
    # duplicates read every match first (5.6 s for "example" at 1,000,000 users). A row both
    # indexed and in the backlog comes twice, as a user with two matching addresses does.
    return (
        union_all(indexed_names, backlogged_names),
        union_all(indexed_emails, backlogged_emails),
    )


def _more_than_limit(query: Select[Any]) -> int:
    """The count of a broad match: the index found more than TEXT_COUNT_LIMIT already."""
    return TEXT_COUNT_LIMIT + 1


def _name_keys() -> tuple[ColumnElement[str], ...]:
    # "given family" as app/models.py's FULL_NAME_KEY writes it, constants and all, so that
    # PostgreSQL matches it with the index on that expression.
    full_name = (
        func.coalesce(User.given_name_key, literal_column("''"))
        + literal_column("' '")
        + func.coalesce(User.family_name_key, literal_column("''"))
    )
    return (User.user_name_key, User.display_name_key, full_name)


def _group_text(search: str) -> ColumnElement[bool]:
    where = Group.display_name_key.like(_contains(search), escape="\\")
    if not (_indexed(search) and _on_sqlite()):
        return where
    found = select(groups_search.c.rowid).where(_match(groups_search, _phrase(search)))
    backlogged = select(search_backlog.c.row).where(search_backlog.c.kind == "group")
    numbered = select(groups_search_ids.c.group_id).where(
        or_(groups_search_ids.c.id.in_(found), groups_search_ids.c.id.in_(backlogged))
    )
    return and_(Group.id.in_(numbered), where)


def _contains(search: str) -> str:
    """A LIKE pattern for the folded text anywhere; the keys it is matched with are folded."""
    escaped = fold(search).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _indexed(search: str) -> bool:
    """Whether the search index can serve the text: trigrams need 3 characters."""
    return len(fold(search.strip())) >= INDEXED_TEXT


def _phrase(search: str) -> str:
    """An FTS5 query for the folded text as one phrase: with trigrams, the text anywhere."""
    return '"' + fold(search).replace('"', '""') + '"'


def _match(fts: Any, phrase: str) -> ColumnElement[bool]:
    return literal_column(fts.name).op("MATCH")(phrase)


def _on_sqlite() -> bool:
    return db.session.get_bind().dialect.name == "sqlite"


@dataclass(frozen=True)
class Counted:
    """How a listing's matches are counted when its page cannot tell."""

    count: pages.Counter
    capped: bool = False  # it stops at TEXT_COUNT_LIMIT + 1: past the limit, "more than"


def _listing(
    query: Select[Any],
    keys: list[pages.Key],
    page: int,
    per_page: int,
    mode: str,
    note: str | None,
    counted: Counted | None = None,
) -> Listing:
    """One page and how many match: all of them counted unless `counted` says otherwise."""
    page = max(page, 1)
    count = None if counted is None else counted.count
    result = pages.fetch(query, keys, PageRequest((page - 1) * per_page + 1, per_page), count=count)
    if counted is not None and counted.capped and result.total > TEXT_COUNT_LIMIT:
        # More than the limit: how many more, and so where the last page is, is not known.
        following = 1 if len(result.rows) == per_page else 0
        return Listing(result.rows, TEXT_COUNT_LIMIT, page, page + following, mode, note, more=True)
    clamped = _clamp(page, result.total, per_page)
    if clamped != page:  # past the end (the list shrank, or a hand-edited URL): the last page
        request = PageRequest((clamped - 1) * per_page + 1, per_page)
        result = pages.fetch(query, keys, request, count=count)
    return Listing(
        result.rows, result.total, clamped, _page_count(result.total, per_page), mode, note
    )


def _page_count(total: int, per_page: int) -> int:
    return max(1, math.ceil(total / per_page))


def _clamp(page: int, total: int, per_page: int) -> int:
    return min(max(page, 1), _page_count(total, per_page))


# --- Dashboard -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    active_users: int
    inactive_users: int
    unassigned_users: int  # `active` removed by the IdP: no status at all
    groups: int
    memberships: int


@dataclass(frozen=True)
class Health:
    ok: bool
    database: str  # "PostgreSQL 16.4", "SQLite 3.40.1"
    round_trip_ms: float | None
    revision: str | None  # the applied Alembic revision; None where create_all built the schema


def counts() -> Counts:
    """The dashboard's figures: the ones `flask stats` prints (store/maintenance.py)."""
    totals = maintenance.counts()
    return Counts(
        totals["users_active"],
        totals["users_inactive"],
        totals["users_unassigned"],
        totals["groups"],
        totals["memberships"],
    )


def health() -> Health:
    """A round trip, the server's version and the applied schema revision.

    On the request's own connection: on SQLite it already holds the file's lock (transactions
    begin IMMEDIATE, app/db.py), so a second connection would wait for this very request.
    """
    engine = db.engine
    name = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}.get(engine.dialect.name)
    name = name or engine.dialect.name
    try:
        connection = db.session.connection()
        started = time.perf_counter()
        connection.execute(text("SELECT 1"))
        round_trip = (time.perf_counter() - started) * 1000
        version = ".".join(str(part) for part in engine.dialect.server_version_info or ())
        revision = None
        if inspect(connection).has_table("alembic_version"):
            revision = connection.scalar(text("SELECT version_num FROM alembic_version"))
    except SQLAlchemyError:
        db.session.rollback()
        return Health(False, name, None, None)
    return Health(True, f"{name} {version}".strip(), round_trip, revision)


# --- Provisioning events (app/store/audit.py) ---------------------------------------------


def timeline(resource_type: str, resource_id: str, limit: int = 100) -> list[Any]:
    """The audit events of one resource, newest first."""
    return audit.for_resource(resource_type, resource_id, limit=limit)


@dataclass(frozen=True)
class Emitted:
    """One change event a request emitted (an outbox row) and how its deliveries stand."""

    jti: str
    operation: str  # create, put, patch, delete
    activation: str | None  # activate, deactivate
    attributes: list[str]
    delivered: int
    pending: int
    failing: int  # pending, and tried at least once
    dead: int

    @property
    def receivers(self) -> int:
        return self.delivered + self.pending + self.dead


def emitted(resource_id: str, txns: Iterable[str | None]) -> dict[str, list[Emitted]]:
    """The events of one resource that the changes with these txns emitted (those of the
    requests a timeline shows), oldest first, by txn."""
    wanted = {txn for txn in txns if txn}
    if not wanted:
        return {}
    state, tried = EventDelivery.state, EventDelivery.attempts > 0
    counted = func.count(EventDelivery.event_id)
    rows = db.session.execute(
        select(
            Event.txn,
            Event.jti,
            Event.operation,
            Event.activation,
            Event.attributes,
            counted.filter(state == "delivered"),
            counted.filter(state == "pending"),
            counted.filter(state == "pending", tried),
            counted.filter(state == "dead"),
        )
        .outerjoin(
            EventDelivery,
            and_(EventDelivery.tenant_id == Event.tenant_id, EventDelivery.event_id == Event.id),
        )
        .where(Event.resource_id == resource_id, Event.txn.in_(sorted(wanted)))
        # Grouped by the key: PostgreSQL cannot compare json, and needs no other column.
        .group_by(Event.id)
        .order_by(Event.id)
    )
    out: dict[str, list[Emitted]] = {}
    for txn, *columns in rows:
        out.setdefault(txn, []).append(Emitted(*columns))
    return out


EVENT_NAMES = events_store.EVENT_NAMES  # what a receiver may subscribe to


def receivers() -> list[deliveries.Status]:
    """The tenant's change-event receivers, by name, each with its deliveries' counts."""
    return deliveries.status(events_store.receivers())


def recent_events(limit: int = 20) -> list[Any]:
    return audit.recent(limit=limit)


def failures(*, page: int = 1, per_page: int = PER_PAGE) -> Listing:
    """The requests refused with a 4xx or 5xx, newest first, with the SCIM error each got."""
    query = select(AuditEvent).where(AuditEvent.status >= 400)
    keys = [pages.Key(AuditEvent.at, descending=True), pages.Key(AuditEvent.id, descending=True)]
    return _listing(query, keys, page, per_page, "all", None)


@dataclass(frozen=True)
class MembershipEvent:
    """A member added to or removed from a group by a group request (store/groups.py)."""

    at: datetime
    request_id: str
    change: str  # "added" or "removed"
    group_id: str
    group_display: str | None  # None: the group's row is gone
    group_deleted: bool


def membership_changes(member_id: str, limit: int = 100) -> list[MembershipEvent]:
    """What group requests did to one user's (or group's) memberships, newest first."""
    rows = db.session.execute(
        select(
            MembershipChange.at,
            MembershipChange.request_id,
            MembershipChange.change,
            MembershipChange.group_id,
            Group.display_name,
            Group.deleted_at.is_not(None),
        )
        .outerjoin(Group, Group.id == MembershipChange.group_id)
        .where(MembershipChange.member_id == member_id)
        .order_by(MembershipChange.at.desc(), MembershipChange.id.desc())
        .limit(limit)
    )
    return [MembershipEvent(*row[:5], bool(row[5])) for row in rows]


# --- Requests and failures per hour, and per tenant ------------------------------------------

CHART_HOURS = 72
ERROR_RATE_DAYS = 7


@dataclass(frozen=True)
class Hour:
    start: datetime
    requests: int
    failures: int  # status >= 400


def hourly(hours: int = CHART_HOURS, *, now: datetime | None = None) -> list[Hour]:
    """The audited requests and failures of each of the last `hours` hours, oldest first
    (the current hour last), counted in SQL: one row per hour that had any."""
    now = now or utcnow()
    current = int(now.timestamp()) // 3600
    first = current - hours + 1
    since = datetime.fromtimestamp(first * 3600, tz=now.tzinfo)
    hour = _hour_number(AuditEvent.at).label("hour")
    rows = db.session.execute(
        select(hour, func.count(), func.count().filter(AuditEvent.status >= 400))
        .where(AuditEvent.at >= since)
        .group_by(hour)
    )
    counted = {int(number): (requests, failed) for number, requests, failed in rows}
    return [
        Hour(
            datetime.fromtimestamp(number * 3600, tz=now.tzinfo),
            *counted.get(number, (0, 0)),
        )
        for number in range(first, current + 1)
    ]


def _hour_number(at: Any) -> ColumnElement[int]:
    """Hours since the Unix epoch: the same number on both databases, whatever their zone."""
    if db.session.get_bind().dialect.name == "postgresql":
        return func.floor(func.extract("epoch", at) / 3600)
    # SQLite keeps the UTC time as text: strftime('%s') reads it as UTC seconds.
    return cast(func.strftime("%s", at), Integer) // 3600


@dataclass(frozen=True)
class TenantRow:
    """One line of the console's tenants page."""

    summary: tenants.Summary
    requests: int  # audited requests over the last ERROR_RATE_DAYS days
    failures: int

    @property
    def tenant(self) -> Tenant:
        return self.summary.tenant

    @property
    def error_rate(self) -> float | None:
        return self.failures / self.requests if self.requests else None


def tenant_rows(days: int = ERROR_RATE_DAYS) -> list[TenantRow]:
    """Every tenant not deleted, with its counts, last request and recent error rate.

    Reads every tenant's rows: the caller enters tenancy.across_tenants() deliberately.
    """
    if tenancy.current() is not tenancy.ALL_TENANTS:
        raise tenancy.NoTenantScope("the tenants overview reads every tenant's rows")
    since = utcnow() - timedelta(days=days)
    rows = db.session.execute(
        select(AuditEvent.tenant_id, func.count(), func.count().filter(AuditEvent.status >= 400))
        .where(AuditEvent.at >= since, AuditEvent.tenant_id.is_not(None))
        .group_by(AuditEvent.tenant_id)
    )
    rates = {tenant_id: (requests, failed) for tenant_id, requests, failed in rows}
    return [
        TenantRow(summary, *rates.get(summary.tenant.id, (0, 0))) for summary in tenants.summaries()
    ]


def visible_tenant(slug: str, admin: ConsoleAdmin) -> Tenant | None:
    """The tenant of this slug if the admin may see it: any tenant not deleted for a global
    admin, only their own for a bound one; None otherwise, whichever the reason."""
    tenant = db.session.scalars(select(Tenant).where(Tenant.slug == slug)).one_or_none()
    if tenant is None or tenant.state == TenantState.DELETED:
        return None
    if admin.tenant_id is not None and admin.tenant_id != tenant.id:
        return None
    return tenant


def tenant_by_id(tenant_id: int) -> Tenant | None:
    return tenants.by_id(tenant_id)
