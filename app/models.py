"""Tables as typed classes. No Flask and no SCIM JSON shapes here: store/ and serialize.py map."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import UTCDateTime, db, utcnow

LIVE = text("deleted_at IS NULL")


def new_id() -> str:
    return str(uuid.uuid4())


class User(db.Model):
    """A provisioned user. `document` holds the SCIM attributes; columns copy what is queried."""

    __tablename__ = "users"
    __table_args__ = (
        # userName is unique among live users, case-insensitively (RFC 7643 §4.1.1); a
        # tombstone keeps its name without blocking a new user from taking it.
        Index(
            "uq_users_live_user_name",
            "user_name_key",
            unique=True,
            sqlite_where=LIVE,
            postgresql_where=LIVE,
        ),
        Index("ix_users_external_id", "external_id"),
        Index("ix_users_created_at_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_name: Mapped[str]
    user_name_key: Mapped[str]  # user_name.lower(): what uniqueness and filters compare
    external_id: Mapped[str | None]
    display_name: Mapped[str | None]
    given_name: Mapped[str | None]
    family_name: Mapped[str | None]
    active: Mapped[bool] = mapped_column(default=True)
    password_hash: Mapped[str | None]
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_modified: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # tombstone marker
    version: Mapped[int] = mapped_column()  # meta.version; the ORM bumps it on every UPDATE

    # Optimistic concurrency: an UPDATE that finds another writer's version raises StaleDataError.
    __mapper_args__ = {"version_id_col": version}


class UserValue(db.Model):
    """One element of a user's multi-valued attribute (an email, a phone number...), for filters.

    A derived index of `User.document`, rewritten with it, so that `emails.value eq` and
    `emails[type eq "work"]` run as SQL against one element at a time.
    """

    __tablename__ = "user_values"
    __table_args__ = (
        Index("ix_user_values_attribute_value_key", "attribute", "value_key"),
        Index("ix_user_values_user_id", "user_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    attribute: Mapped[str] = mapped_column(String(64))
    value: Mapped[str | None]
    value_key: Mapped[str | None]  # value.lower()
    type: Mapped[str | None]
    primary: Mapped[bool] = mapped_column(default=False)
    display: Mapped[str | None]
    data: Mapped[dict[str, Any]] = mapped_column(
        JSON
    )  # the whole element, for other sub-attributes
