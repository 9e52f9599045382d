"""Covering indexes for reading a group's members (issue 16).

Revision ID: 0015_member_read_indexes
Revises: 0014_events
Create Date: 2026-12-06 13:00:00

A group's members are read as (member id, type, display name) for each of its group_members
rows, joined to the live user it names. The primary keys found the rows, but each lookup then
read the table row for what the key lacks: member_type, and a user's displayName and userName
(a user's row, document and all, spans pages). On SQLite the read of a 100,000-member group took
550-670 ms, 170-190 ms with both indexes answering it alone; PostgreSQL reads both indexes
only (no heap fetch once vacuumed).

The users index holds live rows only, and deleted_at as its last column: SQLite (3.40) answers
`deleted_at IS NULL` of the join from the index only when the column is in it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0015_member_read_indexes"
down_revision = "0014_events"
branch_labels = None
depends_on = None

LIVE = sa.text("deleted_at IS NULL")


def upgrade():
    op.create_index(
        "ix_group_members_group_id_member",
        "group_members",
        ["tenant_id", "group_id", "member_id", "member_type"],
    )
    op.create_index(
        "ix_users_live_display",
        "users",
        ["tenant_id", "id", "display_name", "user_name", "deleted_at"],
        sqlite_where=LIVE,
        postgresql_where=LIVE,
    )


def downgrade():
    op.drop_index("ix_users_live_display", table_name="users")
    op.drop_index("ix_group_members_group_id_member", table_name="group_members")
