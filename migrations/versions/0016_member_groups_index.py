"""A member's groups read from one index, whatever SQLite's statistics say (issue 16).

Revision ID: 0016_member_groups_index
Revises: 0015_member_read_indexes
Create Date: 2026-12-06 18:30:00

A page of users reads the groups of its 100 users in one statement (member_id IN the page's
ids). The member index held (tenant_id, member_id) only, so the group id came from the table;
0015's covering index (tenant_id, group_id, member_id, member_type) answers the statement alone,
by a scan of every membership of the tenant. SQLite without statistics for group_members (a new
or fast-growing database, until PRAGMA optimize analyses it) chose that scan: 8 ms a page at
10,000 memberships, against 0.7 for 100 probes of this index, which now carries the group id
and wins with or without statistics. A lookup's correlated read of a user's groups is answered
from it alone too.
"""

from alembic import op

revision = "0016_member_groups_index"
down_revision = "0015_member_read_indexes"
branch_labels = None
depends_on = None

NAME = "ix_group_members_member_id"


def upgrade():
    op.drop_index(NAME, table_name="group_members")
    op.create_index(NAME, "group_members", ["tenant_id", "member_id", "group_id"])


def downgrade():
    op.drop_index(NAME, table_name="group_members")
    op.create_index(NAME, "group_members", ["tenant_id", "member_id"])
