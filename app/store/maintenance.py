"""SQL for operators' commands: purging tombstones and old membership changes for good, and
counting what is stored. Each works in the tenant scope its caller entered (app.tenancy): one
tenant's rows, or every tenant's across_tenants()."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Select, delete, func, or_, select, text
from sqlalchemy.exc import SQLAlchemyError

from app.db import db, describe_outage, utcnow
from app.models import AuditEvent, Group, GroupMember, MembershipChange, User, UserValue
from app.store import chunks


@dataclass(frozen=True)
class Purged:
    users: int
    groups: int


def unreachable() -> str | None:
    """None when one round trip on a fresh connection works; else the operator's one-line cause."""
    try:
        with db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as e:
        return describe_outage(e)
    return None


def purge_tombstones(older_than_days: int) -> Purged:
    """Hard-delete users and groups deleted more than this many days ago, with their rows."""
    cutoff = utcnow() - timedelta(days=older_than_days)
    user_ids = list(
        db.session.scalars(
            select(User.id).where(User.deleted_at.is_not(None), User.deleted_at < cutoff)
        )
    )
    group_ids = list(
        db.session.scalars(
            select(Group.id).where(Group.deleted_at.is_not(None), Group.deleted_at < cutoff)
        )
    )
    for chunk in chunks(user_ids):
        db.session.execute(delete(UserValue).where(UserValue.user_id.in_(chunk)))
        db.session.execute(delete(GroupMember).where(GroupMember.member_id.in_(chunk)))
        db.session.execute(delete(User).where(User.id.in_(chunk)))
    for chunk in chunks(group_ids):
        db.session.execute(
            delete(GroupMember).where(
                or_(GroupMember.group_id.in_(chunk), GroupMember.member_id.in_(chunk))
            )
        )
        db.session.execute(delete(Group).where(Group.id.in_(chunk)))
    db.session.commit()
    return Purged(users=len(user_ids), groups=len(group_ids))


def purge_membership_changes(older_than_days: int) -> int:
    """Delete the membership changes (users' timelines) older than this many days; how many.
    They go with the audit events of the same age: both are the record of past requests."""
    cutoff = utcnow() - timedelta(days=older_than_days)
    deleted = db.session.execute(
        delete(MembershipChange).where(MembershipChange.at < cutoff)
    ).rowcount
    db.session.commit()
    return deleted


def counts() -> dict[str, int]:
    """What `flask stats` prints."""

    def count(query: Select[tuple[int]]) -> int:
        return db.session.scalar(query) or 0

    live_users = select(func.count()).select_from(User).where(User.deleted_at.is_(None))
    return {
        "users_active": count(live_users.where(User.active.is_(True))),
        "users_inactive": count(live_users.where(User.active.is_(False))),
        # An IdP removed `active` (README): neither active nor inactive, so counted apart.
        "users_unassigned": count(live_users.where(User.active.is_(None))),
        "groups": count(select(func.count()).select_from(Group).where(Group.deleted_at.is_(None))),
        "memberships": count(select(func.count()).select_from(GroupMember)),
        "tombstoned_users": count(
            select(func.count()).select_from(User).where(User.deleted_at.is_not(None))
        ),
        "tombstoned_groups": count(
            select(func.count()).select_from(Group).where(Group.deleted_at.is_not(None))
        ),
        "audit_events": count(select(func.count()).select_from(AuditEvent)),
    }
