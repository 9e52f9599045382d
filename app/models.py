"""Tables as typed classes. No Flask and no SCIM JSON shapes here: store/ and serialize.py map."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple, Protocol, overload

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    column,
    event,
    table,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, query_expression

from app import tenancy
from app.db import UTCDateTime, db, utcnow

LIVE = text("deleted_at IS NULL")
CURRENT_TOKEN = text("revoked_at IS NULL AND replaced_at IS NULL")


def new_id() -> str:
    return str(uuid.uuid4())


def tenant_column(*, primary_key: bool = False) -> Mapped[int]:
    """The tenant a row belongs to: the entered one (app.tenancy) unless given. It leads every
    key and index of the table, so that the schema could be distributed by tenant unchanged."""
    return mapped_column(
        ForeignKey("tenants.id"), primary_key=primary_key, default=tenancy.current_id
    )


class TenantState(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"  # its tokens are refused (403), its data kept
    DELETED = "deleted"  # its tokens are refused (401); its data is purged after retention


class Tenant(db.Model):
    """One customer's directory. Its slug names it to operators; its tokens select it."""

    __tablename__ = "tenants"
    __table_args__ = (Index("uq_tenants_slug", "slug", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    slug: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16), default=TenantState.ACTIVE)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class User(db.Model):
    """A provisioned user. `document` holds the SCIM attributes; columns copy what is queried."""

    __tablename__ = "users"
    __table_args__ = (
        # userName is unique among live users, case-insensitively (RFC 7643 §4.1.1); a
        # tombstone keeps its name without blocking a new user from taking it.
        Index(
            "uq_users_live_user_name",
            "tenant_id",
            "user_name_key",
            unique=True,
            sqlite_where=LIVE,
            postgresql_where=LIVE,
        ),
        Index("ix_users_external_id", "tenant_id", "external_id"),
        # Pages list live users in creation order (store/pages.py). Live rows only: skipping to
        # a deep startIndex steps through the index alone, never reading a row to check that
        # it is no tombstone (migration 0012).
        Index(
            "ix_users_created_at_id",
            "tenant_id",
            "created_at",
            "id",
            sqlite_where=LIVE,
            postgresql_where=LIVE,
        ),
        Index("ix_users_display_name_key", "tenant_id", "display_name_key"),
        # A group's members read with their display names from the index alone, never the
        # table row (migration 0015); deleted_at last, so that SQLite answers LIVE from it too.
        # A full GET probes it once per member: on PostgreSQL its ids compare byte by byte
        # (text_pattern_ops), not through the database's collation (migration 0017).
        Index(
            "ix_users_live_display",
            "tenant_id",
            "id",
            "display_name",
            "user_name",
            "deleted_at",
            sqlite_where=LIVE,
            postgresql_where=LIVE,
            postgresql_ops={"id": "text_pattern_ops"},
        ),
        # text_pattern_ops: `name.familyName sw` (LIKE 'prefix%') uses it whatever the collation.
        Index(
            "ix_users_family_name_key",
            "tenant_id",
            "family_name_key",
            postgresql_ops={"family_name_key": "text_pattern_ops"},
        ),
    )

    # Ids are globally unique UUIDs; the key still leads with the tenant (tenant_column).
    tenant_id: Mapped[int] = tenant_column(primary_key=True)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_name: Mapped[str]
    user_name_key: Mapped[str]  # fold(user_name) (app.fold): what uniqueness and filters compare
    external_id: Mapped[str | None]
    display_name: Mapped[str | None]
    given_name: Mapped[str | None]
    family_name: Mapped[str | None]
    # Folded copies (app.fold) of what is filtered case-insensitively, so that an index
    # serves `eq` and `sw` on both databases.
    display_name_key: Mapped[str | None]
    given_name_key: Mapped[str | None]
    family_name_key: Mapped[str | None]
    # None: unassigned, as a PATCH `remove` of `active` leaves it (RFC 7644 §3.5.2.2). GET omits
    # it; filters treat it as any attribute without a value (`active pr` does not match).
    active: Mapped[bool | None] = mapped_column(default=True)
    password_hash: Mapped[str | None]
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Folded copies of the caseExact=false strings without a *_key column (nickName, title, an
    # extension's department...), for filters and sortBy (store/users.py). Deferred: SQL reads
    # it, Python never needs it when loading a user.
    document_key: Mapped[dict[str, Any]] = mapped_column(JSON, deferred=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_modified: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # tombstone marker
    version: Mapped[int] = mapped_column()  # meta.version; the ORM bumps it on every UPDATE
    # Not a column: the user's live groups, as [[id, displayName, folded displayName], ...],
    # read by the statement that reads the row when the response shows them (store.users,
    # with_groups); None when that statement did not read them.
    groups_read: Mapped[Any] = query_expression()

    # Optimistic concurrency: an UPDATE that finds another writer's version raises StaleDataError
    # and the write is retried from a fresh read; groups use the same (store/locked.py says why).
    __mapper_args__ = {"version_id_col": version}


class ShownUser(Protocol):
    """What a user's SCIM representation is made from (serialize.user): a User, or a row of
    USER_SHOWN and `groups_read`, as a page reads users (store/users.py)."""

    tenant_id: int
    id: str
    external_id: str | None
    document: dict[str, Any]
    created_at: datetime
    last_modified: datetime
    version: int
    groups_read: Any  # as User.groups_read: None unless the statement read them


# The columns of a ShownUser, in that order.
USER_SHOWN = (
    User.tenant_id,
    User.id,
    User.external_id,
    User.document,
    User.created_at,
    User.last_modified,
    User.version,
)


class UserValue(db.Model):
    """One element of a user's multi-valued attribute (an email, a phone number...), for filters.

    A derived index of `User.document`, rewritten with it, so that `emails.value eq` and
    `emails[type eq "work"]` run as SQL against one element at a time.
    """

    __tablename__ = "user_values"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "user_id"], ["users.tenant_id", "users.id"], ondelete="CASCADE"
        ),
        Index("ix_user_values_attribute_value_key", "tenant_id", "attribute", "value_key"),
        Index("ix_user_values_user_id", "tenant_id", "user_id"),
    )

    # A row number as its key (SQLite's rowid): nothing looks a row up by it.
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = tenant_column()
    user_id: Mapped[str] = mapped_column(String(36))
    attribute: Mapped[str] = mapped_column(String(64))
    value: Mapped[str | None]
    value_key: Mapped[str | None]  # fold(value) (app.fold)
    primary: Mapped[bool] = mapped_column(default=False)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)  # the element, for other sub-attributes
    data_key: Mapped[dict[str, Any]] = mapped_column(JSON, deferred=True)  # fold.folded_copy


class Group(db.Model):
    """A group. Its members live in group_members, changed row by row, never rewritten whole."""

    __tablename__ = "groups"
    __table_args__ = (
        # displayName is unique among live groups, case-insensitively: Okta's Group Push and
        # Entra ID look groups up by it and would link to the wrong one otherwise.
        Index(
            "uq_groups_live_display_name",
            "tenant_id",
            "display_name_key",
            unique=True,
            sqlite_where=LIVE,
            postgresql_where=LIVE,
        ),
        Index("ix_groups_external_id", "tenant_id", "external_id"),
        Index(
            "ix_groups_created_at_id",
            "tenant_id",
            "created_at",
            "id",
            sqlite_where=LIVE,
            postgresql_where=LIVE,
        ),  # live groups in creation order, as for users
    )

    tenant_id: Mapped[int] = tenant_column(primary_key=True)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    display_name: Mapped[str]
    display_name_key: Mapped[str]  # fold(display_name) (app.fold)
    external_id: Mapped[str | None]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_modified: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # tombstone marker
    # meta.version; the ORM bumps it on every UPDATE of the row. A membership change, which
    # writes only group_members, touches last_modified so that the row is updated too.
    version: Mapped[int] = mapped_column(default=1)
    # Not a column: the group's live members as [[id, ...], [type, ...], [display, ...]], read by
    # the statement that reads the row when the response shows them (store.groups, with
    # members), or [] for a group created without members; None otherwise.
    members_read: Mapped[Any] = query_expression()

    # The same optimistic concurrency as users (store/locked.py).
    __mapper_args__ = {"version_id_col": version}


class GroupMember(db.Model):
    """One membership: a user or a group (`member_type`) directly in a group."""

    __tablename__ = "group_members"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "group_id"], ["groups.tenant_id", "groups.id"], ondelete="CASCADE"
        ),
        # "Which groups is this user in": the users' `groups` attribute and members.value filters,
        # from the index alone (migration 0016).
        Index("ix_group_members_member_id", "tenant_id", "member_id", "group_id"),
        # A group's members with their type, in id order, from the index alone (migration 0015).
        Index(
            "ix_group_members_group_id_member", "tenant_id", "group_id", "member_id", "member_type"
        ),
    )

    tenant_id: Mapped[int] = tenant_column(primary_key=True)
    group_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    member_type: Mapped[str] = mapped_column(String(5))  # "User" or "Group"


class LiveCount(db.Model):
    """How many live users or groups a tenant has, kept by the database's own triggers on
    users and groups (LIVE_COUNT_TRIGGERS below): an unfiltered list's totalResults reads it
    instead of counting every live row (106 ms on SQLite, 320 on PostgreSQL at 1,000,000).

    The count is split over shard rows, summed on read: on PostgreSQL a row's shard is a hash
    of its id, so concurrent creates in one tenant rarely wait on the same counter row until
    commit; SQLite has one writer at a time and uses shard 0 only. A shard alone may go below
    zero or above the tenant's total; only the sum means anything.
    """

    __tablename__ = "live_counts"

    tenant_id: Mapped[int] = tenant_column(primary_key=True)
    resource_type: Mapped[str] = mapped_column(String(5), primary_key=True)  # "User", "Group"
    shard: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    live: Mapped[int]


class Member(NamedTuple):
    """A group member as read for display: store/groups.py builds these with one join. A
    tuple: a full GET of a 100,000-member group builds as many (a frozen dataclass took 5
    times as long to make)."""

    value: str
    type: str  # "User" or "Group"
    display: str | None


class Members(Sequence[Member]):
    """A group's members as three columns in member id order: their ids, types and display
    names (store/groups.py reads them so). A full GET of 100,000 members made a tuple per
    member, and a list per member where JSON decoded them: Python's cyclic garbage collector
    walked them all, again and again, as they were made (more than half of their cost).
    Three lists of strings give it nothing to walk; a Member is made only when asked for."""

    __slots__ = ("values", "types", "displays")

    def __init__(self, values: list[str], types: list[str], displays: list[str | None]) -> None:
        self.values, self.types, self.displays = values, types, displays

    def __len__(self) -> int:
        return len(self.values)

    @overload
    def __getitem__(self, index: int) -> Member: ...

    @overload
    def __getitem__(self, index: slice) -> list[Member]: ...

    def __getitem__(self, index: int | slice) -> Member | list[Member]:
        if isinstance(index, slice):
            return list(map(Member, self.values[index], self.types[index], self.displays[index]))
        return Member(self.values[index], self.types[index], self.displays[index])

    def __iter__(self) -> Iterator[Member]:
        return map(Member, self.values, self.types, self.displays)

    def rows(self, index: slice) -> Iterator[tuple[str, str, str | None]]:
        """(id, type, display) of the members in `index`, as plain tuples: zip reuses one
        tuple when its holder lets go of it, so a loop that unpacks them allocates none."""
        return zip(self.values[index], self.types[index], self.displays[index], strict=True)


@dataclass(frozen=True)
class Membership:
    """A group as seen from one of its members (the User's `groups` attribute)."""

    group_id: str
    display: str


class ConsoleAdmin(db.Model):
    """An operator of the web console (app/console/): a name and a password hash, nothing else."""

    __tablename__ = "console_admins"

    username: Mapped[str] = mapped_column(String(64), primary_key=True)  # folded (app.fold)
    # None: a global admin, who sees every tenant; else the one tenant this admin may see.
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    password_hash: Mapped[str] = mapped_column(String(255))  # werkzeug scrypt; never the password
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ConsoleSession(db.Model):
    """A console login, so that logging out, a new password or `flask console logout-all` ends
    it on every worker and instance: the signed cookie alone could not be taken back."""

    __tablename__ = "console_sessions"
    __table_args__ = (Index("ix_console_sessions_username", "username"),)

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the cookie's id
    username: Mapped[str] = mapped_column(
        String(64), ForeignKey("console_admins.username", ondelete="CASCADE")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)  # to the minute
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # logout, password, logout-all


class ConsoleLoginFailure(db.Model):
    """Failed console logins per client address and username, for the lockout."""

    __tablename__ = "console_login_failures"

    remote_addr: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), primary_key=True)  # folded, cut to 64
    failures: Mapped[int]
    first_failure_at: Mapped[datetime] = mapped_column(UTCDateTime)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditEvent(db.Model):
    """One change an API client asked for, granted or refused. Append-only: never updated."""

    __tablename__ = "audit_events"
    __table_args__ = (
        # "What did the IdP do to this user, and when": newest first, per resource.
        Index(
            "ix_audit_events_resource_type_resource_id_at",
            "tenant_id",
            "resource_type",
            "resource_id",
            "at",
        ),
        Index("ix_audit_events_at", "tenant_id", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    # None: a request refused before its token was recognised belongs to no tenant.
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    request_id: Mapped[str] = mapped_column(String(128))
    token_name: Mapped[str | None] = mapped_column(String(64))  # never the token itself
    method: Mapped[str] = mapped_column(String(8))
    resource_type: Mapped[str] = mapped_column(String(32))  # "User", "Group"
    resource_id: Mapped[str | None] = mapped_column(String(64))  # a create's new id
    operation: Mapped[str] = mapped_column(String(16))  # create, replace, patch, delete
    attributes: Mapped[list[str]] = mapped_column(JSON)  # names only, never values
    status: Mapped[int]
    # A refused request's SCIM error, for the console (never in the stdout line: a detail may
    # quote what the client sent).
    scim_type: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(String(500))
    duration_ms: Mapped[float]
    # RFC 8417 txn of the change (store/events.py): its events carry it; None if nothing changed.
    txn: Mapped[str | None] = mapped_column(String(36))


class MembershipChange(db.Model):
    """A member added to or removed from a group by a committed write, in that write's
    transaction: a user's timeline shows what group requests did to it, exactly."""

    __tablename__ = "membership_changes"
    __table_args__ = (
        Index("ix_membership_changes_member_id_at", "tenant_id", "member_id", "at"),
        Index("ix_membership_changes_group_id_at", "tenant_id", "group_id", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = tenant_column()
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    request_id: Mapped[str] = mapped_column(String(128))
    group_id: Mapped[str] = mapped_column(String(36))
    member_id: Mapped[str] = mapped_column(String(36))
    change: Mapped[str] = mapped_column(String(8))  # "added" or "removed"


class Token(db.Model):
    """A named bearer token, stored as its SHA-256 (app.auth.token_hash); `flask tokens ...`.

    One current token per name. `flask tokens rotate --keep-old` marks the previous one
    `replaced_at` and keeps it valid until `flask tokens revoke NAME --old`.
    """

    __tablename__ = "tokens"
    __table_args__ = (
        # The one key that does not lead with the tenant: a token is how its tenant is found.
        Index("uq_tokens_hash", "hash", unique=True),
        Index(
            "uq_tokens_current_name",
            "tenant_id",
            "name",
            unique=True,
            sqlite_where=CURRENT_TOKEN,
            postgresql_where=CURRENT_TOKEN,
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = tenant_column()
    name: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    replaced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# --- Change events (RFC 9967 SETs): the outbox, its receivers, their keys and deliveries -------
#
# store/events.py says how these tables work together (its module docstring).

PENDING = text("state = 'pending'")


class Event(db.Model):
    """One committed change to one resource, written in the change's transaction (the outbox).

    Several rows share a `txn` when one change touched several resources (a user deleted, and
    the groups it left). What RFC 9967 puts in the SET is here; the SET itself is built and
    signed per receiver when it is delivered (store/events.py, app/events.py).
    """

    __tablename__ = "events"
    __table_args__ = (
        Index("uq_events_jti", "tenant_id", "jti", unique=True),
        # A resource's events in order (the console's timeline, replay by resource).
        Index("ix_events_resource_id_id", "tenant_id", "resource_id", "id"),
        Index("ix_events_at", "tenant_id", "at"),  # replay since a time
        Index("ix_events_txn", "tenant_id", "txn"),  # the audit row's change
    )

    # Global and monotonic: within one resource, the order of its changes (a resource's writes
    # queue on its row lock, and the id is drawn at commit, under that lock).
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    tenant_id: Mapped[int] = tenant_column()
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    txn: Mapped[str] = mapped_column(String(36))  # RFC 8417 txn: one per committed change
    jti: Mapped[str] = mapped_column(String(36))  # RFC 7519 jti of the SET(s) built from it
    resource_type: Mapped[str] = mapped_column(String(8))  # "User", "Group"
    resource_id: Mapped[str] = mapped_column(String(36))
    external_id: Mapped[str | None]
    operation: Mapped[str] = mapped_column(String(8))  # create, put, patch, delete
    activation: Mapped[str | None] = mapped_column(String(10))  # activate, deactivate
    attributes: Mapped[list[str]] = mapped_column(JSON)  # changed attribute paths, names only
    version: Mapped[int | None]  # the resource's version after the change (meta.version)
    # The resource as committed, as GET returns it but with locations relative to the SCIM
    # base URL; only when a `:full` receiver is owed the event (store/events.py).
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    request_id: Mapped[str] = mapped_column(String(128))


class EventReceiver(db.Model):
    """Where a tenant's events go: a push endpoint (RFC 8935) or a poller (RFC 8936)."""

    __tablename__ = "event_receivers"
    __table_args__ = (Index("uq_event_receivers_name", "tenant_id", "name", unique=True),)

    tenant_id: Mapped[int] = tenant_column(primary_key=True)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64))
    delivery: Mapped[str] = mapped_column(String(8))  # "push" or "poll"
    url: Mapped[str | None] = mapped_column(String(2000))  # push: the receiver's endpoint
    # What it subscribes to: create, put, patch, delete, activate, deactivate.
    events: Mapped[list[str]] = mapped_column(JSON)
    full: Mapped[bool] = mapped_column(default=False)  # `:full` events (with data), else notice
    enabled: Mapped[bool] = mapped_column(default=True)
    audience: Mapped[str] = mapped_column(String(2000))  # the SETs' aud
    alg: Mapped[str] = mapped_column(String(8), default="ES256")  # ES256, RS256, HS256
    # Poll: sha256 of the receiver's own bearer token (never the token).
    poll_token_hash: Mapped[str | None] = mapped_column(String(64))
    # Push: the Authorization header value the receiver expects, if any (RFC 8935 §2).
    push_authorization: Mapped[str | None] = mapped_column(String(2000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EventSigningKey(db.Model):
    """A receiver's signing key: a private key (PEM) whose public half is in its JWKS, or an
    HS256 shared secret. Retired keys stay published for a while, so SETs in flight verify."""

    __tablename__ = "event_signing_keys"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "receiver_id"],
            ["event_receivers.tenant_id", "event_receivers.id"],
            ondelete="CASCADE",
        ),
        Index("ix_event_signing_keys_receiver_id", "tenant_id", "receiver_id"),
    )

    tenant_id: Mapped[int] = tenant_column(primary_key=True)
    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    receiver_id: Mapped[str] = mapped_column(String(36))
    alg: Mapped[str] = mapped_column(String(8))
    secret: Mapped[str] = mapped_column(Text)  # PEM private key, or the HS256 secret (base64url)
    public_jwk: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # None for HS256
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class EventDelivery(db.Model):
    """One event owed to one receiver, written with the event (fan-out in the change's
    transaction): its state, attempts and next attempt. store/events.py describes the claim."""

    __tablename__ = "event_deliveries"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "receiver_id"],
            ["event_receivers.tenant_id", "event_receivers.id"],
            ondelete="CASCADE",
        ),
        # What is due for a receiver, oldest first.
        Index(
            "ix_event_deliveries_due",
            "tenant_id",
            "receiver_id",
            "next_attempt_at",
            sqlite_where=PENDING,
            postgresql_where=PENDING,
        ),
        # The head of each resource's queue: no earlier pending event for the same resource.
        Index(
            "ix_event_deliveries_resource",
            "tenant_id",
            "receiver_id",
            "resource_id",
            "event_id",
            sqlite_where=PENDING,
            postgresql_where=PENDING,
        ),
        Index("ix_event_deliveries_event_id", "tenant_id", "event_id"),
    )

    tenant_id: Mapped[int] = tenant_column(primary_key=True)
    receiver_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    event_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False
    )
    resource_id: Mapped[str] = mapped_column(String(36))  # the event's, for per-resource order
    state: Mapped[str] = mapped_column(String(10), default="pending")  # pending, delivered, dead
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(500))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # acknowledged, or dead
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)  # the event's at


# --- The console's text search: substring indexes beside the tables ---------------------------
#
# The console finds plain text anywhere in a user's folded userName, displayName, "given
# family" name and email addresses, and in a group's folded displayName (store/console.py):
# LIKE '%text%', which no B-tree serves. Migration 0011_console_search builds these indexes and
# create_all (the tests) the same, through the event below; the Alembic comparison leaves them
# out (is_search_object), as the models cannot declare them.
#
# PostgreSQL: pg_trgm's GIN indexes, which serve LIKE '%text%' for text of 3 characters or
# more. They do not lead with tenant_id: a GIN has no column order to lead with, and one with
# the tenant in it (btree_gin) read the tenant's whole entry on every search: each index scan
# took 3 times as long at 1,000,000 users in one tenant. The tenant is checked on each row the
# index finds (the planner may also AND in a bitmap of a B-tree that leads with tenant_id).
#
# SQLite: FTS5 tables with the trigram tokenizer (SQLite 3.34 or later), kept by triggers on
# users, user_values and groups, whoever writes. An FTS5 row is named by an integer, which
# users and groups lack (their rowid may change on VACUUM), so an `_ids` table numbers them.
# Live users and groups are indexed (a tombstone leaves the index), and every email address
# (the search joins back to live users). The triggers do not write the FTS5 tables: FTS5
# writes a new segment and its structure for every transaction that changes a table (a POST
# /Users wrote 46 pages to the WAL so, 29 now, the batches included). They note the row in
# search_backlog, and the write that brings it to SEARCH_BACKLOG_FOLDED_EVERY notes folds it
# into the FTS5 tables before it commits, a thousand rows in one segment. Not a trigger: an
# FTS5 statement in a trigger's program failed ("no such table: groups") when another
# connection had just changed the schema (PRAGMA optimize's ANALYZE), depending on the order
# the triggers were created in; statements run by themselves do not. A search reads the FTS5
# tables and the backlog's rows (store/console.py), and checks each row it finds against the
# row as it is now: what the FTS5 tables hold may be stale, never wrong. Alembic's batch mode
# rebuilds a SQLite table by copying it, which drops its triggers: a migration that rebuilds
# users, user_values or groups must create this search's triggers again
# (tests/test_migrations.py compares them with create_all's).

# "given family" as the search matches it; PostgreSQL's index is on this very expression.
FULL_NAME_KEY = "coalesce(given_name_key, '') || ' ' || coalesce(family_name_key, '')"

SEARCH_INDEX_POSTGRESQL = (
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS ix_users_user_name_key_trgm "
    "ON users USING gin (user_name_key gin_trgm_ops)",
    "CREATE INDEX IF NOT EXISTS ix_users_display_name_key_trgm "
    "ON users USING gin (display_name_key gin_trgm_ops)",
    "CREATE INDEX IF NOT EXISTS ix_users_full_name_key_trgm "
    f"ON users USING gin (({FULL_NAME_KEY}) gin_trgm_ops)",
    "CREATE INDEX IF NOT EXISTS ix_user_values_emails_trgm "
    "ON user_values USING gin (value_key gin_trgm_ops) WHERE attribute = 'emails'",
    "CREATE INDEX IF NOT EXISTS ix_groups_display_name_key_trgm "
    "ON groups USING gin (display_name_key gin_trgm_ops)",
    # Not a trigram index: live users in userName order as sortBy compares (code point order,
    # COLLATE "C"; SQLite's own order is that, so uq_users_live_user_name serves it there). A
    # search that matches too many users for the trigram indexes to list quickly reads users in
    # this order until a page is full; the console's unsearched users table starts here too.
    "CREATE INDEX IF NOT EXISTS ix_users_live_user_name_key_codepoint "
    'ON users (tenant_id, (user_name_key COLLATE "C")) WHERE deleted_at IS NULL',
)
SEARCH_INDEX_NAMES_POSTGRESQL = (
    "ix_users_user_name_key_trgm",
    "ix_users_display_name_key_trgm",
    "ix_users_full_name_key_trgm",
    "ix_user_values_emails_trgm",
    "ix_groups_display_name_key_trgm",
    "ix_users_live_user_name_key_codepoint",
)

_TRIGRAM = "tokenize = 'trigram case_sensitive 1'"  # the text is folded already
# The backlog's rows name what changed: an FTS5 row of users_search (kind 'user': the user's
# number in users_search_ids), of user_values_search ('value': the user_values row's id) or of
# groups_search ('group').
_BACKLOG = "INSERT INTO search_backlog (kind, row) VALUES ('{0}', {1})"
_USER_ROW = "(SELECT id FROM users_search_ids WHERE tenant_id = {0}.tenant_id AND user_id = {0}.id)"
_GROUP_ROW = (
    "(SELECT id FROM groups_search_ids WHERE tenant_id = {0}.tenant_id AND group_id = {0}.id)"
)
_BACKLOGGED = "(SELECT row FROM search_backlog WHERE kind = '{0}')"
# Folding the backlog into the FTS5 tables: each row it names is deleted from its table and
# written again as the row now is, if it still is a live user, an email address, a live group.
SEARCH_BACKLOG_FOLD = (
    f"DELETE FROM users_search WHERE rowid IN {_BACKLOGGED.format('user')}",
    "INSERT INTO users_search (rowid, user_name_key, display_name_key, full_name_key) "
    "SELECT s.id, u.user_name_key, u.display_name_key, "
    "coalesce(u.given_name_key, '') || ' ' || coalesce(u.family_name_key, '') "
    "FROM users_search_ids s JOIN users u ON u.tenant_id = s.tenant_id AND u.id = s.user_id "
    f"WHERE s.id IN {_BACKLOGGED.format('user')} AND u.deleted_at IS NULL",
    f"DELETE FROM user_values_search WHERE rowid IN {_BACKLOGGED.format('value')}",
    "INSERT INTO user_values_search (rowid, value_key) SELECT id, value_key FROM user_values "
    f"WHERE id IN {_BACKLOGGED.format('value')} "
    "AND attribute = 'emails' AND value_key IS NOT NULL",
    f"DELETE FROM groups_search WHERE rowid IN {_BACKLOGGED.format('group')}",
    "INSERT INTO groups_search (rowid, display_name_key) "
    "SELECT s.id, g.display_name_key "
    "FROM groups_search_ids s JOIN groups g ON g.tenant_id = s.tenant_id AND g.id = s.group_id "
    f"WHERE s.id IN {_BACKLOGGED.format('group')} AND g.deleted_at IS NULL",
    "DELETE FROM search_backlog",
)
# A write that leaves this many changes in the backlog folds it in before it commits
# (store/search_backlog.py). The fold empties the backlog, so its row ids start again at 1:
# the largest one counts the changes since.
SEARCH_BACKLOG_FOLDED_EVERY = 1000
_USER_KEYS_CHANGED = " OR ".join(
    f"old.{c} IS NOT new.{c}"
    for c in ("user_name_key", "display_name_key", "given_name_key", "family_name_key")
)
SEARCH_INDEX_SQLITE = (
    # Users: every user numbered, the live ones' text indexed.
    "CREATE TABLE IF NOT EXISTS users_search_ids (id INTEGER PRIMARY KEY, "
    "tenant_id INTEGER NOT NULL, user_id VARCHAR(36) NOT NULL)",
    "CREATE UNIQUE INDEX IF NOT EXISTS uq_users_search_ids_tenant_id_user_id "
    "ON users_search_ids (tenant_id, user_id)",
    "CREATE VIRTUAL TABLE IF NOT EXISTS users_search "
    f"USING fts5(user_name_key, display_name_key, full_name_key, {_TRIGRAM})",
    # Email addresses: a user_values row has an integer key of its own.
    f"CREATE VIRTUAL TABLE IF NOT EXISTS user_values_search USING fts5(value_key, {_TRIGRAM})",
    # Groups, as users.
    "CREATE TABLE IF NOT EXISTS groups_search_ids (id INTEGER PRIMARY KEY, "
    "tenant_id INTEGER NOT NULL, group_id VARCHAR(36) NOT NULL)",
    "CREATE UNIQUE INDEX IF NOT EXISTS uq_groups_search_ids_tenant_id_group_id "
    "ON groups_search_ids (tenant_id, group_id)",
    f"CREATE VIRTUAL TABLE IF NOT EXISTS groups_search USING fts5(display_name_key, {_TRIGRAM})",
    # What changed since the FTS5 tables were last written (migration 0018).
    "CREATE TABLE IF NOT EXISTS search_backlog (id INTEGER PRIMARY KEY, "
    "kind VARCHAR(5) NOT NULL, row INTEGER NOT NULL)",
    "CREATE TRIGGER IF NOT EXISTS users_search_insert AFTER INSERT ON users BEGIN "
    "INSERT INTO users_search_ids (tenant_id, user_id) VALUES (new.tenant_id, new.id); "
    f"{_BACKLOG.format('user', _USER_ROW.format('new'))}; END",
    "CREATE TRIGGER IF NOT EXISTS users_search_update AFTER UPDATE OF user_name_key, "
    "display_name_key, given_name_key, family_name_key, deleted_at ON users "
    f"WHEN {_USER_KEYS_CHANGED} OR old.deleted_at IS NOT new.deleted_at BEGIN "
    f"{_BACKLOG.format('user', _USER_ROW.format('new'))}; END",
    "CREATE TRIGGER IF NOT EXISTS users_search_delete AFTER DELETE ON users BEGIN "
    f"{_BACKLOG.format('user', _USER_ROW.format('old'))}; "
    "DELETE FROM users_search_ids WHERE tenant_id = old.tenant_id AND user_id = old.id; END",
    "CREATE TRIGGER IF NOT EXISTS user_values_search_insert AFTER INSERT ON user_values "
    "WHEN new.attribute = 'emails' AND new.value_key IS NOT NULL BEGIN "
    f"{_BACKLOG.format('value', 'new.id')}; END",
    "CREATE TRIGGER IF NOT EXISTS user_values_search_update AFTER UPDATE OF id, attribute, "
    "value_key ON user_values BEGIN "
    f"{_BACKLOG.format('value', 'old.id')}; {_BACKLOG.format('value', 'new.id')}; END",
    "CREATE TRIGGER IF NOT EXISTS user_values_search_delete AFTER DELETE ON user_values "
    "WHEN old.attribute = 'emails' AND old.value_key IS NOT NULL BEGIN "
    f"{_BACKLOG.format('value', 'old.id')}; END",
    "CREATE TRIGGER IF NOT EXISTS groups_search_insert AFTER INSERT ON groups BEGIN "
    "INSERT INTO groups_search_ids (tenant_id, group_id) VALUES (new.tenant_id, new.id); "
    f"{_BACKLOG.format('group', _GROUP_ROW.format('new'))}; END",
    "CREATE TRIGGER IF NOT EXISTS groups_search_update AFTER UPDATE OF display_name_key, "
    "deleted_at ON groups WHEN old.display_name_key IS NOT new.display_name_key "
    "OR old.deleted_at IS NOT new.deleted_at BEGIN "
    f"{_BACKLOG.format('group', _GROUP_ROW.format('new'))}; END",
    "CREATE TRIGGER IF NOT EXISTS groups_search_delete AFTER DELETE ON groups BEGIN "
    f"{_BACKLOG.format('group', _GROUP_ROW.format('old'))}; "
    "DELETE FROM groups_search_ids WHERE tenant_id = old.tenant_id AND group_id = old.id; END",
)
SEARCH_INDEX = {"postgresql": SEARCH_INDEX_POSTGRESQL, "sqlite": SEARCH_INDEX_SQLITE}

# What SQLite's index is made of, besides triggers (an FTS5 table keeps its data in tables
# named after it: users_search_data, users_search_idx...).
SEARCH_TABLES_SQLITE = ("users_search", "user_values_search", "groups_search")
SEARCH_ID_TABLES_SQLITE = ("users_search_ids", "groups_search_ids")
SEARCH_BACKLOG_SQLITE = "search_backlog"


def is_search_object(name: str | None) -> bool:
    """Whether a table or index is this search's, which the models do not declare (Alembic's
    comparison leaves it out)."""
    if name is None:
        return False
    tables = SEARCH_TABLES_SQLITE  # and the tables named after them: _ids, FTS5's own
    return (
        name in SEARCH_INDEX_NAMES_POSTGRESQL
        or name in tables
        or name == SEARCH_BACKLOG_SQLITE
        or name.startswith(tuple(f"{t}_" for t in tables))
    )


@event.listens_for(db.metadata, "after_create")
def _create_search_index(target: Any, connection: Any, **kw: Any) -> None:
    for statement in SEARCH_INDEX.get(connection.dialect.name, ()):
        connection.exec_driver_sql(statement)


@event.listens_for(db.metadata, "before_drop")
def _drop_search_index(target: Any, connection: Any, **kw: Any) -> None:
    if connection.dialect.name == "sqlite":  # PostgreSQL's indexes go with their tables
        for table in (*SEARCH_TABLES_SQLITE, *SEARCH_ID_TABLES_SQLITE, SEARCH_BACKLOG_SQLITE):
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")


# The SQLite tables as the search reads them (store/console.py).
users_search = table("users_search", column("rowid", Integer))
users_search_ids = table(
    "users_search_ids", column("id", Integer), column("tenant_id", Integer), column("user_id")
)
user_values_search = table("user_values_search", column("rowid", Integer))
groups_search = table("groups_search", column("rowid", Integer))
groups_search_ids = table(
    "groups_search_ids", column("id", Integer), column("tenant_id", Integer), column("group_id")
)
search_backlog = table(
    SEARCH_BACKLOG_SQLITE, column("id", Integer), column("kind"), column("row", Integer)
)


# --- Live counts: each tenant's live users and groups, kept by triggers -----------------------
#
# LiveCount's rows change with every insert, tombstone (deleted_at set or cleared) and delete of
# a user or group, in the writing transaction, whoever writes: the service, `flask purge`, a
# tenant's purge, a bulk load, a migration, hand-written SQL. A rolled-back write takes its
# change back with it. Migration 0013_live_counts creates these triggers and counts the rows
# already stored; create_all (the tests) creates the same through the event below, and
# tests/test_migrations.py compares the two. A decrement only updates: a counter row that is
# gone (deleted with its tenant, or by the tests' emptying in any table order) stays gone.
#
# PostgreSQL: a row's shard is the low bits of hashtext(id), so concurrent creates in one tenant
# rarely queue on one counter row until commit. Inserts and deletes are counted once per
# statement, from its transition table (a purge of 1,000,000 rows or a COPY is a few counter
# updates, not one per row), and the counter rows are changed in key order, so two statements
# changing several of them cannot deadlock each other. A tombstone is one row per statement:
# a row trigger whose WHEN skips every UPDATE that leaves the row's liveness alone (a PATCH
# runs no function). The functions run as the writing role, under the table's row-level
# security: the app role changes its own tenant's counters only.
#
# SQLite: one writer at a time, so shard 0 only; a row trigger each (a statement-level trigger
# does not exist there). Alembic's batch mode drops a table's triggers when it rebuilds it (as
# for the search's, above): a migration that rebuilds users or groups must create them again.

LIVE_COUNT_SHARDS = 16  # PostgreSQL; a power of two: the shard is hashtext(id) & (SHARDS - 1)
LIVE_COUNTED = {"users": "User", "groups": "Group"}  # table: resource_type

_SHARD = f"hashtext({{0}}) & {LIVE_COUNT_SHARDS - 1}"
LIVE_COUNT_POSTGRESQL = (
    # Inserts and deletes, per statement: the rows' live ones, summed per counter row.
    "CREATE OR REPLACE FUNCTION scim_live_counts_rows() RETURNS trigger LANGUAGE plpgsql AS $$\n"
    "DECLARE\n"
    "    change record;\n"
    "BEGIN\n"
    "    IF TG_OP = 'INSERT' THEN\n"
    "        INSERT INTO live_counts AS c (tenant_id, resource_type, shard, live)\n"
    f"        SELECT tenant_id, TG_ARGV[0], {_SHARD.format('id')}, count(*) FROM new_rows\n"
    "        WHERE deleted_at IS NULL GROUP BY 1, 3 ORDER BY 1, 3\n"
    "        ON CONFLICT (tenant_id, resource_type, shard)\n"
    "        DO UPDATE SET live = c.live + excluded.live;\n"
    "    ELSE\n"
    "        FOR change IN\n"
    f"            SELECT tenant_id, {_SHARD.format('id')} AS shard, count(*) AS gone\n"
    "            FROM old_rows WHERE deleted_at IS NULL GROUP BY 1, 2 ORDER BY 1, 2\n"
    "        LOOP\n"
    "            UPDATE live_counts SET live = live - change.gone\n"
    "            WHERE tenant_id = change.tenant_id AND resource_type = TG_ARGV[0]\n"
    "                AND shard = change.shard;\n"
    "        END LOOP;\n"
    "    END IF;\n"
    "    RETURN NULL;\n"
    "END\n"
    "$$",
    # A row that became a tombstone or live again (or, never in the service, changed its key).
    "CREATE OR REPLACE FUNCTION scim_live_counts_update() RETURNS trigger LANGUAGE plpgsql AS $$\n"
    "BEGIN\n"
    "    IF OLD.deleted_at IS NULL THEN\n"
    "        UPDATE live_counts SET live = live - 1\n"
    "        WHERE tenant_id = OLD.tenant_id AND resource_type = TG_ARGV[0]\n"
    f"            AND shard = {_SHARD.format('OLD.id')};\n"
    "    END IF;\n"
    "    IF NEW.deleted_at IS NULL THEN\n"
    "        INSERT INTO live_counts AS c (tenant_id, resource_type, shard, live)\n"
    f"        VALUES (NEW.tenant_id, TG_ARGV[0], {_SHARD.format('NEW.id')}, 1)\n"
    "        ON CONFLICT (tenant_id, resource_type, shard) DO UPDATE SET live = c.live + 1;\n"
    "    END IF;\n"
    "    RETURN NULL;\n"
    "END\n"
    "$$",
    *(
        statement
        for table, kind in LIVE_COUNTED.items()
        for statement in (
            f"CREATE OR REPLACE TRIGGER live_counts_{table}_insert AFTER INSERT ON {table} "
            "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
            f"EXECUTE FUNCTION scim_live_counts_rows('{kind}')",
            f"CREATE OR REPLACE TRIGGER live_counts_{table}_delete AFTER DELETE ON {table} "
            "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT "
            f"EXECUTE FUNCTION scim_live_counts_rows('{kind}')",
            f"CREATE OR REPLACE TRIGGER live_counts_{table}_update AFTER UPDATE ON {table} "
            "FOR EACH ROW WHEN ((OLD.deleted_at IS NULL) <> (NEW.deleted_at IS NULL) "
            "OR OLD.tenant_id <> NEW.tenant_id OR OLD.id <> NEW.id) "
            f"EXECUTE FUNCTION scim_live_counts_update('{kind}')",
        )
    ),
)
LIVE_COUNT_FUNCTIONS_POSTGRESQL = ("scim_live_counts_rows", "scim_live_counts_update")

_UP = (
    "INSERT INTO live_counts (tenant_id, resource_type, shard, live) "
    "SELECT new.tenant_id, '{0}', 0, 1 WHERE new.deleted_at IS NULL "
    "ON CONFLICT (tenant_id, resource_type, shard) DO UPDATE SET live = live + 1"
)
_DOWN = (
    "UPDATE live_counts SET live = live - 1 WHERE old.deleted_at IS NULL "
    "AND tenant_id = old.tenant_id AND resource_type = '{0}' AND shard = 0"
)
LIVE_COUNT_SQLITE = tuple(
    statement
    for table, kind in LIVE_COUNTED.items()
    for statement in (
        f"CREATE TRIGGER IF NOT EXISTS live_counts_{table}_insert AFTER INSERT ON {table} "
        f"BEGIN {_UP.format(kind)}; END",
        f"CREATE TRIGGER IF NOT EXISTS live_counts_{table}_delete AFTER DELETE ON {table} "
        f"BEGIN {_DOWN.format(kind)}; END",
        f"CREATE TRIGGER IF NOT EXISTS live_counts_{table}_update "
        f"AFTER UPDATE OF tenant_id, id, deleted_at ON {table} "
        "WHEN (old.deleted_at IS NULL) <> (new.deleted_at IS NULL) "
        "OR old.tenant_id <> new.tenant_id OR old.id <> new.id "
        f"BEGIN {_DOWN.format(kind)}; {_UP.format(kind)}; END",
    )
)
LIVE_COUNT = {"postgresql": LIVE_COUNT_POSTGRESQL, "sqlite": LIVE_COUNT_SQLITE}


@event.listens_for(db.metadata, "after_create")
def _create_live_count_triggers(target: Any, connection: Any, **kw: Any) -> None:
    for statement in LIVE_COUNT.get(connection.dialect.name, ()):
        connection.exec_driver_sql(statement)


@event.listens_for(db.metadata, "after_drop")
def _drop_live_count_functions(target: Any, connection: Any, **kw: Any) -> None:
    if connection.dialect.name == "postgresql":  # the triggers went with their tables
        for name in LIVE_COUNT_FUNCTIONS_POSTGRESQL:
            connection.exec_driver_sql(f"DROP FUNCTION IF EXISTS {name}()")
