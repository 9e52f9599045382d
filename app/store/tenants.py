"""Every SQL statement about tenants: created, listed, suspended, resumed, deleted, purged."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, delete, func, select, text
from sqlalchemy.exc import IntegrityError

from app import tenancy
from app.db import db, utcnow, violated_constraint
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
    Tenant,
    TenantState,
    Token,
    User,
    UserValue,
)
from app.store import tokens

# URL-safe, as a host name label: lower-case letters, digits and inner hyphens, 1-63 characters.
SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


class TenantError(ValueError):
    """An operator's tenant command that cannot be carried out; the message says why."""


@dataclass(frozen=True)
class Summary:
    """One line of `flask tenants list` and of the console's tenants page."""

    tenant: Tenant
    users: int
    groups: int
    tokens: int
    last_request_at: datetime | None


def check_slug(slug: str) -> str:
    if not SLUG.fullmatch(slug):
        raise TenantError(
            f"{slug!r} is not a valid tenant slug: use 1-63 lower-case letters, digits and "
            "hyphens, starting and ending with a letter or digit"
        )
    return slug


def by_slug(slug: str, *, include_deleted: bool = False) -> Tenant:
    tenant = db.session.scalars(select(Tenant).where(Tenant.slug == slug)).one_or_none()
    if tenant is None:
        raise TenantError(f"no tenant has the slug {slug!r} (`flask tenants list` shows them)")
    if tenant.state == TenantState.DELETED and not include_deleted:
        raise TenantError(
            f"the tenant {slug!r} is deleted: it cannot be changed or used, and `flask purge` "
            "removes its data after SCIM_TENANT_RETENTION_DAYS"
        )
    return tenant


def lookup(slug: str, *, include_deleted: bool = False) -> Tenant:
    """`by_slug` for a command about to enter the tenant's scope: the session's transaction ends
    here, so that the next one begins inside that scope (on PostgreSQL the row-level security
    setting is taken when a transaction begins, app/store/scope.py). The tenant comes back
    detached, its attributes loaded."""
    tenant = by_slug(slug, include_deleted=include_deleted)
    db.session.expunge(tenant)
    db.session.commit()
    return tenant


def count() -> dict[str, int]:
    """How many tenants there are, by state."""
    rows = db.session.execute(select(Tenant.state, func.count()).group_by(Tenant.state))
    return {str(state): number for state, number in rows}


def by_id(tenant_id: int) -> Tenant | None:
    return db.session.get(Tenant, tenant_id)


def create(slug: str, name: str | None = None) -> Tenant:
    tenant = Tenant(slug=check_slug(slug), name=name or slug, state=TenantState.ACTIVE)
    db.session.add(tenant)
    try:
        db.session.commit()
    except IntegrityError as e:
        db.session.rollback()
        if violated_constraint(e) != "uq_tenants_slug":
            raise
        raise TenantError(f"a tenant with the slug {slug!r} exists already") from None
    return tenant


def ensure_default() -> Tenant:
    """The `default` tenant, created if missing (migration 0009 creates it on every database).

    Ends its transaction either way: on SQLite every transaction, a read included, holds the
    write lock until it ends (app/db.py begins them IMMEDIATE)."""
    tenant = db.session.get(Tenant, tenancy.DEFAULT_TENANT_ID)
    if tenant is None:
        tenant = Tenant(
            id=tenancy.DEFAULT_TENANT_ID,
            slug=tenancy.DEFAULT_TENANT_SLUG,
            name="Default",
            state=TenantState.ACTIVE,
        )
        db.session.add(tenant)
        db.session.flush()
        if db.session.get_bind().dialect.name == "postgresql":
            # The id was given, not drawn: the sequence must not hand it out again.
            db.session.execute(
                text("SELECT setval(pg_get_serial_sequence('tenants', 'id'), max(id)) FROM tenants")
            )
    db.session.commit()
    return tenant


def set_state(slug: str, state: TenantState) -> Tenant:
    """Suspend, resume or delete a tenant. Deleting tombstones it: its tokens stop working at
    once, and `flask purge` removes its rows after SCIM_TENANT_RETENTION_DAYS."""
    tenant = by_slug(slug)
    if state == TenantState.DELETED and tenant.id == tenancy.DEFAULT_TENANT_ID:
        raise TenantError("the default tenant cannot be deleted (suspend it instead)")
    now = utcnow()
    tenant.state = state
    tenant.updated_at = now
    tenant.deleted_at = now if state == TenantState.DELETED else None
    db.session.commit()
    tokens.forget_callers()  # this worker answers with the new state at once; others within 1 s
    return tenant


def summaries(include_deleted: bool = False) -> list[Summary]:
    """Every tenant with its live users, groups, valid tokens and last SCIM request."""
    with tenancy.across_tenants():
        query = select(Tenant).order_by(Tenant.slug)
        if not include_deleted:
            query = query.where(Tenant.state != TenantState.DELETED)
        tenants = list(db.session.scalars(query))
        # From the counters the triggers keep (models.LiveCount), not a count of every row.
        live = select(LiveCount.tenant_id, func.sum(LiveCount.live))
        users = _per_tenant(live.where(LiveCount.resource_type == "User"))
        groups = _per_tenant(live.where(LiveCount.resource_type == "Group"))
        tokens = _per_tenant(
            select(Token.tenant_id, func.count()).where(Token.revoked_at.is_(None))
        )
        last = _per_tenant(select(AuditEvent.tenant_id, func.max(AuditEvent.at)))
    return [
        Summary(t, users.get(t.id, 0), groups.get(t.id, 0), _valid(t, tokens), last.get(t.id))
        for t in tenants
    ]


def _valid(tenant: Tenant, tokens: dict[int, int]) -> int:
    # A deleted tenant's tokens, unrevoked, answer 401, and it never comes back: none is valid.
    return 0 if tenant.state == TenantState.DELETED else tokens.get(tenant.id, 0)


def _per_tenant(query: Select) -> dict:  # type: ignore[type-arg]
    column = query.selected_columns[0]
    return {key: value for key, value in db.session.execute(query.group_by(column))}


def purge_deleted(older_than_days: int) -> list[str]:
    """Remove every row of tenants deleted more than this many days ago, then the tenants; the
    slugs purged. Runs across tenants: the deliberate path for this operator work."""
    cutoff = utcnow() - timedelta(days=older_than_days)
    with tenancy.across_tenants():
        gone = list(
            db.session.scalars(
                select(Tenant).where(
                    Tenant.state == TenantState.DELETED, Tenant.deleted_at < cutoff
                )
            )
        )
        for tenant in gone:
            # Children first: the composite foreign keys lead with the tenant.
            for model in (
                UserValue,
                GroupMember,
                MembershipChange,
                User,
                Group,
                LiveCount,  # after the users and groups, whose deletion counted them down
                Token,
                AuditEvent,
                EventDelivery,
                EventSigningKey,
                EventReceiver,
                Event,
            ):
                db.session.execute(delete(model).where(model.tenant_id == tenant.id))
            db.session.execute(
                delete(Tenant).where(Tenant.id == tenant.id),
                execution_options={"synchronize_session": False},
            )
        db.session.commit()
    return [tenant.slug for tenant in gone]
