"""users.active may be NULL: unassigned, as a PATCH that removes `active` leaves it.

RFC 7644 §3.5.2.2: a removed attribute has no value; GET omits it, filters on it match as for
any attribute without a value (issue 13, item 5).

Revision ID: 0006_users_active_unassigned
Revises: 0005_console
Create Date: 2026-12-04 19:10:00

SQLite cannot change a column's NOT NULL in place, and rebuilding `users` (Alembic's batch
mode) would drop the old table with PRAGMA foreign_keys on, which deletes every user_values row
through ON DELETE CASCADE. SQLite documents another way for this very change: edit the stored
CREATE TABLE statement in one transaction and bump the schema version (sqlite.org,
lang_altertable.html, "Making Other Kinds Of Table Schema Changes"). No row is rewritten.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_users_active_unassigned"
down_revision = "0005_console"
branch_labels = None
depends_on = None

NOT_NULL = "active BOOLEAN NOT NULL,"
NULLABLE = "active BOOLEAN,"


def upgrade():
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_replace_column(NOT_NULL, NULLABLE)
    else:
        op.alter_column("users", "active", existing_type=sa.Boolean(), nullable=True)


def downgrade():
    # An unassigned state goes back as inactive: nothing said the user may sign in.
    users = sa.table("users", sa.column("active", sa.Boolean))
    op.execute(users.update().where(users.c.active.is_(None)).values(active=False))
    if op.get_bind().dialect.name == "sqlite":
        # Every row has a value now, so the constraint holds for the rows already stored.
        _sqlite_replace_column(NULLABLE, NOT_NULL)
    else:
        op.alter_column("users", "active", existing_type=sa.Boolean(), nullable=False)


def _sqlite_replace_column(old, new):
    bind = op.get_bind()
    where = "type = 'table' AND name = 'users'"
    sql = bind.exec_driver_sql(f"SELECT sql FROM sqlite_master WHERE {where}").scalar()
    if sql.count(old) != 1:
        raise RuntimeError(f"users.active is not declared as {old!r}: migrate it by hand")
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar()
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    bind.exec_driver_sql(
        f"UPDATE sqlite_master SET sql = ? WHERE {where}", (sql.replace(old, new),)
    )
    bind.exec_driver_sql(f"PRAGMA schema_version = {version + 1}")
    bind.exec_driver_sql("PRAGMA writable_schema = OFF")
