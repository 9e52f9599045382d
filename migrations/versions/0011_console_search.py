"""Substring indexes for the console's text search (issue 16).

Revision ID: 0011_console_search
Revises: 0010_rls_inline
Create Date: 2026-12-06 00:30:00

The console finds plain text anywhere in a user's folded userName, displayName, "given family"
name and email addresses, and in a group's folded displayName: LIKE '%text%', which no B-tree
serves, so every search read every user of the tenant (a second and more at 1,000,000 users).
app/models.py says what each index is and why; these are its statements as of this revision.

PostgreSQL: the pg_trgm extension and GIN trigram indexes, and a B-tree on live users in
sortBy's userName order (code point, COLLATE "C"), which a broad search and the unsearched users
table read in order. pg_trgm is a trusted extension: a role with CREATE on the database can add
it, a superuser always can. deploy/postgres/app-role.sql adds it as the superuser it runs as;
where neither applies, this revision stops before changing anything and says what to run.
Building the indexes takes about 25 s at 1,000,000 users (the service's statement timeout is
lifted for it), and writes to users, user_values and groups wait meanwhile; to build them
without blocking writes, create them first with CREATE INDEX CONCURRENTLY under the same names
(this revision then skips them). Downgrading drops the indexes and leaves the extension.

SQLite: FTS5 tables with the trigram tokenizer (SQLite 3.34 or later), triggers that keep them,
and the existing rows copied in: about 70 s at 1,000,000 users, holding the write lock.
"""

import sqlite3

from alembic import op

revision = "0011_console_search"
down_revision = "0010_rls_inline"
branch_labels = None
depends_on = None

FULL_NAME_KEY = "coalesce(given_name_key, '') || ' ' || coalesce(family_name_key, '')"

POSTGRESQL_INDEXES = {
    "ix_users_user_name_key_trgm": "users USING gin (user_name_key gin_trgm_ops)",
    "ix_users_display_name_key_trgm": "users USING gin (display_name_key gin_trgm_ops)",
    "ix_users_full_name_key_trgm": f"users USING gin (({FULL_NAME_KEY}) gin_trgm_ops)",
    "ix_user_values_emails_trgm": (
        "user_values USING gin (value_key gin_trgm_ops) WHERE attribute = 'emails'"
    ),
    "ix_groups_display_name_key_trgm": "groups USING gin (display_name_key gin_trgm_ops)",
    # Live users in sortBy's userName order (code point): a broad search reads them in it.
    "ix_users_live_user_name_key_codepoint": (
        'users (tenant_id, (user_name_key COLLATE "C")) WHERE deleted_at IS NULL'
    ),
}

PG_TRGM = """
SELECT
    EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_trgm') AS installed,
    EXISTS (SELECT FROM pg_available_extensions WHERE name = 'pg_trgm') AS available,
    (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
        OR (has_database_privilege(current_database(), 'CREATE') AND EXISTS (
            SELECT FROM pg_available_extension_versions v
            JOIN pg_available_extensions e ON e.name = v.name AND e.default_version = v.version
            WHERE v.name = 'pg_trgm' AND v.trusted
        )) AS may_create
"""

TRIGRAM = "tokenize = 'trigram case_sensitive 1'"
USER_ROW = "(SELECT id FROM users_search_ids WHERE tenant_id = {0}.tenant_id AND user_id = {0}.id)"
GROUP_ROW = (
    "(SELECT id FROM groups_search_ids WHERE tenant_id = {0}.tenant_id AND group_id = {0}.id)"
)
NEW_USER_TEXT = (
    "new.user_name_key, new.display_name_key, "
    "coalesce(new.given_name_key, '') || ' ' || coalesce(new.family_name_key, '')"
)
SQLITE_TABLES = (
    "CREATE TABLE users_search_ids (id INTEGER PRIMARY KEY, "
    "tenant_id INTEGER NOT NULL, user_id VARCHAR(36) NOT NULL)",
    "CREATE UNIQUE INDEX uq_users_search_ids_tenant_id_user_id "
    "ON users_search_ids (tenant_id, user_id)",
    "CREATE VIRTUAL TABLE users_search "
    f"USING fts5(user_name_key, display_name_key, full_name_key, {TRIGRAM})",
    f"CREATE VIRTUAL TABLE user_values_search USING fts5(value_key, {TRIGRAM})",
    "CREATE TABLE groups_search_ids (id INTEGER PRIMARY KEY, "
    "tenant_id INTEGER NOT NULL, group_id VARCHAR(36) NOT NULL)",
    "CREATE UNIQUE INDEX uq_groups_search_ids_tenant_id_group_id "
    "ON groups_search_ids (tenant_id, group_id)",
    f"CREATE VIRTUAL TABLE groups_search USING fts5(display_name_key, {TRIGRAM})",
)
SQLITE_BACKFILL = (
    "INSERT INTO users_search_ids (tenant_id, user_id) SELECT tenant_id, id FROM users",
    "INSERT INTO users_search (rowid, user_name_key, display_name_key, full_name_key) "
    "SELECT s.id, u.user_name_key, u.display_name_key, "
    "coalesce(u.given_name_key, '') || ' ' || coalesce(u.family_name_key, '') "
    "FROM users_search_ids s JOIN users u ON u.tenant_id = s.tenant_id AND u.id = s.user_id "
    "WHERE u.deleted_at IS NULL",
    "INSERT INTO user_values_search (rowid, value_key) SELECT id, value_key FROM user_values "
    "WHERE attribute = 'emails' AND value_key IS NOT NULL",
    "INSERT INTO groups_search_ids (tenant_id, group_id) SELECT tenant_id, id FROM groups",
    "INSERT INTO groups_search (rowid, display_name_key) SELECT s.id, g.display_name_key "
    "FROM groups_search_ids s JOIN groups g ON g.tenant_id = s.tenant_id AND g.id = s.group_id "
    "WHERE g.deleted_at IS NULL",
    # One b-tree per index instead of the segments a bulk insert leaves: faster searches.
    "INSERT INTO users_search (users_search) VALUES ('optimize')",
    "INSERT INTO user_values_search (user_values_search) VALUES ('optimize')",
    "INSERT INTO groups_search (groups_search) VALUES ('optimize')",
)
SQLITE_TRIGGERS = (
    "CREATE TRIGGER users_search_insert AFTER INSERT ON users BEGIN "
    "INSERT INTO users_search_ids (tenant_id, user_id) VALUES (new.tenant_id, new.id); "
    "INSERT INTO users_search (rowid, user_name_key, display_name_key, full_name_key) "
    f"SELECT {USER_ROW.format('new')}, {NEW_USER_TEXT} WHERE new.deleted_at IS NULL; END",
    "CREATE TRIGGER users_search_update AFTER UPDATE OF user_name_key, "
    "display_name_key, given_name_key, family_name_key, deleted_at ON users BEGIN "
    f"DELETE FROM users_search WHERE rowid = {USER_ROW.format('old')}; "
    "INSERT INTO users_search (rowid, user_name_key, display_name_key, full_name_key) "
    f"SELECT {USER_ROW.format('new')}, {NEW_USER_TEXT} WHERE new.deleted_at IS NULL; END",
    "CREATE TRIGGER users_search_delete AFTER DELETE ON users BEGIN "
    f"DELETE FROM users_search WHERE rowid = {USER_ROW.format('old')}; "
    "DELETE FROM users_search_ids WHERE tenant_id = old.tenant_id AND user_id = old.id; END",
    "CREATE TRIGGER user_values_search_insert AFTER INSERT ON user_values "
    "WHEN new.attribute = 'emails' AND new.value_key IS NOT NULL BEGIN "
    "INSERT INTO user_values_search (rowid, value_key) VALUES (new.id, new.value_key); END",
    "CREATE TRIGGER user_values_search_update AFTER UPDATE OF id, attribute, "
    "value_key ON user_values BEGIN "
    "DELETE FROM user_values_search WHERE rowid = old.id; "
    "INSERT INTO user_values_search (rowid, value_key) SELECT new.id, new.value_key "
    "WHERE new.attribute = 'emails' AND new.value_key IS NOT NULL; END",
    "CREATE TRIGGER user_values_search_delete AFTER DELETE ON user_values "
    "WHEN old.attribute = 'emails' AND old.value_key IS NOT NULL BEGIN "
    "DELETE FROM user_values_search WHERE rowid = old.id; END",
    "CREATE TRIGGER groups_search_insert AFTER INSERT ON groups BEGIN "
    "INSERT INTO groups_search_ids (tenant_id, group_id) VALUES (new.tenant_id, new.id); "
    "INSERT INTO groups_search (rowid, display_name_key) "
    f"SELECT {GROUP_ROW.format('new')}, new.display_name_key WHERE new.deleted_at IS NULL; END",
    "CREATE TRIGGER groups_search_update AFTER UPDATE OF display_name_key, "
    "deleted_at ON groups BEGIN "
    f"DELETE FROM groups_search WHERE rowid = {GROUP_ROW.format('old')}; "
    "INSERT INTO groups_search (rowid, display_name_key) "
    f"SELECT {GROUP_ROW.format('new')}, new.display_name_key WHERE new.deleted_at IS NULL; END",
    "CREATE TRIGGER groups_search_delete AFTER DELETE ON groups BEGIN "
    f"DELETE FROM groups_search WHERE rowid = {GROUP_ROW.format('old')}; "
    "DELETE FROM groups_search_ids WHERE tenant_id = old.tenant_id AND group_id = old.id; END",
)
SQLITE_DROPPED = (
    *(
        f"DROP TRIGGER IF EXISTS {table}_search_{event}"
        for table in ("users", "user_values", "groups")
        for event in ("insert", "update", "delete")
    ),
    *(
        f"DROP TABLE IF EXISTS {table}"
        for table in (
            "users_search",
            "user_values_search",
            "groups_search",
            "users_search_ids",
            "groups_search_ids",
        )
    ),
)


def upgrade():
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        installed, available, may_create = bind.exec_driver_sql(PG_TRGM).one()
        if not installed and not (available and may_create):
            raise RuntimeError(
                "the console's search needs PostgreSQL's pg_trgm extension, which this role "
                "cannot add: as a superuser, run `CREATE EXTENSION pg_trgm;` in this database "
                "(deploy/postgres/app-role.sql does), then migrate again"
                + ("" if available else "; the server must have its contrib modules installed")
            )
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        # The service's statement timeout (SCIM_DB_TIMEOUT_SECONDS) would stop a large build.
        op.execute("SET LOCAL statement_timeout = 0")
        for name, definition in POSTGRESQL_INDEXES.items():
            op.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {definition}")
    elif bind.dialect.name == "sqlite":
        if sqlite3.sqlite_version_info < (3, 34):
            raise RuntimeError(
                f"the console's search needs SQLite 3.34 or later (FTS5's trigram tokenizer); "
                f"this Python has SQLite {sqlite3.sqlite_version}"
            )
        for statement in (*SQLITE_TABLES, *SQLITE_BACKFILL, *SQLITE_TRIGGERS):
            op.execute(statement)


def downgrade():
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for name in POSTGRESQL_INDEXES:
            op.execute(f"DROP INDEX IF EXISTS {name}")
    elif bind.dialect.name == "sqlite":
        for statement in SQLITE_DROPPED:
            op.execute(statement)
