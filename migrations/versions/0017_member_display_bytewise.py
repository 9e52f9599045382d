"""A group's members probe the users index byte by byte on PostgreSQL (issue 16).

Revision ID: 0017_member_display_bytewise
Revises: 0016_member_groups_index
Create Date: 2026-12-07 19:00:00

Reading a group's members (a full GET) finds each member's display name by one probe of
ix_users_live_display (migration 0015): 100,000 probes for a 100,000-member group. Each probe
compares ids at every level of the B-tree, and a text column compares through the database's
collation: strcoll for any locale but "C" (C.UTF-8 and en_US.UTF-8 included). The same index
with text_pattern_ops on the id compares bytes (memcmp) and answers the same equality, which
is all the join asks of it. Measured at 1,000,000 users, the 100,000-member group's statement
alone, eight interleaved runs each: 332-406 ms against 391-532 (median 352 against 428).
Other statements do not use this index for the id's order: pages order users by
ix_users_created_at_id, and the primary key still serves every other id lookup.

The index is rebuilt in this revision's transaction: about 2 s at 1,000,000 users, during
which writes to users wait. SQLite's ids already compare byte by byte (BINARY): nothing there.
"""

import sqlalchemy as sa
from alembic import op

revision = "0017_member_display_bytewise"
down_revision = "0016_member_groups_index"
branch_labels = None
depends_on = None

NAME = "ix_users_live_display"
COLUMNS = ["tenant_id", "id", "display_name", "user_name", "deleted_at"]
LIVE = sa.text("deleted_at IS NULL")


def upgrade():
    _rebuild(postgresql_ops={"id": "text_pattern_ops"})


def downgrade():
    _rebuild(postgresql_ops={})


def _rebuild(postgresql_ops: dict[str, str]) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("SET LOCAL statement_timeout = 0")  # as 0011: the service's would stop a large build
    op.drop_index(NAME, table_name="users")
    op.create_index(NAME, "users", COLUMNS, postgresql_where=LIVE, postgresql_ops=postgresql_ops)
